#include "routing.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <numeric>

#include "base/error.h"

namespace pare::masks {

struct HeadRouting::State {
  RoutingMode mode = RoutingMode::kBalance;
  int64_t L = 0;
  std::vector<int64_t> heads, head_dim;
  std::vector<torch::Tensor> W, b, A;       // undefined where the layer has no router / expander
  std::vector<torch::Tensor> counts;        // [H_l] float64 argmax counts
  std::vector<torch::Tensor> gate_sum;      // [H_l] float64 sum of the gates' forward values
  std::vector<int64_t> n;                   // samples counted
  std::vector<torch::Tensor> probs;         // this forward's p [B, H_l] (training modes)
  std::vector<torch::Tensor> balance_terms;  // H_l·Σ f·P of each routed layer since the last take
  std::vector<std::vector<int64_t>> kept;
  std::vector<torch::Tensor> kept_mask;     // [H_l] float32 0/1
  std::vector<torch::Tensor> skip_saved;    // layer input saved while the layer is skipped
};

namespace {
std::string blk(int64_t l) { return concat("blk.", l, "."); }
}  // namespace

HeadRouting::HeadRouting(const Model& m, bool expander) : s_(std::make_shared<State>()) {
  const ArchConfig& c = m.config;
  PARE_CHECK(c.family == "vit" || c.family == "bert", "head routing: the ", c.family,
             " family is not supported (vit and bert are)");
  State& s = *s_;
  s.L = c.num_hidden_layers;
  s.heads.assign(s.L, 0);
  s.head_dim.assign(s.L, 0);
  s.W.resize(s.L);
  s.b.resize(s.L);
  s.A.resize(s.L);
  s.counts.resize(s.L);
  s.gate_sum.resize(s.L);
  s.n.assign(s.L, 0);
  s.probs.resize(s.L);
  s.kept.resize(s.L);
  s.kept_mask.resize(s.L);
  s.skip_saved.resize(s.L);
  int64_t routed = 0;
  for (int64_t l = 0; l < s.L; ++l) {
    const LayerDims& d = c.layers[l];
    if (!d.attention || d.heads == 0) continue;
    ++routed;
    s.heads[l] = d.heads;
    s.head_dim[l] = d.head_dim;
    s.W[l] = torch::zeros({d.heads, d.attn_in}).requires_grad_(true);
    s.b[l] = torch::zeros({d.heads}).requires_grad_(true);
    if (expander) s.A[l] = torch::zeros({d.head_dim, d.head_dim}).requires_grad_(true);
    s.counts[l] = torch::zeros({d.heads}, torch::kFloat64);
    s.gate_sum[l] = torch::zeros({d.heads}, torch::kFloat64);
    std::vector<int64_t> all(d.heads);
    std::iota(all.begin(), all.end(), 0);
    s.kept[l] = all;
    s.kept_mask[l] = torch::ones({d.heads});
  }
  PARE_CHECK(routed > 0, "head routing: the model has no layer with attention heads");
}

std::vector<torch::Tensor> HeadRouting::parameters() const {
  std::vector<torch::Tensor> v;
  for (int64_t l = 0; l < s_->L; ++l) {
    if (!s_->W[l].defined()) continue;
    v.push_back(s_->W[l]);
    v.push_back(s_->b[l]);
    if (s_->A[l].defined()) v.push_back(s_->A[l]);
  }
  return v;
}

void HeadRouting::set_mode(RoutingMode mode) {
  s_->mode = mode;
  for (auto& t : s_->skip_saved) t = torch::Tensor();
  for (auto& t : s_->probs) t = torch::Tensor();
}
RoutingMode HeadRouting::mode() const { return s_->mode; }
int64_t HeadRouting::layers() const { return s_->L; }
bool HeadRouting::routed(int64_t layer) const {
  return layer >= 0 && layer < s_->L && s_->W[layer].defined();
}

void HeadRouting::reset_usage() {
  for (int64_t l = 0; l < s_->L; ++l) {
    if (s_->counts[l].defined()) s_->counts[l].zero_();
    if (s_->gate_sum[l].defined()) s_->gate_sum[l].zero_();
    s_->n[l] = 0;
  }
}

torch::Tensor HeadRouting::usage(int64_t layer) const {
  PARE_CHECK(routed(layer), "head routing: layer ", layer, " has no router");
  if (s_->n[layer] == 0) return torch::zeros_like(s_->counts[layer]);
  return s_->counts[layer] / double(s_->n[layer]);
}
torch::Tensor HeadRouting::mean_gate(int64_t layer) const {
  PARE_CHECK(routed(layer), "head routing: layer ", layer, " has no router");
  if (s_->n[layer] == 0) return torch::ones_like(s_->gate_sum[layer]);
  return s_->gate_sum[layer] / double(s_->n[layer]);
}
int64_t HeadRouting::samples(int64_t layer) const {
  PARE_CHECK(routed(layer), "head routing: layer ", layer, " has no router");
  return s_->n[layer];
}

torch::Tensor HeadRouting::take_balance_loss() {
  auto& terms = s_->balance_terms;
  torch::Tensor out;
  if (!terms.empty()) out = torch::stack(terms).mean();
  terms.clear();
  return out;
}

void HeadRouting::set_kept(const std::vector<std::vector<int64_t>>& kept, bool mean_gates) {
  State& s = *s_;
  PARE_CHECK(int64_t(kept.size()) == s.L, "head routing: kept heads for ", kept.size(), " layers, the model has ", s.L);
  bool any = false;
  for (int64_t l = 0; l < s.L; ++l) {
    if (!routed(l)) {
      PARE_CHECK(kept[l].empty(), "head routing: layer ", l, " has no heads to keep");
      continue;
    }
    std::vector<float> mask(s.heads[l], 0.0f);
    const torch::Tensor g = mean_gates ? mean_gate(l).contiguous() : torch::ones({s.heads[l]}, torch::kFloat64);
    for (size_t i = 0; i < kept[l].size(); ++i) {
      const int64_t h = kept[l][i];
      PARE_CHECK(h >= 0 && h < s.heads[l] && (i == 0 || h > kept[l][i - 1]), "head routing: layer ", l,
                 ": kept heads must be sorted, unique and below ", s.heads[l]);
      mask[h] = static_cast<float>(g[h].item<double>());
    }
    any = any || !kept[l].empty();
    s.kept_mask[l] = torch::tensor(mask);
  }
  PARE_CHECK(any, "head routing: no head kept in any layer");
  s.kept = kept;
}

const std::vector<std::vector<int64_t>>& HeadRouting::kept() const { return s_->kept; }

void HeadRouting::attach(Model& m) const {
  auto sp = s_;
  m.hooks.observers.push_back([sp](HookPoint p, int64_t idx, torch::Tensor& t) {
    State& s = *sp;
    if (p == HookPoint::kResidual) {
      if (idx % 2 != 0) return;  // sites 2l: layer l's input (2L: after the last layer)
      const int64_t l = idx / 2;
      if (s.mode == RoutingMode::kFixed) {
        // A skipped layer's input comes back at the next site: the layer is the identity.
        if (l >= 1 && s.skip_saved[l - 1].defined()) {
          t = s.skip_saved[l - 1];
          s.skip_saved[l - 1] = torch::Tensor();
        }
        if (l < s.L && s.W[l].defined() && s.kept[l].empty()) s.skip_saved[l] = t;
        return;
      }
      if (l >= s.L || !s.W[l].defined()) return;
      PARE_CHECK(t.dim() == 3, "head routing: layer ", l, " input has shape ", t.sizes(),
                 "; routing needs the padded [batch, tokens, width] layout (training)");
      const torch::Tensor x0 = t.select(1, 0);
      const torch::Tensor pr = at::softmax(at::linear(x0, s.W[l].to(x0.scalar_type()), s.b[l].to(x0.scalar_type())), -1);
      s.probs[l] = pr;
      const torch::Tensor f = at::one_hot(pr.argmax(-1), s.heads[l]).to(pr.scalar_type());
      s.counts[l] += f.detach().sum(0).to(torch::kFloat64);
      s.n[l] += t.size(0);
      s.balance_terms.push_back(double(s.heads[l]) * (f.mean(0) * pr.mean(0)).sum());
      return;
    }
    if (p != HookPoint::kHeadContext) return;
    const int64_t l = idx;
    if (l < 0 || l >= s.L || !s.W[l].defined()) return;
    const int64_t H = s.heads[l], hd = s.head_dim[l];
    PARE_CHECK(t.size(-1) == H * hd, "head routing: layer ", l, " context width ", t.size(-1), ", expected ", H,
               " heads of ", hd);
    std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end() - 1);
    shape.push_back(H);
    shape.push_back(hd);
    torch::Tensor c = t.reshape(shape);
    if (s.A[l].defined()) c = c + at::matmul(c, s.A[l].to(c.scalar_type()));
    if (s.mode == RoutingMode::kFixed) {
      c = c * s.kept_mask[l].to(c.scalar_type()).unsqueeze(1);
    } else {
      const torch::Tensor& pr = s.probs[l];
      PARE_CHECK(pr.defined() && pr.size(0) == c.size(0), "head routing: layer ", l,
                 ": no routing decision for this batch (the layer input hook did not run)");
      torch::Tensor g = s.mode == RoutingMode::kBalance
                            ? pr * double(H)
                            : at::one_hot(pr.argmax(-1), H).to(pr.scalar_type()) + pr - pr.detach();
      s.gate_sum[l] += g.detach().sum(0).to(torch::kFloat64);
      std::vector<int64_t> gs(c.dim(), 1);
      gs[0] = c.size(0);
      gs[c.dim() - 2] = H;
      c = c * g.to(c.scalar_type()).view(gs);
    }
    t = c.reshape(t.sizes());
  });
}

