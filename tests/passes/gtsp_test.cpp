// GTSP's pieces (issue 19): materialisation equals the masked model (heads, FFN channels, whole
// branches, whole layers, learned node steps) on a ViT and on the GraphGPS fixture; every
// materialised form survives save -> load; the learned node step keeps exactly its count, never
// padding, and its scorer gets straight-through gradients; bad options and configs are refused
// with the option named.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "families/checkpoint.h"
#include "families/family.h"
#include "families/token_pruning.h"
#include "groups.h"
#include "gtsp.h"
#include "test_util.h"
#include "tokens.h"

namespace pare {
namespace {

using masks::MaskGroupKind;
using ::testing::HasSubstr;

Model vit3(uint64_t seed) {
  ArchConfig c = pare_test::tiny_vit_config("layernorm");
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.layers.clear();
  c.out_dim = 0;
  c.finalize("test");
  Model m = family_by_name("vit").init(c, seed);
  pare_test::order_one_weights(m, seed);
  return m;
}

torch::Tensor images(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn({n, 1, 8, 8});
}

torch::Tensor one(float v) { return torch::tensor(std::vector<float>{v}); }

// Closed: heads 1 and 3 of layer 0, FFN channels 0..9 of layer 0, layer 1's attention and FFN
// branches (the layer goes), layer 2's FFN branch. The masked model, then the same removed.
TEST(Gtsp, VitMaterialisedEqualsMasked) {
  Model m = vit3(3);
  const torch::Tensor x = images(5, 4);
  masks::MaskSet set;
  set.set(MaskGroupKind::kHeads, 0, torch::tensor(std::vector<float>{1, 0, 1, 0}));
  torch::Tensor ch = torch::ones({32});
  ch.narrow(0, 0, 10).zero_();
  set.set(MaskGroupKind::kFfnChannels, 0, ch);
  set.set(MaskGroupKind::kAttnBranch, 1, one(0));
  set.set(MaskGroupKind::kFfnBranch, 1, one(0));
  set.set(MaskGroupKind::kFfnBranch, 2, one(0));
  Model masked = m.clone();
  set.attach(masked);
  torch::NoGradGuard ng;
  const torch::Tensor want = masked.forward(x);

  Rewriter rw(m);
  rw.keep("blk.0.heads", {0, 2});
  std::vector<int64_t> keep_ch;
  for (int64_t i = 10; i < 32; ++i) keep_ch.push_back(i);
  rw.keep("blk.0.ffn", keep_ch);
  rw.remove_branch(1, "attention");
  rw.remove_branch(1, "ffn");
  rw.remove_branch(2, "ffn");
  EXPECT_INPUT_ERROR(rw.remove_branch(2, "ffn"), HasSubstr("no FFN branch left"));
  EXPECT_INPUT_ERROR(rw.remove_layer(0), HasSubstr("still has its attention"));
  rw.remove_layer(1);
  EXPECT_TRUE(m.verify().empty());
  ASSERT_EQ(m.config.num_hidden_layers, 2);
  EXPECT_FALSE(m.config.layers[1].ffn);
  EXPECT_TRUE(m.config.layers[1].attention);
  EXPECT_FALSE(m.has("blk.1.ffn_norm.weight"));
  EXPECT_FALSE(m.has("blk.2.attn_q.weight"));
  const torch::Tensor got = m.forward(x);
  EXPECT_LT(pare_test::max_abs_diff(got, want), 1e-5);

  // FLOPs and params drop by what left: layer 1 entirely, layer 2's FFN (now layer 1's).
  const Model dense = vit3(3);
  auto flops = [](const Model& mm) {
    int64_t f = 0;
    for (const auto& r : mm.family().costs(mm)) f += r.flops;
    return f;
  };
  // By hand (T = 5 tokens, d = 16, 4 heads of 4, FFN 32), multiply-accumulates per layer: Q/K/V
  // T·3·d·16 = 3840, O T·16·d = 1280, FFN T·2·32·d = 5120, QKᵀ + AV 2·4·T²·4 = 800: 11040.
  // Layer 0 with 2 heads and 22 channels: 1920 + 640 + 3520 + 400 = 6480; layer 2 without its
  // FFN: 5920; layer 1 gone.
  ASSERT_EQ(dense.config.seq_len(), 5);
  EXPECT_EQ(flops(m), flops(dense) - 2 * (3 * 11040 - 6480 - 5920));
  // save -> load: the layer without FFN and the shorter stack come back from config.json.
  const std::string dir = std::filesystem::temp_directory_path() / "pare_gtsp_vit_saved";
  std::filesystem::remove_all(dir);
  save_model(m, dir);
  const Model back = load_model(dir);
  EXPECT_EQ(back.config.num_hidden_layers, 2);
  EXPECT_FALSE(back.config.layers[1].ffn);
  EXPECT_TRUE(torch::equal(back.forward(x), got));
  std::filesystem::remove_all(dir);
}

// A learned node step on the ViT: the deterministic keep mask through the hook equals the
// deployed model (no hook); in training the mask keeps exactly keep − 1 patches besides CLS and
// the scorer gets gradients; keep = T is the dense model exactly.
TEST(Gtsp, VitLearnedTokenStep) {
  Model m = vit3(5);
  const torch::Tensor x = images(6, 6);
  torch::Tensor dense_logits;
  {
    torch::NoGradGuard ng;
    dense_logits = m.forward(x);
  }
  m.config.token_pruning = {TokenPruneStep{}};
  m.config.token_pruning[0].layer = 0;
  m.config.token_pruning[0].method = "learned";
  m.config.token_pruning[0].keep = m.config.seq_len();  // everything kept
  m.tensors["blk.0.token_score.weight"] = torch::randn({16});
  m.tensors["blk.0.token_score.bias"] = torch::zeros({1});
  EXPECT_TRUE(m.verify().empty());
  {
    torch::NoGradGuard ng;
    EXPECT_TRUE(torch::equal(m.forward(x), dense_logits));
  }
  m.config.token_pruning[0].keep = 3;  // CLS + 2 of 4 patches
  torch::Tensor deployed;
  {
    torch::NoGradGuard ng;
    deployed = m.forward(x);
  }
  Model hooked = m.clone();
  masks::TokenGate gate(7);
  gate.attach(hooked);
  gate.set_training(false);  // evaluation: the hook leaves the scores, the family keeps the top
  {
    torch::NoGradGuard ng;
    EXPECT_TRUE(torch::equal(hooked.forward(x), deployed));
  }
  gate.set_training(true);
  hooked.set_requires_grad(true);
  const torch::Tensor y = hooked.forward(x);
  EXPECT_EQ(gate.offered(), 6 * 4);
  EXPECT_EQ(gate.kept(), 6 * 2);
  y.pow(2).sum().backward();
  const torch::Tensor g = hooked.at("blk.0.token_score.weight").grad();
  ASSERT_TRUE(g.defined());
  EXPECT_GT(g.abs().sum().item<double>(), 0.0) << "no straight-through gradient reached the scorer";
  // save -> load keeps the schedule and the scorer.
  const std::string dir = std::filesystem::temp_directory_path() / "pare_gtsp_vit_nodes";
  std::filesystem::remove_all(dir);
  save_model(m, dir);
  const Model back = load_model(dir);
  ASSERT_EQ(back.config.token_pruning.size(), 1u);
  EXPECT_EQ(back.config.token_pruning[0].method, "learned");
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::equal(back.forward(x), deployed));
  std::filesystem::remove_all(dir);
}

// GraphGPS fixture: a learned node step with keep rate 0.5 at layer 0 (nodes attending from
// layer 1 on), heads and branches closed by masks then removed; padding is never offered.
TEST(Gtsp, GpsMaterialisedEqualsMaskedAndPaddingIsNeverACandidate) {
  const GraphBatch b = pare_test::gps_fixture_batch("gine");
  Model m = load_model(pare_test::fixture("gps/gine"));
  ASSERT_GE(m.config.num_hidden_layers, 2);
  TokenPruneStep st;
  st.layer = 0;
  st.method = "learned";
  st.keep_rate = 0.5;
  m.config.token_pruning = {st};
  const int64_t d = m.config.hidden_size;
  torch::manual_seed(1);
  m.tensors["blk.0.token_score.weight"] = torch::randn({d});
  m.tensors["blk.0.token_score.bias"] = torch::zeros({1});
  ASSERT_TRUE(m.verify().empty());
  const int64_t H = m.config.layers[1].heads;
  ASSERT_GE(H, 2);
  masks::MaskSet set;
  torch::Tensor hm = torch::ones({H});
  hm[0] = 0;
  set.set(MaskGroupKind::kHeads, 1, hm);
  set.set(MaskGroupKind::kFfnBranch, 1, one(0));
  // (The step's own layer keeps its attention: the step ranks there.)
  set.set(MaskGroupKind::kAttnBranch, m.config.num_hidden_layers - 1, one(0));
  Model masked = m.clone();
  set.attach(masked);
  masks::TokenGate gate(3);
  gate.attach(masked);
  gate.set_training(false);
  torch::NoGradGuard ng;
  const torch::Tensor want = masked.family().forward_graph(masked, b);
  Rewriter rw(m);
  std::vector<int64_t> kh;
  for (int64_t h = 1; h < H; ++h) kh.push_back(h);
  rw.keep("blk.1.heads", kh);
  rw.remove_branch(1, "ffn");
  rw.remove_branch(m.config.num_hidden_layers - 1, "attention");
  EXPECT_INPUT_ERROR(rw.remove_branch(0, "attention"), HasSubstr("token-pruning step"));
  EXPECT_INPUT_ERROR(rw.remove_layer(1), HasSubstr("keeps its layers"));
  ASSERT_TRUE(m.verify().empty());
  const torch::Tensor got = m.family().forward_graph(m, b);
  EXPECT_LT(pare_test::max_abs_diff(got, want), 1e-4);
  // Training: every real node is offered, padding never (n_max · G slots exceed the nodes).
  {
    at::AutoGradMode on(true);
    Model t = m.clone();
    masks::TokenGate g2(9);
    g2.attach(t);
    (void)t.family().forward_graph(t, b);
    EXPECT_EQ(g2.offered(), b.num_nodes());
    int64_t kept = 0;
    for (int64_t gi = 0; gi < b.num_graphs; ++gi)
      kept += graph_keep(st, (b.ptr[gi + 1] - b.ptr[gi]).item<int64_t>());
    EXPECT_EQ(g2.kept(), kept);
  }
  // save -> load of the layer without attention, the one without FFN and the node schedule.
  const std::string dir = std::filesystem::temp_directory_path() / "pare_gtsp_gps_saved";
  std::filesystem::remove_all(dir);
  save_model(m, dir);
  const Model back = load_model(dir);
  EXPECT_FALSE(back.config.layers[back.config.num_hidden_layers - 1].attention);
  EXPECT_FALSE(back.config.layers[1].ffn);
  EXPECT_TRUE(torch::equal(back.family().forward_graph(back, b), got));
  std::filesystem::remove_all(dir);
}

TEST(Gtsp, BadOptionsAndConfigsNameWhatIsWrong) {
  const Model m = vit3(1);
  GtspOptions o;
  EXPECT_INPUT_ERROR(check_gtsp(m, o), HasSubstr("no axis chosen"));
  o.heads = true;
  o.target_flops = 0;
  EXPECT_INPUT_ERROR(check_gtsp(m, o), HasSubstr("target_flops 0"));
  o.target_flops = 1.5;
  EXPECT_INPUT_ERROR(check_gtsp(m, o), HasSubstr("(0, 1]"));
  o.target_flops = 0.7;
  check_gtsp(m, o);  // fine
  const Model lm = load_model(pare_test::fixture("lm/llama"));
  EXPECT_INPUT_ERROR(check_gtsp(lm, o), HasSubstr("llama family is not supported"));
  Model g = load_model(pare_test::fixture("gps/gine"));
  g.config.gps.split = "";
  EXPECT_INPUT_ERROR(check_gtsp(g, o), HasSubstr("no training split"));
  g.config.gps.split = "random";
  g.config.gps.global_model = "None";
  o.nodes = true;
  EXPECT_INPUT_ERROR(check_gtsp(g, o), HasSubstr("no global attention"));
  // A learned step keeping more tokens than enter the layer, and one with an S stage.
  nlohmann::json j = config_to_json(m.config);
  j["pare"]["token_pruning"] = {{{"layer", 0}, {"keep", 6}, {"method", "learned"}}};
  EXPECT_INPUT_ERROR(config_from_json(j, "config.json"), HasSubstr("keep: expected 2..5"));
  j["pare"]["token_pruning"] = {{{"layer", 0}, {"keep", 3}, {"method", "learned"}, {"similar", 1}}};
  EXPECT_INPUT_ERROR(config_from_json(j, "config.json"), HasSubstr("no S stage"));
  j["pare"]["token_pruning"] = nlohmann::json::array();
  j["pare"]["layers"][0]["attention"] = false;
  EXPECT_INPUT_ERROR(config_from_json(j, "config.json"), HasSubstr("heads must be 0"));
}

}  // namespace
}  // namespace pare
