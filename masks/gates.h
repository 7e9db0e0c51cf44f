// Gates: differentiable keep/drop decisions for training-time compression (issue 19, masks/).
// A gate turns trainable scores into a mask in [0, 1] that multiplies what it gates (a head's
// output, a channel, a whole branch, a token); in training the mask is stochastic or soft so
// gradients reach the scores, at evaluation it is deterministic (never noise at evaluation).
//
// HardConcrete   Louizos, Welling, Kingma, "Learning Sparse Neural Networks through L0
//                Regularization", ICLR 2018, §4.2 (eq. 10-13). One gate per entry of log α [n]:
//                  u ~ U(0, 1), s = σ((log u − log(1 − u) + log α) / β), z = clamp(s·(ζ − γ) + γ, 0, 1)
//                in training; at evaluation z = clamp(σ(log α)·(ζ − γ) + γ, 0, 1). The expected L0
//                norm (the probability that a gate is non-zero) is, in closed form,
//                  P(z ≠ 0) = σ(log α − β·log(−γ / ζ)),
//                differentiable in log α: the penalty the cost controller weighs. Defaults β = 2/3,
//                γ = −0.1, ζ = 1.1 (the paper's).
// AnnealedSigmoid  z = σ(score / T) with a temperature T annealed geometrically from t_start to
//                t_end over `steps` (set_step); at evaluation the limit T → 0: z = 1[score > 0].
//                Expected open fraction: mean σ(score / T).
// straight_through_topk  Per row, keep the k entries with the largest scores. Training: Gumbel
//                top-k (scores + Gumbel(0, 1) noise, τ), the forward value is the hard 0/1 mask and
//                the gradient is that of the soft relaxation k·softmax((scores + g) / τ) over the
//                row's valid entries (straight-through estimator; GTSP, Liu et al. 2023 §3.2, uses
//                it with τ = 1). Evaluation: the top-k of the scores themselves, no noise. Invalid
//                entries (padding) are never kept and never counted.
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace pare::masks {

class HardConcrete {
 public:
  // n gates whose probability of being non-zero starts at `init_open` in (0, 1) (log α set so that
  // the closed form gives it). InputError for n < 1, init_open outside (0, 1), β <= 0 or
  // γ >= 0 or ζ <= 1.
  explicit HardConcrete(int64_t n, double init_open = 0.9, double beta = 2.0 / 3.0, double gamma = -0.1,
                        double zeta = 1.1);

  torch::Tensor log_alpha;  // [n] float32, requires_grad (the trainable parameter)
  double beta, gamma, zeta;

  // z [n] in [0, 1]: a sample (training, drawn with `gen`) or the deterministic value.
  torch::Tensor sample(torch::Generator& gen) const;
  torch::Tensor deterministic() const;
  // P(z ≠ 0) per gate [n] (closed form above), differentiable in log α.
  torch::Tensor expected_open() const;
  // Σ P(z ≠ 0): the expected L0 norm.
  torch::Tensor expected_l0() const { return expected_open().sum(); }
};

class AnnealedSigmoid {
 public:
  // n scores initialised to `init_score` (σ(init/T) open at the start); temperature from t_start to
  // t_end (> 0, geometric) over `steps` steps. InputError for n < 1, temperatures <= 0, steps < 1.
  AnnealedSigmoid(int64_t n, double init_score = 3.0, double t_start = 1.0, double t_end = 0.05,
                  int64_t steps = 1000);

  torch::Tensor scores;  // [n] float32, requires_grad
  void set_step(int64_t step);   // T = t_start·(t_end / t_start)^(min(step, steps) / steps)
  double temperature() const { return t_; }
  torch::Tensor soft() const;           // σ(scores / T): training
  torch::Tensor deterministic() const;  // 1[scores > 0]: evaluation
  torch::Tensor expected_open() const { return soft(); }

 private:
  double t_start_, t_end_, t_;
  int64_t steps_;
};

// scores [R, n] float; valid [R, n] bool (undefined: all valid); k [R] int64 (entries to keep per
// row, clipped to the row's valid count). Returns the mask [R, n] float32: exactly
// min(k, valid count) ones per row in its forward value. `training`: Gumbel top-k with `gen` and
// temperature tau, straight-through gradients to `scores`; otherwise the deterministic top-k (ties
// broken by position, lower first). InputError on shape mismatches or k < 0.
torch::Tensor straight_through_topk(const torch::Tensor& scores, const torch::Tensor& valid,
                                    const torch::Tensor& k, bool training, torch::Generator* gen,
                                    double tau = 1.0);

}  // namespace pare::masks