nlohmann::json HeadRouting::materialise(Model& m) const {
  const State& s = *s_;
  PARE_CHECK(m.config.num_hidden_layers == s.L, "head routing: the model has ", m.config.num_hidden_layers,
             " layers, the routing ", s.L);
  torch::NoGradGuard ng;
  nlohmann::json removed = {{"heads", nlohmann::json::array()}, {"layers", nlohmann::json::array()}};
  Rewriter rw(m);
  for (int64_t l = 0; l < s.L; ++l) {
    if (!s.W[l].defined() || s.kept[l].empty()) continue;
    const int64_t H = s.heads[l], hd = s.head_dim[l];
    {
      const std::string slot = blk(l) + "attn_o";
      PARE_CHECK(m.linear(slot).kind() == "dense", "head routing: ", slot, " is ", m.linear(slot).kind(),
                 "; the expander and the gates fold only into a dense attn_o");
      torch::Tensor& w = m.dense(slot).weight;  // [d, H·hd]
      torch::Tensor M = torch::eye(hd, torch::kFloat64);
      if (s.A[l].defined()) M = M + s.A[l].detach().to(torch::kFloat64);
      torch::Tensor folded = at::matmul(w.detach().to(torch::kFloat64).view({w.size(0), H, hd}), M.t());
      folded = folded * s.kept_mask[l].to(torch::kFloat64).view({1, H, 1});  // kept heads' gates; others go
      w.copy_(folded.reshape(w.sizes()).to(w.scalar_type()));
    }
    if (int64_t(s.kept[l].size()) < H) {
      std::vector<int64_t> gone;
      for (int64_t h = 0; h < H; ++h)
        if (!std::binary_search(s.kept[l].begin(), s.kept[l].end(), h)) gone.push_back(h);
      rw.keep(blk(l) + "heads", s.kept[l]);
      removed["heads"].push_back({{"layer", l}, {"kept", s.kept[l]}, {"removed", gone}});
    }
  }
  std::vector<int64_t> empty;
  for (int64_t l = 0; l < s.L; ++l)
    if (s.W[l].defined() && s.kept[l].empty()) {
      rw.remove_branch(l, "attention");
      if (m.config.layers[l].ffn) rw.remove_branch(l, "ffn");
      empty.push_back(l);
    }
  for (auto it = empty.rbegin(); it != empty.rend(); ++it) rw.remove_layer(*it);
  removed["layers"] = empty;
  return removed;
}

