#include "families/blocks.h"

#include <ATen/ATen.h>

#include "base/error.h"
#include "ir/quant_linear.h"
#include "io/safetensors.h"

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

std::vector<DimGroup> residual_groups(const ArchConfig& c,
                                      const std::vector<std::vector<TensorUse>>& site,
                                      bool parallel_blocks) {
  std::vector<DimGroup> groups;
  if (c.shortcuts) {
    for (int64_t s = 0; s < c.num_sites(); ++s) {
      if (parallel_blocks && s % 2 == 1 && s != c.num_sites() - 1) continue;
      groups.push_back({"resid." + std::to_string(s), DimGroup::kSite, s, c.site_dim(s), site[s]});
    }
  } else {
    DimGroup h{"hidden", DimGroup::kHidden, 0, c.site_dim(0), {}};
    for (const auto& s : site) h.uses.insert(h.uses.end(), s.begin(), s.end());
    groups.push_back(h);
  }
  return groups;
}

std::array<torch::Tensor, 3> encoder_qkv_projection(const Model& m, const std::string& b,
                                                  const torch::Tensor& h) {
  const LinearForm& lq = m.linear(b + "attn_q");
  const LinearForm& lk = m.linear(b + "attn_k");
  const LinearForm& lv = m.linear(b + "attn_v");
  const auto* dq = dynamic_cast<const DenseLinear*>(&lq);
  const auto* dk = dynamic_cast<const DenseLinear*>(&lk);
  const auto* dv = dynamic_cast<const DenseLinear*>(&lv);
  constexpr int64_t kFuseRows = 512;
  const bool fuse = dq && dk && dv && !at::GradMode::is_enabled() && h.scalar_type() == at::kFloat &&
                    h.numel() >= kFuseRows * h.size(-1) &&
                    dq->weight.scalar_type() == at::kFloat && dk->weight.scalar_type() == at::kFloat &&
                    dv->weight.scalar_type() == at::kFloat && dq->bias.defined() &&
                    dk->bias.defined() && dv->bias.defined();
  if (!fuse) return {lq.forward(h), lk.forward(h), lv.forward(h)};
  const torch::Tensor qkv = at::linear(h, at::cat({dq->weight, dk->weight, dv->weight}),
                                       at::cat({dq->bias, dk->bias, dv->bias}));
  const int64_t cq = dq->weight.size(0), ck = dk->weight.size(0), cv = dv->weight.size(0);
  return {qkv.narrow(-1, 0, cq), qkv.narrow(-1, cq, ck), qkv.narrow(-1, cq + ck, cv)};
}

void append_encoder_block_slots(const ArchConfig& c, std::vector<std::string>& slots) {
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    if (c.layers[l].attention)
      for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_o"}) slots.push_back(b + n);
    if (c.layers[l].ffn)
      for (const char* n : {"ffn_up", "ffn_down"}) slots.push_back(b + n);
  }
}

void append_encoder_block_groups(const ArchConfig& c, std::vector<DimGroup>& groups) {
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const auto& d = c.layers[l];
    if (d.attention) {
      DimGroup heads{b + "heads", DimGroup::kHeads, l, d.heads, {}};
      for (const char* q : {"attn_q", "attn_k", "attn_v"}) {
        heads.uses.push_back({b + q + ".weight", 0, d.head_dim});
        heads.uses.push_back({b + q + ".bias", 0, d.head_dim});
      }
      heads.uses.push_back({b + "attn_o.weight", 1, d.head_dim});
      groups.push_back(heads);
    }
    if (d.ffn)
      groups.push_back({b + "ffn",
                        DimGroup::kFfn,
                        l,
                        d.intermediate_size,
                        {{b + "ffn_up.weight", 0}, {b + "ffn_up.bias", 0}, {b + "ffn_down.weight", 1}}});
  }
}

void check_checkpoint_dtype(const torch::Tensor& t, const std::string& part, const std::string& src,
                            const std::string& name) {
  if (is_quant_code_part(part)) {
    PARE_CHECK(t.scalar_type() == torch::kUInt8, src, ": tensor '", name,
               "': expected dtype U8 (packed quantization codes), got ", safetensors_dtype_name(t.scalar_type()));
  } else if (part == "scales") {  // pare writes them as F32; NaN or inf would poison every output
    PARE_CHECK(t.scalar_type() == torch::kFloat32, src, ": tensor '", name,
               "': expected dtype F32 (quantization scales), got ", safetensors_dtype_name(t.scalar_type()));
    PARE_CHECK(torch::isfinite(t).all().item<bool>(), src, ": tensor '", name,
               "': expected finite quantization scales, found NaN or inf");
  } else
    PARE_CHECK(t.is_floating_point(), src, ": tensor '", name, "': expected a floating dtype, got ",
               safetensors_dtype_name(t.scalar_type()));
}

Model assemble_model(const ArchConfig& c, const std::vector<std::string>& linear_slots,
                     std::map<std::string, torch::Tensor> flat, const std::vector<std::string>& missing,
                     const std::vector<std::string>& unknown, const std::string& src) {
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > 8) s += concat(", ... (", v.size(), " in all)");
    return s;
  };
  PARE_CHECK(missing.empty(), src, ": missing tensors: ", join(missing));
  PARE_CHECK(unknown.empty(), src, ": unexpected tensors: ", join(unknown));
  Model m;
  m.config = c;
  for (const auto& slot : linear_slots) {
    auto q = c.quantized.find(slot);
    auto z = flat.find(slot + ".qzeros");
    if (q != c.quantized.end() && z != flat.end()) {  // zero points must be codes of `bits` bits
      const int64_t top = (int64_t{1} << q->second.bits) - 1;
      const int64_t got = z->second.numel() ? z->second.max().item<int64_t>() : 0;
      PARE_CHECK(got <= top, src, ": zero points of quantized slot ", slot, " (pare.quantization.slots): expected ",
                 "values in [0, ", top, "] for ", q->second.bits, "-bit codes, found ", got);
    }
    m.linears[slot] = take_linear_form(c, slot, flat);
  }
  m.tensors = std::move(flat);
  return m;
}

}  // namespace pare
