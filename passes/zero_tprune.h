// zero-tprune: Zero-TPrune token pruning and its baselines (Wang, Dedhia, Jha, CVPR 2024,
// arXiv 2305.17328). The selection itself runs in every forward (src/families/token_pruning.h); this pass
// turns a recipe (layers, keep rates or counts, iterations, S-stage share) into the per-layer
// schedule stored in config.json.
#pragma once

#include "pipeline/pass.h"

namespace pare {

struct ZeroTPruneOptions {
  std::string method = "zero-tprune";  // zero-tprune | random | cls-attention
  std::vector<int64_t> layers;         // layers with a pruning step, increasing
  std::vector<double> keep_rate;       // per step (or one for all): share of non-special tokens kept
  std::vector<int64_t> keep;           // per step: tokens kept incl. specials (overrides keep_rate)
  std::vector<int64_t> iterations;     // per step (or one for all); empty: by depth 30 / 5 / 1
  double similar = 0.0;                // share of each step's dropped tokens chosen by the S stage
  bool uniform_init = false;
  int64_t seed = 0;                    // random baseline
};

// The schedule for model config `c` (InputError naming the option on a bad schedule: more steps
// than layers, list lengths that disagree, keeping fewer tokens than the special ones or more
// than enter the step).
std::vector<TokenPruneStep> zero_tprune_schedule(const ArchConfig& c, const ZeroTPruneOptions& o);

void register_zero_tprune(PassTable& t);

}  // namespace pare
