// Weight masks (masks/weights.h) on linear slots of a small ViT: the global magnitude threshold
// zeroes exactly round(s·total) weights, the smallest |w| (checked against a sort done here), and
// keeps earlier pruned weights pruned; 2:4 keeps exactly 2 of every 4 inputs per row, the largest
// (ties: the lower column); GMP's cubic schedule (Zhu & Gupta 2017 §3) against numbers worked out
// by hand; GraNet's regrowth revives, of the just-pruned weights, those of largest |gradient|;
// with mask_gradients, pruned weights stay zero through optimiser steps (SGD with momentum).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "families/family.h"
#include "test_util.h"
#include "weights.h"

namespace pare::masks {
namespace {

using ::testing::HasSubstr;

Model vit_model() {
  ArchConfig c = pare_test::tiny_vit_config("layernorm");  // hidden 16, 2 layers, FFN 32
  Model m = family_by_name("vit").init(c, 5);
  pare_test::order_one_weights(m, 11);
  return m;
}

const std::vector<std::string> kSlots = {"blk.0.attn_q", "blk.0.ffn_up", "blk.1.ffn_down"};

torch::Tensor all_abs(Model& m) {
  std::vector<torch::Tensor> v;
  for (const auto& s : kSlots) v.push_back(m.dense(s).weight.detach().abs().reshape({-1}));
  return torch::cat(v);
}

torch::Tensor all_masks(const WeightMasks& w) {
  std::vector<torch::Tensor> v;
  for (const auto& s : kSlots) v.push_back(w.masks().at(s).reshape({-1}));
  return torch::cat(v);
}

TEST(WeightMasks, GlobalThresholdRemovesExactlyTheSmallest) {
  Model m = vit_model();
  WeightMasks w(m, kSlots);
  const torch::Tensor a = all_abs(m);
  const int64_t total = a.numel();  // 256 + 512 + 512
  ASSERT_EQ(total, 1280);
  w.prune_to(m, 0.6);
  const int64_t k = 768;  // round(0.6 · 1280)
  const torch::Tensor sorted = std::get<0>(a.sort());
  const torch::Tensor want = (a > sorted[k - 1]).to(torch::kFloat32);  // no ties in random weights
  EXPECT_TRUE(torch::equal(all_masks(w), want));
  EXPECT_EQ((all_masks(w) == 0).sum().item<int64_t>(), k);
  EXPECT_NEAR(w.density(), 1.0 - 768.0 / 1280, 1e-12);
  EXPECT_TRUE(torch::equal(all_abs(m) == 0, want == 0)) << "the masks were not applied";
  // Pruning further keeps the pruned weights pruned, even after they grow back in the model.
  {
    torch::NoGradGuard ng;
    m.dense("blk.0.attn_q").weight.fill_(5.0);
  }
  w.prune_to(m, 0.75);
  EXPECT_EQ((all_masks(w) == 0).sum().item<int64_t>(), 960);
  EXPECT_TRUE(torch::all(all_masks(w) <= want).item<bool>());
  EXPECT_INPUT_ERROR(w.prune_to(m, 1.5), HasSubstr("sparsity 1.5"));
}

TEST(WeightMasks, TwoFourKeepsTheTwoLargestOfEveryFour) {
  Model m = vit_model();
  {
    torch::NoGradGuard ng;
    m.dense("blk.0.ffn_up").weight[3].fill_(0.5);  // ties: the lower columns win
  }
  WeightMasks w(m, kSlots);
  std::map<std::string, torch::Tensor> before;
  for (const auto& s : kSlots) before[s] = m.dense(s).weight.detach().abs().clone();
  w.prune_nm(m, 2, 4);
  for (const auto& s : kSlots) {
    SCOPED_TRACE(s);
    const torch::Tensor mask = w.masks().at(s), a = before[s];
    const torch::Tensor mg = mask.view({mask.size(0), -1, 4}), ag = a.view({a.size(0), -1, 4});
    EXPECT_TRUE(torch::all(mg.sum(2) == 2).item<bool>());
    const torch::Tensor kept_min = torch::where(mg > 0, ag, torch::full({}, 1e9)).amin(2);
    const torch::Tensor pruned_max = torch::where(mg == 0, ag, torch::full({}, -1.0)).amax(2);
    EXPECT_TRUE(torch::all(kept_min >= pruned_max).item<bool>());
    EXPECT_TRUE(torch::equal(m.dense(s).weight == 0, mask == 0));
  }
  EXPECT_TRUE(torch::equal(w.masks().at("blk.0.ffn_up")[3], torch::tensor({1.0f, 1.0f, 0.0f, 0.0f}).repeat({4})));
  EXPECT_NEAR(w.density(), 0.5, 1e-12);
  // blk.0.attn_q has 16 in-features: not a multiple of 3.
  EXPECT_INPUT_ERROR(w.prune_nm(m, 2, 3), HasSubstr("slot 'blk.0.attn_q' has 16 in-features, not a multiple of M = 3"));
  EXPECT_INPUT_ERROR(w.prune_nm(m, 5, 4), HasSubstr("5:4 sparsity"));
}

// s_i = 0, s_f = 0.8, t0 = 100, n·Δt = 1000, Δt = 100: s = 0.8 − 0.8·(1 − (t − 100)/1000)³ at the
// last pruning step t at or before the step.
TEST(WeightMasks, CubicScheduleByHand) {
  Model m = vit_model();
  WeightMasks w(m, kSlots, GmpSchedule{0.0, 0.8, 100, 1100, 100});
  EXPECT_DOUBLE_EQ(w.sparsity_at(50), 0.0);
  EXPECT_DOUBLE_EQ(w.sparsity_at(100), 0.0);
  EXPECT_NEAR(w.sparsity_at(350), 0.3904, 1e-12);  // t = 300: 0.8 − 0.8·0.8³
  EXPECT_NEAR(w.sparsity_at(600), 0.7, 1e-12);     // t = 600: 0.8 − 0.8·0.5³
  EXPECT_NEAR(w.sparsity_at(1099), 0.7992, 1e-12); // t = 1000: 0.8 − 0.8·0.1³
  EXPECT_DOUBLE_EQ(w.sparsity_at(1100), 0.8);
  EXPECT_DOUBLE_EQ(w.sparsity_at(5000), 0.8);
  WeightMasks w2(m, kSlots, GmpSchedule{0.2, 0.6, 0, 400, 200});
  EXPECT_NEAR(w2.sparsity_at(250), 0.55, 1e-12);  // t = 200: 0.6 − 0.4·0.5³
  EXPECT_INPUT_ERROR(WeightMasks(m, kSlots, GmpSchedule{0.5, 0.2, 0, 10, 1}), HasSubstr("0.5 -> 0.2"));
  EXPECT_INPUT_ERROR(WeightMasks(m, {"blk.0.nope"}), HasSubstr("blk.0.nope"));
}

TEST(WeightMasks, RegrowthRevivesTheLargestGradientsAmongTheJustPruned) {
  Model m = vit_model();
  WeightMasks w(m, kSlots);
  w.prune_to(m, 0.3);
  const torch::Tensor first = all_masks(w).clone();
  w.prune_to(m, 0.5);  // just pruned: 640 − 384 = 256 weights
  const torch::Tensor before = all_masks(w).clone();
  const torch::Tensor just = (first > 0).logical_and(before == 0);
  ASSERT_EQ(just.sum().item<int64_t>(), 256);
  torch::manual_seed(2);
  std::map<std::string, torch::Tensor> grads;
  std::vector<torch::Tensor> gv;
  for (const auto& s : kSlots) {
    grads[s] = torch::randn(m.dense(s).weight.sizes());
    gv.push_back(grads[s].abs().reshape({-1}));
  }
  const torch::Tensor g = torch::cat(gv);
  w.regrow(m, grads, 0.25);
  const torch::Tensor after = all_masks(w);
  const torch::Tensor revived = (after > 0).logical_and(before == 0);
  EXPECT_EQ(revived.sum().item<int64_t>(), 64);
  EXPECT_TRUE(torch::all(just.logical_or(revived.logical_not())).item<bool>()) << "revived a weight pruned earlier";
  // The revived ones are the 64 largest |g| among the just pruned.
  const torch::Tensor cand = std::get<0>(torch::where(just, g, torch::full({}, -1.0f)).sort(0, true));
  const torch::Tensor want = just.logical_and(g >= cand[63]);
  EXPECT_TRUE(torch::equal(revived, want));
  EXPECT_TRUE(torch::all(all_abs(m).masked_select(revived) == 0).item<bool>()) << "revived weights restart at 0";
  EXPECT_NEAR(w.density(), (1280 - 640 + 64) / 1280.0, 1e-12);
  grads.erase("blk.0.ffn_up");
  w.prune_to(m, 0.6);
  EXPECT_INPUT_ERROR(w.regrow(m, grads, 0.5), HasSubstr("gradient of slot 'blk.0.ffn_up'"));
}

TEST(WeightMasks, MaskedGradientsKeepPrunedWeightsZero) {
  Model m = vit_model();
  WeightMasks w(m, kSlots);
  w.prune_to(m, 0.5);
  const torch::Tensor start = all_abs(m).clone();
  m.set_requires_grad(true);
  torch::optim::SGD opt(m.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({4, 1, 8, 8});
  for (int step = 0; step < 3; ++step) {
    opt.zero_grad();
    m.forward(x).pow(2).sum().backward();
    w.mask_gradients(m);
    opt.step();
  }
  const torch::Tensor mask = all_masks(w), now = all_abs(m);
  EXPECT_TRUE(torch::all(now.masked_select(mask == 0) == 0).item<bool>());
  EXPECT_GT((now - start).abs().masked_select(mask > 0).max().item<double>(), 1e-4) << "nothing trained";
}

}  // namespace
}  // namespace pare::masks