std::vector<std::vector<int64_t>> keep_by_threshold(const std::vector<torch::Tensor>& usage, double threshold) {
  PARE_CHECK(threshold >= 0 && threshold <= 1, "head routing: usage threshold ", threshold, " outside [0, 1]");
  std::vector<std::vector<int64_t>> kept(usage.size());
  bool any = false;
  double best = -1;
  int64_t bl = -1, bh = -1;
  for (size_t l = 0; l < usage.size(); ++l) {
    if (!usage[l].defined()) continue;
    const torch::Tensor u = usage[l].to(torch::kFloat64).contiguous();
    for (int64_t h = 0; h < u.size(0); ++h) {
      const double v = u[h].item<double>();
      if (v >= threshold) {
        kept[l].push_back(h);
        any = true;
      }
      if (v > best) best = v, bl = int64_t(l), bh = h;
    }
  }
  if (!any && bl >= 0) kept[bl].push_back(bh);
  return kept;
}

std::vector<std::vector<int64_t>> keep_top(const std::vector<torch::Tensor>& usage, int64_t m) {
  PARE_CHECK(m >= 1, "head routing: keep_heads ", m, ": expected at least one head");
  struct E {
    double u;
    int64_t l, h;
  };
  std::vector<E> all;
  for (size_t l = 0; l < usage.size(); ++l) {
    if (!usage[l].defined()) continue;
    const torch::Tensor u = usage[l].to(torch::kFloat64).contiguous();
    for (int64_t h = 0; h < u.size(0); ++h) all.push_back({u[h].item<double>(), int64_t(l), h});
  }
  std::stable_sort(all.begin(), all.end(), [](const E& a, const E& b) { return a.u > b.u; });
  std::vector<std::vector<int64_t>> kept(usage.size());
  for (size_t i = 0; i < all.size() && int64_t(i) < m; ++i) kept[all[i].l].push_back(all[i].h);
  for (auto& k : kept) std::sort(k.begin(), k.end());
  return kept;
}

}  // namespace pare::masks
