// Token pruning inside the forward: Zero-TPrune and two baselines.
//
// Paper: Wang, Dedhia, Jha, "Zero-TPrune: Zero-Shot Token Pruning through Leveraging of the
// Attention Graph in Pre-Trained Transformers", CVPR 2024 (arXiv 2305.17328): §3.1 I-stage
// (weighted PageRank on each head's attention graph), §3.2 variance-based head filter and
// root-mean-square head aggregation, §3.3 S-stage (similarity-based pruning on Key vectors) and
// the I′ → S → I order. Settings from METHODS.md.
//
// A step (ArchConfig::token_pruning, config.json "pare.token_pruning") runs inside a layer after
// its attention probabilities are known: it picks `keep` tokens per sequence (special tokens
// always kept, order preserved) and the family gathers them before the attention output
// projection, so the projection, the residual add, the MLP and every later layer run on the kept
// tokens only. The weights are unchanged; the schedule travels in config.json and applies on every
// load. Choices pare makes where the paper leaves room (stated here and in results/zero-tprune.md):
//  - variance filter: the variance is taken over N·s (a head's scores rescaled to mean 1, so the
//    [0.01, 0.7] window is independent of N); when no head passes, all heads are used;
//  - the I stage runs PageRank on the full attention graph of the layer and ranks the tokens that
//    survived the S stage by it.
#pragma once

#include <torch/types.h>

#include <vector>

#include "ir/config.h"

namespace pare {

// Weighted PageRank on attention graphs. probs [B, H, N, N], rows sum to 1 (query i attends to
// key j with probs[.., i, j]); s ← Aᵀ s, `iterations` times, from s = 1/N with CLS (token 0) at
// √N× the others unless `uniform_init` (then normalised to sum 1). Returns scores [B, H, N]; each
// head's scores keep the sum 1.
torch::Tensor weighted_pagerank(const torch::Tensor& probs, int64_t iterations, bool uniform_init);

// Combines per-head scores [B, H, N] into [B, N] by root-mean-square over the heads whose
// variance of N·s lies in [var_min, var_max] (all heads when none does).
torch::Tensor combine_heads_rms(const torch::Tensor& scores, double var_min = 0.01,
                                double var_max = 0.7);

// Token indices to keep, [B, keep] int64, ascending (so special tokens come first).
// probs [B, H, N, N]; keys [B, N, C] (the layer's Key vectors, heads concatenated; zero-tprune's
// S stage only); `layer` seeds the random baseline. Methods: "zero-tprune" (I′ → S → I),
// "cls-attention" (mean over heads of the CLS row, no PageRank), "attention" (mean attention
// received over heads and queries, no PageRank), "random" (uniform, seeded by
// step.seed and layer: the same batch gets the same choice on every call; the draw is per batch,
// so its accuracy moves slightly with the evaluation batch size).
// Ties keep the lower position. Throws InputError when keep is not in (specials, N].
// `attention` is either the probabilities [B, H, N, N] (every method), or for the methods
// selection_reads() puts at kSummary their weighted sum over the queries [B, H, N] (see below),
// or undefined for random (N is then keys.size(1)); anything else throws InputError.
torch::Tensor select_tokens(const TokenPruneStep& step, const torch::Tensor& attention,
                            const torch::Tensor& keys, int64_t specials);

// What select_tokens reads from a layer's attention. A method that reads the probabilities only
// through one weighted sum over the queries, summary[b, h, j] = Σ_i w_i probs[b, h, i, j], can
// be given that sum, which an attention kernel forms without writing the N × N probabilities out
// (multi_head_attention in attention.h): zero-tprune with one PageRank iteration (w = PageRank's
// start vector; the I′ and I scores are both Aᵀw) and cls-attention (w = e₀: the CLS row).
// Random reads nothing; zero-tprune with other iteration counts and "attention" read probs.
enum class SelectionReads { kNothing, kSummary, kProbs };
SelectionReads selection_reads(const TokenPruneStep& step);
// The query weights w [n] (float32) of a kSummary step with n tokens entering and `specials`
// special tokens (PageRank's start: CLS √n× the others unless uniform_init or no specials, sum 1).
torch::Tensor summary_query_weights(const TokenPruneStep& step, int64_t n, int64_t specials);

// Graphs (padded rows of different lengths): row b of probs [B, H, N, N] / keys [B, N, C] has
// n[b] ≤ N valid tokens (the first ones; padding after them is ignored) and keeps keep[b] of them,
// r[b] chosen by the S stage (zero-tprune). No special tokens; PageRank starts uniform. Methods as
// above plus "attention" (mean attention each token receives over heads and valid queries, no
// PageRank); cls-attention is refused (no CLS). Returns the kept positions of every row,
// ascending, concatenated (Σ keep[b] entries).
std::vector<int64_t> select_tokens_ragged(const TokenPruneStep& step, const torch::Tensor& probs,
                                          const torch::Tensor& keys, const std::vector<int64_t>& n,
                                          const std::vector<int64_t>& keep,
                                          const std::vector<int64_t>& r);

// Graph steps: nodes kept of n entering (round(keep_rate · n), at least 1) and the S stage's
// share of the dropped ones (round(similar_rate · dropped), at most the less important half).
int64_t graph_keep(const TokenPruneStep& step, int64_t n);
int64_t graph_similar(const TokenPruneStep& step, int64_t n);

// Learned steps (method "learned"): positions of the k largest scores of each row of scores
// [R, n] (-inf entries are never kept while k ≤ the row's finite count), ascending; ties to the
// lower position. Returns [R, k] int64. InputError when k is not in [0, n].
torch::Tensor topk_positions(const torch::Tensor& scores, int64_t k);
// Positions of the ones of a 0/1 keep mask [R, n] that has exactly k ones per row (> 0.5 counts
// as one), ascending, [R, k] int64. InternalError when a row holds another count.
torch::Tensor mask_positions(const torch::Tensor& mask, int64_t k);

// x [B, N, C] → x[b, idx[b, i], :], [B, k, C].
torch::Tensor gather_tokens(const torch::Tensor& x, const torch::Tensor& idx);
// y [B, k, C] += x[b, idx[b, i], :] in place and returns y: a pruning step's residual add with
// the gather in the same pass (one write of y instead of a gathered copy plus a sum). Without
// autograd on float CPU tensors a loop over the rows; otherwise y.add_(gather_tokens(x, idx)).
// Throws InternalError when the shapes disagree.
torch::Tensor& add_gathered_tokens_(torch::Tensor& y, const torch::Tensor& x, const torch::Tensor& idx);

// Multiply-accumulates per input spent choosing the tokens of `step` with n tokens entering,
// `heads` heads and key width `key_dim`. zero-tprune: PageRank heads·n² per iteration (r = 0:
// `iterations`; r > 0: one I′ iteration, plus the rest when the I stage still has tokens to drop)
// and, when r > 0, the S stage's lower·upper·key_dim similarity products (lower/upper: the halves
// of the n − specials non-special tokens, upper = ceil). Baselines: 0.
int64_t token_selection_macs(const TokenPruneStep& step, int64_t n, int64_t heads, int64_t key_dim,
                             int64_t specials);
// The same for one row that keeps `keep` of n with r chosen by the S stage (graph steps). The
// "attention" baseline counts heads·n² (its column sums are one PageRank iteration's arithmetic).
int64_t selection_macs(const TokenPruneStep& step, int64_t n, int64_t keep, int64_t r,
                       int64_t heads, int64_t key_dim, int64_t specials);

}  // namespace pare
