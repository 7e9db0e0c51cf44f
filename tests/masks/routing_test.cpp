// Head routing (masks/routing.h, SHRP) on a small ViT with weights of order one and on the tiny
// bert fixture (tests/fixtures/tiny_bert, written by python3-torch):
// - zero routers in stage 1 (gates H·p, p uniform) give the dense model's logits;
// - the fixed-routing model (kept heads on, empty layers skipped) equals the materialised model
//   (expanders folded into attn_o, heads deleted, layers removed) and its save / reload, for
//   removed first, middle and last layers;
// - a Top-1 forward equals the fixed model that keeps each layer's argmax head, and the router gets
//   a gradient through it;
// - the balance loss is 1 for uniform routing and H for collapsed routing (its definition);
// - the deployment rules by hand; bad kept lists and thresholds name what is wrong.
#include <gtest/gtest.h>

#include "families/bert.h"
#include "families/checkpoint.h"
#include "families/family.h"
#include "io/safetensors.h"
#include "routing.h"
#include "test_util.h"

namespace pare::masks {
namespace {

using ::testing::HasSubstr;

Model vit_model(int64_t layers) {
  ArchConfig c = pare_test::tiny_vit_config("layernorm");  // hidden 16, 8x8 images
  c.num_attention_heads = 4;
  c.num_hidden_layers = layers;
  c.layers.clear();
  c.finalize("test");
  Model m = family_by_name("vit").init(c, 5);
  pare_test::order_one_weights(m, 9);
  return m;
}

torch::Tensor images(int64_t n = 5) {
  torch::manual_seed(3);
  return torch::randn({n, 1, 8, 8});
}

Model bert_model() { return load_model(pare_test::fixture("tiny_bert")); }
torch::Tensor bert_ids() {
  return read_safetensors(pare_test::fixture("tiny_bert_io.safetensors")).tensors.at("input_ids");
}

// Logits of either family (bert in its padded layout when `padded`, as training runs it).
torch::Tensor logits(const Model& m, bool padded = false) {
  if (m.config.family == "bert") return bert_forward(m, bert_ids(), padded ? BertLayout::kPadded : BertLayout::kAuto);
  return m.forward(images());
}

// Random routers and expanders of order one (the zero start would hide errors in the folding).
void randomise(HeadRouting& r, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard ng;
  for (auto& p : r.parameters()) p.copy_(0.5 * torch::randn(p.sizes()));
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tol) {
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_LT((a - b).abs().max().item<double>(), tol) << (a - b).abs().max().item<double>();
}

TEST(HeadRouting, ZeroRoutersInStageOneAreTheDenseModel) {
  for (Model m : {vit_model(2), bert_model()}) {
    SCOPED_TRACE(m.config.family);
    torch::Tensor dense;
    {
      torch::NoGradGuard ng;
      dense = logits(m, true);
    }
    HeadRouting r(m, /*expander=*/true);
    r.attach(m);
    r.set_mode(RoutingMode::kBalance);
    const torch::Tensor got = logits(m, true);  // autograd on: the training path
    expect_close(got.detach(), dense, 1e-5);
    // Every sample was routed once per layer, and shares sum to one.
    for (int64_t l = 0; l < r.layers(); ++l) {
      EXPECT_EQ(r.samples(l), got.size(0));
      EXPECT_NEAR(r.usage(l).sum().item<double>(), 1.0, 1e-12);
    }
    // Uniform routing: H·Σ f·(1/H) = 1 in every layer.
    EXPECT_NEAR(r.take_balance_loss().item<double>(), 1.0, 1e-6);
    EXPECT_FALSE(r.take_balance_loss().defined());  // taken
  }
}

TEST(HeadRouting, CollapsedRoutingCostsHBalanceLoss) {
  Model m = vit_model(2);
  HeadRouting r(m, false);
  r.attach(m);
  {
    torch::NoGradGuard ng;
    for (auto& p : r.parameters())
      if (p.dim() == 1) p.copy_(torch::tensor({30.0f, 0.0f, 0.0f, 0.0f}));  // b: head 0 always
  }
  r.set_mode(RoutingMode::kBalance);
  (void)logits(m);
  // f = (1, 0, 0, 0), P ≈ (1, 0, 0, 0): H·Σ f·P ≈ 4.
  EXPECT_NEAR(r.take_balance_loss().item<double>(), 4.0, 1e-6);
  EXPECT_DOUBLE_EQ(r.usage(0)[0].item<double>(), 1.0);
}

struct Case {
  int64_t layers;
  std::vector<std::vector<int64_t>> kept;
};

TEST(HeadRouting, FixedRoutingEqualsTheMaterialisedModelAndItsReload) {
  const std::vector<Case> vit_cases = {
      {3, {{0, 1, 3}, {}, {2}}},      // middle layer removed
      {3, {{}, {1}, {0, 1, 2, 3}}},   // first layer removed, one layer whole
      {2, {{1, 2}, {}}},              // last layer removed
  };
  std::vector<std::pair<Model, std::vector<std::vector<int64_t>>>> cases;
  for (const auto& c : vit_cases) cases.emplace_back(vit_model(c.layers), c.kept);
  cases.emplace_back(bert_model(), std::vector<std::vector<int64_t>>{{}, {1, 3}});
  cases.emplace_back(bert_model(), std::vector<std::vector<int64_t>>{{0, 2, 3}, {}});
  int n = 0;
  for (auto& [base, kept] : cases) {
    SCOPED_TRACE(base.config.family + " case " + std::to_string(n++));
    Model m = base.clone();
    HeadRouting r(m, true);
    randomise(r, 11 + n);
    r.attach(m);
    r.set_kept(kept);
    r.set_mode(RoutingMode::kFixed);
    torch::NoGradGuard ng;
    const torch::Tensor routed = logits(m);
    // The expander and the missing heads do change the model (the test is not vacuous).
    EXPECT_GT((routed - logits(base)).abs().max().item<double>(), 1e-2);

    Model deployed = base.clone();
    const nlohmann::json removed = r.materialise(deployed);
    int64_t empty = 0;
    for (const auto& k : kept) empty += k.empty();
    EXPECT_EQ(deployed.config.num_hidden_layers, base.config.num_hidden_layers - empty);
    EXPECT_EQ(int64_t(removed["layers"].size()), empty);
    EXPECT_TRUE(deployed.verify().empty());
    expect_close(logits(deployed), routed, 2e-4);
    if (deployed.config.family == "bert") expect_close(bert_forward(deployed, bert_ids(), BertLayout::kPadded), routed, 2e-4);

    pare_test::TempDir dir;
    save_model(deployed, dir.path());
    const Model back = load_model(dir.path());
    EXPECT_EQ(back.config.num_hidden_layers, deployed.config.num_hidden_layers);
    expect_close(logits(back), routed, 2e-4);
  }
}

// Deployed gates = each kept head's mean stage-2 gate (Top-1: its usage share; soft: H·mean p):
// the fixed model with those gates equals the materialised one, where they are folded into attn_o.
TEST(HeadRouting, MeanGatesFoldIntoTheMaterialisedModel) {
  for (RoutingMode train_mode : {RoutingMode::kTop1, RoutingMode::kBalance}) {
    Model base = vit_model(3);
    Model m = base.clone();
    HeadRouting r(m, true);
    randomise(r, 21);
    r.attach(m);
    r.set_mode(train_mode);
    (void)m.forward(torch::randn({16, 1, 8, 8}));
    const torch::Tensor g1 = r.mean_gate(1);
    if (train_mode == RoutingMode::kTop1) {
      EXPECT_TRUE(torch::allclose(g1, r.usage(1))) << "Top-1: the mean gate is the usage share";
    } else {
      EXPECT_NEAR(g1.sum().item<double>(), 4.0, 1e-5);  // H·Σ mean p = H
    }
    const std::vector<std::vector<int64_t>> kept = {{0, 1, 2, 3}, {}, {1, 2}};
    r.set_kept(kept, /*mean_gates=*/true);
    r.set_mode(RoutingMode::kFixed);
    torch::NoGradGuard ng;
    const torch::Tensor routed = m.forward(images());
    Model deployed = base.clone();
    r.materialise(deployed);
    expect_close(deployed.forward(images()), routed, 2e-4);
    // Gates of one give another model (the mean gates are not all 1).
    r.set_kept(kept, false);
    EXPECT_GT((m.forward(images()) - routed).abs().max().item<double>(), 1e-3);
  }
}

TEST(HeadRouting, TopOneForwardIsTheArgmaxHeadAndTrainsTheRouter) {
  for (Model m : {vit_model(2), bert_model()}) {
    SCOPED_TRACE(m.config.family);
    const Model base = m.clone();
    HeadRouting r(m, true);
    randomise(r, 4);
    r.attach(m);
    r.set_mode(RoutingMode::kTop1);
    // One sample: each layer's usage is the one-hot of its argmax head.
    torch::Tensor top1;
    if (m.config.family == "bert") {
      top1 = bert_forward(m, bert_ids().narrow(0, 0, 1), BertLayout::kPadded);
    } else {
      top1 = m.forward(images(1));
    }
    std::vector<std::vector<int64_t>> kept(r.layers());
    for (int64_t l = 0; l < r.layers(); ++l) {
      const torch::Tensor u = r.usage(l);
      ASSERT_DOUBLE_EQ(u.sum().item<double>(), 1.0);
      ASSERT_DOUBLE_EQ(u.max().item<double>(), 1.0);
      kept[l] = {u.argmax().item<int64_t>()};
    }
    top1.sum().backward();
    int64_t with_grad = 0;
    for (const auto& p : r.parameters())
      if (p.dim() == 2 && p.size(0) != p.size(1) && p.grad().defined() && p.grad().abs().sum().item<double>() > 0)
        ++with_grad;
    EXPECT_EQ(with_grad, r.layers()) << "every router gets a gradient through the straight-through gate";

    r.set_kept(kept);
    r.set_mode(RoutingMode::kFixed);
    torch::NoGradGuard ng;
    torch::Tensor fixed = m.config.family == "bert" ? bert_forward(m, bert_ids().narrow(0, 0, 1), BertLayout::kPadded)
                                                    : m.forward(images(1));
    expect_close(fixed, top1.detach(), 1e-5);
  }
}

TEST(HeadRouting, DeploymentRulesByHand) {
  const std::vector<torch::Tensor> usage = {torch::tensor({0.5, 0.3, 0.2, 0.0}, torch::kFloat64), torch::Tensor(),
                                            torch::tensor({0.05, 0.9, 0.05, 0.0}, torch::kFloat64)};
  using V = std::vector<std::vector<int64_t>>;
  EXPECT_EQ(keep_by_threshold(usage, 0.25), (V{{0, 1}, {}, {1}}));
  EXPECT_EQ(keep_by_threshold(usage, 0.0), (V{{0, 1, 2, 3}, {}, {0, 1, 2, 3}}));
  EXPECT_EQ(keep_by_threshold(usage, 0.95), (V{{}, {}, {1}}));  // nothing clears it: the most used head
  EXPECT_EQ(keep_top(usage, 1), (V{{}, {}, {1}}));
  EXPECT_EQ(keep_top(usage, 3), (V{{0, 1}, {}, {1}}));
  EXPECT_EQ(keep_top(usage, 4), (V{{0, 1, 2}, {}, {1}}));  // ties: lower layer first
  try {
    keep_by_threshold(usage, 1.5);
    FAIL() << "threshold 1.5 accepted";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("threshold 1.5 outside [0, 1]"));
  }
  EXPECT_THROW(keep_by_threshold(usage, -0.1), InputError);
  EXPECT_THROW(keep_top(usage, 0), InputError);
}

TEST(HeadRouting, BadKeptListsNameTheLayer) {
  Model m = vit_model(2);
  HeadRouting r(m, true);
  auto expect_error = [&](const std::vector<std::vector<int64_t>>& kept, const std::string& needle) {
    try {
      r.set_kept(kept);
      FAIL() << "accepted: " << needle;
    } catch (const InputError& e) {
      EXPECT_THAT(e.what(), HasSubstr(needle));
    }
  };
  expect_error({{0}}, "kept heads for 1 layers, the model has 2");
  expect_error({{1, 0}, {0}}, "layer 0: kept heads must be sorted, unique and below 4");
  expect_error({{0}, {4}}, "layer 1: kept heads must be sorted, unique and below 4");
  expect_error({{}, {}}, "no head kept in any layer");
  try {
    Model lm = load_model(pare_test::fixture("gps/gine"));
    HeadRouting g(lm, true);
    FAIL() << "gps accepted";
  } catch (const InputError& e) {
    EXPECT_THAT(e.what(), HasSubstr("the gps family is not supported"));
  }
}

}  // namespace
}  // namespace pare::masks
