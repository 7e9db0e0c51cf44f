#include "token_pruning.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "error.h"

namespace pare {

namespace {

// PageRank scores [B, H, N] after `iterations` steps, and after the first one (I′) in `first`.
// One step is s_j = Σ_i s_i A_ij, computed as a broadcast product and a reduction: for the small
// N of a pruning step this beats B·H tiny matrix-vector products.
torch::Tensor pagerank(const torch::Tensor& probs, int64_t iterations, bool uniform_init,
                       torch::Tensor* first) {
  const int64_t N = probs.size(-1);
  torch::Tensor s = torch::ones({probs.size(0), probs.size(1), N}, probs.options());
  if (!uniform_init) s.select(-1, 0).fill_(std::sqrt(double(N)));
  s.div_(s.sum(-1, true));
  for (int64_t i = 0; i < iterations; ++i) {
    s = (s.unsqueeze(-1) * probs).sum(-2);
    if (i == 0 && first) *first = s;
  }
  return s;
}

}  // namespace

torch::Tensor weighted_pagerank(const torch::Tensor& probs, int64_t iterations, bool uniform_init) {
  PARE_CHECK(probs.dim() == 4 && probs.size(2) == probs.size(3),
             "weighted_pagerank: expected attention probabilities [B, H, N, N], got ", probs.sizes());
  return pagerank(probs, iterations, uniform_init, nullptr);
}

torch::Tensor combine_heads_rms(const torch::Tensor& scores, double var_min, double var_max) {
  const int64_t N = scores.size(-1);
  torch::Tensor var = (scores * double(N)).var(-1, /*unbiased=*/false);  // [B, H]
  torch::Tensor mask = ((var >= var_min) & (var <= var_max)).to(scores.scalar_type());
  torch::Tensor none = mask.sum(-1, true) == 0;  // [B, 1]: no head passes → use all
  mask = at::where(none, torch::ones_like(mask), mask);
  torch::Tensor sq = (scores.square() * mask.unsqueeze(-1)).sum(1);  // [B, N]
  return (sq / mask.sum(-1, true)).sqrt();
}

torch::Tensor gather_tokens(const torch::Tensor& x, const torch::Tensor& idx) {
  // Rows of the flattened [B·N, C] tensor: one index_select (faster than gather on an expanded
  // index).
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2);
  torch::Tensor rows = idx + torch::arange(B, idx.options()).mul_(N).unsqueeze(1);
  return x.reshape({B * N, C}).index_select(0, rows.reshape(-1)).view({B, idx.size(1), C});
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Tokens of the less important half whose Key vector is most similar (cosine) to a token of the
// more important half: returns a mask [B, N] of the `r` tokens to drop. order: I′ scores [B, N].
torch::Tensor similar_tokens(const torch::Tensor& order, const torch::Tensor& keys, int64_t r,
                             int64_t specials) {
  const int64_t B = order.size(0), N = order.size(1), n = N - specials;
  const int64_t upper = (n + 1) / 2, lower = n - upper;
  torch::Tensor sorted = at::argsort(order.narrow(1, specials, n), 1, true) + specials;  // [B, n]
  torch::Tensor hi = sorted.narrow(1, 0, upper), lo = sorted.narrow(1, upper, lower);
  torch::Tensor k = keys / at::linalg_vector_norm(keys, 2, {-1}, true).clamp_min(1e-12);
  torch::Tensor sim = at::matmul(gather_tokens(k, lo), gather_tokens(k, hi).transpose(1, 2));
  torch::Tensor best = std::get<0>(sim.max(-1));  // [B, lower]
  torch::Tensor pick = std::get<1>(best.topk(r, -1));
  torch::Tensor drop = torch::zeros({B, N}, torch::kBool);
  drop.scatter_(1, lo.gather(1, pick), true);
  return drop;
}

}  // namespace

torch::Tensor select_tokens(const TokenPruneStep& step, const torch::Tensor& probs,
                            const torch::Tensor& keys, int64_t specials) {
  const int64_t B = probs.size(0), N = probs.size(-1);
  PARE_CHECK(step.keep > specials && step.keep <= N, "token pruning at layer ", step.layer,
             ": keep ", step.keep, " must be in (", specials, ", ", N, "]");
  torch::Tensor score;
  if (step.method == "random") {
    auto gen = at::detail::createCPUGenerator(step.seed * 1000003ULL + uint64_t(step.layer));
    score = at::rand({B, N}, gen, probs.scalar_type());
  } else if (step.method == "cls-attention") {
    score = probs.select(2, 0).mean(1);  // [B, N]
  } else {
    PARE_CHECK(step.method == "zero-tprune", "token pruning: unknown method '", step.method, "'");
    const int64_t r = std::min(step.similar, (N - specials) / 2);
    if (r == 0) {
      score = combine_heads_rms(pagerank(probs, step.iterations, step.uniform_init, nullptr));
    } else {
      // I′ (one iteration) orders the tokens for the S stage; the I stage ranks the survivors.
      // When the S stage drops every token to drop, the I stage has nothing left to decide.
      const bool need_i = r < N - step.keep;
      torch::Tensor first;
      torch::Tensor full = pagerank(probs, need_i ? step.iterations : 1, step.uniform_init, &first);
      torch::Tensor drop = similar_tokens(combine_heads_rms(first), keys, r, specials);
      score = need_i ? combine_heads_rms(full) : torch::zeros({B, N}, probs.options());
      score = score.masked_fill(drop, -kInf);
    }
  }
  score.narrow(1, 0, specials).fill_(kInf);
  torch::Tensor idx = std::get<1>(score.topk(step.keep, 1));
  return std::get<0>(idx.sort(1));
}

int64_t token_selection_macs(const TokenPruneStep& step, int64_t n, int64_t heads, int64_t key_dim,
                             int64_t specials) {
  if (step.method != "zero-tprune" || step.keep >= n) return 0;
  const int64_t r = std::min(step.similar, (n - specials) / 2);
  if (r == 0) return heads * n * n * step.iterations;
  const bool need_i = r < n - step.keep;  // see select_tokens
  const int64_t m = n - specials, upper = (m + 1) / 2, lower = m - upper;
  return heads * n * n * (need_i ? step.iterations : 1) + lower * upper * key_dim;
}

}  // namespace pare
