#include "cost.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "base/error.h"
#include "families/family.h"

namespace pare::masks {

namespace {

double total(const Model& m, const std::string& measure) {
  if (measure == "params") return double(m.num_params());
  int64_t f = 0;
  for (const CostRow& r : m.family().costs(m)) f += r.flops;
  return double(f);
}

bool has_group(const Model& m, const std::string& name) {
  for (const DimGroup& g : m.family().dim_groups(m))
    if (g.name == name) return true;
  return false;
}

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// What the branch `prefix` ("blk.L.attn_" / "blk.L.ffn_") of `z` (a clone with none of the
// branch's units left) still costs: its non-buffer tensors' parameters, or its linears' FLOPs at
// the layer's tokens (2 × multiply-accumulates, as Family::costs counts them).
double branch_cost(const Model& z, int64_t layer, const std::string& prefix, const std::string& measure) {
  const Family& fam = z.family();
  auto in_branch = [&](const std::string& name) {
    return starts_with(name, prefix) && name.find("shortcut") == std::string::npos;
  };
  double c = 0;
  if (measure == "params") {
    for (const auto& [name, t] : z.flat_tensors())
      if (in_branch(name) && !fam.is_buffer(name)) c += double(t.numel());
    return c;
  }
  const std::vector<CostRow> rows = fam.costs(z);
  const std::string row_name = "blk." + std::to_string(layer);
  int64_t tokens = 0;
  for (const CostRow& r : rows)
    if (r.name == row_name) tokens = r.tokens;
  for (const auto& [slot, form] : z.linears)
    if (in_branch(slot + ".")) c += 2.0 * double(tokens) * double(form->macs_per_row());
  return c;
}

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(std::max<int64_t>(n, 0)));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

}  // namespace

CostModel CostModel::from_model(const Model& m, const std::string& measure) {
  PARE_CHECK(measure == "flops" || measure == "params", "cost measure '", measure,
             "': expected flops or params");
  CostModel cm;
  cm.measure = measure;
  cm.dense = total(m, measure);
  const int64_t L = m.config.num_hidden_layers;
  double layered = 0;
  for (int64_t l = 0; l < L; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    // (group, branch prefix, units out, per-unit cost out, fixed cost out)
    struct Part {
      std::string group, branch;
      int64_t* units;
      double* per_unit;
      double* fixed;
    };
    cm.heads.push_back(0);
    cm.channels.push_back(0);
    cm.per_head.push_back(0);
    cm.per_channel.push_back(0);
    cm.attn_fixed.push_back(0);
    cm.ffn_fixed.push_back(0);
    const Part parts[] = {{b + "heads", b + "attn_", &cm.heads.back(), &cm.per_head.back(), &cm.attn_fixed.back()},
                          {b + "ffn", b + "ffn_", &cm.channels.back(), &cm.per_channel.back(), &cm.ffn_fixed.back()}};
    for (const Part& p : parts) {
      if (!has_group(m, p.group)) continue;  // e.g. GraphGPS without a global model: no heads
      Model one = m.clone();
      const int64_t n = Rewriter(one).group(p.group).size;
      *p.units = n;
      if (n == 0) continue;
      Rewriter(one).keep(p.group, iota(n - 1));
      *p.per_unit = cm.dense - total(one, measure);
      Model none = m.clone();
      Rewriter(none).keep(p.group, {});
      *p.fixed = branch_cost(none, l, p.branch, measure);
    }
    layered += cm.attn_fixed.back() + cm.per_head.back() * double(cm.heads.back()) + cm.ffn_fixed.back() +
               cm.per_channel.back() * double(cm.channels.back());
  }
  cm.rest = cm.dense - layered;
  return cm;
}

