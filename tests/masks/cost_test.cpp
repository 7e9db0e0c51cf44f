// The cost controller (masks/cost.h) against pare's own accounting: on a small ViT and on the
// GraphGPS gine fixture, the expected cost of all-open gates is the dense total of Family::costs
// (FLOPs) or Model::num_params (parameters), and the expected cost of 0/1 head and channel masks is
// the total of the model physically rewritten with those units removed (Rewriter keep), to within
// 0.5 (integers held in float64); a closed branch leaves exactly its fixed part out (counted here
// by hand). The Lagrangian penalty of Wang et al. (2020) §3: its gradient reaches λ reversed,
// −(ĉ − t) and −(ĉ − t)², and on hard-concrete gates over every head and FFN channel of a ViT,
// Adam on the penalty (plus a small task-free importance term that tells the gates apart) brings
// the expected FLOPs fraction to 0.7 ± 0.02, as do the deterministic keep_expected_count masks,
// evaluated both by the cost model and by costs() of the rewritten model.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>

#include "cost.h"
#include "families/checkpoint.h"
#include "families/family.h"
#include "gates.h"
#include "test_util.h"

namespace pare::masks {
namespace {

using ::testing::HasSubstr;

Model vit_model(int64_t hidden, int64_t heads, int64_t inter, int64_t layers, int64_t image) {
  ArchConfig c = pare_test::tiny_vit_config("layernorm");
  c.hidden_size = hidden;
  c.num_attention_heads = heads;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.image_size = image;
  c.layers.clear();
  c.out_dim = 0;  // derived again from hidden_size
  c.finalize("test");
  Model m = family_by_name("vit").init(c, 5);
  pare_test::order_one_weights(m, 9);
  return m;
}

double total(const Model& m, const std::string& measure) {
  if (measure == "params") return double(m.num_params());
  int64_t f = 0;
  for (const CostRow& r : m.family().costs(m)) f += r.flops;
  return double(f);
}

std::vector<int64_t> ones_of(const torch::Tensor& mask) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < mask.size(0); ++i)
    if (mask[i].item<double>() > 0.5) idx.push_back(i);
  return idx;
}

// The model with the heads / channels whose mask entry is 0 removed.
Model rewritten(const Model& m, const std::vector<torch::Tensor>& heads, const std::vector<torch::Tensor>& channels) {
  Model r = m.clone();
  for (size_t l = 0; l < heads.size(); ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    if (heads[l].defined()) Rewriter(r).keep(b + "heads", ones_of(heads[l]));
    if (channels[l].defined()) Rewriter(r).keep(b + "ffn", ones_of(channels[l]));
  }
  return r;
}

// Random 0/1 masks per layer, some layers left undefined (fully open), one layer all closed.
void random_masks(const Model& m, uint64_t seed, std::vector<torch::Tensor>& heads,
                  std::vector<torch::Tensor>& channels) {
  torch::manual_seed(seed);
  const int64_t L = m.config.num_hidden_layers;
  heads.assign(L, {});
  channels.assign(L, {});
  for (int64_t l = 0; l < L; ++l) {
    const auto& d = m.config.layers[l];
    heads[l] = (torch::rand({d.heads}) < 0.6).to(torch::kFloat32);
    channels[l] = (torch::rand({d.intermediate_size}) < 0.5).to(torch::kFloat32);
  }
  heads[0] = torch::zeros({m.config.layers[0].heads});  // heads == 0: a bias-only branch
  if (L > 1) channels[1] = torch::Tensor();             // fully open
}

void check_against_accounting(const Model& m, uint64_t seed) {
  for (const char* measure : {"flops", "params"}) {
    SCOPED_TRACE(measure);
    const CostModel cm = CostModel::from_model(m, measure);
    EXPECT_EQ(cm.dense, total(m, measure));
    EXPECT_NEAR(cm.expected({}, {}).item<double>(), total(m, measure), 0.5);
    std::vector<torch::Tensor> heads, channels, all_h, all_c;
    for (const auto& d : m.config.layers) {
      all_h.push_back(torch::ones({d.heads}));
      all_c.push_back(torch::ones({d.intermediate_size}));
    }
    EXPECT_NEAR(cm.expected(all_h, all_c).item<double>(), total(m, measure), 0.5);
    EXPECT_NEAR(cm.fraction(all_h, all_c), 1.0, 1e-12);
    random_masks(m, seed, heads, channels);
    const double want = total(rewritten(m, heads, channels), measure);
    EXPECT_LT(want, total(m, measure));
    EXPECT_NEAR(cm.expected(heads, channels).item<double>(), want, 0.5);
  }
}

TEST(CostModel, VitMatchesCostsOfTheRewrittenModel) {
  check_against_accounting(vit_model(16, 4, 32, 3, 8), 1);
}

