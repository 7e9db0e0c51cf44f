// drop-layers — deletes whole encoder layers (attention branch, FFN branch and their norms), so
// the model runs fewer layers: the top-layer dropping baseline of Sajjad et al., "On the Effect
// of Dropping Layers of Pre-trained Transformer Models", Computer Speech & Language 2023 (arXiv
// 2004.03844), §3; they fine-tune afterwards (recipe: a fine-tune stage after this one).
// Invariant: every other layer is untouched; the removed layer is the identity in the deleted
// model (Rewriter::remove_branch + remove_layer), config.json records the new depth.
#include "drop_layers.h"

#include <algorithm>

#include "base/error.h"

namespace pare {

std::vector<int64_t> plan_drop_layers(const ArchConfig& c, const PassOptions& o) {
  PARE_CHECK(c.family == "vit" || c.family == "bert", "drop-layers: the ", c.family,
             " family is not supported (vit and bert are)");
  PARE_CHECK(!c.shortcuts, "drop-layers: the model has shortcut matrices (slicegpt); drop layers before slicegpt");
  const std::vector<int64_t> given = o.integers("layers");
  const int64_t keep = o.integer("keep");
  const int64_t L = c.num_hidden_layers;
  PARE_CHECK(given.empty() != (keep == 0), "drop-layers: give either layers (which to drop) or keep (how many of the ",
             "bottom layers stay), not ", given.empty() ? "neither" : "both");
  std::vector<int64_t> drop = given;
  if (keep > 0) {
    PARE_CHECK(keep < L, "drop-layers: keep ", keep, ": the model has ", L, " layers");
    for (int64_t l = keep; l < L; ++l) drop.push_back(l);
  }
  std::sort(drop.begin(), drop.end());
  PARE_CHECK(std::adjacent_find(drop.begin(), drop.end()) == drop.end(), "drop-layers: layers: a layer is listed twice");
  for (int64_t l : drop)
    PARE_CHECK(l >= 0 && l < L, "drop-layers: layers: ", l, " outside [0, ", L, ")");
  PARE_CHECK(int64_t(drop.size()) < L, "drop-layers: layers: every layer would go");
  for (int64_t l : drop)
    for (const auto& st : c.token_pruning)
      PARE_CHECK(st.layer != l, "drop-layers: layer ", l, " holds a token-pruning step");
  return drop;
}

namespace {

class DropLayersPass : public Pass {
 public:
  explicit DropLayersPass(PassOptions o) : o_(std::move(o)) {}
  PreservedAnalyses run(Model& m, AnalysisManager&, PassContext& ctx) override {
    const std::vector<int64_t> drop = plan_drop_layers(m.config, o_);
    Rewriter rw(m);
    for (auto it = drop.rbegin(); it != drop.rend(); ++it) {
      if (m.config.layers[*it].attention) rw.remove_branch(*it, "attention");
      if (m.config.layers[*it].ffn) rw.remove_branch(*it, "ffn");
      rw.remove_layer(*it);
    }
    ctx.log(concat("drop-layers: removed ", drop.size(), " layers, ", m.config.num_hidden_layers, " left"));
    if (ctx.notes) *ctx.notes = {{"removed_layers", drop}, {"layers_left", m.config.num_hidden_layers}};
    return PreservedAnalyses::none(drop.empty() ? 0 : drop.front());
  }

 private:
  PassOptions o_;
};

}  // namespace

void register_drop_layers(PassTable& t) {
  PassInfo p;
  p.name = "drop-layers";
  p.summary = "remove whole encoder layers (top-layer dropping, or a given list); fine-tune afterwards";
  p.source = "Sajjad et al., On the Effect of Dropping Layers of Pre-trained Transformer Models, CSL 2023 (arXiv 2004.03844), section 3";
  p.options = {
      {"layers", OptionSpec::kIntegerList, nlohmann::json::array(), 0.0, 4096.0, true, {}, "layers (0-based) to remove"},
      {"keep", OptionSpec::kInteger, 0, 0.0, 4096.0, true, {}, "> 0: keep the bottom `keep` layers, remove the rest"},
  };
  p.create = [](const PassOptions& o) { return std::make_unique<DropLayersPass>(o); };
  p.check = [](const Model& m, const PassOptions& o) { (void)plan_drop_layers(m.config, o); };
  t.add(std::move(p));
}

}  // namespace pare
