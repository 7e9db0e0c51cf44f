// prune-heads — structured attention-head pruning by weight magnitude: per layer, score each head
// by the norm of its weights and remove the lowest-scoring heads outright (smaller Q/K/V/O
// matrices, fewer attention FLOPs), without training or calibration data.
//
// Paper: Michel, Levy, Neubig, "Are Sixteen Heads Really Better than One?", NeurIPS 2019 (arXiv
// 1905.10650) prunes heads by a gradient-based importance score; this pass is the magnitude
// baseline such work compares against, the criterion of Li et al., "Pruning Filters for Efficient
// ConvNets", ICLR 2017 (arXiv 1608.08710), §3.1 (the L1 norm of a filter's weights) applied to
// heads: a head's score is the L2 (option: L1) norm of its rows of attn_q, attn_k, attn_v (blocks
// of head_dim rows) together with its head_dim columns of attn_o. Biases are not scored.
//
// What it does: every selected layer keeps its `keep` highest-scoring heads, or removes
// round(sparsity · heads) of them (never the last one); scope global removes the same total
// number of heads but ranks every head of the selected layers together (raw norms, no per-layer
// normalisation), still keeping at least one per layer. The heads go through Rewriter::keep on
// "blk.N.heads", so Q/K/V rows, their biases and O columns shrink at once and the config's
// per-layer heads follow (config.json pare.layers). Under grouped-query attention (kv_heads <
// heads) the unit is a whole KV group — one K/V head and the heads/kv_heads query heads that read
// it, scored together — since dropping some query heads of a group cannot shrink K/V; `keep` must
// then be a multiple of the group size. Quantized slots are refused (prune before quantize).
//
// Invariant: the kept heads' weights are copied, not changed, so each kept head's output is
// unchanged and the layer computes exactly what the dense layer computes with the removed heads'
// attn_o columns zeroed; with sparsity 0 (or keep = heads) nothing is removed and the logits are
// identical. Preserves: everything when nothing is removed, otherwise nothing (shapes change).
#include "prune_heads.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "base/error.h"
#include "families/family.h"

