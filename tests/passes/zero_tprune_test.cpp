// zero-tprune: keep rate 1 is exactly dense, tokens are physically removed from the forward, the
// pruned logits equal a forward written out by hand in this file that gathers the chosen tokens,
// FLOPs against a hand count, the schedule from keep rates (rounding, cascading, iterations by
// depth, every bad schedule rejected with the option named), and the schedule surviving
// config.json and a save/load round trip (with config.json validation naming the field).
#include <gtest/gtest.h>

#include <cmath>

#include "builtin.h"
#include "families/checkpoint.h"
#include "base/error.h"
#include "tasks/evaluate.h"
#include "families/family.h"
#include "test_util.h"
#include "families/token_pruning.h"
#include "zero_tprune.h"

namespace pare {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// 16x16 single-channel images in 4x4 patches: 16 patches + CLS = 17 tokens. Hidden 16, 2 heads
// of 8, intermediate 32, 3 labels, `layers` layers.
constexpr int64_t kD = 16, kHeads = 2, kHd = 8, kInter = 32, kLabels = 3, kPatches = 16,
                  kP = 16, kT = 17;

ArchConfig prune_config(int64_t layers = 3) {
  ArchConfig c;
  c.family = "vit";
  c.hidden_size = kD;
  c.num_hidden_layers = layers;
  c.num_attention_heads = kHeads;
  c.intermediate_size = kInter;
  c.image_size = 16;
  c.patch_size = 4;
  c.num_channels = 1;
  c.num_labels = kLabels;
  c.layer_norm_eps = 1e-6;
  c.norm = "layernorm";
  c.finalize("test");
  return c;
}

// Family init, then weights large enough that attention is far from uniform (init's std 0.02
// gives near-uniform attention, where every token ranks alike) and norms that are not identity.
Model prune_model(uint64_t seed, int64_t layers = 3) {
  Model m = family_by_name("vit").init(prune_config(layers), seed);
  torch::manual_seed(seed + 100);
  for (auto& [name, t] : m.tensors)
    if (name.find("norm.weight") != std::string::npos)
      t = 1.0 + 0.3 * torch::randn(t.sizes());
    else if (name.find("norm.bias") != std::string::npos)
      t = 0.2 * torch::randn(t.sizes());
    else
      t = torch::randn(t.sizes());  // cls_token, pos_embd
  for (auto& [slot, form] : m.linears) {
    auto& d = m.dense(slot);
    const double gain = slot.find("attn_q") != std::string::npos ||
                                slot.find("attn_k") != std::string::npos
                            ? 2.0
                            : 1.0;
    d.weight = gain * torch::randn(d.weight.sizes()) / std::sqrt(double(d.weight.size(1)));
    d.bias = 0.1 * torch::randn(d.bias.sizes());
  }
  return m;
}

TokenPruneStep make_step(int64_t layer, int64_t keep, const std::string& method = "zero-tprune",
                         int64_t iterations = 1, int64_t similar = 0) {
  TokenPruneStep s;
  s.layer = layer;
  s.keep = keep;
  s.method = method;
  s.iterations = iterations;
  s.similar = similar;
  return s;
}

void set_schedule(Model& m, std::vector<TokenPruneStep> steps) {
  m.config.token_pruning = std::move(steps);
  m.config.finalize("test");
}

// ---- a ViT forward written out here ------------------------------------------------------------

torch::Tensor ln(const Model& m, const std::string& p, const torch::Tensor& x) {
  torch::Tensor mu = x.mean(-1, true);
  torch::Tensor var = (x - mu).square().mean(-1, true);
  return (x - mu) / (var + m.config.layer_norm_eps).sqrt() * m.at(p + ".weight") + m.at(p + ".bias");
}

torch::Tensor lin(Model& m, const std::string& slot, const torch::Tensor& x) {
  const auto& d = m.dense(slot);
  return at::matmul(x, d.weight.t()) + d.bias;
}

torch::Tensor gelu_erf(const torch::Tensor& x) { return 0.5 * x * (1.0 + torch::erf(x / std::sqrt(2.0))); }

// rows[b] = x[b, idx[b, i]] by a loop (independent of gather_tokens).
torch::Tensor take_rows(const torch::Tensor& x, const torch::Tensor& idx) {
  std::vector<torch::Tensor> out;
  for (int64_t b = 0; b < x.size(0); ++b) out.push_back(x[b].index_select(0, idx[b]));
  return torch::stack(out);
}

// Which tokens a step keeps, from this forward's own probabilities and keys. cls-attention is
// computed here by hand; zero-tprune and random go through select_tokens (tested on hand cases in
// tests/src/token_pruning_test.cpp).
torch::Tensor choose(const TokenPruneStep& st, const torch::Tensor& probs, const torch::Tensor& keys) {
  if (st.method == "cls-attention") {
    torch::Tensor score = probs.select(2, 0).mean(1).clone();  // [B, T]
    score.select(1, 0).fill_(std::numeric_limits<double>::infinity());
    torch::Tensor idx = std::get<1>(score.topk(st.keep, 1));
    return std::get<0>(idx.sort(1));
  }
  return select_tokens(st, probs, keys, 1);
}

struct HandForward {
  torch::Tensor logits;
  std::vector<torch::Tensor> probs;  // per layer
  std::vector<torch::Tensor> kept;   // per step: indices into the tokens entering it
};

// float64 model (plain LayerNorm, no shortcuts).
HandForward hand_forward(Model& m, const torch::Tensor& images) {
  HandForward r;
  torch::Tensor x = m.family().embed(m, images).x;  // embeddings: tested in vit_forward_test
  const int64_t B = x.size(0);
  for (int64_t l = 0; l < m.config.num_hidden_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const int64_t T = x.size(1);
    torch::Tensor h = ln(m, b + "attn_norm", x);
    torch::Tensor kf = lin(m, b + "attn_k", h);  // [B, T, H·hd], heads side by side
    auto heads = [&](const torch::Tensor& t) { return t.view({B, T, kHeads, kHd}).transpose(1, 2); };
    torch::Tensor q = heads(lin(m, b + "attn_q", h)), k = heads(kf), v = heads(lin(m, b + "attn_v", h));
    torch::Tensor probs = at::softmax(at::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(kHd)), -1);
    r.probs.push_back(probs);
    torch::Tensor ctx = at::matmul(probs, v).transpose(1, 2).reshape({B, T, kHeads * kHd});
    for (const auto& st : m.config.token_pruning)
      if (st.layer == l && st.keep < T) {
        torch::Tensor idx = choose(st, probs, kf);
        r.kept.push_back(idx);
        ctx = take_rows(ctx, idx);
        x = take_rows(x, idx);
      }
    x = x + lin(m, b + "attn_o", ctx);
    x = x + lin(m, b + "ffn_down", gelu_erf(lin(m, b + "ffn_up", ln(m, b + "ffn_norm", x))));
  }
  r.logits = lin(m, "cls_head", ln(m, "out_norm", x.select(1, 0)));
  return r;
}

