// zero-tprune — prune tokens at inference, without training or calibration, by the importance
// of each token in the attention graph (Zero-TPrune), or by the baselines random drop and CLS
// attention.
//
// Paper: Wang, Dedhia, Jha, "Zero-TPrune: Zero-Shot Token Pruning through Leveraging of the
// Attention Graph in Pre-Trained Transformers", CVPR 2024 (arXiv 2305.17328), §3 (I′ → S → I
// stages, weighted PageRank, variance head filter, RMS aggregation); METHODS.md for settings
// (PageRank iterations 30–50 shallow, 5–10 middle, 1 deep; head variance window [0.01, 0.7]).
//
// Graph transformers (gps): nodes are dropped from the global attention only; local message
// passing, the FFN and the pooling keep the whole graph (a dropped node's attention output is 0,
// so its h_attn is Norm(h)). Each graph keeps round(keep_rate · n) of its n attending nodes at a
// step, so batches of graphs need no fixed count; there is no CLS and PageRank starts uniform.
//
// What it does: writes a per-layer schedule (ArchConfig::token_pruning: layer, keep count,
// method, iterations, S-stage count r, seed) into the model; every forward (here, in pare eval,
// after any later load) then ranks the tokens of each scheduled layer from its attention
// probabilities and gathers the kept ones, so later computation runs on fewer tokens.
//
// Invariant: the weights are untouched; a keep rate of 1 schedules nothing and the logits are
// identical to the dense model's; the batch stays rectangular (a fixed keep count per layer);
// special tokens (CLS) are never dropped. Preserves: nothing cost-related (token counts change).
#include "zero_tprune.h"

#include <cmath>

#include "base/error.h"

