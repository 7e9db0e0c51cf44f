#include "families/token_pruning.h"

#include <ATen/ATen.h>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

#include "families/attention.h"
#include "base/error.h"

// at::parallel_for below is, in LibTorch 1.13, an inline template around #pragma omp parallel:
// without OpenMP it silently runs on one thread (CMakeLists.txt adds it to every target).
#if !defined(_OPENMP)
#error "token_pruning.cpp must be compiled with OpenMP (-fopenmp)"
#endif

namespace pare {

// The selection runs one sequence at a time on raw arrays, in one at::parallel_for over the batch
// (two threads at --threads 2; see the OpenMP check above). A step touches B·H·N²
// probabilities a handful of times; as a chain of tensor ops (broadcast products, argsort, gathers,
// a batched matmul, masks, topk) it cost ~3.7 ms per ViT step at batch 256, and a batched matmul of
// 256 small similarity blocks alone cost ~1 ms. Row functions take the number of valid tokens n and
// the leading dimension ld (≥ n) so padded rows can be used.
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Cache lines a caller wants loaded while PageRank reads the probabilities: one is requested per
// row of P read in the first iteration, the rest at the end (a burst of requests stalls).
struct Prefetch {
  const char* at = nullptr;
  int64_t lines = 0;
  int64_t next = 0;
  void one() {
    if (next < lines) __builtin_prefetch(at + 64 * next++);
  }
  void rest() {
    while (next < lines) one();
  }
};

// PageRank's start vector s [n]: CLS (token 0) at √n× the others unless uniform_init; sum 1.
template <typename T>
void pagerank_start(int64_t n, bool uniform_init, T* s) {
  const double cls = uniform_init ? 1.0 : std::sqrt(double(n));
  const double total = cls + double(n - 1);
  s[0] = T(cls / total);
  for (int64_t j = 1; j < n; ++j) s[j] = T(1.0 / total);
}

// Per-head PageRank scores s [H, n] (row stride n) of one sequence: P [H, ld, ld], valid block
// [n, n]. `first` (optional, [H, n]) receives the scores after one iteration (I′).
template <typename T>
void pagerank_row(const T* P, int64_t H, int64_t n, int64_t ld, int64_t iterations,
                  bool uniform_init, T* s, T* first, std::vector<T>& tmp, Prefetch pf = {}) {
  tmp.resize(n);
  for (int64_t h = 0; h < H; ++h) {
    T* sh = s + h * n;
    const T* Ph = P + h * ld * ld;
    pagerank_start(n, uniform_init, sh);
    for (int64_t it = 0; it < iterations; ++it) {
      std::fill(tmp.begin(), tmp.end(), T(0));
      for (int64_t i = 0; i < n; ++i) {  // s_j = Σ_i s_i A_ij, row by row (contiguous)
        const T si = sh[i];
        const T* row = Ph + i * ld;
        for (int64_t j = 0; j < n; ++j) tmp[j] += si * row[j];
        pf.one();
      }
      std::copy(tmp.begin(), tmp.end(), sh);
      if (it == 0 && first) std::copy(sh, sh + n, first + h * n);
    }
    if (iterations == 0 && first) std::copy(sh, sh + n, first + h * n);
  }
  pf.rest();
}

// Root-mean-square over the heads whose variance of n·s lies in [var_min, var_max] (all heads
// when none does): s [H, n] → out [n].
template <typename T>
void combine_row(const T* s, int64_t H, int64_t n, double var_min, double var_max, T* out) {
  std::vector<char> use(H);
  int64_t used = 0;
  for (int64_t h = 0; h < H; ++h) {
    double mean = 0, sq = 0;
    for (int64_t j = 0; j < n; ++j) mean += double(n) * s[h * n + j];
    mean /= double(n);
    for (int64_t j = 0; j < n; ++j) {
      const double d = double(n) * s[h * n + j] - mean;
      sq += d * d;
    }
    const double var = sq / double(n);
    use[h] = var >= var_min && var <= var_max;
    used += use[h];
  }
  if (used == 0) std::fill(use.begin(), use.end(), 1), used = H;
  for (int64_t j = 0; j < n; ++j) {
    double acc = 0;
    for (int64_t h = 0; h < H; ++h)
      if (use[h]) acc += double(s[h * n + j]) * double(s[h * n + j]);
    out[j] = T(std::sqrt(acc / double(used)));
  }
}

// Ranking: higher score first, ties by the lower position, NaN ranked as −∞. Sorted as pairs
// (−score, position) in ascending order: contiguous keys, no indirection in the comparisons.
using Ranked = std::pair<double, int64_t>;
template <typename T>
void rank_keys(const T* score, int64_t from, int64_t to, std::vector<Ranked>& r) {
  r.resize(to - from);
  for (int64_t j = from; j < to; ++j) {
    const double x = double(score[j]);
    r[j - from] = {std::isnan(x) ? kInf : -x, j};
  }
}

// Positions from..to-1 into o, sorted by rank.
template <typename T>
void by_score(const T* score, int64_t from, int64_t to, std::vector<Ranked>& r, std::vector<int64_t>& o) {
  rank_keys(score, from, to, r);
  std::sort(r.begin(), r.end());
  o.resize(r.size());
  for (size_t i = 0; i < r.size(); ++i) o[i] = r[i].second;
}

// The k best-ranked positions of 0..n-1 into o[0..k), in no particular order.
template <typename T>
void best_k(const T* score, int64_t n, int64_t k, std::vector<Ranked>& r, std::vector<int64_t>& o) {
  rank_keys(score, 0, n, r);
  if (k < n) std::nth_element(r.begin(), r.begin() + k, r.end());
  o.resize(k);
  for (int64_t i = 0; i < k; ++i) o[i] = r[i].second;
}

// The S stage's similarity of one row: best[a] = max over h < nhi of cos(K[lo[a]], K[hi[h]]) for
// its Key vectors K [n, kd]. float32 with kd a multiple of 8 runs the vector kernel of
// attention.cpp (most of a step's arithmetic); the rest (float64 checks, odd widths) this.
template <typename T>
void max_cosine_rows(const T* K, int64_t n, int64_t kd, const int64_t* lo, int64_t nlo, const int64_t* hi,
                     int64_t nhi, std::vector<float>& scratch, double* best) {
  if constexpr (std::is_same_v<T, float>) {
    if (kd % 8 == 0) {
      scratch.resize(n + nhi + 3);
      max_cosine_similarity(K, n, kd, lo, nlo, hi, nhi, scratch.data(), best);
      return;
    }
  }
  std::vector<double> norm(n);
  for (int64_t j = 0; j < n; ++j) {
    double sq = 0;
    for (int64_t c = 0; c < kd; ++c) sq += double(K[j * kd + c]) * double(K[j * kd + c]);
    norm[j] = std::max(std::sqrt(sq), 1e-12);
  }
  for (int64_t a = 0; a < nlo; ++a) {
    const T* x = K + lo[a] * kd;
    double m = -kInf;
    for (int64_t h = 0; h < nhi; ++h) {
      const T* y = K + hi[h] * kd;
      double dot = 0;
      for (int64_t c = 0; c < kd; ++c) dot += double(x[c]) * double(y[c]);
      m = std::max(m, dot / (norm[lo[a]] * norm[hi[h]]));
    }
    best[a] = m;
  }
}

// One row of a selection: n valid tokens (of ld), keep of them, r by the S stage.
struct Row {
  int64_t n = 0, keep = 0, r = 0;
};

// Per-thread scratch of select_rows, reused across rows.
template <typename T>
struct RowScratch {
  std::vector<T> full, first, tmp, comb;
  std::vector<int64_t> sorted, pick, order;
  std::vector<Ranked> ranked;
  std::vector<float> scratch;
  std::vector<double> score, best;
};

// The selection of one row b: the scores (PageRank and head combination, or a baseline's), for
// zero-tprune with r > 0 the S stage (tokens ordered by I′ and split into halves; each less
// important token's best Key-vector cosine similarity to the more important half; the r most
// similar dropped), then the top `keep` scores. Writes the kept positions, ascending, to out.
// Pb is the row's probabilities [H, ld, ld], or with `summary` their weighted sum over the
// queries [H, ld] (see selection_reads), or null for random.
template <typename T>
void select_row(const TokenPruneStep& step, const T* Pb, bool summary, int64_t H, int64_t ld, const T* Kb,
                int64_t kd, int64_t specials, const Row& w, const T* random, RowScratch<T>& z,
                int64_t* out) {
  const bool uniform = step.uniform_init || specials == 0;  // no CLS: a uniform start
  std::vector<double>& sc = z.score;
  sc.assign(w.n, 0.0);
  if (step.method == "random") {
    for (int64_t j = 0; j < w.n; ++j) sc[j] = random[j];
  } else if (step.method == "cls-attention") {
    const int64_t head = summary ? ld : ld * ld;  // the CLS row of a head, or its summary (w = e₀)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < w.n; ++j) sc[j] += double(Pb[h * head + j]) / double(H);
  } else if (step.method == "attention") {
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < w.n; ++i)
        for (int64_t j = 0; j < w.n; ++j) sc[j] += double(Pb[(h * ld + i) * ld + j]) / double(H * w.n);
  } else {
    // I′ (one iteration) orders the tokens for the S stage; the I stage ranks the survivors.
    // When the S stage drops every token to drop, the I stage has nothing left to decide.
    const bool need_i = w.r == 0 || w.r < w.n - w.keep;
    // The S stage reads this row's Key vectors in importance order; they are rarely still in
    // cache, so they are loaded while PageRank reads the probabilities.
    Prefetch keys;
    if (w.r > 0) keys = {reinterpret_cast<const char*>(Kb), (w.n * kd * int64_t(sizeof(T)) + 63) / 64};
    z.full.resize(H * w.n), z.first.resize(H * w.n), z.comb.resize(w.n);
    const T* first = z.first.data();  // I′: the scores after one iteration
    if (summary) {  // one iteration, already done: I′ = I = Aᵀw
      for (int64_t h = 0; h < H; ++h) std::copy(Pb + h * ld, Pb + h * ld + w.n, z.full.data() + h * w.n);
      first = z.full.data();
    } else {
      pagerank_row(Pb, H, w.n, ld, need_i ? step.iterations : 1, uniform, z.full.data(),
                   w.r > 0 ? z.first.data() : nullptr, z.tmp, keys);
    }
    if (need_i) {
      combine_row(z.full.data(), H, w.n, 0.01, 0.7, z.comb.data());
      for (int64_t j = 0; j < w.n; ++j) sc[j] = z.comb[j];
    }
    if (w.r > 0) {
      // I′ combined over heads (with a summary I′ = I, already combined above when need_i).
      if (!(need_i && first == z.full.data())) combine_row(first, H, w.n, 0.01, 0.7, z.comb.data());
      const std::vector<int64_t>& sorted = z.sorted;
      by_score(z.comb.data(), specials, w.n, z.ranked, z.sorted);
      const int64_t m = w.n - specials, upper = (m + 1) / 2, lower = m - upper;
      z.best.resize(lower);
      max_cosine_rows(Kb, w.n, kd, sorted.data() + upper, lower, sorted.data(), upper, z.scratch, z.best.data());
      best_k(z.best.data(), lower, w.r, z.ranked, z.pick);
      for (int64_t i = 0; i < w.r; ++i) sc[sorted[upper + z.pick[i]]] = -kInf;
    }
  }
  for (int64_t j = 0; j < specials; ++j) sc[j] = kInf;
  best_k(sc.data(), w.n, w.keep, z.ranked, z.order);
  std::sort(z.order.begin(), z.order.begin() + w.keep);
  std::copy(z.order.begin(), z.order.begin() + w.keep, out);
}