torch::Tensor test_images(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn({n, 1, 16, 16}, torch::kFloat64);
}

// ---- keep rate 1 is dense ------------------------------------------------------------------------

TEST(ZeroTPrune, KeepRateOneScheduleIsEmptyAndLogitsIdentical) {
  Model m = prune_model(1);
  torch::NoGradGuard ng;
  torch::Tensor x = test_images(4, 11).to(torch::kFloat32);
  torch::Tensor dense = m.forward(x);

  ZeroTPruneOptions o;
  o.layers = {0, 1, 2};
  o.keep_rate = {1.0};
  EXPECT_TRUE(zero_tprune_schedule(m.config, o).empty());

  // Through the registered pass, as a recipe stage resolves it.
  register_builtin_passes();
  std::vector<std::string> problems;
  nlohmann::json stage = {{"pass", "zero-tprune"}, {"layers", {0, 1, 2}}, {"keep_rate", 1.0}};
  PassOptions po = PassTable::global().resolve(stage, "/pipeline/0", problems);
  ASSERT_TRUE(problems.empty()) << problems.front();
  Model p = m.clone();
  AnalysisManager am;
  PassContext ctx;
  PassTable::global().find("zero-tprune")->create(po)->run(p, am, ctx);
  EXPECT_TRUE(p.config.token_pruning.empty());
  EXPECT_TRUE(torch::equal(p.forward(x), dense));
}

TEST(ZeroTPrune, StepKeepingEveryEnteringTokenIsIdenticalToDense) {
  Model m = prune_model(2);
  torch::NoGradGuard ng;
  torch::Tensor x = test_images(4, 12).to(torch::kFloat32);
  torch::Tensor dense = m.forward(x);
  for (const char* method : {"zero-tprune", "cls-attention", "random"}) {
    Model p = m.clone();
    set_schedule(p, {make_step(1, kT, method, 5, 0)});
    EXPECT_TRUE(torch::equal(p.forward(x), dense)) << method;
  }
  // The same after an earlier step: keep == the 9 tokens that enter layer 2.
  Model a = m.clone(), b = m.clone();
  set_schedule(a, {make_step(0, 9)});
  set_schedule(b, {make_step(0, 9), make_step(2, 9)});
  EXPECT_TRUE(torch::equal(a.forward(x), b.forward(x)));
}