namespace pare {

namespace {

std::string heads_group(int64_t l) { return concat("blk.", l, ".heads"); }
std::string kv_group(int64_t l) { return concat("blk.", l, ".kv_heads"); }

const DimGroup* find_group(const std::vector<DimGroup>& groups, const std::string& name) {
  for (const auto& g : groups)
    if (g.name == name) return &g;
  return nullptr;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Selecting rows of a packed quantized weight would need the codes re-packed and the group
// scales kept aligned; head pruning edits dense weights only.
void refuse_quantized(const Model& m, const DimGroup& g) {
  for (const auto& u : g.uses) {
    const auto dot = u.name.rfind('.');
    if (dot == std::string::npos) continue;
    const std::string slot = u.name.substr(0, dot);
    auto it = m.linears.find(slot);
    if (it == m.linears.end() || it->second->kind() == "dense") continue;
    auto q = m.config.quantized.find(slot);
    const std::string what = q != m.config.quantized.end()
                                 ? concat("quantized to ", q->second.bits, " bits")
                                 : concat("a '", it->second->kind(), "' linear, not dense");
    throw InputError(concat("prune-heads: ", slot, " is ", what, "; head pruning edits dense ",
                            "weights, so run prune-heads before quantize"));
  }
}

std::string list(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// Unit indices in removal order: lowest score first, ties by index.
std::vector<int64_t> removal_order(const std::vector<double>& scores) {
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return scores[a] < scores[b]; });
  return order;
}

// Per layer: keep the keep_units highest-scoring units.
void select_per_layer(std::vector<HeadLayerPlan>& plans) {
  for (auto& p : plans) {
    std::vector<int64_t> order = removal_order(p.scores);
    p.kept_units.assign(order.end() - p.keep_units, order.end());
    std::sort(p.kept_units.begin(), p.kept_units.end());
  }
}

// Over every selected layer: remove as many units in total as the per-layer counts would, lowest
// score first, skipping a unit when its layer is down to one.
void select_global(std::vector<HeadLayerPlan>& plans) {
  struct Unit {
    double score;
    size_t plan;
    int64_t unit;
  };
  std::vector<Unit> all;
  int64_t budget = 0;
  std::vector<int64_t> left(plans.size());
  std::vector<std::vector<bool>> removed(plans.size());
  for (size_t i = 0; i < plans.size(); ++i) {
    const int64_t n = static_cast<int64_t>(plans[i].scores.size());
    budget += n - plans[i].keep_units;
    left[i] = n;
    removed[i].assign(n, false);
    for (int64_t u = 0; u < n; ++u) all.push_back({plans[i].scores[u], i, u});
  }
  std::stable_sort(all.begin(), all.end(),
                   [](const Unit& a, const Unit& b) { return a.score < b.score; });
  for (const Unit& u : all) {
    if (budget == 0) break;
    if (left[u.plan] == 1) continue;
    removed[u.plan][u.unit] = true;
    --left[u.plan];
    --budget;
  }
  for (size_t i = 0; i < plans.size(); ++i) {
    plans[i].kept_units.clear();
    for (int64_t u = 0; u < static_cast<int64_t>(removed[i].size()); ++u)
      if (!removed[i][u]) plans[i].kept_units.push_back(u);
    plans[i].keep_units = static_cast<int64_t>(plans[i].kept_units.size());
  }
}

// Query-head indices of units of `group` heads each.
std::vector<int64_t> expand_units(const std::vector<int64_t>& units, int64_t group) {
  std::vector<int64_t> heads;
  for (int64_t u : units)
    for (int64_t j = 0; j < group; ++j) heads.push_back(u * group + j);
  return heads;
}

}  // namespace

std::vector<HeadLayerPlan> plan_head_pruning(const Model& m, const PruneHeadsOptions& o) {
  const ArchConfig& c = m.config;
  const int64_t L = c.num_hidden_layers;
  PARE_CHECK(o.sparsity >= 0.0 && o.sparsity < 1.0, "prune-heads: sparsity ", o.sparsity,
             ": expected a fraction in [0, 1) (every layer keeps at least one head)");
  PARE_CHECK(o.criterion == "l2" || o.criterion == "l1", "prune-heads: criterion '", o.criterion,
             "': expected l2 or l1");
  PARE_CHECK(o.scope == "per-layer" || o.scope == "global", "prune-heads: scope '", o.scope,
             "': expected per-layer or global");
  std::vector<int64_t> layers = o.layers;
  const bool every_layer = layers.empty();
  if (every_layer) {
    for (int64_t l = 0; l < L; ++l)
      if (c.layers[l].heads > 0) layers.push_back(l);  // a layer pruned to nothing stays so
    PARE_CHECK(!layers.empty(), "prune-heads: no layer of the model has attention heads");
  }
  std::set<int64_t> seen;
  for (size_t i = 0; i < layers.size(); ++i) {
    PARE_CHECK(layers[i] >= 0 && layers[i] < L, "prune-heads: layers[", i, "] = ", layers[i],
               ": expected 0..", L - 1, " (the model has ", L, " layers)");
    PARE_CHECK(seen.insert(layers[i]).second, "prune-heads: layers: layer ", layers[i],
               " is listed twice");
  }
  PARE_CHECK(o.keep.size() <= 1 || o.keep.size() == layers.size(), "prune-heads: keep has ",
             o.keep.size(), " entries, expected 1 or one per pruned layer (", layers.size(),
             every_layer ? ": every layer with heads" : " in layers", ")");
  const std::vector<DimGroup> groups = m.family().dim_groups(m);
  std::vector<HeadLayerPlan> plans;
  for (size_t i = 0; i < layers.size(); ++i) {
    const int64_t l = layers[i];
    const LayerDims& d = c.layers[l];
    const DimGroup* hg = find_group(groups, heads_group(l));
    PARE_CHECK(hg, "prune-heads: layer ", l, " of this ", c.family, " model has no '",
               heads_group(l), "' dimension group (no attention heads to prune)");
    PARE_CHECK(d.heads > 0, "prune-heads: layers[", i, "] = ", l, ": the layer has no heads left");
    refuse_quantized(m, *hg);
    HeadLayerPlan p;
    p.layer = l;
    p.heads = d.heads;
    p.kv_heads = d.kv_heads;
    if (const DimGroup* kg = find_group(groups, kv_group(l))) {
      refuse_quantized(m, *kg);
      p.group = d.heads / d.kv_heads;
    }
    const int64_t units = d.heads / p.group;
    if (!o.keep.empty()) {
      const int64_t k = o.keep.size() == 1 ? o.keep[0] : o.keep[i];
      const std::string name = o.keep.size() == 1 ? "keep" : concat("keep[", i, "]");
      PARE_CHECK(k >= 1, "prune-heads: ", name, " = ", k,
                 ": expected at least 1 head per layer");
      PARE_CHECK(k <= d.heads, "prune-heads: ", name, " = ", k, ": layer ", l, " has only ",
                 d.heads, " heads");
      PARE_CHECK(k % p.group == 0, "prune-heads: ", name, " = ", k, " at layer ", l,
                 ": grouped-query attention (", d.heads, " heads, ", d.kv_heads,
                 " kv heads) is pruned by whole KV groups of ", p.group,
                 " query heads, so keep must be a multiple of ", p.group);
      p.keep_units = k / p.group;
    } else {
      const int64_t removed =
          std::min<int64_t>(units - 1, std::llround(o.sparsity * static_cast<double>(units)));
      p.keep_units = units - removed;
    }
    plans.push_back(p);
  }
  if (o.scope == "global")
    for (const auto& p : plans)
      PARE_CHECK(p.group == plans[0].group, "prune-heads: scope global ranks units of one size, ",
                 "but layer ", plans[0].layer, " prunes KV groups of ", plans[0].group,
                 " query head(s) and layer ", p.layer, " of ", p.group,
                 " (heads / kv heads differ); use scope per-layer");
  return plans;
}

std::vector<double> head_scores(const Model& m, int64_t layer, const std::string& criterion) {
  const std::vector<DimGroup> groups = m.family().dim_groups(m);
  const DimGroup* hg = find_group(groups, heads_group(layer));
  PARE_CHECK(hg, "prune-heads: the model has no '", heads_group(layer), "' dimension group");
  const DimGroup* kg = find_group(groups, kv_group(layer));
  const int64_t units = kg ? kg->size : hg->size;
  auto acc = torch::zeros({units}, torch::kFloat64);
  // Σ|w| or Σw² per unit over the weights of one group; `per_unit` consecutive units of the group
  // make one pruning unit (the query heads of a KV group).
  auto add = [&](const DimGroup& g, int64_t per_unit) {
    for (const auto& u : g.uses) {
      if (u.is_norm || !ends_with(u.name, ".weight")) continue;  // weights only
      // The group's axis first, then one row per unit: unit i owns elements [i·block, (i+1)·block).
      torch::Tensor t =
          m.at(u.name).detach().to(torch::kFloat64).movedim(u.axis, 0).reshape({g.size, -1});
      torch::Tensor s = criterion == "l1" ? t.abs().sum(1) : t.square().sum(1);
      acc += s.view({units, per_unit}).sum(1);
    }
  };
  add(*hg, hg->size / units);
  if (kg) add(*kg, 1);
  if (criterion == "l2") acc = acc.sqrt();
  return std::vector<double>(acc.data_ptr<double>(), acc.data_ptr<double>() + units);
}

nlohmann::json prune_heads(Model& m, const PruneHeadsOptions& o,
                           const std::function<void(const std::string&)>& log) {
  std::vector<HeadLayerPlan> plans = plan_head_pruning(m, o);
  for (auto& p : plans) p.scores = head_scores(m, p.layer, o.criterion);
  if (o.scope == "global")
    select_global(plans);
  else
    select_per_layer(plans);

  Rewriter rw(m);
  int64_t before = 0, after = 0;
  for (const auto& d : m.config.layers) before += d.heads;
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& p : plans) {
    const std::vector<int64_t> kept = expand_units(p.kept_units, p.group);
    std::vector<int64_t> removed;
    for (int64_t h = 0, k = 0; h < p.heads; ++h) {
      if (k < static_cast<int64_t>(kept.size()) && kept[k] == h)
        ++k;
      else
        removed.push_back(h);
    }
    if (!removed.empty()) {
      // K/V heads first: the layer stays grouped-query (kv_heads != heads) while its query heads
      // are selected, so the heads group still holds only Q and O.
      if (p.group > 1) rw.keep(kv_group(p.layer), p.kept_units);
      rw.keep(heads_group(p.layer), kept);
    }
    nlohmann::json row = {{"layer", p.layer},
                          {"heads", p.heads},
                          {"kept", kept},
                          {"removed", removed},
                          {"scores", p.scores}};
    if (p.group > 1) {
      row["kv_heads"] = p.kv_heads;
      row["kept_kv_heads"] = p.kept_units;
      row["unit"] = concat("kv group of ", p.group, " query heads");
    }
    layers.push_back(row);
    std::string removed_scores;
    for (size_t i = 0; i < removed.size(); i += p.group)
      removed_scores += concat(i ? ", " : "", p.scores[removed[i] / p.group]);
    log(concat("prune-heads: layer ", p.layer, " keeps heads ", list(kept), " of ", p.heads,
               removed.empty() ? "" : concat("; removed ", list(removed), " (", o.criterion,
                                             " norm ", removed_scores, ")")));
  }
  for (const auto& d : m.config.layers) after += d.heads;
  nlohmann::json notes = {{"criterion", o.criterion},
                          {"scope", o.scope},
                          {"heads_before", before},
                          {"heads_after", after},
                          {"layers", layers}};
  if (o.keep.empty()) {
    // What was asked beside what was done: heads come whole, so round(sparsity · heads) per layer
    // (never the last head) can remove a different share than asked.
    const double removed = before > 0 ? 1.0 - static_cast<double>(after) / before : 0.0;
    notes["sparsity_asked"] = o.sparsity;
    notes["sparsity_removed"] = removed;
    if (std::abs(removed - o.sparsity) > 1e-9)
      notes["warnings"].push_back(concat("prune-heads: sparsity ", o.sparsity, " asked, ",
                                         before - after, " of ", before, " heads removed (",
                                         removed, "): heads are removed whole, round(sparsity × heads) per ",
                                         o.scope == "global" ? "model" : "layer", ", never a layer's last"));
  }
  return notes;
}