// select_row for every row of the batch, in parallel; row b's kept positions go to out + offset[b].
template <typename T>
void select_rows(const TokenPruneStep& step, const T* P, bool summary, int64_t H, int64_t ld, const T* K,
                 int64_t kd, int64_t specials, const std::vector<Row>& rows, const T* random,
                 int64_t* out, const std::vector<int64_t>& offset) {
  const int64_t B = static_cast<int64_t>(rows.size());
  const int64_t per_row = summary ? H * ld : H * ld * ld;
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    RowScratch<T> z;
    for (int64_t b = b0; b < b1; ++b)
      select_row(step, P ? P + b * per_row : P, summary, H, ld, K + b * ld * kd, kd, specials, rows[b],
                 random ? random + b * ld : nullptr, z, out + offset[b]);
  });
}

}  // namespace

torch::Tensor weighted_pagerank(const torch::Tensor& probs, int64_t iterations, bool uniform_init) {
  PARE_CHECK(probs.dim() == 4 && probs.size(2) == probs.size(3),
             "weighted_pagerank: expected attention probabilities [B, H, N, N], got ", probs.sizes());
  const torch::Tensor p = probs.contiguous();
  const int64_t B = p.size(0), H = p.size(1), N = p.size(2);
  torch::Tensor out = torch::empty({B, H, N}, p.options());
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "weighted_pagerank", [&] {
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> tmp;
      for (int64_t b = b0; b < b1; ++b)
        pagerank_row(p.data_ptr<scalar_t>() + b * H * N * N, H, N, N, iterations, uniform_init,
                     out.data_ptr<scalar_t>() + b * H * N, static_cast<scalar_t*>(nullptr), tmp);
    });
  });
  return out;
}