// ---- tokens are physically removed --------------------------------------------------------------

TEST(ZeroTPrune, LaterSubBlocksSeeOnlyTheKeptTokens) {
  Model m = prune_model(3);
  set_schedule(m, {make_step(0, 9, "zero-tprune", 30, 2), make_step(1, 5, "zero-tprune", 5)});
  std::map<int64_t, std::vector<int64_t>> resid, probs;
  m.hooks.observers.push_back([&](HookPoint p, int64_t i, torch::Tensor& t) {
    if (p == HookPoint::kResidual) resid[i] = t.sizes().vec();
    if (p == HookPoint::kAttnProbs) probs[i] = t.sizes().vec();
  });
  torch::NoGradGuard ng;
  torch::Tensor out = m.forward(test_images(3, 13).to(torch::kFloat32));
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{3, kLabels}));
  using V = std::vector<int64_t>;
  // Sites: 2l before attention l, 2l+1 before the MLP of l, 2L before the head.
  EXPECT_EQ(resid[0], (V{3, kT, kD}));
  EXPECT_EQ(resid[1], (V{3, 9, kD}));  // the MLP of layer 0 runs on the 9 kept tokens
  EXPECT_EQ(resid[2], (V{3, 9, kD}));
  EXPECT_EQ(resid[3], (V{3, 5, kD}));
  EXPECT_EQ(resid[4], (V{3, 5, kD}));
  EXPECT_EQ(resid[5], (V{3, 5, kD}));
  EXPECT_EQ(resid[6], (V{3, 5, kD}));
  EXPECT_EQ(probs[0], (V{3, kHeads, kT, kT}));
  EXPECT_EQ(probs[1], (V{3, kHeads, 9, 9}));
  EXPECT_EQ(probs[2], (V{3, kHeads, 5, 5}));
}

// ---- pruned logits equal a forward written out here ---------------------------------------------

TEST(ZeroTPrune, PrunedLogitsEqualHandForwardThatGathersTheChosenTokens) {
  const torch::Tensor x = test_images(6, 14);
  struct Case {
    const char* name;
    std::vector<TokenPruneStep> steps;
  };
  TokenPruneStep rnd0 = make_step(0, 11, "random"), rnd2 = make_step(2, 4, "random");
  rnd0.seed = rnd2.seed = 5;
  TokenPruneStep uni = make_step(1, 6, "zero-tprune", 5, 3);
  uni.uniform_init = true;
  const std::vector<Case> cases = {
      {"zero-tprune", {make_step(0, 9, "zero-tprune", 30, 2), make_step(1, 5, "zero-tprune", 5, 1)}},
      {"zero-tprune uniform", {uni}},
      {"cls-attention", {make_step(0, 10, "cls-attention"), make_step(2, 3, "cls-attention")}},
      {"random", {rnd0, rnd2}},
  };
  Model base = prune_model(4);
  base.to_dtype(torch::kFloat64);
  torch::NoGradGuard ng;
  // The hand forward without pruning reproduces pare's dense forward: it is a valid reference.
  const torch::Tensor dense = base.forward(x);
  EXPECT_LT(pare_test::max_abs_diff(hand_forward(base, x).logits, dense), 1e-12);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Model m = base.clone();
    set_schedule(m, c.steps);
    std::vector<torch::Tensor> seen;
    m.hooks.observers.push_back([&](HookPoint p, int64_t, torch::Tensor& t) {
      if (p == HookPoint::kAttnProbs) seen.push_back(t.clone());
    });
    torch::Tensor got = m.forward(x);
    HandForward want = hand_forward(m, x);
    ASSERT_EQ(want.kept.size(), c.steps.size());
    // The forward ranked the same attention the hand forward computed.
    ASSERT_EQ(seen.size(), want.probs.size());
    for (size_t l = 0; l < seen.size(); ++l) {
      ASSERT_EQ(seen[l].sizes(), want.probs[l].sizes()) << "layer " << l;
      EXPECT_LT(pare_test::max_abs_diff(seen[l], want.probs[l]), 1e-12) << "layer " << l;
    }
    EXPECT_LT(pare_test::max_abs_diff(got, want.logits), 1e-12) << got << "\n" << want.logits;
    // Pruning changed the result, and which tokens are kept matters: keeping the first `keep`
    // tokens instead gives other logits.
    EXPECT_GT(pare_test::max_abs_diff(got, dense), 1e-6);
    bool some_step_not_prefix = false;
    for (size_t s = 0; s < want.kept.size(); ++s) {
      auto prefix = torch::arange(want.kept[s].size(1), torch::kInt64).expand_as(want.kept[s]);
      some_step_not_prefix |= !torch::equal(want.kept[s], prefix);
    }
    EXPECT_TRUE(some_step_not_prefix) << "the selection kept the leading tokens: a weak case";
  }
}

