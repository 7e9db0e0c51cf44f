#include "families/attention.h"

#include <ATen/ATen.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "base/error.h"

// at::parallel_for below is, in LibTorch 1.13, an inline template around #pragma omp parallel:
// without OpenMP it silently runs on one thread (CMakeLists.txt adds it to every target).
#if !defined(_OPENMP)
#error "attention.cpp must be compiled with OpenMP (-fopenmp)"
#endif

// The baseline copy passes 32-byte vectors between always_inline helpers, which GCC warns about
// (the ABI of such calls without AVX) although no such call remains after inlining.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace pare {
namespace {

// The kernels twice: for AVX2+FMA, chosen at run time when the CPU has both, and for the baseline
// instruction set. (GCC's target_clones does not do here: vector types are lowered per function
// before inlining, so helpers shared with a clone would keep the baseline's 128-bit code.)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PARE_ATTENTION_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "families/attention_kernel.inc"
}  // namespace avx2
#pragma GCC pop_options
#endif
namespace baseline {
#include "families/attention_kernel.inc"
}  // namespace baseline

struct Kernels {
  void (*attention_block)(const float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                          float, float*, float*, const float*, float*, float*, float*);
  void (*max_cosine)(const float*, int64_t, int64_t, const int64_t*, int64_t, const int64_t*, int64_t, float*,
                     double*);
};

const Kernels& kernels() {
  static const Kernels k = [] {
#if defined(PARE_ATTENTION_AVX2)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return Kernels{avx2::attention_block, avx2::max_cosine};
#endif
    return Kernels{baseline::attention_block, baseline::max_cosine};
  }();
  return k;
}

void check_shapes(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t heads) {
  PARE_ASSERT(q.dim() == 3 && k.sizes() == q.sizes() && v.sizes() == q.sizes(),
              "attention: q, k, v must be [B, T, heads·head_dim] alike, got ", q.sizes(), ", ", k.sizes(),
              ", ", v.sizes());
  PARE_ASSERT(heads > 0 && q.size(2) % heads == 0, "attention: width ", q.size(2), " is not a multiple of ",
              heads, " heads");
}

// The same computation as LibTorch ops (autograd, other dtypes and devices).
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  int64_t heads, const AttentionOutputs& out) {
  const int64_t B = q.size(0), T = q.size(1), C = q.size(2), hd = C / heads;
  auto split = [&](const torch::Tensor& t) { return t.view({B, T, heads, hd}).transpose(1, 2); };
  torch::Tensor p = at::softmax(at::matmul(split(q), split(k).transpose(-2, -1)) / std::sqrt(double(hd)), -1);
  if (out.steer_probs) out.steer_probs(p);
  if (out.probs) *out.probs = p;
  if (out.column_sums) *out.column_sums = at::matmul(out.query_weights.to(p.scalar_type()), p);
  return at::matmul(p, split(v)).transpose(1, 2).reshape({B, T, C});
}

}  // namespace

bool fused_attention_applies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                             int64_t heads) {
  if (heads <= 0 || q.dim() != 3 || k.sizes() != q.sizes() || v.sizes() != q.sizes() || q.size(2) % heads != 0)
    return false;
  const bool grad = at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  for (const torch::Tensor* t : {&q, &k, &v})
    if (t->scalar_type() != at::kFloat || !t->device().is_cpu() || t->stride(2) != 1) return false;
  return !grad && q.size(1) > 0 && (q.size(2) / heads) % 8 == 0;
}

torch::Tensor multi_head_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   int64_t heads, const AttentionOutputs& out) {
  check_shapes(q, k, v, heads);
  PARE_ASSERT(!out.column_sums || (out.query_weights.dim() == 1 && out.query_weights.size(0) == q.size(1)),
              "attention: column sums need query weights [", q.size(1), "], got ",
              out.query_weights.defined() ? concat(out.query_weights.sizes()) : std::string("none"));
  if (out.steer_probs || !fused_attention_applies(q, k, v, heads)) return reference_attention(q, k, v, heads, out);
  const auto block = kernels().attention_block;
  // Rows of q, k and v must share one stride (ld): contiguous, or views of one fused Q|K|V
  // product (ld = its width); the sequences may be spaced apart.
  const bool shared_ld = k.stride(1) == q.stride(1) && v.stride(1) == q.stride(1) && q.stride(1) >= q.size(2);
  const torch::Tensor qc = shared_ld ? q : q.contiguous();
  const torch::Tensor kc = shared_ld ? k : k.contiguous();
  const torch::Tensor vc = shared_ld ? v : v.contiguous();
  const int64_t ld = qc.stride(1);
  const int64_t B = q.size(0), T = q.size(1), C = q.size(2), hd = C / heads, Tp = (T + 7) / 8 * 8;
  torch::Tensor ctx = at::empty({B, T, C}, q.options());
  float *pp = nullptr, *sp = nullptr;
  if (out.probs) {
    *out.probs = at::empty({B, heads, T, T}, q.options());
    pp = out.probs->data_ptr<float>();
  }
  torch::Tensor w;
  if (out.column_sums) {
    *out.column_sums = at::empty({B, heads, T}, q.options());
    sp = out.column_sums->data_ptr<float>();
    w = out.query_weights.to(at::kFloat).contiguous();
  }
  const float* wp = w.defined() ? w.data_ptr<float>() : nullptr;
  const float *qp = qc.data_ptr<float>(), *kp = kc.data_ptr<float>(), *vp = vc.data_ptr<float>();
  const int64_t qs = qc.stride(0), ks = kc.stride(0), vs = vc.stride(0);
  float* cp = ctx.data_ptr<float>();
  const float scale = float(1.0 / std::sqrt(double(hd)));
  at::parallel_for(0, B * heads, 1, [&](int64_t from, int64_t to) {
    std::vector<float> kt(hd * Tp), s(5 * Tp);  // per thread, reused over its blocks
    for (int64_t bh = from; bh < to; ++bh) {
      const int64_t b = bh / heads, h = bh % heads;
      block(qp + b * qs + h * hd, kp + b * ks + h * hd, vp + b * vs + h * hd, T, ld, C, hd, scale,
            cp + b * T * C + h * hd, pp ? pp + bh * T * T : nullptr, wp, sp ? sp + bh * T : nullptr,
            kt.data(), s.data());
    }
  });
  return ctx;
}

