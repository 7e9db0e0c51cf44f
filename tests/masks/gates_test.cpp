// The gates of masks/gates.h against their definitions: hard-concrete's expected L0 against the
// closed form of Louizos et al. (2018) eq. 12 computed here and against a Monte Carlo count of its
// own samples, its evaluation value, its bad options; the annealed sigmoid's schedule end points
// and its hard evaluation; straight-through top-k: exactly k kept, padding never kept, no noise at
// evaluation (the top-k of the scores, computed here by sorting), non-zero gradients to the scores
// in training, and a seed that reproduces the training mask.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "gates.h"
#include "test_util.h"

namespace pare::masks {
namespace {

using ::testing::HasSubstr;

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

TEST(HardConcrete, ExpectedL0IsTheClosedFormAndMatchesSamples) {
  HardConcrete g(5, 0.9);
  // Spread log α so the gates differ.
  {
    torch::NoGradGuard ng;
    g.log_alpha.copy_(torch::tensor({-3.0f, -0.5f, 0.0f, 1.0f, 4.0f}));
  }
  const torch::Tensor p = g.expected_open();
  const double beta = 2.0 / 3.0, gamma = -0.1, zeta = 1.1;
  const float la[5] = {-3.0f, -0.5f, 0.0f, 1.0f, 4.0f};
  double sum = 0;
  for (int i = 0; i < 5; ++i) {
    const double ref = sigmoid(la[i] - beta * std::log(-gamma / zeta));  // eq. 12
    EXPECT_NEAR(p[i].item<double>(), ref, 1e-6) << i;
    sum += ref;
  }
  EXPECT_NEAR(g.expected_l0().item<double>(), sum, 1e-5);
  // The share of non-zero samples converges to it (20000 draws: standard error <= 0.0036).
  auto gen = at::detail::createCPUGenerator(7);
  torch::Tensor nonzero = torch::zeros({5}, torch::kDouble);
  const int draws = 20000;
  for (int d = 0; d < draws; ++d) {
    torch::Tensor z = g.sample(gen);
    ASSERT_GE(z.min().item<float>(), 0.0f);
    ASSERT_LE(z.max().item<float>(), 1.0f);
    nonzero += (z > 0).to(torch::kDouble);
  }
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(nonzero[i].item<double>() / draws, p[i].item<double>(), 0.02) << i;
  // Evaluation: clamp(σ(log α)(ζ − γ) + γ, 0, 1), no noise.
  const torch::Tensor det = g.deterministic();
  for (int i = 0; i < 5; ++i)
    EXPECT_NEAR(det[i].item<double>(), std::clamp(sigmoid(la[i]) * (zeta - gamma) + gamma, 0.0, 1.0), 1e-6);
  EXPECT_TRUE(torch::equal(det, g.deterministic()));
  // The penalty is differentiable in log α.
  g.expected_l0().backward();
  ASSERT_TRUE(g.log_alpha.grad().defined());
  EXPECT_GT(g.log_alpha.grad().abs().min().item<float>(), 0.0f);
}

TEST(HardConcrete, InitOpenAndBadOptions) {
  HardConcrete g(3, 0.8);
  EXPECT_NEAR(g.expected_open()[1].item<double>(), 0.8, 1e-6);
  EXPECT_INPUT_ERROR(HardConcrete(0), HasSubstr("at least one gate"));
  EXPECT_INPUT_ERROR(HardConcrete(2, 1.0), HasSubstr("init_open must be in (0, 1)"));
  EXPECT_INPUT_ERROR(HardConcrete(2, 0.5, 2.0 / 3.0, 0.1, 1.1), HasSubstr("gamma < 0"));
}

TEST(AnnealedSigmoid, TemperatureScheduleAndHardEvaluation) {
  AnnealedSigmoid g(3, 0.5, 1.0, 0.01, 100);
  {
    torch::NoGradGuard ng;
    g.scores.copy_(torch::tensor({-0.2f, 0.0f, 0.3f}));
  }
  g.set_step(0);
  EXPECT_DOUBLE_EQ(g.temperature(), 1.0);
  g.set_step(50);
  EXPECT_NEAR(g.temperature(), 0.1, 1e-12);  // geometric: √(1 × 0.01)
  g.set_step(1000);
  EXPECT_NEAR(g.temperature(), 0.01, 1e-12);
  EXPECT_NEAR(g.soft()[2].item<double>(), sigmoid(0.3 / 0.01), 1e-6);
  EXPECT_TRUE(torch::equal(g.deterministic(), torch::tensor({0.0f, 0.0f, 1.0f})));
  EXPECT_INPUT_ERROR(AnnealedSigmoid(2, 1.0, 0.0), HasSubstr("temperatures must be positive"));
}

TEST(StraightThroughTopK, KeepsExactlyKAndNeverPadding) {
  auto gen = at::detail::createCPUGenerator(3);
  torch::Tensor scores = torch::randn({4, 10}, gen).set_requires_grad(true);
  torch::Tensor valid = torch::ones({4, 10}, torch::kBool);
  valid[1].narrow(0, 6, 4).fill_(false);  // row 1 has 6 real entries
  valid[3].fill_(false);                  // row 3 has none
  valid[3][0] = true;
  torch::Tensor k = torch::tensor({3, 8, 0, 2}, torch::kLong);  // row 1 asks for more than it has
  for (bool training : {false, true}) {
    torch::Tensor m = straight_through_topk(scores, valid, k, training, &gen);
    torch::Tensor hard = m.detach();
    EXPECT_TRUE(torch::equal(hard, (hard > 0.5).to(torch::kFloat32))) << "forward value is 0/1";
    EXPECT_EQ(hard[0].sum().item<float>(), 3.0f);
    EXPECT_EQ(hard[1].sum().item<float>(), 6.0f);  // all 6 valid, never the padding
    EXPECT_EQ(hard[2].sum().item<float>(), 0.0f);
    EXPECT_EQ(hard[3].sum().item<float>(), 1.0f);
    EXPECT_EQ((hard * (~valid).to(torch::kFloat32)).sum().item<float>(), 0.0f) << "padding kept";
  }
  // Evaluation: the top-k of the scores, sorted here, and the same every time (no noise).
  torch::Tensor e1 = straight_through_topk(scores, valid, k, false, nullptr);
  torch::Tensor e2 = straight_through_topk(scores, valid, k, false, nullptr);
  EXPECT_TRUE(torch::equal(e1, e2));
  std::vector<std::pair<float, int>> row;
  for (int j = 0; j < 10; ++j) row.push_back({scores[0][j].item<float>(), j});
  std::sort(row.begin(), row.end(), [](auto a, auto b) { return a.first > b.first; });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(e1[0][row[r].second].item<float>(), 1.0f);
  // Training: gradients reach the scores through the straight-through estimator; a seed
  // reproduces the mask.
  auto g1 = at::detail::createCPUGenerator(11), g2 = at::detail::createCPUGenerator(11);
  torch::Tensor t1 = straight_through_topk(scores, valid, k, true, &g1);
  torch::Tensor t2 = straight_through_topk(scores, valid, k, true, &g2);
  EXPECT_TRUE(torch::equal(t1.detach(), t2.detach()));
  (t1 * torch::arange(10, torch::kFloat32)).sum().backward();
  ASSERT_TRUE(scores.grad().defined());
  EXPECT_GT(scores.grad()[0].abs().sum().item<float>(), 0.0f);
  EXPECT_FALSE(torch::isnan(scores.grad()).any().item<bool>());
  EXPECT_EQ(scores.grad()[1].narrow(0, 6, 4).abs().sum().item<float>(), 0.0f) << "padding gets no gradient";
}

TEST(StraightThroughTopK, BadShapes) {
  torch::Tensor s = torch::zeros({2, 4});
  EXPECT_INPUT_ERROR(straight_through_topk(s, torch::Tensor(), torch::tensor({1}, torch::kLong), false, nullptr),
                     HasSubstr("k must be [2]"));
  EXPECT_INPUT_ERROR(straight_through_topk(s, torch::ones({2, 3}, torch::kBool), torch::tensor({1, 1}, torch::kLong),
                                           false, nullptr),
                     HasSubstr("valid must be a bool tensor"));
  EXPECT_INPUT_ERROR(straight_through_topk(s.flatten(), torch::Tensor(), torch::tensor({1}, torch::kLong), false, nullptr),
                     HasSubstr("scores must be [rows, n]"));
}

}  // namespace
}  // namespace pare::masks