// ---- FLOPs against a hand count -----------------------------------------------------------------

TEST(ZeroTPrune, FlopsMatchHandCountForTwoSteps) {
  Model m = prune_model(5);
  // Layer 0 keeps 9 of 17 (30 iterations, S stage r = 2), layer 2 keeps 5 of 9 (1 iteration).
  set_schedule(m, {make_step(0, 9, "zero-tprune", 30, 2), make_step(2, 5, "zero-tprune", 1, 0)});
  // Per layer, MACs: q, k, v at T_in tokens; QKᵀ and AV 2·heads·T_in²·head_dim; attn_o, ffn_up,
  // ffn_down at T_out tokens; the selection heads·T_in²·iterations (the I′ scores are the first
  // iteration) + lower·upper·key_dim with the S stage (the T_in − 1 = 16 non-special tokens split
  // 8 / 8; r = 2 < 8 dropped, so the I stage runs all 30 iterations).
  auto layer_macs = [](int64_t ti, int64_t to, int64_t select) {
    return 3 * ti * kD * kD + 2 * kHeads * ti * ti * kHd + to * (kD * kD + kD * kInter + kInter * kD) +
           select;
  };
  const int64_t sel0 = kHeads * 17 * 17 * 30 + 8 * 8 * (kHeads * kHd);
  const int64_t sel2 = kHeads * 9 * 9 * 1;
  const int64_t blk0 = 2 * layer_macs(17, 9, sel0), blk1 = 2 * layer_macs(9, 9, 0),
                blk2 = 2 * layer_macs(9, 5, sel2);
  const int64_t emb = 2 * kPatches * kP * kD, head = 2 * kD * kLabels;
  EXPECT_EQ(sel0, 17340 + 1024);  // the same numbers, multiplied out
  auto rows = m.family().costs(m);
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0].flops, emb);
  EXPECT_EQ(rows[1].flops, blk0);
  EXPECT_EQ(rows[2].flops, blk1);
  EXPECT_EQ(rows[3].flops, blk2);
  EXPECT_EQ(rows[4].flops, head);
  EXPECT_EQ(model_flops(m), emb + blk0 + blk1 + blk2 + head);
  // Token columns: entering / leaving each block.
  EXPECT_EQ(rows[0].tokens, kT);
  EXPECT_EQ(rows[1].tokens, 17);
  EXPECT_EQ(rows[1].tokens_out, 9);
  EXPECT_EQ(rows[2].tokens, 9);
  EXPECT_EQ(rows[2].tokens_out, 9);
  EXPECT_EQ(rows[3].tokens, 9);
  EXPECT_EQ(rows[3].tokens_out, 5);
  EXPECT_EQ(rows[4].tokens, 1);

  // Baselines: the same token counts, no selection cost.
  set_schedule(m, {make_step(0, 9, "cls-attention"), make_step(2, 5, "random")});
  EXPECT_EQ(model_flops(m), emb + 2 * layer_macs(17, 9, 0) + 2 * layer_macs(9, 9, 0) +
                                2 * layer_macs(9, 5, 0) + head);
  // Dense: every layer at 17 tokens.
  set_schedule(m, {});
  EXPECT_EQ(model_flops(m), emb + 3 * 2 * layer_macs(17, 17, 0) + head);
}

// ---- the schedule -------------------------------------------------------------------------------

