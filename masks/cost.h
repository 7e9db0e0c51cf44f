// Cost controller (issue 19, masks/ item 3): a recipe's `target: {flops: 0.7}` (or params) is met
// by a Lagrangian penalty on the expected cost of the open gates, the expected cost taken from
// pare's own accounting (Family::costs rows for FLOPs, Model::num_params for parameters).
//
// CostModel  The cost of a model as an affine function of its open units: per layer l,
//              cost = rest + Σ_l [attn_fixed_l + per_head_l·heads_l + ffn_fixed_l + per_channel_l·channels_l],
//            exact at fixed token (node) counts, where the accounting is linear in heads and FFN
//            channels. per_head / per_channel are measured, not derived by a formula: the cost of
//            the model minus that of a clone with one head (one channel) of layer l removed by the
//            Rewriter. The expected cost replaces the unit counts by the sum of their probabilities
//            of being open and weighs each branch by its own probability (a closed branch costs
//            nothing of its own; its layer's other parts stay in `rest`).
// LagrangianController  Wang, Wohlwend, Lei, "Structured Pruning of Large Language Models",
//            EMNLP 2020, §3 (also CoFi, Xia, Zhong, Chen, ACL 2022, §3.3):
//              penalty = λ1·(ĉ − t) + λ2·(ĉ − t)²
//            with ĉ the expected cost fraction and t the target fraction; the model minimises it,
//            λ1 and λ2 maximise it. Both run under one minimising optimiser: the penalty uses
//            λ' = 2·sg(λ) − λ (the value of λ, the gradient −∂/∂λ: a gradient reversal).
// keep_expected_count  Wang et al. 2020's deterministic mask at evaluation: keep the round(Σ P(open))
//            gates with the largest log α, so the evaluated cost matches the expected one.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "families/model.h"

namespace pare::masks {

struct CostModel {
  std::string measure;  // "flops" (per input, as Family::costs counts them) or "params"
  // One entry per layer, in the measure's unit (FLOPs or parameters).
  std::vector<double> per_head;     // one attention head (Q/K/V rows, O columns, QKᵀ and AV)
  std::vector<double> per_channel;  // one FFN channel (ffn_up row and bias, ffn_down column)
  // What the branch still costs with no head (channel) left: parameters of its tensors named
  // "blk.L.attn_*" / "blk.L.ffn_*" (shortcuts excepted: the pre-norm, the output bias, K/V of
  // grouped-query attention); FLOPs of its linears at the layer's tokens (0 for vit and gps, whose
  // branch matmuls all vanish with their units, biases not being counted).
  std::vector<double> attn_fixed, ffn_fixed;
  std::vector<int64_t> heads, channels;  // the dense model's per-layer counts
  double rest = 0;   // everything else: embeddings, head, norms after the residual, GPS local models
  double dense = 0;  // the dense model's total (the sum of the costs() rows, or num_params())

  // Measures the model (clones of it; `m` is not changed). InputError for another measure or a
  // model whose family has no heads / FFN groups per layer.
  static CostModel from_model(const Model& m, const std::string& measure);

  // The expected cost, a 0-dim float64 tensor differentiable in the inputs:
  //   rest + Σ_l [a_l·(attn_fixed_l + per_head_l·Σ heads_open_l) + f_l·(ffn_fixed_l + per_channel_l·Σ channels_open_l)]
  // Each vector is empty or has one entry per layer: heads_open [heads_l], channels_open
  // [channels_l], attn_open / ffn_open [1] or 0-dim (a_l, f_l), probabilities of being open (e.g.
  // HardConcrete::expected_open(), or 0/1 masks). An undefined entry (or an empty vector) means
  // fully open. InputError naming the input and layer on a wrong count or length.
  torch::Tensor expected(const std::vector<torch::Tensor>& heads_open,
                         const std::vector<torch::Tensor>& channels_open,
                         const std::vector<torch::Tensor>& attn_open = {},
                         const std::vector<torch::Tensor>& ffn_open = {}) const;
  // expected() / dense as a double.
  double fraction(const std::vector<torch::Tensor>& heads_open, const std::vector<torch::Tensor>& channels_open,
                  const std::vector<torch::Tensor>& attn_open = {},
                  const std::vector<torch::Tensor>& ffn_open = {}) const;
};

class LagrangianController {
 public:
  // target: the cost fraction t in (0, 1] (InputError otherwise). λ1 = λ2 = 0 at the start.
  explicit LagrangianController(double target);
  // λ1'·(ĉ − t) + λ2'·(ĉ − t)², λ' = 2·sg(λ) − λ: 0-dim, float64. `expected_fraction` is ĉ,
  // a 0-dim tensor (CostModel::expected(...) / dense).
  torch::Tensor penalty(const torch::Tensor& expected_fraction) const;
  std::vector<torch::Tensor> parameters() const { return {lambda1, lambda2}; }
  // Warm-up: a caller may anneal the target linearly from 1 to the final one over the first steps
  // (CoFi). InputError outside (0, 1].
  void set_target(double target);
  double target() const { return target_; }

  torch::Tensor lambda1, lambda2;  // 0-dim float64, requires_grad

 private:
  double target_;
};

// log_alpha [n], expected_open [n] (probabilities). Returns the 0/1 float32 mask [n] keeping the
// round(Σ expected_open) entries with the largest log α (ties: the lower index). No gradient.
// InputError on shape mismatch.
torch::Tensor keep_expected_count(const torch::Tensor& log_alpha, const torch::Tensor& expected_open);

}  // namespace pare::masks
