// Multi-head scaled dot-product attention without a mask (encoder layers: ViT).
//
// Vaswani et al., "Attention Is All You Need", NeurIPS 2017, §3.2.1–3.2.2: for each head h,
// ctx_h = softmax(Q_h K_hᵀ / √head_dim) V_h, heads concatenated.
//
// Inference on float32 CPU tensors runs a fused kernel: for each (sequence, head) the scores, the
// row softmax and probs·V are computed in one pass over that head's rows of Q, K and V, which stay
// in the cache, and the T × T probabilities are written to memory only when the caller asks for
// them (the idea of FlashAttention, Dao et al., NeurIPS 2022, without its tiling: a whole row of
// scores fits). LibTorch instead runs Q·Kᵀ and probs·V as B·heads separate small GEMMs and the
// softmax over [B, heads, T, T] in memory; at batch 256 and the shipped ViT's shapes (50 tokens,
// 4 heads of 32) the fused kernel takes about half the time, and its time falls with the token
// count more closely (it has no per-GEMM overhead), which is what token pruning relies on. The
// kernel's exponential is a polynomial (relative error ≈ 1e−7): probabilities and outputs agree
// with LibTorch's to a few float32 ulps, not bit for bit. Inputs the kernel does not take
// (autograd on and an input requiring grad, another dtype or device, head_dim not a multiple of 8)
// and calls that steer the probabilities run the same computation as LibTorch ops, so training,
// hooks and double-precision checks are unchanged.
#pragma once

#include <torch/types.h>

#include <functional>

namespace pare {

// What multi_head_attention writes besides ctx, each only when asked for.
struct AttentionOutputs {
  torch::Tensor* probs = nullptr;  // the probabilities [B, heads, T, T] (rows sum to 1)
  // column_sums [B, heads, T] = Σ_i query_weights[i] · probs[b, h, i, :], query_weights [T]: what
  // token pruning reads of the probabilities (selection_reads in token_pruning.h), formed while
  // each row is in the cache.
  torch::Tensor query_weights;
  torch::Tensor* column_sums = nullptr;
  // Called with the probabilities [B, heads, T, T] before they weigh the values; it may replace
  // them (model hooks). Takes the LibTorch path.
  std::function<void(torch::Tensor&)> steer_probs;
};

// q, k, v: [B, T, heads·head_dim], head h in columns [h·head_dim, (h+1)·head_dim) (the
// projections' outputs; views of one fused [B, T, 3·heads·head_dim] product are read in place).
// Returns ctx [B, T, heads·head_dim] (heads concatenated: the output
// projection's input). Throws InternalError when the shapes disagree, the width is not a
// multiple of heads, or column sums are asked for without query weights [T].
torch::Tensor multi_head_attention(const torch::Tensor& q, const torch::Tensor& k,
                                   const torch::Tensor& v, int64_t heads,
                                   const AttentionOutputs& out = {});

// Attention of sequences stored as row ranges of one tensor (padding-free batches: ByteTransformer,
// Zhai et al., IPDPS 2023, §IV; the padded layout is the special case starts[b] = b·T): q, k, v
// [N, heads·head_dim] (rows may be views of one fused Q|K|V product), sequence b is rows
// [starts[b], starts[b] + lengths[b]) and attends to its own rows only, as queries and as keys.
// starts, lengths: int64 CPU [B], ranges disjoint and inside [0, N), lengths ≥ 1. Returns ctx
// [N, heads·head_dim]; rows outside every range are 0. Float32 CPU inputs without autograd run the
// fused kernel once per (sequence, head) at the sequence's own length, so nothing is computed for
// padding; otherwise LibTorch ops per sequence (same values to float32 rounding). InternalError on
// inconsistent shapes or ranges.
torch::Tensor ranged_multi_head_attention(const torch::Tensor& q, const torch::Tensor& k,
                                          const torch::Tensor& v, const torch::Tensor& starts,
                                          const torch::Tensor& lengths, int64_t heads);

// Whether multi_head_attention runs the fused kernel for these inputs (tests and benchmarks).
bool fused_attention_applies(const torch::Tensor& q, const torch::Tensor& k,
                             const torch::Tensor& v, int64_t heads);

// The S stage's similarity (Zero-TPrune, Wang et al., CVPR 2024, §3.2; token_pruning.cpp), in
// the same vector kernels as the attention: for the Key vectors K [n, kd] (row-major) of one
// sequence, best[a] = max over h < nhi of cos(K[lo[a]], K[hi[h]]) for a < nlo, a norm below 1e−12
// counting as 1e−12. Computed as (x · y) / (|x| |y|) in float32, so it agrees with a product of
// unit vectors to a few ulps, not bit for bit. scratch: n + nhi + 3 floats. Throws InternalError
// unless 1 ≤ nhi ≤ n and kd is a multiple of 8 (indices are not checked).
void max_cosine_similarity(const float* K, int64_t n, int64_t kd, const int64_t* lo, int64_t nlo,
                           const int64_t* hi, int64_t nhi, float* scratch, double* best);

}  // namespace pare
