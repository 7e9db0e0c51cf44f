// prune-heads: structured attention-head pruning by weight magnitude (the magnitude baseline of
// Michel, Levy, Neubig, "Are Sixteen Heads Really Better than One?", NeurIPS 2019).
#pragma once

#include "pipeline/pass.h"

namespace pare {

struct PruneHeadsOptions {
  double sparsity = 0.25;             // fraction of each layer's heads removed, in [0, 1)
  std::vector<int64_t> keep;          // heads kept per layer: one for all, or one per entry of
                                      // `layers` (per model layer when `layers` is empty);
                                      // overrides sparsity when not empty
  std::vector<int64_t> layers;        // layers pruned; empty: every layer that has heads
  std::string criterion = "l2";       // l2 | l1: norm of a head's weights
  std::string scope = "per-layer";    // per-layer | global: rank every head of the model together
};

// What the pass decides for one layer. A unit is a head, or under grouped-query attention a KV
// group (one K/V head and the heads/kv_heads query heads that read it): units are removed whole.
struct HeadLayerPlan {
  int64_t layer = 0;
  int64_t heads = 0, kv_heads = 0;   // before pruning
  int64_t group = 1;                 // query heads per unit (heads / kv_heads under GQA, else 1)
  int64_t keep_units = 0;            // per-layer scope: units kept (global scope: after ranking)
  std::vector<double> scores;        // per unit (empty until scored)
  std::vector<int64_t> kept_units;   // sorted (empty until selected)
};

// Checks the options against the model and returns one plan per pruned layer with keep_units set
// (per-layer counts; the global scope removes the same total). InputError naming the option and
// the layer: keep < 1 or above a layer's heads or not a multiple of its KV group, layers out of
// range or repeated, sparsity outside [0, 1), a quantized attention slot, a layer without a
// "blk.N.heads" dimension group, a global scope over layers with different KV group sizes.
std::vector<HeadLayerPlan> plan_head_pruning(const Model& m, const PruneHeadsOptions& o);

// Scores of layer `layer`'s units: the L2 norm (l1: the sum of |w|) of every weight the unit owns
// in the layer's "blk.N.heads" (and under GQA "blk.N.kv_heads") dimension group: its rows of
// attn_q / attn_k / attn_v and its columns of attn_o. Biases are not counted. Computed in float64.
std::vector<double> head_scores(const Model& m, int64_t layer, const std::string& criterion);

// Plans, scores, selects (lowest scores removed, at least one unit per layer) and removes the
// heads with Rewriter::keep. Returns the notes: criterion, scope, and per layer the kept head
// indices, the removed ones and every unit's score.
nlohmann::json prune_heads(Model& m, const PruneHeadsOptions& o,
                           const std::function<void(const std::string&)>& log);

void register_prune_heads(PassTable& t);

}  // namespace pare