torch::Tensor ranged_multi_head_attention(const torch::Tensor& q, const torch::Tensor& k,
                                          const torch::Tensor& v, const torch::Tensor& starts,
                                          const torch::Tensor& lengths, int64_t heads) {
  PARE_ASSERT(q.dim() == 2 && k.sizes() == q.sizes() && v.sizes() == q.sizes(),
              "attention: q, k, v must be [N, heads·head_dim] alike, got ", q.sizes(), ", ", k.sizes(),
              ", ", v.sizes());
  PARE_ASSERT(heads > 0 && q.size(1) % heads == 0, "attention: width ", q.size(1),
              " is not a multiple of ", heads, " heads");
  PARE_ASSERT(starts.dim() == 1 && lengths.sizes() == starts.sizes() && starts.scalar_type() == at::kLong &&
                  lengths.scalar_type() == at::kLong && starts.device().is_cpu() && lengths.device().is_cpu(),
              "attention: starts and lengths must be int64 CPU [B] alike");
  const torch::Tensor st = starts.contiguous(), ln = lengths.contiguous();
  const int64_t B = st.size(0), N = q.size(0), C = q.size(1), hd = C / heads;
  const int64_t *sp = st.data_ptr<int64_t>(), *lp = ln.data_ptr<int64_t>();
  int64_t T_max = 0;
  for (int64_t b = 0; b < B; ++b) {
    PARE_ASSERT(lp[b] >= 1 && sp[b] >= 0 && sp[b] + lp[b] <= N, "attention: sequence ", b, " rows [", sp[b],
                ", ", sp[b] + lp[b], ") outside [0, ", N, ")");
    T_max = std::max(T_max, lp[b]);
  }
  const bool grad = at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  bool fused = !grad && hd % 8 == 0;
  for (const torch::Tensor* t : {&q, &k, &v})
    fused = fused && t->scalar_type() == at::kFloat && t->device().is_cpu() && t->stride(1) == 1;
  if (!fused) {
    std::vector<torch::Tensor> parts;
    torch::Tensor ctx = at::zeros({N, C}, q.options());
    for (int64_t b = 0; b < B; ++b) {
      auto rows = [&](const torch::Tensor& t) { return t.narrow(0, sp[b], lp[b]).unsqueeze(0); };
      ctx = ctx.index_copy(0, at::arange(sp[b], sp[b] + lp[b], st.options()),
                           reference_attention(rows(q), rows(k), rows(v), heads, {}).squeeze(0));
    }
    return ctx;
  }
  const bool shared_ld = k.stride(0) == q.stride(0) && v.stride(0) == q.stride(0) && q.stride(0) >= C;
  const torch::Tensor qc = shared_ld ? q : q.contiguous();
  const torch::Tensor kc = shared_ld ? k : k.contiguous();
  const torch::Tensor vc = shared_ld ? v : v.contiguous();
  const int64_t ld = qc.stride(0), Tp = (T_max + 7) / 8 * 8;
  // Rows outside every range (padding) are zeroed; the ranges are written by the kernel.
  int64_t covered = 0;
  for (int64_t b = 0; b < B; ++b) covered += lp[b];
  torch::Tensor ctx = covered == N ? at::empty({N, C}, q.options()) : at::zeros({N, C}, q.options());
  const auto block = kernels().attention_block;
  const float *qp = qc.data_ptr<float>(), *kp = kc.data_ptr<float>(), *vp = vc.data_ptr<float>();
  float* cp = ctx.data_ptr<float>();
  const float scale = float(1.0 / std::sqrt(double(hd)));
  at::parallel_for(0, B * heads, 1, [&](int64_t from, int64_t to) {
    std::vector<float> kt(hd * Tp), s(5 * Tp);
    for (int64_t bh = from; bh < to; ++bh) {
      const int64_t b = bh / heads, h = bh % heads, off = sp[b] * ld + h * hd;
      block(qp + off, kp + off, vp + off, lp[b], ld, C, hd, scale, cp + sp[b] * C + h * hd, nullptr, nullptr,
            nullptr, kt.data(), s.data());
    }
  });
  return ctx;
}

void max_cosine_similarity(const float* K, int64_t n, int64_t kd, const int64_t* lo, int64_t nlo,
                           const int64_t* hi, int64_t nhi, float* scratch, double* best) {
  PARE_ASSERT(nlo >= 0 && nhi >= 1 && nhi <= n && kd % 8 == 0, "max_cosine_similarity: n ", n, ", nlo ", nlo,
              ", nhi ", nhi, ", kd ", kd, " (expected 1 <= nhi <= n and kd a multiple of 8)");
  if (nlo > 0) kernels().max_cosine(K, n, kd, lo, nlo, hi, nhi, scratch, best);
}

}  // namespace pare