namespace pare {

namespace {

template <class T>
T per_step(const std::vector<T>& v, size_t i) {
  return v.size() == 1 ? v[0] : v[i];
}

int64_t default_iterations(int64_t layer, int64_t L) {
  const int64_t third = std::max<int64_t>(1, L / 3);
  if (layer < third) return 30;         // shallow: 30–50
  if (layer >= L - third) return 1;     // deep: 1
  return 5;                             // middle: 5–10
}

}  // namespace

std::vector<TokenPruneStep> zero_tprune_schedule(const ArchConfig& c, const ZeroTPruneOptions& o) {
  const int64_t L = c.num_hidden_layers, specials = c.special_tokens();
  const size_t n = o.layers.size();
  PARE_CHECK(n >= 1, "zero-tprune: layers: expected at least one layer");
  PARE_CHECK(static_cast<int64_t>(n) <= L, "zero-tprune: layers: ", n,
             " steps for a model with ", L, " layers");
  auto check_len = [&](size_t len, const char* name) {
    PARE_CHECK(len == 0 || len == 1 || len == n, "zero-tprune: ", name, ": ", len,
               " entries, expected 1 or one per layer in layers (", n, ")");
  };
  check_len(o.keep_rate.size(), "keep_rate");
  check_len(o.keep.size(), "keep");
  check_len(o.iterations.size(), "iterations");
  PARE_CHECK(!o.keep.empty() || !o.keep_rate.empty(), "zero-tprune: give keep_rate or keep");
  // Layer, method, iterations and seed of step i (checked); the keep fields are filled below.
  auto base = [&](size_t i) {
    TokenPruneStep st;
    st.layer = o.layers[i];
    PARE_CHECK(st.layer >= 0 && st.layer < L, "zero-tprune: layers[", i, "] = ", st.layer,
               ": expected 0..", L - 1);
    PARE_CHECK(i == 0 || st.layer > o.layers[i - 1], "zero-tprune: layers must increase, got ",
               o.layers[i - 1], " then ", st.layer);
    st.method = o.method;
    st.iterations = o.iterations.empty() ? default_iterations(st.layer, L) : per_step(o.iterations, i);
    st.uniform_init = o.uniform_init;
    st.seed = static_cast<uint64_t>(o.seed);
    return st;
  };
  if (c.is_graph()) {
    // Graphs: a keep rate per step, applied to each graph's attending nodes (src/families/gps.cpp).
    PARE_CHECK(o.keep.empty(), "zero-tprune: keep (token counts) does not apply to graphs, whose ",
               "node counts differ; give keep_rate");
    PARE_CHECK(o.method != "cls-attention", "zero-tprune: method cls-attention needs a CLS token; ",
               "graphs have none (use attention, the mean attention a node receives)");
    std::vector<TokenPruneStep> out;
    for (size_t i = 0; i < n; ++i) {
      TokenPruneStep st = base(i);
      PARE_CHECK(c.layers[st.layer].heads > 0, "zero-tprune: layers[", i, "] = ", st.layer,
                 ": the layer has no attention heads");
      st.keep_rate = per_step(o.keep_rate, i);
      PARE_CHECK(st.keep_rate > 0, "zero-tprune: keep_rate[", i, "] must be above 0");
      st.similar_rate = o.method == "zero-tprune" ? o.similar : 0.0;
      if (st.keep_rate < 1) out.push_back(st);  // keep rate 1 changes nothing
    }
    return out;
  }
  std::vector<TokenPruneStep> steps;
  int64_t tokens = c.seq_len();
  for (size_t i = 0; i < n; ++i) {
    TokenPruneStep st = base(i);
    if (!o.keep.empty()) {
      st.keep = per_step(o.keep, i);
      PARE_CHECK(st.keep > specials && st.keep <= tokens, "zero-tprune: keep[", i, "] = ", st.keep,
                 ": expected ", specials + 1, "..", tokens, " (", specials,
                 " special token(s) are never dropped; ", tokens, " tokens enter layer ", st.layer,
                 ")");
    } else {
      const double rate = per_step(o.keep_rate, i);
      st.keep = specials + static_cast<int64_t>(std::llround(rate * double(tokens - specials)));
      PARE_CHECK(st.keep > specials, "zero-tprune: keep_rate[", i, "] = ", rate, " keeps no token ",
                 "besides the ", specials, " special one(s) at layer ", st.layer);
    }
    if (o.method == "zero-tprune") {
      const int64_t dropped = tokens - st.keep;
      st.similar = std::min<int64_t>(std::llround(o.similar * double(dropped)), (tokens - specials) / 2);
    }
    tokens = st.keep;
    steps.push_back(st);
  }
  // Steps that keep every token change nothing: drop them so keep rate 1 is exactly dense.
  std::vector<TokenPruneStep> out;
  int64_t t = c.seq_len();
  for (const auto& st : steps) {
    if (st.keep < t) out.push_back(st);
    t = st.keep;
  }
  return out;
}

namespace {

ZeroTPruneOptions options_of(const PassOptions& p) {
  ZeroTPruneOptions o;
  o.method = p.string("method");
  o.layers = p.integers("layers");
  o.keep_rate = p.numbers("keep_rate");
  o.keep = p.integers("keep");
  o.iterations = p.integers("iterations");
  o.similar = p.number("similar");
  o.uniform_init = p.boolean("uniform_init");
  o.seed = p.integer("seed");
  return o;
}

class ZeroTPrunePass : public Pass {
 public:
  explicit ZeroTPrunePass(const PassOptions& p) : o_(options_of(p)) {}
  PreservedAnalyses run(Model& m, AnalysisManager&, PassContext& ctx) override {
    PARE_CHECK(m.config.token_pruning.empty(),
               "zero-tprune: the model already has a token-pruning schedule (config.json ",
               "pare.token_pruning); start from the unpruned model");
    m.config.token_pruning = zero_tprune_schedule(m.config, o_);
    m.config.finalize("zero-tprune");
    nlohmann::json steps = nlohmann::json::array();
    for (const auto& st : m.config.token_pruning) {
      if (m.config.is_graph()) {
        steps.push_back({{"layer", st.layer},
                         {"keep_rate", st.keep_rate},
                         {"iterations", st.iterations},
                         {"similar_rate", st.similar_rate}});
        ctx.log(concat("zero-tprune: layer ", st.layer, " keeps ", st.keep_rate,
                       " of each graph's attending nodes (", st.method, ")"));
        continue;
      }
      steps.push_back({{"layer", st.layer},
                       {"tokens_in", m.config.tokens_in(st.layer)},
                       {"keep", st.keep},
                       {"iterations", st.iterations},
                       {"similar", st.similar}});
      ctx.log(concat("zero-tprune: layer ", st.layer, " keeps ", st.keep, " of ",
                     m.config.tokens_in(st.layer), " tokens (", st.method, ")"));
    }
    if (m.config.token_pruning.empty())
      ctx.log("zero-tprune: every step keeps all its tokens (keep rate 1): nothing to prune");
    if (ctx.notes) *ctx.notes = {{"method", o_.method}, {"steps", steps}};
    return PreservedAnalyses::none();
  }

