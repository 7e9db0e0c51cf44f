// Head routing: attention heads as experts chosen per sample by a learned router, with a shared
// expander on each head's context (SHRP's "Expert Attention"; Su et al., "SHRP: Specialized Head
// Routing and Pruning", arXiv 2512.20635). Applied through the forward hooks (families/model.h
// HookPoint), never by copying model code; passes/shrp.cpp drives it and states its choices.
//
// Per layer l with H_l > 0 heads of head_dim hd_l and input width d_l (ArchConfig attn_in):
//   router     W_l [H_l, d_l], b_l [H_l], both zero at the start; its input is token 0 of the
//              layer's input ([CLS] in bert and pare's ViTs), x0 [B, d_l]; p = softmax(x0·W_lᵀ + b_l)
//              [B, H_l]: one routing decision per sample and layer.
//   expander   A_l [hd_l, hd_l], zero at the start, shared by the layer's heads: each head's context
//              c_h [.., hd] becomes c_h + c_h·A_l (linear, so it folds into attn_o at deployment).
//   gate       g [B, H_l] multiplies each head's expanded context before attn_o:
//     kBalance  g = H_l·p (soft; mean 1, so with zero routers the model is the dense one exactly);
//     kTop1     g = onehot(argmax p) + p − stop_grad(p): the forward value is one head per sample
//               (Top-1), the gradient reaches the router straight through p;
//     kFixed    g_h = ḡ_h for the kept heads, 0 for the others, the same for every sample (the
//               deployed rule): ḡ_h is head h's mean forward gate over the training samples since
//               reset_usage() (Top-1: its usage share; soft: H·mean p_h; 1 before any sample), so a
//               deployed layer computes the routed layer's expected output, not a sum of heads each
//               at full weight that training never saw. A layer with no kept head is skipped whole
//               (its input residual is restored at the next layer's input, so post-LN bert is
//               skipped too, not only zeroed).
// Usage: in kBalance and kTop1, every training forward adds each sample's argmax head to a
// per-layer counter; usage(l)[h] = count / samples since reset_usage(), in [0, 1], summing to 1.
// Balance loss (Switch Transformer, Fedus et al. 2021, eq. 4, per layer then averaged over the
// routed layers): H_l·Σ_h f_h·P_h, f_h = share of the batch whose argmax is h (no gradient),
// P_h = mean p_h over the batch; 1 when routing is uniform, up to H_l when it collapses.
// Invariant: in kFixed mode the logits equal those of materialise()'s model (float rounding).
#pragma once

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "families/model.h"

namespace pare::masks {

enum class RoutingMode { kBalance, kTop1, kFixed };

class HeadRouting {
 public:
  // Routers and expanders for every layer of `m` with heads (InputError when none has heads, or the
  // family is not vit / bert). `expander` false: no expander (A_l absent).
  HeadRouting(const Model& m, bool expander);

  // The trainable tensors (routers W_l, b_l and expanders A_l), requires_grad set.
  std::vector<torch::Tensor> parameters() const;
  // Adds the routing hook to `m` (which must have the shapes given to the constructor).
  void attach(Model& m) const;

  void set_mode(RoutingMode mode);
  RoutingMode mode() const;
  int64_t layers() const;           // layers of the model (routed or not)
  bool routed(int64_t layer) const;  // the layer has heads and a router

  void reset_usage();
  // [H_l] float64 shares of the samples routed (argmax) to each head since reset_usage(); zeros
  // before any sample. InputError for a layer without a router.
  torch::Tensor usage(int64_t layer) const;
  int64_t samples(int64_t layer) const;
  // [H_l] float64 mean forward gate of each head over the same samples (ones before any sample).
  torch::Tensor mean_gate(int64_t layer) const;
  // Mean over the layers routed in the last training forward of H_l·Σ_h f_h·P_h (differentiable in
  // the routers); undefined when no forward ran in kBalance / kTop1 since the last call. Clears
  // the recorded probabilities.
  torch::Tensor take_balance_loss();

  // Kept heads per layer for kFixed and materialise() (sorted, unique, < H_l; an empty list skips
  // the layer); their gates are the mean gates at this call (mean_gates false: 1). InputError on a wrong number of layers or an index out of range, or when every
  // layer would be skipped.
  void set_kept(const std::vector<std::vector<int64_t>>& kept, bool mean_gates = true);
  const std::vector<std::vector<int64_t>>& kept() const;

  // The deployed model, in place: folds each kept layer's expander and fixed gates into attn_o
  // (W_o[:, h·hd:(h+1)·hd] ← g_h·W_o[:, h·hd:(h+1)·hd]·(I + A_l)ᵀ), deletes the heads not kept
  // (Rewriter::keep: Q/K/V rows and attn_o columns), removes both branches of every layer with no
  // head kept and then the layer itself (Rewriter::remove_layer, highest first). Returns what was
  // removed: {"heads": [{layer, kept, removed}], "layers": [original indices]}. The model's hooks
  // are left alone (detach the routing first). InputError when attn_o is not dense.
  nlohmann::json materialise(Model& m) const;

 private:
  struct State;
  std::shared_ptr<State> s_;
};

// Deployment rules on per-layer usage [H_l] (layers without heads: undefined tensors, kept empty).
// keep_by_threshold: heads whose usage is >= threshold (in [0, 1]; InputError otherwise); if that
// keeps nothing anywhere, the single most used head (the caller reports it).
// keep_top: the m most used heads over all layers (ties: lower layer, then lower head first);
// InputError for m < 1.
std::vector<std::vector<int64_t>> keep_by_threshold(const std::vector<torch::Tensor>& usage, double threshold);
std::vector<std::vector<int64_t>> keep_top(const std::vector<torch::Tensor>& usage, int64_t m);

}  // namespace pare::masks
