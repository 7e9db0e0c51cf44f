// Token / node mask group (issue 19, masks/ item 2): trains the learned token-pruning steps of a
// model (ir/config.h TokenPruneStep method "learned", GTSP's node sparsification: Liu et al.,
// "Exploring Sparsity in Graph Transformers", Neural Networks 2024, arXiv 2312.05479, §3.2).
//
// The family computes each learned step's candidate scores (a linear scorer of the layer's input
// residual) and fires HookPoint::kTokenScores with them: vit [B, T − 1] (CLS is never a
// candidate), gps [G, n_max] with -inf at padding (never a candidate, never counted). In training
// this group's hook replaces them by a Gumbel top-k keep mask with straight-through gradients
// (masks/gates.h straight_through_topk, τ from the constructor): the family keeps those tokens
// and multiplies their attention outputs by the mask values (1 in value), so the scorer learns
// which tokens the loss needs. At evaluation the hook does nothing and the family keeps the top
// scores: no noise at evaluation.
#pragma once

#include <torch/types.h>

#include <memory>
#include <vector>

#include "families/model.h"

namespace pare::masks {

class TokenGate {
 public:
  // `seed` seeds the Gumbel noise (reproducible runs); tau > 0 (InputError otherwise).
  explicit TokenGate(uint64_t seed, double tau = 1.0);
  // Adds the hook to m.hooks (shares this object's state; each step's keep count is read from
  // m.config at every forward, so `m` must stay where it is while the hook is attached).
  // Returns its position in m.hooks.observers.
  size_t attach(Model& m) const;
  void set_training(bool on) { state_->training = on; }
  // Tokens (nodes) offered and kept by the masks drawn since the last reset, summed over steps.
  int64_t offered() const { return state_->offered; }
  int64_t kept() const { return state_->kept; }
  void reset_counts() { state_->offered = state_->kept = 0; }

 private:
  struct State {
    bool training = true;
    double tau = 1.0;
    torch::Generator gen;
    int64_t offered = 0, kept = 0;
  };
  std::shared_ptr<State> state_;
};

}  // namespace pare::masks
