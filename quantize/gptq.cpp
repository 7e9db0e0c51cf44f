#include "gptq.h"

#include <ATen/ATen.h>

#include <vector>

#include "base/error.h"

namespace pare {

namespace {

int64_t max_code(int64_t bits) { return (int64_t(1) << bits) - 1; }

// Effective group size and group count of a [out, in] weight; InputError when g does not divide.
int64_t group_of(const QuantSlot& spec, int64_t in) {
  PARE_CHECK(spec.bits == 4 || spec.bits == 8, "quantize: bits: expected 4 or 8, got ", spec.bits);
  const int64_t g = spec.group_size == 0 ? in : spec.group_size;
  PARE_CHECK(spec.group_size >= 0 && in % g == 0, "quantize: group_size ", spec.group_size,
             " does not divide the input width ", in);
  return g;
}

}  // namespace

Grid fit_grid(const torch::Tensor& w, const QuantSlot& spec) {
  torch::Tensor x = w.to(torch::kFloat64);
  Grid g;
  if (spec.symmetric) {
    const double half = double(int64_t(1) << (spec.bits - 1));
    g.scale = x.abs().amax(-1) / (half - 1.0);
    g.zero = torch::full_like(g.scale, half);
  } else {
    torch::Tensor lo = x.amin(-1).clamp_max(0.0), hi = x.amax(-1).clamp_min(0.0);
    g.scale = (hi - lo) / double(max_code(spec.bits));
  }
  g.scale.masked_fill_(g.scale == 0, 1.0);
  g.scale = g.scale.to(torch::kFloat32).to(torch::kFloat64);  // the stored float32 value
  if (!spec.symmetric) {
    torch::Tensor lo = x.amin(-1).clamp_max(0.0);
    g.zero = at::round(-lo / g.scale).clamp_(0.0, double(max_code(spec.bits)));
  }
  return g;
}

torch::Tensor grid_codes(const torch::Tensor& w, const Grid& g, int64_t bits) {
  return at::round(w.to(torch::kFloat64) / g.scale.unsqueeze(-1))
      .add_(g.zero.unsqueeze(-1))
      .clamp_(0.0, double(max_code(bits)));
}

torch::Tensor QuantizedWeight::dequantized(int64_t group_size) const {
  const int64_t out = codes.size(0), in = codes.size(1), g = group_size == 0 ? in : group_size;
  torch::Tensor c = codes.to(torch::kFloat64).view({out, in / g, g});
  return ((c - zeros.to(torch::kFloat64).unsqueeze(2)) * scales.to(torch::kFloat64).unsqueeze(2))
      .view({out, in});
}

std::shared_ptr<QuantLinear> QuantizedWeight::form(const QuantSlot& spec, torch::Tensor bias) const {
  return QuantLinear::from_codes(spec, codes, scales, spec.symmetric ? torch::Tensor() : zeros,
                                 std::move(bias));
}

QuantizedWeight rtn_quantize(const torch::Tensor& W, const QuantSlot& spec) {
  PARE_CHECK(W.dim() == 2, "quantize: expected a weight [out, in], got ", W.sizes());
  const int64_t out = W.size(0), in = W.size(1), g = group_of(spec, in);
  torch::Tensor w = W.detach().to(torch::kFloat64).reshape({out, in / g, g});
  Grid grid = fit_grid(w, spec);
  QuantizedWeight q;
  q.codes = grid_codes(w, grid, spec.bits).view({out, in}).to(torch::kUInt8);
  q.scales = grid.scale.to(torch::kFloat32);
  q.zeros = grid.zero.to(torch::kUInt8);
  return q;
}

QuantizedWeight gptq_quantize(const torch::Tensor& W0, const torch::Tensor& H0,
                              const QuantSlot& spec, const GptqOptions& o) {
  PARE_CHECK(W0.dim() == 2, "gptq: expected a weight [out, in], got ", W0.sizes());
  const int64_t out = W0.size(0), in = W0.size(1), g = group_of(spec, in), G = in / g;
  PARE_CHECK(H0.dim() == 2 && H0.size(0) == in && H0.size(1) == in, "gptq: Hessian must be [", in,
             ", ", in, "], got ", H0.sizes());
  PARE_CHECK(o.block_size > 0, "gptq: block_size must be positive");
  torch::NoGradGuard ng;
  torch::Tensor W = W0.detach().to(torch::kFloat64).clone();
  torch::Tensor H = H0.detach().to(torch::kFloat64).clone();

  // Dead inputs (never nonzero in the calibration data): any weight works, quantize zeros.
  torch::Tensor dead = H.diagonal() == 0;
  H.diagonal().masked_fill_(dead, 1.0);
  W.masked_fill_(dead.unsqueeze(0), 0.0);

  // Static grids from the original weights: per channel, or the groups under act-order.
  const bool static_groups = o.act_order || G == 1;
  torch::Tensor S = torch::empty({out, G}, torch::kFloat64), Z = torch::empty({out, G}, torch::kFloat64);
  if (static_groups) {
    Grid grid = fit_grid(W.view({out, G, g}), spec);
    S.copy_(grid.scale);
    Z.copy_(grid.zero);
  }
  std::vector<int64_t> perm(in);
  for (int64_t j = 0; j < in; ++j) perm[j] = j;
  torch::Tensor perm_t;
  if (o.act_order) {
    perm_t = at::argsort(H.diagonal(), /*dim=*/0, /*descending=*/true);
    auto acc = perm_t.accessor<int64_t, 1>();
    for (int64_t j = 0; j < in; ++j) perm[j] = acc[j];
    W = W.index_select(1, perm_t);
    H = H.index_select(0, perm_t).index_select(1, perm_t);
  }

  const double damp = o.damping * H.diagonal().mean().item<double>();
  H.diagonal().add_(damp);
  auto [L, info] = at::linalg_cholesky_ex(H);
  PARE_CHECK(info.item<int64_t>() == 0, "gptq: the damped Hessian (damping ", o.damping,
             ") is not positive definite; raise damping");
  torch::Tensor U = at::linalg_cholesky(at::cholesky_inverse(L), /*upper=*/true);  // H⁻¹ = UᵀU
  std::vector<double> diag(in);
  {
    torch::Tensor d = U.diagonal().contiguous();
    for (int64_t j = 0; j < in; ++j) diag[j] = d[j].item<double>();
  }

  const double maxq = double(max_code(spec.bits));
  torch::Tensor Q = torch::empty({out, in}, torch::kFloat64);  // codes, in processing order
  torch::Tensor s_cur, z_cur;
  for (int64_t i1 = 0; i1 < in; i1 += o.block_size) {
    const int64_t i2 = std::min(i1 + o.block_size, in), n = i2 - i1;
    torch::Tensor W1 = W.narrow(1, i1, n).clone();
    torch::Tensor Err1 = torch::zeros({out, n}, torch::kFloat64);
    torch::Tensor U1 = U.narrow(0, i1, n);  // rows of the block, all columns
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = i1 + i;
      if (static_groups) {
        const int64_t grp = perm[j] / g;
        s_cur = S.select(1, grp);
        z_cur = Z.select(1, grp);
      } else if (j % g == 0) {
        // The group's columns with every error so far applied: inside the block W1 is current;
        // beyond it, W still lacks this block's pending update Err1 · U[block, cols].
        const int64_t inside = std::min(g, n - i);
        torch::Tensor wg = W1.narrow(1, i, inside);
        if (inside < g) {
          torch::Tensor rest = W.narrow(1, i2, g - inside) - at::matmul(Err1, U1.narrow(1, i2, g - inside));
          wg = at::cat({wg, rest}, 1);
        }
        Grid grid = fit_grid(wg, spec);
        S.select(1, j / g).copy_(grid.scale);
        Z.select(1, j / g).copy_(grid.zero);
        s_cur = grid.scale;
        z_cur = grid.zero;
      }
      torch::Tensor w = W1.select(1, i);
      torch::Tensor c = at::round(w / s_cur).add_(z_cur).clamp_(0.0, maxq);
      torch::Tensor err = (w - (c - z_cur) * s_cur).div_(diag[j]);
      Q.select(1, j).copy_(c);
      W1.narrow(1, i, n - i).addr_(err, U1.select(0, i).narrow(0, i1 + i, n - i), 1.0, -1.0);
      Err1.select(1, i).copy_(err);
    }
    if (i2 < in) W.narrow(1, i2, in - i2).sub_(at::matmul(Err1, U1.narrow(1, i2, in - i2)));
  }
  if (o.act_order) Q = Q.index_select(1, at::argsort(perm_t));

  QuantizedWeight q;
  q.codes = Q.to(torch::kUInt8);
  q.scales = S.to(torch::kFloat32);
  q.zeros = Z.to(torch::kUInt8);
  return q;
}

}  // namespace pare