TEST(ZeroTPruneSchedule, KeepRateRoundsPerStepAndCascades) {
  const ArchConfig c = prune_config(6);  // 17 tokens, 1 special
  ZeroTPruneOptions o;
  o.layers = {1, 3, 5};
  o.keep_rate = {0.5};
  auto s = zero_tprune_schedule(c, o);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].keep, 1 + 8);  // 1 + round(0.5 · 16)
  EXPECT_EQ(s[1].keep, 1 + 4);  // 1 + round(0.5 · 8): the rate applies to the tokens entering
  EXPECT_EQ(s[2].keep, 1 + 2);  // 1 + round(0.5 · 4)
  EXPECT_EQ(s[0].layer, 1);
  EXPECT_EQ(s[1].layer, 3);
  EXPECT_EQ(s[2].layer, 5);

  o.keep_rate = {0.7};
  s = zero_tprune_schedule(c, o);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].keep, 1 + 11);  // round(11.2)
  EXPECT_EQ(s[1].keep, 1 + 8);   // round(0.7 · 11 = 7.7)
  EXPECT_EQ(s[2].keep, 1 + 6);   // round(0.7 · 8 = 5.6)

  o.keep_rate = {0.9, 0.5, 0.25};  // one per step
  s = zero_tprune_schedule(c, o);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].keep, 1 + 14);  // round(14.4)
  EXPECT_EQ(s[1].keep, 1 + 7);   // round(0.5 · 14)
  EXPECT_EQ(s[2].keep, 1 + 2);   // round(0.25 · 7 = 1.75)

  // keep overrides keep_rate.
  o.keep = {12, 6, 3};
  s = zero_tprune_schedule(c, o);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].keep, 12);
  EXPECT_EQ(s[1].keep, 6);
  EXPECT_EQ(s[2].keep, 3);
}

TEST(ZeroTPruneSchedule, IterationsDefaultByDepthAndOptionsCarryOver) {
  ZeroTPruneOptions o;
  o.layers = {0, 1, 2, 3, 4, 5};
  o.keep_rate = {0.9};
  // 6 layers: thirds of 2 → 30, 30, 5, 5, 1, 1.
  auto s = zero_tprune_schedule(prune_config(6), o);
  ASSERT_EQ(s.size(), 6u);
  const int64_t want6[] = {30, 30, 5, 5, 1, 1};
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(s[i].iterations, want6[i]) << "layer " << i;
  // 3 layers: 30, 5, 1.
  o.layers = {0, 1, 2};
  s = zero_tprune_schedule(prune_config(3), o);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].iterations, 30);
  EXPECT_EQ(s[1].iterations, 5);
  EXPECT_EQ(s[2].iterations, 1);
  // Explicit iterations: one for all, or one per step.
  o.iterations = {7};
  for (const auto& st : zero_tprune_schedule(prune_config(3), o)) EXPECT_EQ(st.iterations, 7);
  o.iterations = {2, 3, 4};
  s = zero_tprune_schedule(prune_config(3), o);
  EXPECT_EQ(s[0].iterations, 2);
  EXPECT_EQ(s[2].iterations, 4);

  // similar: a share of the tokens each step drops, for zero-tprune only.
  o = ZeroTPruneOptions{};
  o.layers = {0, 1};
  o.keep_rate = {0.5};
  o.similar = 0.5;
  o.uniform_init = true;
  o.seed = 9;
  s = zero_tprune_schedule(prune_config(3), o);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].similar, 4);  // round(0.5 · (17 − 9))
  EXPECT_EQ(s[1].similar, 2);  // round(0.5 · (9 − 5))
  EXPECT_TRUE(s[0].uniform_init);
  EXPECT_EQ(s[0].method, "zero-tprune");
  o.method = "random";
  s = zero_tprune_schedule(prune_config(3), o);
  EXPECT_EQ(s[0].similar, 0);
  EXPECT_EQ(s[0].seed, 9u);
  EXPECT_EQ(s[1].method, "random");
}

TEST(ZeroTPruneSchedule, StepsKeepingEveryTokenAreLeftOut) {
  ZeroTPruneOptions o;
  o.layers = {0, 1, 2};
  o.keep_rate = {0.5, 1.0, 0.5};
  auto s = zero_tprune_schedule(prune_config(3), o);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].layer, 0);
  EXPECT_EQ(s[0].keep, 9);
  EXPECT_EQ(s[1].layer, 2);
  EXPECT_EQ(s[1].keep, 5);
}