// GraphGPS (gine fixture): FLOPs at integer graph statistics (costs() rounds each row to an
// integer, exact when the node and edge counts are).
TEST(CostModel, GpsMatchesCostsOfTheRewrittenModel) {
  Model m = load_model(pare_test::fixture("gps/gine"));
  m.config.gps.mean_nodes = 12;
  m.config.gps.mean_edges = 26;
  ASSERT_GE(m.config.layers[0].heads, 2);
  check_against_accounting(m, 2);
}

// ViT hidden 16, 4 heads of 4, FFN 32, 5 tokens, each unit counted by hand;
// a closed attention branch leaves out its pre-norm (32), attn_o's bias (16) and its heads; a
// closed FFN branch its pre-norm (32), ffn_down's bias (16) and its channels.
TEST(CostModel, BranchesAndUnitsByHand) {
  const Model m = vit_model(16, 4, 32, 2, 8);
  const CostModel p = CostModel::from_model(m, "params");
  // One head: Q, K, V rows (3·4·16 weights + 3·4 biases) and O's columns (16·4).
  EXPECT_EQ(p.per_head[1], 3 * (4 * 16 + 4) + 16 * 4);
  EXPECT_EQ(p.per_channel[0], 16 + 1 + 16);  // ffn_up row and bias, ffn_down column
  EXPECT_EQ(p.attn_fixed[0], 32 + 16);
  EXPECT_EQ(p.ffn_fixed[1], 32 + 16);
  const CostModel f = CostModel::from_model(m, "flops");
  const int64_t T = 5;  // 4 patches + CLS
  EXPECT_EQ(f.per_head[0], 2 * (T * 3 * 4 * 16 + T * 16 * 4 + 2 * T * T * 4));
  EXPECT_EQ(f.per_channel[1], 2 * (T * 16 + T * 16));
  EXPECT_EQ(f.attn_fixed[0], 0);
  EXPECT_EQ(f.ffn_fixed[0], 0);
  // Branch probabilities: layer 1's attention closed and layer 0's FFN half open.
  const torch::Tensor zero = torch::zeros({1}), half = torch::full({1}, 0.5);
  const double dense = p.dense;
  EXPECT_NEAR(p.expected({}, {}, {torch::Tensor(), zero}).item<double>(), dense - (48 + 4 * p.per_head[1]), 1e-9);
  EXPECT_NEAR(p.expected({}, {}, {}, {half, torch::Tensor()}).item<double>(),
              dense - 0.5 * (48 + 32 * p.per_channel[0]), 1e-9);
  // Gradients: ∂/∂P(head open) = per_head · P(branch).
  torch::Tensor h = torch::full({4}, 0.5, torch::requires_grad()), a = torch::full({1}, 0.25, torch::requires_grad());
  f.expected({h, torch::Tensor()}, {}, {a, torch::Tensor()}).backward();
  EXPECT_NEAR(h.grad()[2].item<double>(), 0.25 * f.per_head[0], 1e-6);
  EXPECT_NEAR(a.grad().item<double>(), f.attn_fixed[0] + 2.0 * f.per_head[0], 1e-6);
}

TEST(CostModel, BadInputsNameWhatIsWrong) {
  const Model m = vit_model(16, 4, 32, 2, 8);
  EXPECT_INPUT_ERROR(CostModel::from_model(m, "bytes"), HasSubstr("cost measure 'bytes'"));
  const CostModel cm = CostModel::from_model(m, "flops");
  EXPECT_INPUT_ERROR(cm.expected({torch::ones({4})}, {}), HasSubstr("heads_open has 1 entries for a model of 2 layers"));
  EXPECT_INPUT_ERROR(cm.expected({}, {torch::ones({32}), torch::ones({31})}),
                     HasSubstr("channels_open layer 1: expected [32]"));
  EXPECT_INPUT_ERROR(cm.expected({}, {}, {torch::ones({2}), torch::Tensor()}),
                     HasSubstr("attn_open layer 0: expected one entry"));
}

TEST(Lagrangian, PenaltyGradientIsReversedForLambda) {
  LagrangianController c(0.7);
  {
    torch::NoGradGuard ng;
    c.lambda1.fill_(0.3);
    c.lambda2.fill_(2.0);
  }
  torch::Tensor chat = torch::full({}, 0.9, torch::dtype(torch::kFloat64).requires_grad(true));
  const torch::Tensor pen = c.penalty(chat);
  EXPECT_NEAR(pen.item<double>(), 0.3 * 0.2 + 2.0 * 0.04, 1e-12);  // the value uses λ itself
  pen.backward();
  EXPECT_NEAR(c.lambda1.grad().item<double>(), -0.2, 1e-12);
  EXPECT_NEAR(c.lambda2.grad().item<double>(), -0.04, 1e-12);
  EXPECT_NEAR(chat.grad().item<double>(), 0.3 + 2 * 2.0 * 0.2, 1e-12);  // the model's side: descent
  EXPECT_EQ(c.parameters().size(), 2u);
  EXPECT_INPUT_ERROR(LagrangianController(0.0), HasSubstr("cost target 0: expected a fraction in (0, 1]"));
  EXPECT_INPUT_ERROR(c.set_target(1.5), HasSubstr("cost target 1.5"));
}