torch::Tensor CostModel::expected(const std::vector<torch::Tensor>& heads_open,
                                  const std::vector<torch::Tensor>& channels_open,
                                  const std::vector<torch::Tensor>& attn_open,
                                  const std::vector<torch::Tensor>& ffn_open) const {
  const size_t L = per_head.size();
  auto check_count = [&](const std::vector<torch::Tensor>& v, const char* what) {
    PARE_CHECK(v.empty() || v.size() == L, "expected cost: ", what, " has ", v.size(),
               " entries for a model of ", L, " layers");
  };
  check_count(heads_open, "heads_open");
  check_count(channels_open, "channels_open");
  check_count(attn_open, "attn_open");
  check_count(ffn_open, "ffn_open");
  // Σ of a layer's open units (a tensor), or the dense count (undefined tensor) as a double.
  auto units = [&](const std::vector<torch::Tensor>& v, size_t l, int64_t n, const char* what,
                   torch::Tensor& out) {
    out = torch::Tensor();
    if (v.empty() || !v[l].defined()) return double(n);
    PARE_CHECK(v[l].dim() == 1 && v[l].size(0) == n, "expected cost: ", what, " layer ", l, ": expected [",
               n, "], got ", v[l].sizes());
    out = v[l].to(torch::kFloat64).sum();
    return 0.0;
  };
  auto branch = [&](const std::vector<torch::Tensor>& v, size_t l, const char* what) {
    if (v.empty() || !v[l].defined()) return torch::Tensor();
    PARE_CHECK(v[l].numel() == 1, "expected cost: ", what, " layer ", l, ": expected one entry, got ",
               v[l].numel());
    return v[l].to(torch::kFloat64).reshape({});
  };
  double constant = rest;
  torch::Tensor variable;
  auto add = [&](const torch::Tensor& t) { variable = variable.defined() ? variable + t : t; };
  for (size_t l = 0; l < L; ++l) {
    for (int part = 0; part < 2; ++part) {
      const bool attn = part == 0;
      torch::Tensor open;
      const double n = attn ? units(heads_open, l, heads[l], "heads_open", open)
                            : units(channels_open, l, channels[l], "channels_open", open);
      const double fixed = attn ? attn_fixed[l] : ffn_fixed[l], unit = attn ? per_head[l] : per_channel[l];
      const torch::Tensor p = attn ? branch(attn_open, l, "attn_open") : branch(ffn_open, l, "ffn_open");
      // branch cost = fixed + unit·n (+ unit·Σ open), times the branch's probability when given
      const double c = fixed + unit * n;
      if (!p.defined()) {
        constant += c;
        if (open.defined()) add(open * unit);
      } else {
        add(open.defined() ? p * (open * unit + c) : p * c);
      }
    }
  }
  torch::Tensor c = torch::scalar_tensor(constant, torch::kFloat64);
  return variable.defined() ? variable + c.to(variable.device()) : c;
}

double CostModel::fraction(const std::vector<torch::Tensor>& heads_open,
                           const std::vector<torch::Tensor>& channels_open,
                           const std::vector<torch::Tensor>& attn_open,
                           const std::vector<torch::Tensor>& ffn_open) const {
  torch::NoGradGuard ng;
  return expected(heads_open, channels_open, attn_open, ffn_open).item<double>() / dense;
}

LagrangianController::LagrangianController(double target)
    : lambda1(torch::zeros({}, torch::kFloat64).requires_grad_()),
      lambda2(torch::zeros({}, torch::kFloat64).requires_grad_()),
      target_(0) {
  set_target(target);
}

void LagrangianController::set_target(double target) {
  PARE_CHECK(target > 0 && target <= 1, "cost target ", target, ": expected a fraction in (0, 1]");
  target_ = target;
}

torch::Tensor LagrangianController::penalty(const torch::Tensor& expected_fraction) const {
  PARE_CHECK(expected_fraction.defined() && expected_fraction.numel() == 1,
             "cost penalty: expected a 0-dim expected cost fraction");
  const torch::Tensor d = expected_fraction.to(torch::kFloat64).reshape({}) - target_;
  const auto dev = d.device();
  // λ' = 2·sg(λ) − λ: the value of λ, the gradient −∂/∂λ (ascent under a minimising optimiser).
  const torch::Tensor l1 = (2 * lambda1.detach() - lambda1).to(dev), l2 = (2 * lambda2.detach() - lambda2).to(dev);
  return l1 * d + l2 * d * d;
}

torch::Tensor keep_expected_count(const torch::Tensor& log_alpha, const torch::Tensor& expected_open) {
  PARE_CHECK(log_alpha.defined() && expected_open.defined() && log_alpha.dim() == 1 &&
                 expected_open.sizes() == log_alpha.sizes(),
             "keep_expected_count: expected log_alpha and expected_open of one shape [n], got ",
             log_alpha.defined() ? log_alpha.sizes() : at::IntArrayRef{}, " and ",
             expected_open.defined() ? expected_open.sizes() : at::IntArrayRef{});
  torch::NoGradGuard ng;
  const int64_t n = log_alpha.size(0);
  const int64_t k = std::clamp<int64_t>(std::llround(expected_open.to(torch::kFloat64).sum().item<double>()), 0, n);
  const torch::Tensor order =
      std::get<1>(log_alpha.detach().sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  torch::Tensor mask = torch::zeros({n}, log_alpha.options().dtype(torch::kFloat32));
  return mask.index_fill_(0, order.slice(0, 0, k), 1.0);
}

}  // namespace pare::masks