torch::Tensor combine_heads_rms(const torch::Tensor& scores, double var_min, double var_max) {
  const torch::Tensor s = scores.contiguous();
  const int64_t B = s.size(0), H = s.size(1), N = s.size(2);
  torch::Tensor out = torch::empty({B, N}, s.options());
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "combine_heads_rms", [&] {
    for (int64_t b = 0; b < B; ++b)
      combine_row(s.data_ptr<scalar_t>() + b * H * N, H, N, var_min, var_max,
                  out.data_ptr<scalar_t>() + b * N);
  });
  return out;
}

torch::Tensor gather_tokens(const torch::Tensor& x, const torch::Tensor& idx) {
  // Rows of the flattened [B·N, C] tensor: one index_select (faster than gather on an expanded
  // index).
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2);
  torch::Tensor rows = idx + torch::arange(B, idx.options()).mul_(N).unsqueeze(1);
  return x.reshape({B * N, C}).index_select(0, rows.reshape(-1)).view({B, idx.size(1), C});
}

torch::Tensor& add_gathered_tokens_(torch::Tensor& y, const torch::Tensor& x, const torch::Tensor& idx) {
  PARE_ASSERT(x.dim() == 3 && idx.dim() == 2 && idx.size(0) == x.size(0) && y.dim() == 3 &&
                  y.size(0) == x.size(0) && y.size(1) == idx.size(1) && y.size(2) == x.size(2),
              "add_gathered_tokens_: expected y [B, k, C], x [B, N, C], idx [B, k], got ", y.sizes(), ", ",
              x.sizes(), ", ", idx.sizes());
  const bool grad = at::GradMode::is_enabled() && (x.requires_grad() || y.requires_grad());
  if (grad || !x.device().is_cpu() || !y.device().is_cpu() || x.scalar_type() != y.scalar_type() || !y.is_contiguous() ||
      !at::isFloatingType(x.scalar_type()) || x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16)
    return y.add_(gather_tokens(x, idx));
  const torch::Tensor xc = x.contiguous();
  const torch::Tensor ic = idx.to(at::kLong).contiguous();
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2), k = idx.size(1);
  const int64_t* ip = ic.data_ptr<int64_t>();
  for (int64_t i = 0; i < B * k; ++i)
    PARE_ASSERT(ip[i] >= 0 && ip[i] < N, "add_gathered_tokens_: index ", ip[i], " outside [0, ", N, ")");
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "add_gathered_tokens_", [&] {
    const scalar_t* xp = xc.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    at::parallel_for(0, B * k, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* src = xp + ((r / k) * N + ip[r]) * C;
        scalar_t* dst = yp + r * C;
        for (int64_t c = 0; c < C; ++c) dst[c] += src[c];
      }
    });
  });
  return y;
}