namespace {

PruneHeadsOptions options_of(const PassOptions& p) {
  PruneHeadsOptions o;
  o.sparsity = p.number("sparsity");
  o.keep = p.integers("keep");
  o.layers = p.integers("layers");
  o.criterion = p.string("criterion");
  o.scope = p.string("scope");
  return o;
}

class PruneHeadsPass : public Pass {
 public:
  explicit PruneHeadsPass(const PassOptions& p) : o_(options_of(p)) {}
  PreservedAnalyses run(Model& m, AnalysisManager&, PassContext& ctx) override {
    nlohmann::json notes = prune_heads(m, o_, ctx.log);
    if (ctx.notes) *ctx.notes = notes;
    int64_t first = -1;
    for (const auto& row : notes["layers"])
      if (!row["removed"].empty() && (first < 0 || row["layer"].get<int64_t>() < first))
        first = row["layer"].get<int64_t>();
    if (first < 0) {
      ctx.log("prune-heads: every layer keeps all its heads: nothing removed");
      return PreservedAnalyses::all();
    }
    return PreservedAnalyses::none(first);
  }

 private:
  PruneHeadsOptions o_;
};

}  // namespace

void register_prune_heads(PassTable& t) {
  PassInfo p;
  p.name = "prune-heads";
  p.summary = "remove the attention heads with the smallest weight norms (structured, no data)";
  p.source =
      "magnitude baseline of Michel, Levy, Neubig, Are Sixteen Heads Really Better than One?, "
      "NeurIPS 2019 (arXiv 1905.10650); L1/L2 criterion as Li et al., ICLR 2017, section 3.1";
  p.options = {
      {"sparsity", OptionSpec::kNumber, 0.25, 0.0, 1.0, false, {},
       "fraction of each layer's heads removed (rounded; every layer keeps at least one)"},
      {"keep", OptionSpec::kIntegerList, nlohmann::json::array(), 1.0, 1e6, true, {},
       "heads kept per layer: one for all, or one per entry of layers (overrides sparsity)"},
      {"layers", OptionSpec::kIntegerList, nlohmann::json::array(), 0.0, 4096.0, true, {},
       "layers (0-based) to prune; default: every layer"},
      {"criterion", OptionSpec::kString, "l2", {}, {}, true, {"l2", "l1"},
       "head score: L2 norm or L1 norm of its Q/K/V rows and O columns"},
      {"scope", OptionSpec::kString, "per-layer", {}, {}, true, {"per-layer", "global"},
       "per-layer: each layer drops its own lowest heads; global: the same total, ranked over all "
       "layers (at least one head per layer)"},
  };
  p.create = [](const PassOptions& o) { return std::make_unique<PruneHeadsPass>(o); };
  p.check = [](const Model& m, const PassOptions& o) { (void)plan_head_pruning(m, options_of(o)); };
  // Planned from the config: the pruned layers' attention slots must still be dense (quantize
  // after prune-heads, not before); with scope per-layer the head counts follow from the options
  // as plan_head_pruning computes them; with scope global they depend on the scores, so the
  // planning of later stages stops here. Options the plan cannot judge are left to check/run.
  p.plan = [](ArchConfig& c, const PassOptions& po) -> bool {
    const PruneHeadsOptions o = options_of(po);
    const int64_t L = c.num_hidden_layers;
    std::vector<int64_t> layers = o.layers;
    if (layers.empty())
      for (int64_t l = 0; l < L; ++l)
        if (c.layers[l].heads > 0) layers.push_back(l);
    for (int64_t l : layers) {
      if (l < 0 || l >= L) return false;
      for (const char* s : {"attn_q", "attn_k", "attn_v", "attn_o"}) {
        const std::string slot = concat("blk.", l, ".", s);
        PARE_CHECK(!c.quantized.count(slot), "prune-heads: slot '", slot,
                   "' is quantized; prune-heads needs the dense form (put quantize after prune-heads)");
      }
    }
    if (o.scope != "per-layer" || (o.keep.size() > 1 && o.keep.size() != layers.size())) return false;
    for (size_t i = 0; i < layers.size(); ++i) {
      LayerDims& d = c.layers[layers[i]];
      const bool grouped = d.kv_heads > 0 && d.kv_heads != d.heads;
      const int64_t group = grouped ? d.heads / d.kv_heads : 1, units = d.heads / group;
      int64_t keep_units = units - std::min<int64_t>(units - 1, std::llround(o.sparsity * double(units)));
      if (!o.keep.empty()) {
        const int64_t k = o.keep.size() == 1 ? o.keep[0] : o.keep[i];
        if (k < 1 || k > d.heads || k % group != 0) return false;
        keep_units = k / group;
      }
      d.heads = keep_units * group;
      d.kv_heads = grouped ? keep_units : d.heads;
    }
    return true;
  };
  t.add(std::move(p));
}

}  // namespace pare
