// Mask groups (masks/groups.h) on a small ViT with weights of order one, the GraphGPS gine fixture and
// the llama / phi decoder fixtures (tests/fixtures, written by python3-torch):
// open masks give the logits of the model with a no-op hook bit for bit (and of the hook-free
// model within float32 rounding: hooks route the attention through its unfused path); a closed
// head equals the head's output-projection columns zeroed, a closed FFN channel its ffn_down
// column zeroed, a closed attention / FFN branch its output projection zeroed (references built
// here on clones without hooks); gradients reach a hard-concrete gate's log α through the hooks.
#include <gtest/gtest.h>

#include <cmath>

#include "data/graph_data.h"
#include "families/checkpoint.h"
#include "families/family.h"
#include "gates.h"
#include "io/torch_pickle.h"
#include "groups.h"
#include "test_util.h"

namespace pare::masks {
namespace {

using ::testing::HasSubstr;

Model vit_model() {
  ArchConfig c = pare_test::tiny_vit_config("layernorm");  // hidden 16, 2 layers, 8x8 images
  c.num_attention_heads = 4;
  c.layers.clear();
  c.finalize("test");
  Model m = family_by_name("vit").init(c, 5);
  pare_test::order_one_weights(m, 9);
  return m;
}

torch::Tensor images() {
  torch::manual_seed(3);
  return torch::randn({5, 1, 8, 8});
}

torch::Tensor logits(const Model& m) {
  torch::NoGradGuard ng;
  return m.forward(images());
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tol = 1e-5) {
  EXPECT_LT((a - b).abs().max().item<double>(), tol) << (a - b).abs().max().item<double>();
}

TEST(MaskGroups, OpenMasksAreTheDenseModel) {
  Model m = vit_model();
  const torch::Tensor dense = logits(m);
  Model noop = m.clone();
  noop.hooks.observers.push_back([](HookPoint, int64_t, torch::Tensor&) {});
  const torch::Tensor same_path = logits(noop);
  MaskSet s;
  for (int64_t l = 0; l < 2; ++l) {
    s.set(MaskGroupKind::kHeads, l, torch::ones({4}));
    s.set(MaskGroupKind::kFfnChannels, l, torch::ones({32}));
    s.set(MaskGroupKind::kAttnBranch, l, torch::ones({1}));
    s.set(MaskGroupKind::kFfnBranch, l, torch::ones({1}));
  }
  s.attach(m);
  EXPECT_TRUE(torch::equal(logits(m), same_path));
  expect_close(logits(m), dense);
}

TEST(MaskGroups, ClosedGatesEqualZeroedWeights) {
  const Model base = vit_model();
  const int64_t hd = 4;
  // Head 2 of layer 0 closed = its 4 columns of attn_o zeroed.
  {
    Model m = base.clone(), ref = base.clone();
    MaskSet s;
    s.set(MaskGroupKind::kHeads, 0, torch::tensor({1.0f, 1.0f, 0.0f, 1.0f}));
    s.attach(m);
    ref.dense("blk.0.attn_o").weight.narrow(1, 2 * hd, hd).zero_();
    expect_close(logits(m), logits(ref));
    EXPECT_GT((logits(m) - logits(base)).abs().max().item<double>(), 1e-3) << "the mask changed nothing";
  }
  // FFN channels 3 and 17 of layer 1 closed = those columns of ffn_down zeroed.
  {
    Model m = base.clone(), ref = base.clone();
    torch::Tensor z = torch::ones({32});
    z[3] = 0;
    z[17] = 0;
    MaskSet s;
    s.set(MaskGroupKind::kFfnChannels, 1, z);
    s.attach(m);
    ref.dense("blk.1.ffn_down").weight.select(1, 3).zero_();
    ref.dense("blk.1.ffn_down").weight.select(1, 17).zero_();
    expect_close(logits(m), logits(ref));
  }
  // Whole branches closed = their output projection (weight and bias) zeroed.
  for (auto [kind, slot] : {std::pair{MaskGroupKind::kAttnBranch, "blk.1.attn_o"},
                            std::pair{MaskGroupKind::kFfnBranch, "blk.0.ffn_down"}}) {
    Model m = base.clone(), ref = base.clone();
    MaskSet s;
    s.set(kind, kind == MaskGroupKind::kAttnBranch ? 1 : 0, torch::zeros({1}));
    s.attach(m);
    ref.dense(slot).weight.zero_();
    ref.dense(slot).bias.zero_();
    expect_close(logits(m), logits(ref));
  }
}

TEST(MaskGroups, GradientsReachTheGate) {
  Model m = vit_model();
  HardConcrete gate(4, 0.9);
  MaskSet s;
  auto gen = at::detail::createCPUGenerator(1);
  s.set(MaskGroupKind::kHeads, 1, gate.sample(gen));
  s.attach(m);
  torch::Tensor out = m.forward(images());
  out.pow(2).sum().backward();
  ASSERT_TRUE(gate.log_alpha.grad().defined());
  EXPECT_GT(gate.log_alpha.grad().abs().sum().item<double>(), 0.0);
}

TEST(MaskGroups, WrongLengthsNameTheGroup) {
  Model m = vit_model();
  MaskSet s;
  s.set(MaskGroupKind::kHeads, 0, torch::ones({3}));
  s.attach(m);
  EXPECT_INPUT_ERROR(logits(m), HasSubstr("mask heads layer 0: 3 entries do not split a context of width 16"));
  MaskSet f;
  Model m2 = vit_model();
  f.set(MaskGroupKind::kFfnChannels, 1, torch::ones({31}));
  f.attach(m2);
  EXPECT_INPUT_ERROR(logits(m2), HasSubstr("mask ffn-channels layer 1: 31 entries for an FFN of width 32"));
  EXPECT_INPUT_ERROR(s.set(MaskGroupKind::kAttnBranch, 0, torch::ones({2, 2})), HasSubstr("1-D mask"));
}

// GraphGPS (the gine fixture of tests/fixtures/gps, written by python3-torch): the same hook
// points in its global attention and FFN.
TEST(MaskGroups, GraphGpsHeadsChannelsAndBranches) {
  const GraphBatch b = pare_test::gps_fixture_batch("gine");
  const Model base = load_model(pare_test::fixture("gps/gine"));
  auto run = [&](const Model& m) {
    torch::NoGradGuard ng;
    return m.family().forward_graph(m, b);
  };
  const auto& d = base.config.layers[0];
  ASSERT_GE(d.heads, 2);
  {  // open masks: the model with a no-op hook, bit for bit
    Model m = base.clone(), noop = base.clone();
    noop.hooks.observers.push_back([](HookPoint, int64_t, torch::Tensor&) {});
    MaskSet s;
    s.set(MaskGroupKind::kHeads, 0, torch::ones({d.heads}));
    s.set(MaskGroupKind::kFfnChannels, 0, torch::ones({d.intermediate_size}));
    s.set(MaskGroupKind::kAttnBranch, 0, torch::ones({1}));
    s.set(MaskGroupKind::kFfnBranch, 0, torch::ones({1}));
    s.attach(m);
    EXPECT_TRUE(torch::equal(run(m), run(noop)));
  }
  {  // head 1 closed = its attn_o columns zeroed; channel 0 closed = its ffn_down column zeroed
    Model m = base.clone(), ref = base.clone();
    torch::Tensor zh = torch::ones({d.heads});
    zh[1] = 0;
    torch::Tensor zc = torch::ones({d.intermediate_size});
    zc[0] = 0;
    MaskSet s;
    s.set(MaskGroupKind::kHeads, 0, zh);
    s.set(MaskGroupKind::kFfnChannels, 0, zc);
    s.attach(m);
    ref.dense("blk.0.attn_o").weight.narrow(1, d.head_dim, d.head_dim).zero_();
    ref.dense("blk.0.ffn_down").weight.select(1, 0).zero_();
    expect_close(run(m), run(ref));
    EXPECT_GT((run(m) - run(base)).abs().max().item<double>(), 1e-6) << "the masks changed nothing";
  }
  {  // both branches of layer 0 closed = attn_o and ffn_down zeroed
    Model m = base.clone(), ref = base.clone();
    MaskSet s;
    s.set(MaskGroupKind::kAttnBranch, 0, torch::zeros({1}));
    s.set(MaskGroupKind::kFfnBranch, 0, torch::zeros({1}));
    s.attach(m);
    for (const char* slot : {"blk.0.attn_o", "blk.0.ffn_down"}) {
      ref.dense(slot).weight.zero_();
      ref.dense(slot).bias.zero_();
    }
    expect_close(run(m), run(ref));
  }
}

// Decoder LMs (the llama fixture: grouped-query attention, gated FFN; phi: parallel blocks, biases):
// the same hook points, the same equalities.
TEST(MaskGroups, DecoderLmsHeadsChannelsAndBranches) {
  for (const char* name : {"llama", "phi"}) {
    SCOPED_TRACE(name);
    const Model base = load_model(pare_test::fixture(std::string("lm/") + name));
    const auto& d = base.config.layers[1];
    ASSERT_GE(d.heads, 2);
    const torch::Tensor ids = torch::arange(12, torch::kLong).remainder(base.config.vocab_size).unsqueeze(0);
    auto run = [&](const Model& m) {
      torch::NoGradGuard ng;
      return m.forward(ids);
    };
    Model m = base.clone(), ref = base.clone();
    torch::Tensor zh = torch::ones({d.heads});
    zh[d.heads - 1] = 0;
    torch::Tensor zc = torch::ones({d.intermediate_size});
    zc[2] = 0;
    MaskSet s;
    s.set(MaskGroupKind::kHeads, 1, zh);
    s.set(MaskGroupKind::kFfnChannels, 1, zc);
    s.set(MaskGroupKind::kAttnBranch, 0, torch::zeros({1}));
    s.attach(m);
    ref.dense("blk.1.attn_o").weight.narrow(1, (d.heads - 1) * d.head_dim, d.head_dim).zero_();
    ref.dense("blk.1.ffn_down").weight.select(1, 2).zero_();
    ref.dense("blk.0.attn_o").weight.zero_();
    if (ref.dense("blk.0.attn_o").bias.defined()) ref.dense("blk.0.attn_o").bias.zero_();
    expect_close(run(m), run(ref), 1e-4);
    EXPECT_GT((run(m) - run(base)).abs().max().item<double>(), 1e-4) << "the masks changed nothing";
  }
}

}  // namespace
}  // namespace pare::masks