namespace {

void check_method(const TokenPruneStep& step, bool graph) {
  PARE_CHECK(step.method == "zero-tprune" || step.method == "random" ||
                 step.method == "attention" || (!graph && step.method == "cls-attention"),
             "token pruning: unknown method '", step.method, "' (expected zero-tprune, random, ",
             graph ? "or attention; graphs have no CLS token" : "cls-attention or attention", ")");
}

// Runs select_rows for `attention` (probs [B, H, N, N], a summary [B, H, N] or undefined: see
// select_tokens) and keys [B, N, C]; returns the flat kept positions.
std::vector<int64_t> run_selection(const TokenPruneStep& step, const torch::Tensor& attention,
                                   const torch::Tensor& keys, int64_t specials,
                                   const std::vector<Row>& rows) {
  PARE_CHECK(keys.dim() == 3, "token pruning: expected keys [B, N, C], got ", keys.sizes());
  const int64_t B = keys.size(0), N = keys.size(1);
  const SelectionReads reads = selection_reads(step);
  const bool probs = attention.defined() && attention.dim() == 4 && attention.size(2) == N &&
                     attention.size(3) == N;
  const bool summary = attention.defined() && attention.dim() == 3 && attention.size(2) == N;
  PARE_CHECK((probs || (summary && reads == SelectionReads::kSummary) ||
              (!attention.defined() && reads == SelectionReads::kNothing)) &&
                 (!attention.defined() || attention.size(0) == B),
             "token pruning (", step.method, "): expected probs [B, H, N, N]",
             reads == SelectionReads::kSummary ? " or their summary [B, H, N]" : "",
             reads == SelectionReads::kNothing ? " or none" : "", " with keys [B, N, C], got ",
             attention.defined() ? concat(attention.sizes()) : std::string("none"), " and ", keys.sizes());
  const at::ScalarType dtype = attention.defined() ? attention.scalar_type() : keys.scalar_type();
  const torch::Tensor p = attention.defined() ? attention.contiguous() : attention;
  const torch::Tensor k = keys.to(dtype).contiguous();
  const int64_t H = attention.defined() ? attention.size(1) : 0;
  torch::Tensor random;
  if (step.method == "random") {
    auto gen = at::detail::createCPUGenerator(step.seed * 1000003ULL + uint64_t(step.layer));
    random = at::rand({B, N}, gen, dtype);
  }
  std::vector<int64_t> offset(B + 1, 0);
  for (int64_t b = 0; b < B; ++b) offset[b + 1] = offset[b] + rows[b].keep;
  std::vector<int64_t> out(offset[B]);
  AT_DISPATCH_FLOATING_TYPES(dtype, "select_tokens", [&] {
    select_rows(step, p.defined() ? p.data_ptr<scalar_t>() : nullptr, summary, H, N, k.data_ptr<scalar_t>(),
                k.size(2), specials, rows, random.defined() ? random.data_ptr<scalar_t>() : nullptr,
                out.data(), offset);
  });
  return out;
}

}  // namespace

