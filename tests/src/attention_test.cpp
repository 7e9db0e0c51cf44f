// Multi-head attention (src/families/attention.h): the fused float32 kernel against a second
// implementation written here in float64 (explicit exp, row sums and loops over heads, not
// LibTorch's softmax), at token counts that do and do not fill the kernel's 8-wide vectors, head
// widths of 8 to 64, a near-one-hot softmax, strided inputs, and the LibTorch path it falls back
// to (autograd, float64, head_dim not a multiple of 8).
#include <cmath>

#include "families/attention.h"
#include "test_util.h"

namespace pare {
namespace {

using ::testing::HasSubstr;

// ctx [B, T, H·hd] and probs [B, H, T, T] in float64, one head at a time.
std::pair<torch::Tensor, torch::Tensor> by_hand(const torch::Tensor& q, const torch::Tensor& k,
                                                const torch::Tensor& v, int64_t H) {
  const int64_t B = q.size(0), T = q.size(1), C = q.size(2), hd = C / H;
  torch::Tensor q64 = q.to(torch::kFloat64), k64 = k.to(torch::kFloat64), v64 = v.to(torch::kFloat64);
  torch::Tensor ctx = torch::zeros({B, T, C}, torch::kFloat64), probs = torch::zeros({B, H, T, T}, torch::kFloat64);
  for (int64_t h = 0; h < H; ++h) {
    using torch::indexing::Slice;
    torch::Tensor qh = q64.index({Slice(), Slice(), Slice(h * hd, (h + 1) * hd)});
    torch::Tensor kh = k64.index({Slice(), Slice(), Slice(h * hd, (h + 1) * hd)});
    torch::Tensor vh = v64.index({Slice(), Slice(), Slice(h * hd, (h + 1) * hd)});
    torch::Tensor sc = torch::bmm(qh, kh.transpose(1, 2)) / std::sqrt(double(hd));  // [B, T, T]
    torch::Tensor e = torch::exp(sc - std::get<0>(sc.max(-1, true)));
    torch::Tensor p = e / e.sum(-1, true);
    probs.index_put_({Slice(), h}, p);
    ctx.index_put_({Slice(), Slice(), Slice(h * hd, (h + 1) * hd)}, torch::bmm(p, vh));
  }
  return {ctx, probs};
}

void expect_close(const torch::Tensor& got, const torch::Tensor& want, double tol, const std::string& what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  const double err = (got.to(torch::kFloat64) - want).abs().max().item<double>();
  EXPECT_LE(err, tol) << what << ": max |difference| " << err;
}

AttentionOutputs with_probs(torch::Tensor* probs) {
  AttentionOutputs out;
  out.probs = probs;
  return out;
}

struct Shape {
  int64_t B, T, H, hd;
};

TEST(Attention, FusedKernelMatchesFloat64ByHand) {
  torch::manual_seed(7);
  torch::NoGradGuard ng;
  for (const Shape& s : {Shape{2, 50, 4, 32}, Shape{3, 1, 1, 8}, Shape{2, 7, 2, 16}, Shape{1, 33, 3, 40},
                         Shape{2, 18, 2, 64}, Shape{1, 16, 1, 24}, Shape{1, 130, 2, 8}}) {
    const std::string what = concat("B ", s.B, " T ", s.T, " heads ", s.H, " head_dim ", s.hd);
    torch::Tensor q = torch::randn({s.B, s.T, s.H * s.hd}), k = torch::randn({s.B, s.T, s.H * s.hd}),
                  v = torch::randn({s.B, s.T, s.H * s.hd});
    ASSERT_TRUE(fused_attention_applies(q, k, v, s.H)) << what;
    torch::Tensor probs;
    torch::Tensor ctx = multi_head_attention(q, k, v, s.H, with_probs(&probs));
    auto [ctx64, probs64] = by_hand(q, k, v, s.H);
    expect_close(ctx, ctx64, 2e-6, what + " ctx");
    expect_close(probs, probs64, 1e-6, what + " probs");
    // Without probs asked for: the same ctx.
    EXPECT_TRUE(torch::equal(multi_head_attention(q, k, v, s.H), ctx)) << what;
  }
}

// Column sums Σ_i w_i probs[b, h, i, :] for the query weights token pruning uses, with and without
// the probabilities written, on the kernel and on the LibTorch path (float64).
TEST(Attention, ColumnSumsWeighTheQueries) {
  torch::manual_seed(13);
  torch::NoGradGuard ng;
  for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
    const int64_t B = 3, T = 11, H = 2, C = 32;
    torch::Tensor q = torch::randn({B, T, C}, dtype), k = torch::randn({B, T, C}, dtype),
                  v = torch::randn({B, T, C}, dtype);
    torch::Tensor w = torch::rand({T});
    auto [ctx64, probs64] = by_hand(q, k, v, H);
    torch::Tensor want = torch::zeros({B, H, T}, torch::kFloat64);
    for (int64_t i = 0; i < T; ++i) want += w[i].item<double>() * probs64.select(2, i);
    torch::Tensor sums, probs;
    AttentionOutputs out;
    out.query_weights = w;
    out.column_sums = &sums;
    expect_close(multi_head_attention(q, k, v, H, out), ctx64, 2e-6, "ctx");
    expect_close(sums, want, 2e-6, "column sums");
    out.probs = &probs;
    multi_head_attention(q, k, v, H, out);
    expect_close(sums, want, 2e-6, "column sums with probs");
    expect_close(probs, probs64, 1e-6, "probs with column sums");
  }
  torch::Tensor q = torch::randn({1, 4, 8}), sums;
  AttentionOutputs bad;
  bad.query_weights = torch::ones({5});
  bad.column_sums = &sums;
  EXPECT_THROW(multi_head_attention(q, q, q, 1, bad), InternalError);
}

// Scores of ±hundreds: rows close to one-hot, no overflow, underflowed entries exactly 0 or tiny.
TEST(Attention, LargeScoresGiveAStableSoftmax) {
  torch::manual_seed(3);
  torch::NoGradGuard ng;
  torch::Tensor q = 30 * torch::randn({2, 21, 16}), k = 30 * torch::randn({2, 21, 16}), v = torch::randn({2, 21, 16});
  torch::Tensor probs;
  torch::Tensor ctx = multi_head_attention(q, k, v, 2, with_probs(&probs));
  EXPECT_TRUE(torch::isfinite(ctx).all().item<bool>());
  auto [ctx64, probs64] = by_hand(q, k, v, 2);
  // Scores of magnitude 10² carry float32 rounding of ~10⁻⁵, which e^x passes on to the
  // probabilities: the yardstick is LibTorch's own float32 softmax of the same inputs.
  auto split = [](const torch::Tensor& t) { return t.view({2, 21, 2, 8}).transpose(1, 2); };
  torch::Tensor lt = at::softmax(at::matmul(split(q), split(k).transpose(-2, -1)) / std::sqrt(8.0), -1);
  const double lt_err = (lt.to(torch::kFloat64) - probs64).abs().max().item<double>();
  expect_close(probs, probs64, 4 * lt_err + 1e-6, "probs");
  expect_close(ctx, ctx64, 4 * lt_err * 21 + 1e-5, "ctx");
  EXPECT_GT(probs.max().item<float>(), 0.999f);  // the case is near one-hot
  expect_close(probs.sum(-1), torch::ones({2, 2, 21}, torch::kFloat64), 1e-6, "row sums");
}

// q, k, v as column slices of one [B, T, 3C] projection and a batch-strided view: same values.
TEST(Attention, StridedInputs) {
  torch::manual_seed(5);
  torch::NoGradGuard ng;
  const int64_t B = 3, T = 13, H = 2, C = 32;
  torch::Tensor qkv = torch::randn({B, T, 3 * C});
  using torch::indexing::Slice;
  torch::Tensor q = qkv.index({Slice(), Slice(), Slice(0, C)}), k = qkv.index({Slice(), Slice(), Slice(C, 2 * C)}),
                v = qkv.index({Slice(), Slice(), Slice(2 * C, 3 * C)});
  ASSERT_TRUE(fused_attention_applies(q, k, v, H));
  auto [ctx64, probs64] = by_hand(q, k, v, H);
  expect_close(multi_head_attention(q, k, v, H), ctx64, 2e-6, "column slices");
  torch::Tensor wide = torch::randn({2 * B, T, C});
  torch::Tensor qs = wide.index({Slice(0, 2 * B, 2)});  // every other sequence
  auto [ctx64b, probs64b] = by_hand(qs, qs, qs, H);
  expect_close(multi_head_attention(qs, qs, qs, H), ctx64b, 2e-6, "batch stride");
}

TEST(Attention, FallsBackToLibTorchWhereTheKernelDoesNotApply) {
  torch::manual_seed(11);
  const int64_t B = 2, T = 9, H = 2;
  // Autograd: gradients flow through the LibTorch path.
  torch::Tensor q = torch::randn({B, T, 16}, torch::requires_grad()), k = torch::randn({B, T, 16}),
                v = torch::randn({B, T, 16});
  EXPECT_FALSE(fused_attention_applies(q, k, v, H));
  torch::Tensor ctx = multi_head_attention(q, k, v, H);
  ASSERT_TRUE(ctx.requires_grad());
  ctx.sum().backward();
  ASSERT_TRUE(q.grad().defined());
  {
    torch::NoGradGuard ng;
    EXPECT_TRUE(fused_attention_applies(q, k, v, H));  // no autograd: the kernel takes it
    expect_close(ctx.detach(), by_hand(q, k, v, H).first, 2e-6, "autograd path");
    // float64 and head_dim 6: LibTorch ops, float64 exact to rounding.
    torch::Tensor q64 = torch::randn({B, T, 16}, torch::kFloat64);
    EXPECT_FALSE(fused_attention_applies(q64, q64, q64, H));
    expect_close(multi_head_attention(q64, q64, q64, H), by_hand(q64, q64, q64, H).first, 1e-12, "float64");
    torch::Tensor q6 = torch::randn({B, T, 12});
    EXPECT_FALSE(fused_attention_applies(q6, q6, q6, H));
    torch::Tensor p6;
    expect_close(multi_head_attention(q6, q6, q6, H, with_probs(&p6)), by_hand(q6, q6, q6, H).first, 2e-6, "head_dim 6");
    expect_close(p6, by_hand(q6, q6, q6, H).second, 1e-6, "head_dim 6 probs");
  }
}

// A steering callback sees the probabilities before they weigh the values and may replace them:
// uniform probabilities make every output row the mean of the value rows.
TEST(Attention, SteeredProbabilitiesWeighTheValues) {
  torch::manual_seed(19);
  torch::NoGradGuard ng;
  const int64_t B = 2, T = 6, H = 2, C = 16;
  torch::Tensor q = torch::randn({B, T, C}), k = torch::randn({B, T, C}), v = torch::randn({B, T, C});
  torch::Tensor seen, probs;
  AttentionOutputs out;
  out.probs = &probs;
  out.steer_probs = [&](torch::Tensor& p) {
    seen = p.clone();
    p = torch::full_like(p, 1.0 / T);
  };
  torch::Tensor ctx = multi_head_attention(q, k, v, H, out);
  expect_close(seen, by_hand(q, k, v, H).second, 1e-6, "probabilities before steering");
  expect_close(probs, torch::full({B, H, T, T}, 1.0 / T, torch::kFloat64), 1e-7, "probabilities after");
  expect_close(ctx, v.mean(1, true).expand({B, T, C}).to(torch::kFloat64), 1e-6, "ctx");
}

TEST(Attention, DisagreeingShapesAreRefused) {
  torch::NoGradGuard ng;
  torch::Tensor q = torch::randn({2, 5, 16});
  EXPECT_THROW(multi_head_attention(q, torch::randn({2, 6, 16}), q, 2), InternalError);
  EXPECT_THROW(multi_head_attention(q, q, q, 3), InternalError);  // 16 is not 3 heads × an integer
  EXPECT_THROW(multi_head_attention(q[0], q[0], q[0], 2), InternalError);
  EXPECT_FALSE(fused_attention_applies(q, q, q, 0));
  EXPECT_FALSE(fused_attention_applies(q[0], q[0], q[0], 2));
}

// The S stage's similarity kernel against cosines computed here in float64 with explicit loops:
// row counts that do and do not fill its 2 × 4 blocks, widths 8 to 128, a zero Key vector (its
// norm counts as 1e−12, so its cosines are 0), and repeated rows (cosine 1).
TEST(MaxCosineSimilarity, MatchesFloat64Loops) {
  torch::manual_seed(23);
  struct Case {
    int64_t n, kd, nlo, nhi;
  };
  for (const Case& c : {Case{50, 128, 24, 25}, Case{9, 8, 1, 1}, Case{11, 16, 5, 6}, Case{40, 32, 19, 20},
                        Case{7, 24, 3, 4}, Case{26, 128, 0, 12}}) {
    const std::string what = concat("n ", c.n, " kd ", c.kd, " nlo ", c.nlo, " nhi ", c.nhi);
    torch::Tensor K = torch::randn({c.n, c.kd});
    K[1].zero_();                   // a zero vector
    K[2].copy_(K[3] * 2.5f);        // parallel to another: cosine 1
    std::vector<int64_t> perm(c.n);
    const torch::Tensor r = torch::randperm(c.n, torch::kInt64);
    for (int64_t j = 0; j < c.n; ++j) perm[j] = r[j].item<int64_t>();
    // hi: the first nhi of a random order, lo the next nlo (the S stage's halves are disjoint).
    const std::vector<int64_t> hi(perm.begin(), perm.begin() + c.nhi);
    const std::vector<int64_t> lo(perm.begin() + c.nhi, perm.begin() + c.nhi + c.nlo);
    std::vector<float> scratch(c.n + c.nhi + 3);
    std::vector<double> best(c.nlo, -7.0);
    max_cosine_similarity(K.data_ptr<float>(), c.n, c.kd, lo.data(), c.nlo, hi.data(), c.nhi,
                          scratch.data(), best.data());
    auto acc = K.accessor<float, 2>();
    auto norm = [&](int64_t j) {
      double s = 0;
      for (int64_t d = 0; d < c.kd; ++d) s += double(acc[j][d]) * acc[j][d];
      return std::max(std::sqrt(s), 1e-12);
    };
    for (int64_t a = 0; a < c.nlo; ++a) {
      double want = -2;
      for (int64_t h = 0; h < c.nhi; ++h) {
        double dot = 0;
        for (int64_t d = 0; d < c.kd; ++d) dot += double(acc[lo[a]][d]) * acc[hi[h]][d];
        want = std::max(want, dot / (norm(lo[a]) * norm(hi[h])));
      }
      EXPECT_NEAR(best[a], want, 1e-5) << what << ", row " << a;
    }
  }
}

TEST(MaxCosineSimilarity, RefusesWidthsTheKernelDoesNotTake) {
  std::vector<float> K(5 * 12), scratch(20);
  std::vector<int64_t> lo{0}, hi{1};
  std::vector<double> best(1);
  EXPECT_THROW(max_cosine_similarity(K.data(), 5, 12, lo.data(), 1, hi.data(), 1, scratch.data(), best.data()),
               InternalError);  // 12 is not a multiple of 8
  EXPECT_THROW(max_cosine_similarity(K.data(), 5, 8, lo.data(), 1, hi.data(), 0, scratch.data(), best.data()),
               InternalError);  // no columns to compare with
}

}  // namespace
}  // namespace pare