 private:
  ZeroTPruneOptions o_;
};

}  // namespace

void register_zero_tprune(PassTable& t) {
  PassInfo p;
  p.name = "zero-tprune";
  p.summary = "drop tokens at inference by their weighted PageRank in the attention graph";
  p.source = "Wang, Dedhia, Jha, Zero-TPrune, CVPR 2024 (arXiv 2305.17328), section 3";
  using V = std::vector<double>;
  p.options = {
      {"method", OptionSpec::kString, "zero-tprune", {}, {}, true,
       {"zero-tprune", "random", "cls-attention", "attention"},
       "token importance: zero-tprune (I'->S->I), random drop, cls-attention (CLS row, no "
       "PageRank) or attention (mean attention received, no PageRank)"},
      {"layers", OptionSpec::kIntegerList, nlohmann::json::array({1}), 0.0, 4096.0, true, {},
       "layers (0-based) with a pruning step, increasing; the step runs after the layer's attention"},
      {"keep_rate", OptionSpec::kNumberList, V{0.7}, 0.0, 1.0, true, {},
       "per step (or one for all): share of the non-special tokens entering the step that are kept"},
      {"keep", OptionSpec::kIntegerList, nlohmann::json::array(), 1.0, 1e6, true, {},
       "per step: tokens kept including CLS (overrides keep_rate)"},
      {"iterations", OptionSpec::kIntegerList, nlohmann::json::array(), 1.0, 1000.0, true, {},
       "PageRank iterations per step (or one for all); default by depth: 30 first third, 5 middle, 1 last third"},
      {"similar", OptionSpec::kNumber, 0.0, 0.0, 1.0, true, {},
       "share of each step's dropped tokens chosen by the S stage (Key-vector similarity); 0 disables it"},
      {"uniform_init", OptionSpec::kBool, false, {}, {}, true, {},
       "start PageRank uniform instead of CLS at sqrt(N)x the others"},
      {"seed", OptionSpec::kInteger, 0, 0.0, 1e9, true, {}, "seed of the random baseline"},
  };
  p.create = [](const PassOptions& o) { return std::make_unique<ZeroTPrunePass>(o); };
  p.check = [](const Model& m, const PassOptions& o) {
    PARE_CHECK(m.config.token_pruning.empty(),
               "zero-tprune: the model already has a token-pruning schedule (config.json ",
               "pare.token_pruning); start from the unpruned model");
    (void)zero_tprune_schedule(m.config, options_of(o));
  };
  // Planned: the schedule on the config earlier stages leave (weights keep their shapes).
  p.plan = [](ArchConfig& c, const PassOptions& o) -> bool {
    PARE_CHECK(c.token_pruning.empty(), "zero-tprune: the model already has a token-pruning ",
               "schedule (an earlier zero-tprune stage or config.json pare.token_pruning)");
    c.token_pruning = zero_tprune_schedule(c, options_of(o));
    return true;
  };
  t.add(std::move(p));
}

}  // namespace pare