TEST(KeepExpectedCount, KeepsTheRoundedCountOfLargestLogAlpha) {
  const torch::Tensor la = torch::tensor({0.5f, 3.0f, -1.0f, 3.0f, 2.0f});
  // Σ P = 2.6 → keep 3: the two 3.0s and 2.0.
  const torch::Tensor p = torch::tensor({0.5f, 0.6f, 0.5f, 0.5f, 0.5f});
  EXPECT_TRUE(torch::equal(keep_expected_count(la, p), torch::tensor({0.0f, 1.0f, 0.0f, 1.0f, 1.0f})));
  // Ties: the lower index first (Σ P = 1.2 → one of the 3.0s: index 1).
  EXPECT_TRUE(torch::equal(keep_expected_count(la, torch::full({5}, 0.24f)),
                           torch::tensor({0.0f, 1.0f, 0.0f, 0.0f, 0.0f})));
  EXPECT_EQ(keep_expected_count(la, torch::zeros({5})).sum().item<double>(), 0.0);
  EXPECT_INPUT_ERROR(keep_expected_count(la, torch::ones({4})), HasSubstr("keep_expected_count"));
}

// The headline: hard-concrete gates on every head and channel of a ViT (weights frozen: only the
// cost matters), Adam on log α and λ (lr 0.05), target 0.7 annealed from 1 over the first 100
// steps. The task-free term −ε·Σ w_i·P_i·cost_i / dense with fixed random w_i in (0, 1) stands in
// for a task loss: it tells the gates apart, so the deterministic masks keep the gates the
// training prefers. Over seeds 1-14 both fractions land within 0.007 of the target.
TEST(Lagrangian, HardConcreteGatesReachTheFlopsTarget) {
  // 16 heads of 2 (17 tokens): a head is ~1% of the dense FLOPs, so the rounding of the kept
  // head counts (±0.5 head per layer) stays well inside ±0.02.
  const Model m = vit_model(32, 16, 64, 4, 16);
  const CostModel cm = CostModel::from_model(m, "flops");
  const int64_t L = 4;
  std::vector<HardConcrete> hg, cg;
  std::vector<torch::Tensor> wh, wc;
  std::vector<torch::Tensor> params;
  torch::manual_seed(4);
  for (int64_t l = 0; l < L; ++l) {
    hg.emplace_back(16, 0.95);
    cg.emplace_back(64, 0.95);
    wh.push_back(torch::rand({16}) * cm.per_head[l] / cm.dense);
    wc.push_back(torch::rand({64}) * cm.per_channel[l] / cm.dense);
    params.push_back(hg.back().log_alpha);
    params.push_back(cg.back().log_alpha);
  }
  const double target = 0.7;
  LagrangianController ctl(1.0);
  for (const auto& p : ctl.parameters()) params.push_back(p);
  torch::optim::Adam opt(params, torch::optim::AdamOptions(0.05));
  const int64_t steps = 400, warmup = 100;
  auto open = [&](std::vector<torch::Tensor>& h, std::vector<torch::Tensor>& c) {
    h.clear();
    c.clear();
    for (int64_t l = 0; l < L; ++l) {
      h.push_back(hg[l].expected_open());
      c.push_back(cg[l].expected_open());
    }
  };
  for (int64_t step = 0; step < steps; ++step) {
    ctl.set_target(1.0 - (1.0 - target) * std::min(1.0, double(step + 1) / warmup));
    opt.zero_grad();
    std::vector<torch::Tensor> h, c;
    open(h, c);
    torch::Tensor loss = ctl.penalty(cm.expected(h, c) / cm.dense);
    for (int64_t l = 0; l < L; ++l)
      loss = loss - 0.05 * ((h[l] * wh[l]).sum() + (c[l] * wc[l]).sum()).to(torch::kFloat64);
    loss.backward();
    opt.step();
  }
  std::vector<torch::Tensor> h, c;
  open(h, c);
  EXPECT_NEAR(cm.fraction(h, c), target, 0.02);
  std::vector<torch::Tensor> kh, kc;
  for (int64_t l = 0; l < L; ++l) {
    kh.push_back(keep_expected_count(hg[l].log_alpha, h[l]));
    kc.push_back(keep_expected_count(cg[l].log_alpha, c[l]));
  }
  EXPECT_NEAR(cm.fraction(kh, kc), target, 0.02);
  EXPECT_NEAR(total(rewritten(m, kh, kc), "flops") / total(m, "flops"), target, 0.02);
}

}  // namespace
}  // namespace pare::masks