SelectionReads selection_reads(const TokenPruneStep& step) {
  if (step.method == "random" || step.method == "learned") return SelectionReads::kNothing;
  if (step.method == "cls-attention" || (step.method == "zero-tprune" && step.iterations == 1))
    return SelectionReads::kSummary;
  return SelectionReads::kProbs;
}

torch::Tensor summary_query_weights(const TokenPruneStep& step, int64_t n, int64_t specials) {
  PARE_ASSERT(selection_reads(step) == SelectionReads::kSummary, "no summary for ", step.method);
  torch::Tensor w = torch::zeros({n}, torch::kFloat32);
  if (step.method == "cls-attention")
    w[0] = 1.0f;
  else
    pagerank_start(n, step.uniform_init || specials == 0, w.data_ptr<float>());
  return w;
}

torch::Tensor select_tokens(const TokenPruneStep& step, const torch::Tensor& attention,
                            const torch::Tensor& keys, int64_t specials) {
  PARE_CHECK(keys.dim() == 3, "token pruning: expected keys [B, N, C], got ", keys.sizes());
  const int64_t B = keys.size(0), N = keys.size(1);
  PARE_CHECK(step.keep > specials && step.keep <= N, "token pruning at layer ", step.layer,
             ": keep ", step.keep, " must be in (", specials, ", ", N, "]");
  check_method(step, false);
  const Row w{N, step.keep, step.method == "zero-tprune" ? std::min(step.similar, (N - specials) / 2) : 0};
  std::vector<int64_t> flat = run_selection(step, attention, keys, specials, std::vector<Row>(B, w));
  return torch::tensor(flat, torch::kInt64).view({B, step.keep});
}

