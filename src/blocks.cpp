#include "blocks.h"

#include <ATen/ATen.h>

namespace pare {

torch::Tensor apply_norm(const Model& m, const std::string& slot, const torch::Tensor& x) {
  const ArchConfig& c = m.config;
  if (c.norm == "rmsnorm") {
    // One reduction and one multiply over x; the rest works on the [..., 1] scale.
    torch::Tensor sq = at::linalg_vector_norm(x, 2, {-1}, true).square_();
    return x * sq.div_(static_cast<double>(c.hidden_size)).add_(c.layer_norm_eps).rsqrt_();
  }
  if (c.norm == "rmsnorm_affine") {
    const auto dt = x.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    torch::Tensor xf = x.to(dt);
    torch::Tensor scale = xf.square().mean(-1, true).add_(c.layer_norm_eps).rsqrt_();
    return (xf * scale).to(x.scalar_type()) * m.at(slot + ".weight");
  }
  return at::layer_norm(x, {x.size(-1)}, m.at(slot + ".weight"), m.at(slot + ".bias"),
                        c.layer_norm_eps);
}

torch::Tensor add_residual(const Model& m, const std::string& shortcut, const torch::Tensor& x,
                           const torch::Tensor& out) {
  if (!m.config.shortcuts) return x + out;
  const torch::Tensor& S = m.at(shortcut);
  return at::addmm(out.reshape({-1, S.size(1)}), x.reshape({-1, S.size(0)}), S)
      .view({x.size(0), x.size(1), S.size(1)});
}

int64_t params_under(const Model& m, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& [name, t] : m.tensors)
    if (name.rfind(prefix, 0) == 0) n += t.numel();
  for (const auto& [slot, form] : m.linears)
    if ((slot + ".").rfind(prefix, 0) == 0) n += form->num_params();
  return n;
}

}  // namespace pare