TEST(ZeroTPruneSchedule, BadSchedulesNameTheOptionAndWhatWasExpected) {
  const ArchConfig c = prune_config(3);  // 3 layers, 17 tokens
  auto sched = [&](std::vector<int64_t> layers, std::vector<double> rate, std::vector<int64_t> keep = {},
                   std::vector<int64_t> iterations = {}) {
    ZeroTPruneOptions o;
    o.layers = std::move(layers);
    o.keep_rate = std::move(rate);
    o.keep = std::move(keep);
    o.iterations = std::move(iterations);
    return zero_tprune_schedule(c, o);
  };
  {
    SCOPED_TRACE("more steps than layers");
    EXPECT_INPUT_ERROR(sched({0, 1, 2, 3}, {0.5}),
                       AllOf(HasSubstr("layers"), HasSubstr("4 steps"), HasSubstr("3 layers")));
  }
  {
    SCOPED_TRACE("layers not increasing");
    EXPECT_INPUT_ERROR(sched({1, 0}, {0.5}),
                       AllOf(HasSubstr("layers must increase"), HasSubstr("1 then 0")));
    EXPECT_INPUT_ERROR(sched({1, 1}, {0.5}),
                       AllOf(HasSubstr("layers must increase"), HasSubstr("1 then 1")));
  }
  {
    SCOPED_TRACE("layer out of range");
    EXPECT_INPUT_ERROR(sched({0, 3}, {0.5}),
                       AllOf(HasSubstr("layers[1] = 3"), HasSubstr("expected 0..2")));
    EXPECT_INPUT_ERROR(sched({-1}, {0.5}),
                       AllOf(HasSubstr("layers[0] = -1"), HasSubstr("expected 0..2")));
  }
  {
    SCOPED_TRACE("list lengths");
    EXPECT_INPUT_ERROR(sched({0, 1}, {0.5, 0.5, 0.5}),
                       AllOf(HasSubstr("keep_rate"), HasSubstr("3 entries"),
                             HasSubstr("expected 1 or one per layer in layers (2)")));
    EXPECT_INPUT_ERROR(sched({0, 1}, {}, {9, 5, 3}),
                       AllOf(HasSubstr("keep:"), HasSubstr("3 entries"), HasSubstr("(2)")));
    EXPECT_INPUT_ERROR(sched({0, 1, 2}, {0.5}, {}, {30, 5}),
                       AllOf(HasSubstr("iterations"), HasSubstr("2 entries"), HasSubstr("(3)")));
  }
  {
    SCOPED_TRACE("no keep given");
    EXPECT_INPUT_ERROR(sched({0}, {}), AllOf(HasSubstr("keep_rate"), HasSubstr("keep")));
    EXPECT_INPUT_ERROR(sched({}, {0.5}), HasSubstr("at least one layer"));
  }
  {
    SCOPED_TRACE("keeping no more than the special tokens");
    EXPECT_INPUT_ERROR(sched({0}, {}, {1}),
                       AllOf(HasSubstr("keep[0] = 1"), HasSubstr("expected 2..17"),
                             HasSubstr("special")));
    EXPECT_INPUT_ERROR(sched({0}, {0.0}),
                       AllOf(HasSubstr("keep_rate[0] = 0"), HasSubstr("special")));
    // 0.02 · 16 = 0.32 rounds to no token.
    EXPECT_INPUT_ERROR(sched({0, 1}, {0.5, 0.02}),
                       AllOf(HasSubstr("keep_rate[1] = 0.02"), HasSubstr("special")));
  }
  {
    SCOPED_TRACE("keeping more than enter the step");
    EXPECT_INPUT_ERROR(sched({0}, {}, {18}), AllOf(HasSubstr("keep[0] = 18"), HasSubstr("2..17")));
    EXPECT_INPUT_ERROR(sched({0, 2}, {}, {9, 10}),
                       AllOf(HasSubstr("keep[1] = 10"), HasSubstr("expected 2..9"),
                             HasSubstr("9 tokens enter layer 2")));
  }
}

TEST(ZeroTPrunePass, WritesScheduleNotesAndRefusesAPrunedModel) {
  register_builtin_passes();
  std::vector<std::string> problems;
  nlohmann::json stage = {{"pass", "zero-tprune"}, {"layers", {0, 2}}, {"keep_rate", 0.5},
                          {"similar", 0.25}};
  PassOptions po = PassTable::global().resolve(stage, "/pipeline/0", problems);
  ASSERT_TRUE(problems.empty()) << problems.front();
  Model m = prune_model(6);
  Model dense = m.clone();
  AnalysisManager am;
  PassContext ctx;
  nlohmann::json notes;
  ctx.notes = &notes;
  std::vector<std::string> log;
  ctx.log = [&](const std::string& s) { log.push_back(s); };
  PassTable::global().find("zero-tprune")->create(po)->run(m, am, ctx);
  ASSERT_EQ(m.config.token_pruning.size(), 2u);
  EXPECT_EQ(m.config.token_pruning[0], make_step(0, 9, "zero-tprune", 30, 2));  // round(0.25 · 8)
  EXPECT_EQ(m.config.token_pruning[1], make_step(2, 5, "zero-tprune", 1, 1));   // round(0.25 · 4)
  EXPECT_EQ(notes["steps"][1]["tokens_in"], 9);
  EXPECT_EQ(notes["steps"][1]["keep"], 5);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_THAT(log[1], AllOf(HasSubstr("layer 2"), HasSubstr("5 of 9")));
  // The weights are untouched.
  for (const auto& [name, t] : dense.flat_tensors()) EXPECT_TRUE(torch::equal(m.flat_tensors().at(name), t)) << name;
  // A second run on the pruned model is refused.
  EXPECT_INPUT_ERROR(PassTable::global().find("zero-tprune")->create(po)->run(m, am, ctx),
                     AllOf(HasSubstr("already has a token-pruning schedule"),
                           HasSubstr("pare.token_pruning")));
}

