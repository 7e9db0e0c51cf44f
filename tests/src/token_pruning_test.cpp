// Zero-TPrune token selection (src/families/token_pruning.h) against hand-computed cases: weighted
// PageRank on a 3x3 attention graph (1 and 2 iterations, both initialisations), the variance head
// filter and RMS aggregation, the three selection methods (CLS kept, ascending indices, the
// S stage dropping a token whose Key duplicates a more important token's), and the selection
// cost formula. Every expected value is written out here, never produced by pare; the one
// randomised test compares against a second implementation written as tensor ops in this file.
#include <cmath>
#include <limits>
#include <set>

#include "test_util.h"
#include "families/token_pruning.h"

namespace pare {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

torch::Tensor f64(std::vector<double> v, std::vector<int64_t> shape) {
  return torch::tensor(v, torch::kFloat64).reshape(shape);
}

std::vector<int64_t> row(const torch::Tensor& idx, int64_t b) {
  torch::Tensor r = idx[b].contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

// The 3x3 attention graph of the hand case: row i = query i, column j = key j, rows sum to 1.
const double A[3][3] = {{0.5, 0.25, 0.25}, {0.2, 0.6, 0.2}, {0.1, 0.1, 0.8}};

torch::Tensor hand_graph() {
  return f64({A[0][0], A[0][1], A[0][2], A[1][0], A[1][1], A[1][2], A[2][0], A[2][1], A[2][2]},
             {1, 1, 3, 3});
}

// ---- weighted PageRank --------------------------------------------------------------------------

// scores [1, 1, 3] of the hand case against (s_0, s_1, s_2).
void expect_scores(const torch::Tensor& s, const std::vector<double>& want, double tol = 1e-14) {
  ASSERT_EQ(s.sizes(), (std::vector<int64_t>{1, 1, 3}));
  for (int64_t j = 0; j < 3; ++j) EXPECT_NEAR(s[0][0][j].item<double>(), want[j], tol) << "token " << j;
}

TEST(WeightedPageRank, UniformInitOneAndTwoIterationsByHand) {
  // s0 = (1/3, 1/3, 1/3); s1_j = Σ_i s0_i·A_ij; s2_j = Σ_i s1_i·A_ij.
  const double s0 = 1.0 / 3.0;
  const double s1_0 = s0 * 0.5 + s0 * 0.2 + s0 * 0.1;   // 0.8/3
  const double s1_1 = s0 * 0.25 + s0 * 0.6 + s0 * 0.1;  // 0.95/3
  const double s1_2 = s0 * 0.25 + s0 * 0.2 + s0 * 0.8;  // 1.25/3
  const double s2_0 = s1_0 * 0.5 + s1_1 * 0.2 + s1_2 * 0.1;
  const double s2_1 = s1_0 * 0.25 + s1_1 * 0.6 + s1_2 * 0.1;
  const double s2_2 = s1_0 * 0.25 + s1_1 * 0.2 + s1_2 * 0.8;
  EXPECT_NEAR(s1_0, 0.8 / 3, 1e-15);  // the arithmetic above, once more in closed form

  torch::Tensor one = weighted_pagerank(hand_graph(), 1, /*uniform_init=*/true);
  expect_scores(one, {s1_0, s1_1, s1_2});

  torch::Tensor two = weighted_pagerank(hand_graph(), 2, true);
  expect_scores(two, {s2_0, s2_1, s2_2});
  // Not a fixed point yet: the second iteration moved the scores.
  EXPECT_GT(std::abs(s2_2 - s1_2), 1e-3);
}

TEST(WeightedPageRank, ClsWeightedInitOneAndTwoIterationsByHand) {
  // s0 ∝ (√3, 1, 1), normalised to sum 1: CLS starts at √N× the others.
  const double r3 = std::sqrt(3.0), z = r3 + 2.0;
  const double a = r3 / z, b = 1.0 / z;  // s0 = (a, b, b)
  const double s1_0 = a * 0.5 + b * 0.2 + b * 0.1;
  const double s1_1 = a * 0.25 + b * 0.6 + b * 0.1;
  const double s1_2 = a * 0.25 + b * 0.2 + b * 0.8;
  const double s2_0 = s1_0 * 0.5 + s1_1 * 0.2 + s1_2 * 0.1;
  const double s2_1 = s1_0 * 0.25 + s1_1 * 0.6 + s1_2 * 0.1;
  const double s2_2 = s1_0 * 0.25 + s1_1 * 0.2 + s1_2 * 0.8;

  torch::Tensor zero = weighted_pagerank(hand_graph(), 0, false);  // the start itself
  expect_scores(zero, {a, b, b}, 1e-15);

  torch::Tensor one = weighted_pagerank(hand_graph(), 1, false);
  expect_scores(one, {s1_0, s1_1, s1_2});
  torch::Tensor two = weighted_pagerank(hand_graph(), 2, false);
  expect_scores(two, {s2_0, s2_1, s2_2});
  // The initialisation matters: CLS scores higher than with the uniform start.
  EXPECT_GT(s1_0, 0.8 / 3 + 1e-3);
  EXPECT_GT(one[0][0][0].item<double>(),
            weighted_pagerank(hand_graph(), 1, true)[0][0][0].item<double>() + 1e-3);
}

TEST(WeightedPageRank, HeadsAndBatchesAreIndependent) {
  // Head 1 is the identity graph (every token attends to itself): the start is kept as it is.
  torch::Tensor p = torch::zeros({2, 2, 3, 3}, torch::kFloat64);
  p[0][0] = hand_graph()[0][0];
  p[0][1] = torch::eye(3, torch::kFloat64);
  p[1][0] = torch::eye(3, torch::kFloat64);
  p[1][1] = hand_graph()[0][0].t().contiguous() / hand_graph()[0][0].t().sum(-1, true);
  torch::Tensor s = weighted_pagerank(p, 1, true);
  ASSERT_EQ(s.sizes(), (std::vector<int64_t>{2, 2, 3}));
  const double t = 1.0 / 3.0;
  EXPECT_NEAR(s[0][0][2].item<double>(), 1.25 / 3, 1e-14);
  for (int j = 0; j < 3; ++j) {
    EXPECT_NEAR(s[0][1][j].item<double>(), t, 1e-15);
    EXPECT_NEAR(s[1][0][j].item<double>(), t, 1e-15);
  }
  // Batch 1 head 1: Aᵀ row-normalised; rows of Aᵀ sum to (0.8, 0.95, 1.25).
  const double c0 = (0.5 / 0.8 + 0.25 / 0.95 + 0.25 / 1.25) * t;  // column 0 of the normalised Aᵀ
  EXPECT_NEAR(s[1][1][0].item<double>(), c0, 1e-14);
}

TEST(WeightedPageRank, PreservesTheSumOfEachHead) {
  torch::manual_seed(7);
  torch::Tensor p = at::softmax(3.0 * torch::randn({3, 4, 9, 9}, torch::kFloat64), -1);
  for (int64_t it : {1, 2, 5, 30})
    for (bool u : {true, false}) {
      torch::Tensor s = weighted_pagerank(p, it, u);
      ASSERT_EQ(s.sizes(), (std::vector<int64_t>{3, 4, 9}));
      EXPECT_LT((s.sum(-1) - 1.0).abs().max().item<double>(), 1e-12) << it << " " << u;
      EXPECT_GE(s.min().item<double>(), 0.0);
    }
}

TEST(WeightedPageRank, RejectsNonSquareProbabilities) {
  EXPECT_INPUT_ERROR(weighted_pagerank(torch::ones({1, 1, 3, 4}, torch::kFloat64), 1, true),
                     HasSubstr("[B, H, N, N]"));
}

// ---- head filter and RMS aggregation ------------------------------------------------------------

// Four heads over N = 4 tokens. Variance of N·s (population):
//   head 0: N·s = (1, 1, 1, 1)          var 0                          → below 0.01, excluded
//   head 1: N·s = (1.6, 0.8, 0.8, 0.8)  var (0.36 + 3·0.04)/4 = 0.12   → kept
//   head 2: N·s = (0.4, 1.2, 1.2, 1.2)  var (0.36 + 3·0.04)/4 = 0.12   → kept
//   head 3: N·s = (2.8, 0.4, 0.4, 0.4)  var (3.24 + 3·0.36)/4 = 1.08   → above 0.7, excluded
const double kHeads[4][4] = {{0.25, 0.25, 0.25, 0.25},
                             {0.4, 0.2, 0.2, 0.2},
                             {0.1, 0.3, 0.3, 0.3},
                             {0.7, 0.1, 0.1, 0.1}};

torch::Tensor heads_tensor(const std::vector<int>& which) {
  std::vector<double> v;
  for (int h : which) v.insert(v.end(), kHeads[h], kHeads[h] + 4);
  return f64(v, {1, static_cast<int64_t>(which.size()), 4});
}

TEST(CombineHeadsRms, VarianceFilterThenRootMeanSquareByHand) {
  torch::Tensor r = combine_heads_rms(heads_tensor({0, 1, 2, 3}));
  ASSERT_EQ(r.sizes(), (std::vector<int64_t>{1, 4}));
  // RMS over heads 1 and 2 only.
  EXPECT_NEAR(r[0][0].item<double>(), std::sqrt((0.4 * 0.4 + 0.1 * 0.1) / 2), 1e-15);
  for (int j = 1; j < 4; ++j)
    EXPECT_NEAR(r[0][j].item<double>(), std::sqrt((0.2 * 0.2 + 0.3 * 0.3) / 2), 1e-15);
}

TEST(CombineHeadsRms, WindowBoundsAreParameters) {
  // var_max 2 admits head 3 (var 1.08): RMS over heads 1, 2, 3.
  torch::Tensor r = combine_heads_rms(heads_tensor({0, 1, 2, 3}), 0.01, 2.0);
  EXPECT_NEAR(r[0][0].item<double>(), std::sqrt((0.16 + 0.01 + 0.49) / 3), 1e-15);
  EXPECT_NEAR(r[0][1].item<double>(), std::sqrt((0.04 + 0.09 + 0.01) / 3), 1e-15);
  // var_min 0.2 excludes heads 1 and 2 (0.12) and keeps only head 3 with var_max 2: its scores.
  r = combine_heads_rms(heads_tensor({0, 1, 2, 3}), 0.2, 2.0);
  EXPECT_NEAR(r[0][0].item<double>(), 0.7, 1e-15);
  EXPECT_NEAR(r[0][3].item<double>(), 0.1, 1e-15);
}

TEST(CombineHeadsRms, AllHeadsFilteredFallsBackToAllHeads) {
  // Heads 0 (var 0) and 3 (var 1.08) both fail the window: both are used.
  torch::Tensor r = combine_heads_rms(heads_tensor({0, 3}));
  EXPECT_NEAR(r[0][0].item<double>(), std::sqrt((0.0625 + 0.49) / 2), 1e-15);
  EXPECT_NEAR(r[0][2].item<double>(), std::sqrt((0.0625 + 0.01) / 2), 1e-15);
}

TEST(CombineHeadsRms, FallbackIsPerBatchRow) {
  // Batch 0: heads (1, 3) → only head 1 passes → its scores. Batch 1: heads (0, 3) → none passes
  // → RMS of both.
  std::vector<double> v;
  for (int h : {1, 3, 0, 3}) v.insert(v.end(), kHeads[h], kHeads[h] + 4);
  torch::Tensor r = combine_heads_rms(f64(v, {2, 2, 4}));
  ASSERT_EQ(r.sizes(), (std::vector<int64_t>{2, 4}));
  EXPECT_NEAR(r[0][0].item<double>(), 0.4, 1e-15);
  EXPECT_NEAR(r[0][1].item<double>(), 0.2, 1e-15);
  EXPECT_NEAR(r[1][0].item<double>(), std::sqrt((0.0625 + 0.49) / 2), 1e-15);
  EXPECT_NEAR(r[1][1].item<double>(), std::sqrt((0.0625 + 0.01) / 2), 1e-15);
}

// ---- select_tokens ------------------------------------------------------------------------------

TokenPruneStep step_of(const std::string& method, int64_t keep, int64_t layer = 0) {
  TokenPruneStep s;
  s.method = method;
  s.keep = keep;
  s.layer = layer;
  return s;
}

// probs [B, 2, 5, 5]: uniform rows except the CLS row, set per batch and head.
torch::Tensor cls_rows(const std::vector<std::vector<std::vector<double>>>& rows) {
  const int64_t B = static_cast<int64_t>(rows.size());
  torch::Tensor p = torch::full({B, 2, 5, 5}, 0.2, torch::kFloat64);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < 2; ++h) p[b][h][0] = torch::tensor(rows[b][h], torch::kFloat64);
  return p;
}

TEST(SelectTokens, ClsAttentionKeepsLargestMeanClsAttentionByHand) {
  // Batch 0: head means over the CLS row, tokens 1..4: (0.10+0.20)/2 = 0.15, (0.40+0.30)/2 = 0.35,
  //          (0.30+0.05)/2 = 0.175, (0.15+0.40)/2 = 0.275. CLS itself only gets 0.05.
  // Batch 1: tokens 1..4: (0.45+0.35)/2 = 0.4, (0.05+0.05)/2 = 0.05, (0.3+0.3)/2 = 0.3,
  //          (0.15+0.25)/2 = 0.2.
  torch::Tensor p = cls_rows({{{0.05, 0.10, 0.40, 0.30, 0.15}, {0.05, 0.20, 0.30, 0.05, 0.40}},
                              {{0.05, 0.45, 0.05, 0.30, 0.15}, {0.05, 0.35, 0.05, 0.30, 0.25}}});
  torch::Tensor keys = torch::zeros({2, 5, 4}, torch::kFloat64);
  torch::Tensor k3 = select_tokens(step_of("cls-attention", 3), p, keys, 1);
  ASSERT_EQ(k3.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(k3.scalar_type(), torch::kInt64);
  EXPECT_EQ(row(k3, 0), (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(row(k3, 1), (std::vector<int64_t>{0, 1, 3}));
  torch::Tensor k4 = select_tokens(step_of("cls-attention", 4), p, keys, 1);
  EXPECT_EQ(row(k4, 0), (std::vector<int64_t>{0, 2, 3, 4}));
  EXPECT_EQ(row(k4, 1), (std::vector<int64_t>{0, 1, 3, 4}));
  torch::Tensor k2 = select_tokens(step_of("cls-attention", 2), p, keys, 1);
  EXPECT_EQ(row(k2, 0), (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(row(k2, 1), (std::vector<int64_t>{0, 1}));
  // Keeping every token is the identity.
  EXPECT_EQ(row(select_tokens(step_of("cls-attention", 5), p, keys, 1), 0),
            (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

TEST(SelectTokens, SpecialTokensAlwaysKeptAndIndicesAscending) {
  torch::manual_seed(3);
  const int64_t N = 20;
  for (int64_t specials : {1, 2})
    for (const char* method : {"zero-tprune", "cls-attention", "random"}) {
      // Attention that ignores the special tokens entirely: they would rank last on their own.
      torch::Tensor logits = torch::randn({3, 2, N, N}, torch::kFloat64);
      logits.narrow(3, 0, specials).fill_(-1e9);
      torch::Tensor p = at::softmax(logits, -1);
      torch::Tensor keys = torch::randn({3, N, 8}, torch::kFloat64);
      TokenPruneStep st = step_of(method, 7);
      st.iterations = 3;
      st.similar = std::string(method) == "zero-tprune" ? 4 : 0;
      torch::Tensor idx = select_tokens(st, p, keys, specials);
      ASSERT_EQ(idx.sizes(), (std::vector<int64_t>{3, 7})) << method;
      for (int64_t b = 0; b < 3; ++b) {
        auto r = row(idx, b);
        for (int64_t s = 0; s < specials; ++s) EXPECT_EQ(r[s], s) << method << " batch " << b;
        for (size_t i = 1; i < r.size(); ++i) EXPECT_LT(r[i - 1], r[i]) << method;
        EXPECT_GE(r.front(), 0);
        EXPECT_LT(r.back(), N);
      }
    }
}

// PageRank's start vector and the CLS row's one-hot, written out.
TEST(SelectTokens, SummaryQueryWeightsByHand) {
  TokenPruneStep zt = step_of("zero-tprune", 3);
  zt.iterations = 1;
  auto values = [](const torch::Tensor& t) { return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel()); };
  // CLS at √4 = 2 times the others: 2/5, 1/5, 1/5, 1/5.
  EXPECT_EQ(values(summary_query_weights(zt, 4, 1)), (std::vector<float>{0.4f, 0.2f, 0.2f, 0.2f}));
  zt.uniform_init = true;
  EXPECT_EQ(values(summary_query_weights(zt, 4, 1)), (std::vector<float>{0.25f, 0.25f, 0.25f, 0.25f}));
  EXPECT_EQ(values(summary_query_weights(step_of("cls-attention", 3), 4, 1)),
            (std::vector<float>{1.0f, 0.0f, 0.0f, 0.0f}));
  EXPECT_EQ(selection_reads(zt), SelectionReads::kSummary);
  zt.iterations = 3;
  EXPECT_EQ(selection_reads(zt), SelectionReads::kProbs);
  EXPECT_EQ(selection_reads(step_of("attention", 3)), SelectionReads::kProbs);
  EXPECT_EQ(selection_reads(step_of("random", 3)), SelectionReads::kNothing);
}

// A step given the weighted query sum of the probabilities (what the attention kernel forms)
// chooses exactly what it chooses from the probabilities; random needs no attention at all; a
// step that needs the probabilities refuses a summary.
TEST(SelectTokens, SummaryGivesTheSameChoiceAsTheProbabilities) {
  torch::manual_seed(17);
  const int64_t B = 3, H = 4, N = 20;
  torch::Tensor p = at::softmax(2 * torch::randn({B, H, N, N}, torch::kFloat64), -1);
  torch::Tensor keys = torch::randn({B, N, 16}, torch::kFloat64);
  auto summary_of = [&](const torch::Tensor& w) {  // Σ_i w_i p[b, h, i, :]
    torch::Tensor sum = torch::zeros({B, H, N}, torch::kFloat64);
    for (int64_t i = 0; i < N; ++i) sum += w[i].item<double>() * p.select(2, i);
    return sum;
  };
  for (int64_t specials : {1, 2})
    for (int64_t similar : {0, 4})
      for (bool uniform : {false, true}) {
        TokenPruneStep st = step_of("zero-tprune", 9);
        st.iterations = 1, st.similar = similar, st.uniform_init = uniform;
        torch::Tensor summary = summary_of(summary_query_weights(st, N, specials));
        EXPECT_TRUE(torch::equal(select_tokens(st, summary, keys, specials), select_tokens(st, p, keys, specials)))
            << "specials " << specials << " similar " << similar << " uniform " << uniform;
      }
  TokenPruneStep cls = step_of("cls-attention", 9);
  EXPECT_TRUE(torch::equal(select_tokens(cls, summary_of(summary_query_weights(cls, N, 1)), keys, 1),
                           select_tokens(cls, p, keys, 1)));
  TokenPruneStep rnd = step_of("random", 9);
  EXPECT_TRUE(torch::equal(select_tokens(rnd, torch::Tensor(), keys, 1), select_tokens(rnd, p, keys, 1)));
  TokenPruneStep three = step_of("zero-tprune", 9);
  three.iterations = 3;
  EXPECT_INPUT_ERROR(select_tokens(three, p.sum(2), keys, 1), HasSubstr("expected probs [B, H, N, N]"));
  EXPECT_INPUT_ERROR(select_tokens(cls, torch::Tensor(), keys, 1), HasSubstr("got none"));
}

TEST(SelectTokens, RandomIsSeededByStepSeedAndLayer) {
  const int64_t N = 50;
  torch::Tensor p = torch::full({2, 2, N, N}, 1.0 / N, torch::kFloat64);
  torch::Tensor keys = torch::zeros({2, N, 4}, torch::kFloat64);
  TokenPruneStep st = step_of("random", 10, 1);
  st.seed = 42;
  torch::Tensor a = select_tokens(st, p, keys, 1);
  torch::Tensor again = select_tokens(st, p, keys, 1);
  // Global RNG state must not matter.
  torch::manual_seed(999);
  (void)torch::rand({100});
  torch::Tensor after_global = select_tokens(st, p, keys, 1);
  EXPECT_TRUE(torch::equal(a, again));
  EXPECT_TRUE(torch::equal(a, after_global));
  TokenPruneStep other_seed = st;
  other_seed.seed = 43;
  EXPECT_FALSE(torch::equal(a, select_tokens(other_seed, p, keys, 1)));
  TokenPruneStep other_layer = st;
  other_layer.layer = 2;
  EXPECT_FALSE(torch::equal(a, select_tokens(other_layer, p, keys, 1)));
  // Both rows keep CLS and 9 distinct other tokens, and the two rows of the batch differ (each
  // sequence gets its own draw).
  for (int64_t b = 0; b < 2; ++b) {
    auto r = row(a, b);
    EXPECT_EQ(r[0], 0);
    EXPECT_EQ(std::set<int64_t>(r.begin(), r.end()).size(), 10u);
  }
  EXPECT_FALSE(torch::equal(a[0], a[1]));
}

// Zero-TPrune with one head whose rows are all equal to w: any PageRank start gives s = w after
// one or more iterations, so both I′ and I rank tokens 1..4 as 1 > 2 > 3 > 4 (w = 0.3, 0.25,
// 0.15, 0.1). Upper half {1, 2}, lower half {3, 4}. Keeping 4 of 5 drops one token.
struct SStageCase {
  torch::Tensor probs = torch::tensor({0.2, 0.3, 0.25, 0.15, 0.1}, torch::kFloat64)
                            .expand({1, 1, 5, 5})
                            .contiguous();
  // Keys: tokens 1, 2, 4 orthogonal; token 3's key is 2 × token 1's (cosine 1, not equal norm).
  torch::Tensor keys = f64({1, 0, 0, 0, 0,   //
                            0, 1, 0, 0, 0,   //
                            0, 0, 1, 0, 0,   //
                            0, 2, 0, 0, 0,   //
                            0, 0, 0, 0, 1},  //
                           {1, 5, 5});
};

TEST(SelectTokens, ZeroTPruneWithoutSStageIsPageRankTopK) {
  SStageCase c;
  TokenPruneStep st = step_of("zero-tprune", 4);
  st.iterations = 5;
  EXPECT_EQ(row(select_tokens(st, c.probs, c.keys, 1), 0), (std::vector<int64_t>{0, 1, 2, 3}));
  st.keep = 3;
  EXPECT_EQ(row(select_tokens(st, c.probs, c.keys, 1), 0), (std::vector<int64_t>{0, 1, 2}));
  st.keep = 2;
  EXPECT_EQ(row(select_tokens(st, c.probs, c.keys, 1), 0), (std::vector<int64_t>{0, 1}));
}

TEST(SelectTokens, ZeroTPruneSStageDropsTheTokenDuplicatingAMoreImportantKey) {
  SStageCase c;
  TokenPruneStep st = step_of("zero-tprune", 4);
  st.iterations = 5;
  st.similar = 1;
  // PageRank top-3 would keep token 3 (and drop 4); token 3's key duplicates token 1's, so the
  // S stage drops 3 and the I stage fills the place with 4.
  EXPECT_EQ(row(select_tokens(st, c.probs, c.keys, 1), 0), (std::vector<int64_t>{0, 1, 2, 4}));
  // The same for the CLS-weighted start (the rows are equal, the ranking does not change).
  st.uniform_init = true;
  EXPECT_EQ(row(select_tokens(st, c.probs, c.keys, 1), 0), (std::vector<int64_t>{0, 1, 2, 4}));

  // Control: move the duplicate to token 4 (token 3 now orthogonal): the S stage drops 4, the
  // result equals plain top-k. It is the similarity that decides, not the position.
  torch::Tensor keys2 = c.keys.clone();
  keys2[0][3] = torch::tensor({0.0, 0.0, 0.0, 1.0, 0.0}, torch::kFloat64);
  keys2[0][4] = torch::tensor({0.0, 0.0, 3.0, 0.0, 0.0}, torch::kFloat64);  // duplicates token 2
  EXPECT_EQ(row(select_tokens(st, c.probs, keys2, 1), 0), (std::vector<int64_t>{0, 1, 2, 3}));

  // Only lower-half tokens are candidates: a duplicate pair inside the upper half (1 and 2) does
  // not drop either of them.
  torch::Tensor keys3 = c.keys.clone();
  keys3[0][2] = keys3[0][1];
  keys3[0][3] = torch::tensor({0.0, 0.0, 0.0, 1.0, 0.0}, torch::kFloat64);
  keys3[0][4] = torch::tensor({-1.0, 0.0, 0.0, 0.0, 0.0}, torch::kFloat64);
  // sim(3, upper) = 0, sim(4, upper) = 0: a tie between 3 and 4, but 1 and 2 must stay.
  auto r = row(select_tokens(st, c.probs, keys3, 1), 0);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0], 0);
  EXPECT_EQ(r[1], 1);
  EXPECT_EQ(r[2], 2);
}

TEST(SelectTokens, KeepOutsideSpecialsToTokensIsInputError) {
  SStageCase c;
  for (int64_t keep : {0, 1, 6}) {
    SCOPED_TRACE(keep);
    TokenPruneStep st = step_of("zero-tprune", keep, 3);
    EXPECT_INPUT_ERROR(select_tokens(st, c.probs, c.keys, 1),
                       AllOf(HasSubstr("layer 3"), HasSubstr("keep " + std::to_string(keep)),
                             HasSubstr("(1, 5]")));
  }
  // Two special tokens: keep 2 keeps nothing else.
  EXPECT_INPUT_ERROR(select_tokens(step_of("cls-attention", 2), c.probs, c.keys, 2),
                     AllOf(HasSubstr("keep 2"), HasSubstr("(2, 5]")));
}

TEST(SelectTokens, UnknownMethodIsInputError) {
  SStageCase c;
  EXPECT_INPUT_ERROR(select_tokens(step_of("pagerank", 3), c.probs, c.keys, 1),
                     AllOf(HasSubstr("method"), HasSubstr("'pagerank'")));
}

// Graph rows of different lengths, padded to 4: row 0 has 4 valid tokens, row 1 has 3 (its 4th
// position is padding, given huge attention to show it is never counted or kept).
TEST(SelectTokensRagged, AttentionBaselineByHandIgnoresPadding) {
  torch::Tensor p = torch::zeros({2, 1, 4, 4}, torch::kFloat64);
  // Row 0: every query attends 0.1, 0.4, 0.2, 0.3 → column means the same; keep 2 → {1, 3}.
  for (int64_t i = 0; i < 4; ++i) p[0][0][i] = torch::tensor({0.1, 0.4, 0.2, 0.3}, torch::kFloat64);
  // Row 1 (3 valid): queries 0..2 attend (0.5, 0.2, 0.3), (0.1, 0.1, 0.8), (0.6, 0.3, 0.1):
  // column means 1.2/3, 0.6/3, 1.2/3 → ties 0 and 2 above 1; keep 2 → {0, 2}. The padding query
  // row 3 and column 3 would change this if they were counted.
  p[1][0][0] = torch::tensor({0.5, 0.2, 0.3, 0.0}, torch::kFloat64);
  p[1][0][1] = torch::tensor({0.1, 0.1, 0.8, 0.0}, torch::kFloat64);
  p[1][0][2] = torch::tensor({0.6, 0.3, 0.1, 0.0}, torch::kFloat64);
  p[1][0][3] = torch::tensor({0.0, 1.0, 0.0, 0.0}, torch::kFloat64);
  torch::Tensor keys = torch::zeros({2, 4, 2}, torch::kFloat64);
  TokenPruneStep st;
  st.method = "attention";
  std::vector<int64_t> kept = select_tokens_ragged(st, p, keys, {4, 3}, {2, 2}, {0, 0});
  EXPECT_EQ(kept, (std::vector<int64_t>{1, 3, 0, 2}));
  // Keep everything: identity per row.
  kept = select_tokens_ragged(st, p, keys, {4, 3}, {4, 3}, {0, 0});
  EXPECT_EQ(kept, (std::vector<int64_t>{0, 1, 2, 3, 0, 1, 2}));
  // Zero-TPrune from a uniform start: one PageRank iteration is the column mean too, so the
  // same nodes (one head: the variance filter falls back to it).
  st.method = "zero-tprune";
  st.iterations = 1;
  EXPECT_EQ(select_tokens_ragged(st, p, keys, {4, 3}, {2, 2}, {0, 0}),
            (std::vector<int64_t>{1, 3, 0, 2}));
  // cls-attention has no meaning without a CLS token; counts out of range are errors.
  st.method = "cls-attention";
  EXPECT_INPUT_ERROR(select_tokens_ragged(st, p, keys, {4, 3}, {2, 2}, {0, 0}),
                     HasSubstr("graphs have no CLS token"));
  st.method = "attention";
  EXPECT_INPUT_ERROR(select_tokens_ragged(st, p, keys, {4, 5}, {2, 2}, {0, 0}),
                     HasSubstr("row 1: n 5"));
  EXPECT_INPUT_ERROR(select_tokens_ragged(st, p, keys, {4, 3}, {2, 0}, {0, 0}),
                     HasSubstr("keep 0"));
}

// ---- against a second implementation ------------------------------------------------------------

// Zero-TPrune's selection for one sequence written as plain tensor ops (matmuls, sorts), the way
// METHODS.md states it, independently of token_pruning.cpp's row loops: probs [H, n, n], keys
// [n, C], `specials` leading tokens kept. Returns the kept positions, ascending.
std::vector<int64_t> reference_selection(const torch::Tensor& probs, const torch::Tensor& keys,
                                         int64_t specials, int64_t keep, int64_t r,
                                         int64_t iterations, bool uniform) {
  const int64_t H = probs.size(0), n = probs.size(1);
  auto pagerank = [&](int64_t its) {  // [H, n]
    torch::Tensor s = torch::ones({H, 1, n}, torch::kFloat64);
    if (!uniform) s.select(2, 0).fill_(std::sqrt(double(n)));
    s = s / s.sum(-1, true);
    for (int64_t i = 0; i < its; ++i) s = torch::bmm(s, probs);
    return s.squeeze(1);
  };
  auto combine = [&](const torch::Tensor& s) {  // variance window [0.01, 0.7], then RMS
    torch::Tensor var = (s * double(n)).var(-1, /*unbiased=*/false);
    torch::Tensor use = (var >= 0.01).logical_and(var <= 0.7);
    if (use.sum().item<int64_t>() == 0) use.fill_(true);
    return s.index({use}).pow(2).mean(0).sqrt();
  };
  auto order = [](const torch::Tensor& v) {  // descending; ties: lower position first
    return std::get<1>(v.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  };
  const bool need_i = r == 0 || r < n - keep;
  torch::Tensor score =
      need_i ? combine(pagerank(iterations)) : torch::zeros({n}, torch::kFloat64);
  if (r > 0) {
    torch::Tensor first = combine(pagerank(1));
    torch::Tensor ranked = order(first.slice(0, specials)) + specials;
    const int64_t m = n - specials, upper = (m + 1) / 2;
    torch::Tensor unit = keys / keys.norm(2, -1, true);
    torch::Tensor hi = unit.index_select(0, ranked.slice(0, 0, upper));
    torch::Tensor lo_pos = ranked.slice(0, upper);
    torch::Tensor best = std::get<0>(unit.index_select(0, lo_pos).matmul(hi.t()).max(1));
    torch::Tensor drop = lo_pos.index_select(0, order(best).slice(0, 0, r));
    score.index_fill_(0, drop, -std::numeric_limits<double>::infinity());
  }
  score.slice(0, 0, specials).fill_(std::numeric_limits<double>::infinity());
  torch::Tensor kept = std::get<0>(order(score).slice(0, 0, keep).sort());
  return std::vector<int64_t>(kept.data_ptr<int64_t>(), kept.data_ptr<int64_t>() + keep);
}

// Random attention and keys for 37 sequences (split unevenly over 2 threads), the I stage alone,
// the S stage together with the I stage, and the S stage alone; then graph rows of 5 to 20
// valid tokens padded to 20, from a uniform start.
TEST(SelectTokens, ZeroTPruneMatchesATensorOpReferenceOnARandomBatch) {
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  torch::manual_seed(11);
  const int64_t B = 37, H = 3, N = 20, C = 8, keep = 12;
  torch::Tensor probs = torch::softmax(torch::randn({B, H, N, N}, torch::kFloat64) * 2, -1);
  torch::Tensor keys = torch::randn({B, N, C}, torch::kFloat64);
  for (int64_t r : {0, 4, 8}) {
    TokenPruneStep st = step_of("zero-tprune", keep);
    st.iterations = 3;
    st.similar = r;
    torch::Tensor idx = select_tokens(st, probs, keys, 1);
    for (int64_t b = 0; b < B; ++b)
      EXPECT_EQ(row(idx, b), reference_selection(probs[b], keys[b], 1, keep, r, 3, false))
          << "r " << r << ", sequence " << b;
  }
  std::vector<int64_t> n(B), k(B), s(B);
  torch::Tensor padded = torch::zeros_like(probs);
  for (int64_t b = 0; b < B; ++b) {
    n[b] = 5 + b % 16, k[b] = (n[b] + 1) / 2, s[b] = (n[b] - k[b]) / 2;
    padded[b].slice(1, 0, n[b]).slice(2, 0, n[b]) =
        torch::softmax(torch::randn({H, n[b], n[b]}, torch::kFloat64), -1);
  }
  TokenPruneStep st = step_of("zero-tprune", 0);
  st.iterations = 2;
  const std::vector<int64_t> kept = select_tokens_ragged(st, padded, keys, n, k, s);
  size_t at = 0;
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<int64_t> want = reference_selection(
        padded[b].slice(1, 0, n[b]).slice(2, 0, n[b]), keys[b].slice(0, 0, n[b]), 0, k[b], s[b], 2,
        true);
    ASSERT_LE(at + want.size(), kept.size());
    EXPECT_EQ(std::vector<int64_t>(kept.begin() + at, kept.begin() + at + want.size()), want)
        << "graph row " << b;
    at += want.size();
  }
  EXPECT_EQ(at, kept.size());
  at::set_num_threads(threads);
}

TEST(GraphKeep, RoundsAndKeepsAtLeastOneNode) {
  TokenPruneStep st;
  st.keep_rate = 0.5;
  st.similar_rate = 0.5;
  EXPECT_EQ(graph_keep(st, 10), 5);
  EXPECT_EQ(graph_keep(st, 7), 4);  // 3.5 rounds half away from zero
  EXPECT_EQ(graph_keep(st, 1), 1);
  st.keep_rate = 0.1;
  EXPECT_EQ(graph_keep(st, 4), 1);  // round(0.4) = 0 → at least one
  EXPECT_EQ(graph_similar(st, 4), 2);  // round(0.5 · 3) = 2 ≤ 4 / 2
  EXPECT_EQ(graph_similar(st, 20), 9);  // keep 2, dropped 18, half of them
}

TEST(GatherTokens, PicksRowsPerSequence) {
  torch::Tensor x = torch::arange(2 * 4 * 3, torch::kFloat64).reshape({2, 4, 3});
  torch::Tensor idx = torch::tensor({0, 2, 0, 3}, torch::kInt64).reshape({2, 2});
  torch::Tensor g = gather_tokens(x, idx);
  ASSERT_EQ(g.sizes(), (std::vector<int64_t>{2, 2, 3}));
  // x[b, t, c] = 12 b + 3 t + c.
  EXPECT_EQ(g[0][1][0].item<double>(), 6.0);   // b 0, t 2
  EXPECT_EQ(g[1][0][2].item<double>(), 14.0);  // b 1, t 0, c 2
  EXPECT_EQ(g[1][1][1].item<double>(), 22.0);  // b 1, t 3, c 1
}

// y += x[b, idx[b, i], :] on the loop path (float32 and float64, no autograd) and on the LibTorch
// path (autograd), against sums written out here; mismatched shapes refused.
TEST(GatherTokens, AddGatheredTokensInPlace) {
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    torch::NoGradGuard ng;
    torch::Tensor x = torch::arange(2 * 4 * 3, dtype).reshape({2, 4, 3});  // x[b, t, c] = 12 b + 3 t + c
    torch::Tensor idx = torch::tensor({0, 2, 3, 1}, torch::kInt64).reshape({2, 2});
    torch::Tensor y = torch::full({2, 2, 3}, 100.0, dtype);
    const void* before = y.data_ptr();
    torch::Tensor& r = add_gathered_tokens_(y, x, idx);
    EXPECT_EQ(r.data_ptr(), before);  // in place
    EXPECT_EQ(y[0][1][0].item<double>(), 106.0);  // b 0, t 2, c 0: 100 + 6
    EXPECT_EQ(y[1][0][2].item<double>(), 123.0);  // b 1, t 3, c 2: 100 + 12 + 9 + 2
    EXPECT_EQ(y[1][1][1].item<double>(), 116.0);  // b 1, t 1, c 1: 100 + 12 + 3 + 1
    EXPECT_EQ(y[0][0][2].item<double>(), 102.0);  // b 0, t 0, c 2
    EXPECT_THROW(add_gathered_tokens_(y, x, idx.narrow(1, 0, 1)), InternalError);
    torch::Tensor bad = torch::tensor({0, 4, 1, 1}, torch::kInt64).reshape({2, 2});  // 4 ≥ N
    EXPECT_THROW(add_gathered_tokens_(y, x, bad), InternalError);
  }
  // With autograd the sum is a LibTorch op: gradients reach x through the gather.
  torch::Tensor x = torch::arange(2 * 4 * 3, torch::kFloat64).reshape({2, 4, 3}).requires_grad_();
  torch::Tensor idx = torch::tensor({0, 2, 0, 0}, torch::kInt64).reshape({2, 2});
  torch::Tensor y = torch::zeros({2, 2, 3}, torch::kFloat64);
  add_gathered_tokens_(y, x, idx).sum().backward();
  EXPECT_EQ(x.grad()[0][2][1].item<double>(), 1.0);
  EXPECT_EQ(x.grad()[1][0][1].item<double>(), 2.0);  // picked twice
  EXPECT_EQ(x.grad()[0][1][0].item<double>(), 0.0);  // not picked
}

// ---- selection cost -----------------------------------------------------------------------------

TEST(TokenSelectionMacs, MatchesTheFormulaByHand) {
  // n = 17 tokens (CLS + 16), 2 heads, key width 16.
  TokenPruneStep st = step_of("zero-tprune", 9);
  st.iterations = 5;
  // I stage only: heads·n²·iterations = 2·289·5.
  EXPECT_EQ(token_selection_macs(st, 17, 2, 16, 1), 2 * 289 * 5);
  EXPECT_EQ(2 * 289 * 5, 2890);
  // S stage (r > 0): the I′ scores are the first of the PageRank iterations (shared), plus
  // lower·upper·key_dim similarity products; 16 non-special tokens split 8 / 8. r = 3 < 8 dropped
  // tokens, so the I stage still runs all 5 iterations.
  st.similar = 3;
  EXPECT_EQ(token_selection_macs(st, 17, 2, 16, 1), 2 * 289 * 5 + 8 * 8 * 16);
  // Odd split: n = 18 → 17 non-special tokens, upper 9, lower 8 (9 dropped, r = 3).
  EXPECT_EQ(token_selection_macs(st, 18, 2, 16, 1), 2 * 324 * 5 + 8 * 9 * 16);
  // r capped at half the non-special tokens (8) = every dropped token (17 − 9): the S stage decides
  // alone, so only the one I′ iteration runs.
  st.similar = 100;
  EXPECT_EQ(token_selection_macs(st, 17, 2, 16, 1), 2 * 289 * 1 + 8 * 8 * 16);
  // Baselines cost nothing; a step that keeps every token runs no selection.
  EXPECT_EQ(token_selection_macs(step_of("random", 9), 17, 2, 16, 1), 0);
  EXPECT_EQ(token_selection_macs(step_of("cls-attention", 9), 17, 2, 16, 1), 0);
  st.keep = 17;
  EXPECT_EQ(token_selection_macs(st, 17, 2, 16, 1), 0);
}

}  // namespace
}  // namespace pare