std::vector<int64_t> select_tokens_ragged(const TokenPruneStep& step, const torch::Tensor& probs,
                                          const torch::Tensor& keys, const std::vector<int64_t>& n,
                                          const std::vector<int64_t>& keep,
                                          const std::vector<int64_t>& r) {
  const int64_t B = probs.size(0), N = probs.size(-1);
  PARE_CHECK(int64_t(n.size()) == B && int64_t(keep.size()) == B && int64_t(r.size()) == B,
             "token pruning: expected ", B, " row lengths, keep counts and S-stage counts");
  check_method(step, true);
  std::vector<Row> rows(B);
  for (int64_t b = 0; b < B; ++b) {
    PARE_CHECK(n[b] >= 1 && n[b] <= N && keep[b] >= 1 && keep[b] <= n[b] && r[b] >= 0 &&
                   r[b] <= std::min(n[b] - keep[b], n[b] / 2),
               "token pruning at layer ", step.layer, ", row ", b, ": n ", n[b], ", keep ", keep[b],
               ", r ", r[b], " (expected 1 <= keep <= n <= ", N, ", r <= min(n - keep, n / 2))");
    rows[b] = {n[b], keep[b], step.method == "zero-tprune" ? r[b] : 0};
  }
  return run_selection(step, probs, keys, 0, rows);
}

torch::Tensor topk_positions(const torch::Tensor& scores, int64_t k) {
  PARE_CHECK(scores.dim() == 2 && k >= 0 && k <= scores.size(1), "token pruning: expected scores [R, n] ",
             "and 0 <= k <= n, got ", scores.sizes(), " and k = ", k);
  // A stable sort by descending score puts ties in position order; the first k, re-sorted.
  const torch::Tensor order = std::get<1>(scores.detach().to(torch::kFloat64).sort(
      /*stable=*/true, /*dim=*/1, /*descending=*/true));
  return std::get<0>(order.narrow(1, 0, k).sort(1));
}

torch::Tensor mask_positions(const torch::Tensor& mask, int64_t k) {
  PARE_CHECK(mask.dim() == 2, "token pruning: expected a keep mask [R, n], got ", mask.sizes());
  const torch::Tensor on = mask.detach() > 0.5;
  PARE_ASSERT((on.sum(1) == k).all().item<bool>(), "token keep mask: every row must keep ", k);
  // nonzero() lists the ones row by row, columns ascending.
  return on.nonzero().select(1, 1).reshape({mask.size(0), k});
}

int64_t graph_keep(const TokenPruneStep& step, int64_t n) {
  return std::clamp<int64_t>(std::llround(step.keep_rate * double(n)), 1, std::max<int64_t>(n, 1));
}

int64_t graph_similar(const TokenPruneStep& step, int64_t n) {
  const int64_t dropped = n - graph_keep(step, n);
  return std::min<int64_t>(std::llround(step.similar_rate * double(dropped)), n / 2);
}

int64_t selection_macs(const TokenPruneStep& step, int64_t n, int64_t keep, int64_t r,
                       int64_t heads, int64_t key_dim, int64_t specials) {
  if (keep >= n) return 0;
  if (step.method == "attention") return heads * n * n;
  if (step.method != "zero-tprune") return 0;
  if (r == 0) return heads * n * n * step.iterations;
  const bool need_i = r < n - keep;  // see select_rows
  const int64_t m = n - specials, upper = (m + 1) / 2, lower = m - upper;
  return heads * n * n * (need_i ? step.iterations : 1) + lower * upper * key_dim;
}

int64_t token_selection_macs(const TokenPruneStep& step, int64_t n, int64_t heads, int64_t key_dim,
                             int64_t specials) {
  return selection_macs(step, n, step.keep, std::min(step.similar, (n - specials) / 2), heads,
                        key_dim, specials);
}

}  // namespace pare