TEST(ZeroTPrunePass, RecipeOptionsValidatedWithPaths) {
  register_builtin_passes();
  std::vector<std::string> problems;
  nlohmann::json st = {{"pass", "zero-tprune"},
                       {"method", "pagerank"},
                       {"keep_rate", {0.5, 1.5}},
                       {"layers", {0.5}},
                       {"similar", 2}};
  PassTable::global().resolve(st, "/pipeline/0", problems);
  ASSERT_EQ(problems.size(), 4u);
  std::string all;
  for (const auto& p : problems) all += p + "\n";
  EXPECT_THAT(all, HasSubstr("/pipeline/0/method"));
  EXPECT_THAT(all, HasSubstr("pagerank"));
  EXPECT_THAT(all, HasSubstr("/pipeline/0/keep_rate: expected a list of numbers in [0, 1]"));
  EXPECT_THAT(all, HasSubstr("/pipeline/0/layers: expected a list of integers"));
  EXPECT_THAT(all, HasSubstr("/pipeline/0/similar"));
}

// ---- config.json and checkpoints ---------------------------------------------------------------

TEST(ZeroTPruneConfig, JsonRoundTripKeepsTheSchedule) {
  ArchConfig c = prune_config(3);
  TokenPruneStep a = make_step(0, 12, "zero-tprune", 30, 3), b = make_step(2, 4, "random");
  a.uniform_init = true;
  b.seed = 1234567890123ULL;
  c.token_pruning = {a, b};
  c.finalize("test");
  nlohmann::json j = config_to_json(c);
  ASSERT_TRUE(j["pare"]["token_pruning"].is_array()) << j.dump(2);
  EXPECT_EQ(j["pare"]["token_pruning"][0]["keep"], 12);
  EXPECT_EQ(j["pare"]["token_pruning"][1]["method"], "random");
  ArchConfig back = config_from_json(j, "config.json");
  ASSERT_EQ(back.token_pruning.size(), 2u);
  EXPECT_EQ(back.token_pruning[0], a);
  EXPECT_EQ(back.token_pruning[1], b);
  EXPECT_EQ(back.tokens_in(1), 12);
  EXPECT_EQ(back.tokens_out(2), 4);
  // No schedule: no key written, and none read back.
  nlohmann::json jd = config_to_json(prune_config(3));
  EXPECT_FALSE(jd["pare"].contains("token_pruning"));
  EXPECT_TRUE(config_from_json(jd, "config.json").token_pruning.empty());
}

TEST(ZeroTPruneConfig, TokensInAndOutFollowTheSchedule) {
  ArchConfig c = prune_config(3);
  c.token_pruning = {make_step(0, 9), make_step(2, 5)};
  c.finalize("test");
  EXPECT_EQ(c.tokens_in(0), 17);
  EXPECT_EQ(c.tokens_out(0), 9);
  EXPECT_EQ(c.tokens_in(1), 9);
  EXPECT_EQ(c.tokens_out(1), 9);
  EXPECT_EQ(c.tokens_in(2), 9);
  EXPECT_EQ(c.tokens_out(2), 5);
  EXPECT_EQ(c.prune_step(1), nullptr);
  ASSERT_NE(c.prune_step(2), nullptr);
  EXPECT_EQ(c.prune_step(2)->keep, 5);
}

TEST(ZeroTPruneConfig, SaveLoadKeepsScheduleAndLogits) {
  Model m = prune_model(7);
  set_schedule(m, {make_step(0, 9, "zero-tprune", 30, 2), make_step(1, 4, "cls-attention")});
  pare_test::TempDir dir;
  save_model(m, dir.path());
  Model back = load_model(dir.path());
  ASSERT_EQ(back.config.token_pruning.size(), 2u);
  EXPECT_EQ(back.config.token_pruning[0], m.config.token_pruning[0]);
  EXPECT_EQ(back.config.token_pruning[1], m.config.token_pruning[1]);
  torch::NoGradGuard ng;
  torch::Tensor x = test_images(5, 15).to(torch::kFloat32);
  torch::Tensor want = m.forward(x);
  EXPECT_TRUE(torch::equal(back.forward(x), want)) << back.forward(x) << "\n" << want;
  // ...and the schedule is what made the logits: without it they differ.
  back.config.token_pruning.clear();
  EXPECT_GT(pare_test::max_abs_diff(back.forward(x), want), 1e-5);
  EXPECT_EQ(model_flops(load_model(dir.path())), model_flops(m));
}

