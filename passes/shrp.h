// shrp: Specialized Head Routing and Pruning — attention heads become experts routed Top-1 per
// sample while fine-tuning; the heads the router rarely uses are deleted, and layers left with no
// head are removed whole.
//
// Paper: Su et al., "SHRP: Specialized Head Routing and Pruning", arXiv 2512.20635 (Expert
// Attention, the shared expander, Top-1 usage-driven routing and deterministic pruning at
// deployment). What pare chose where the paper is silent, and why: passes/shrp.cpp's opening
// comment.
#pragma once

#include "fine_tune.h"
#include "pipeline/pass.h"

namespace pare {

struct ShrpOptions {
  double threshold = 0.1;      // keep heads whose Top-1 usage share (in its layer) is >= this, [0, 1]
  int64_t keep_heads = 0;      // > 0: keep the m most used heads of the model instead (threshold unused)
  int64_t route_epochs = 2;    // epochs of routed training (stage 1 balance, then stage 2 Top-1)
  double balance_share = 0.5;  // share of the routed steps in stage 1 (load balancing)
  double balance_weight = 0.01;  // weight of the Switch balance loss in stage 1
  bool expander = true;        // the shared expander on the heads' contexts
  double router_lr = 1e-3;     // peak learning rate of the routers and expanders
  std::string stage2 = "top1";  // stage-2 forward: "top1" (one head per sample) or "soft" (H·p gates)
  bool route_weights = false;   // the model's weights train in the routed phase too
  std::string deploy_gates = "one";  // kept heads' gates at deployment: "one" or "mean" (stage-2 mean)
  FineTuneOptions tune;        // batch, lr, seed, limit_train of both phases; tune.epochs: epochs
                               // after pruning (fixed routing: the deployed model), >= 0
};

// InputError naming the option: a family other than vit / bert, threshold outside [0, 1],
// keep_heads < 0 or above the model's heads, route_epochs < 1, balance_share outside [0, 1],
// a quantized attn_o, token-pruning steps or shortcut matrices in the model.
void check_shrp(const Model& m, const ShrpOptions& o);

void register_shrp(PassTable& t);

}  // namespace pare
