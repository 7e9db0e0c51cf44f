// Weight masks (issue 19, masks/ item 4): unstructured and N:M sparsity of dense linear slots,
// one 0/1 mask per slot's weight [out, in], multiplied in place into the weight (apply) and into
// its gradient (mask_gradients) so an optimiser step cannot revive a pruned weight.
//
// Gradual magnitude pruning (GMP): Zhu & Gupta, "To prune, or not to prune: exploring the efficacy
//   of pruning for model compression", 2017, §3: sparsity at step t (pruning every Δt steps from
//   t0, n times)
//     s_t = s_f + (s_i − s_f)·(1 − (t − t0)/(n·Δt))³,
//   held between pruning steps; each pruning step zeroes the smallest magnitudes. Here the
//   threshold is global over all selected slots (one ranking of every weight).
// N:M: in every M consecutive input columns of each row keep the n largest |w| (2:4 for sparse
//   tensor cores).
// Regrowth (GraNet): Liu et al., "Sparse Training via Boosting Pruning Plasticity with
//   Neuroregeneration", NeurIPS 2021, §3: after each pruning step, revive the given fraction of
//   the connections that step just pruned, those with the largest |gradient| (the weight stays
//   0: it restarts from zero), as GTSP's weight axis does.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "families/model.h"

namespace pare::masks {

// GMP's schedule: from `initial` to `final` sparsity between steps `start` and `end`, pruning
// every `every` steps (n = (end − start) / every pruning steps after the first).
struct GmpSchedule {
  double initial = 0.0, final = 0.5;
  int64_t start = 0, end = 1000, every = 100;
};

class WeightMasks {
 public:
  // Masks (all ones) for the dense linear slots `slots` of `m` (InputError for an unknown or
  // non-dense slot, a repeated slot, an empty list, or a schedule with sparsities outside [0, 1],
  // initial > final, end < start or every < 1).
  WeightMasks(Model& m, std::vector<std::string> slots, GmpSchedule schedule = {});

  // GMP sparsity at `step`: `initial` before start, `final` from end on, in between the cubic
  // schedule at the last pruning step (start + k·every) at or before `step`.
  double sparsity_at(int64_t step) const;
  // Global magnitude pruning: the masks become 0 on exactly round(sparsity · total) weights, those
  // of smallest |w| over all slots (weights already pruned count as smallest; ties: slot order,
  // then row-major position), and are applied. Remembers the newly pruned weights for regrow().
  // InputError outside [0, 1].
  void prune_to(Model& m, double sparsity);
  // N:M: in each row, of every M consecutive inputs keep the n of largest |w| (ties: the lower
  // column), and applies. InputError for n < 1, n > M, or a slot whose in-features are not a
  // multiple of M (naming the slot).
  void prune_nm(Model& m, int n, int M);
  // Revives round(fraction · count) of the weights the last prune_to() newly pruned, those of
  // largest |grads[slot]| (global; ties as in prune_to); their weights stay 0. grads: slot → the
  // weight's gradient [out, in] (InputError when a slot with newly pruned weights has none or a
  // wrong shape, or fraction outside [0, 1]).
  void regrow(Model& m, const std::map<std::string, torch::Tensor>& grads, double fraction);
  // weight.mul_(mask) in place, without autograd.
  void apply(Model& m) const;
  // weight.grad().mul_(mask) for the slots whose weight has a gradient.
  void mask_gradients(Model& m) const;
  // Kept weights / all weights of the selected slots.
  double density() const;
  // slot → mask [out, in] float32 (0 or 1).
  const std::map<std::string, torch::Tensor>& masks() const { return masks_; }

 private:
  std::vector<std::string> slots_;
  GmpSchedule schedule_;
  std::map<std::string, torch::Tensor> masks_;
  std::map<std::string, torch::Tensor> just_pruned_;  // bool [out, in]: pruned by the last prune_to
};

}  // namespace pare::masks