TEST(ZeroTPruneConfig, ConfigJsonValidationNamesTheField) {
  ArchConfig c = prune_config(3);
  c.token_pruning = {make_step(0, 9), make_step(1, 5)};
  c.finalize("test");
  const nlohmann::json good = config_to_json(c);
  ASSERT_NO_THROW(config_from_json(good, "m/config.json"));
  auto with = [&](size_t i, const char* field, const nlohmann::json& v) {
    nlohmann::json j = good;
    j["pare"]["token_pruning"][i][field] = v;
    return j;
  };
  EXPECT_INPUT_ERROR(config_from_json(with(1, "layer", 3), "m/config.json"),
                     AllOf(HasSubstr("m/config.json"), HasSubstr("pare.token_pruning[1].layer"),
                           HasSubstr("expected 0..2"), HasSubstr("got 3")));
  EXPECT_INPUT_ERROR(config_from_json(with(1, "layer", 0), "m/config.json"),
                     AllOf(HasSubstr("pare.token_pruning[1].layer"), HasSubstr("increasing")));
  EXPECT_INPUT_ERROR(config_from_json(with(0, "keep", 1), "m/config.json"),
                     AllOf(HasSubstr("pare.token_pruning[0].keep"), HasSubstr("expected 2..17"),
                           HasSubstr("got 1")));
  EXPECT_INPUT_ERROR(config_from_json(with(1, "keep", 10), "m/config.json"),
                     AllOf(HasSubstr("pare.token_pruning[1].keep"), HasSubstr("expected 2..9"),
                           HasSubstr("got 10")));
  EXPECT_INPUT_ERROR(config_from_json(with(0, "method", "pagerank"), "m/config.json"),
                     AllOf(HasSubstr("pare.token_pruning[0].method"),
                           HasSubstr("zero-tprune, random, cls-attention, attention or learned"),
                           HasSubstr("'pagerank'")));
  EXPECT_INPUT_ERROR(config_from_json(with(0, "iterations", 0), "m/config.json"),
                     AllOf(HasSubstr("pare.token_pruning[0].iterations"), HasSubstr("1..1000")));
  // similar: at most the tokens dropped (17 − 9 = 8) and half the non-special tokens (8).
  EXPECT_INPUT_ERROR(config_from_json(with(0, "similar", 9), "m/config.json"),
                     AllOf(HasSubstr("pare.token_pruning[0].similar"), HasSubstr("expected 0..8")));
  EXPECT_INPUT_ERROR(config_from_json(with(0, "keep", "nine"), "m/config.json"),
                     AllOf(HasSubstr("pare.token_pruning[0]"), HasSubstr("keep"),
                           HasSubstr("expected an integer")));
  nlohmann::json not_array = good;
  not_array["pare"]["token_pruning"] = {{"layer", 0}};
  EXPECT_INPUT_ERROR(config_from_json(not_array, "m/config.json"),
                     AllOf(HasSubstr("pare.token_pruning"), HasSubstr("expected an array")));
  nlohmann::json no_keep = good;
  no_keep["pare"]["token_pruning"][0].erase("keep");
  EXPECT_INPUT_ERROR(config_from_json(no_keep, "m/config.json"),
                     AllOf(HasSubstr("pare.token_pruning[0]"), HasSubstr("layer and keep")));
  nlohmann::json too_many = good;
  for (int64_t l = 0; l < 4; ++l) too_many["pare"]["token_pruning"][l] = {{"layer", l}, {"keep", 9 - l}};
  EXPECT_INPUT_ERROR(config_from_json(too_many, "m/config.json"),
                     AllOf(HasSubstr("pare.token_pruning"), HasSubstr("4 steps"),
                           HasSubstr("3 layers")));
}

TEST(ZeroTPruneConfig, LayerWithoutHeadsCannotPrune) {
  Model m = prune_model(8);
  Rewriter(m).keep("blk.1.heads", {});
  m.config.token_pruning = {make_step(1, 9)};
  // Refused when the config is read, before any forward.
  EXPECT_INPUT_ERROR(m.config.finalize("test"), AllOf(HasSubstr("layer 1"), HasSubstr("no attention heads")));
}

}  // namespace
}  // namespace pare
