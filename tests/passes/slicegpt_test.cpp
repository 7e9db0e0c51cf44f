// SliceGPT pass: folding exactness, slicing 0 reproduces the dense logits, shapes after slicing,
// the kept width formula, and an exact case where the residual stream lives in a subspace.
#include <gtest/gtest.h>

#include "builtin.h"
#include "families/checkpoint.h"
#include "base/error.h"
#include "io/safetensors.h"
#include "tasks/evaluate.h"
#include "families/vit.h"
#include "slicegpt.h"
#include "test_util.h"

namespace pare {
namespace {

ArchConfig tiny_config() {
  ArchConfig c;
  c.hidden_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.intermediate_size = 64;
  c.image_size = 8;
  c.patch_size = 4;
  c.num_channels = 1;
  c.num_labels = 5;
  c.layer_norm_eps = 1e-6;
  c.finalize("test");
  return c;
}

// A model with non-trivial LayerNorm weights and biases (init sets them to 1 and 0).
Model tiny_model(uint64_t seed) {
  Model m = vit_family().init(tiny_config(), seed);
  torch::manual_seed(seed + 1);
  for (auto& [name, t] : m.tensors)
    if (name.find("norm.weight") != std::string::npos)
      t = 1.0 + 0.3 * torch::randn(t.sizes());
    else if (name.find("norm.bias") != std::string::npos)
      t = 0.2 * torch::randn(t.sizes());
  for (auto& [slot, form] : m.linears) {
    auto& d = m.dense(slot);
    d.weight = torch::randn(d.weight.sizes()) / std::sqrt(double(d.weight.size(1)));
    d.bias = 0.1 * torch::randn(d.bias.sizes());
  }
  m.tensors["pos_embd"] = torch::randn(m.tensors["pos_embd"].sizes());
  m.tensors["cls_token"] = torch::randn(m.tensors["cls_token"].sizes());
  return m;
}

double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).norm() / b.norm()).item<double>();
}

TEST(SliceGpt, SlicedWidthRoundsDownToMultiple) {
  EXPECT_EQ(sliced_width(128, 0.0, 8), 128);
  EXPECT_EQ(sliced_width(128, 0.25, 8), 96);
  EXPECT_EQ(sliced_width(128, 0.3, 8), 88);   // 89.6 -> 88
  EXPECT_EQ(sliced_width(128, 0.1, 8), 112);  // 115.2 -> 112
  EXPECT_EQ(sliced_width(96, 0.25, 8), 72);
  EXPECT_EQ(sliced_width(100, 0.0, 8), 100);  // slicing 0 keeps every dimension
  EXPECT_EQ(sliced_width(100, 0.01, 8), 96);
  EXPECT_EQ(sliced_width(32, 0.99, 8), 8);    // never below one multiple
}

TEST(SliceGpt, FoldingLayerNormsKeepsLogits) {
  Model m = tiny_model(1);
  m.to_dtype(torch::kFloat64);
  torch::Tensor x = torch::randn({6, 1, 8, 8}, torch::kFloat64);
  torch::NoGradGuard ng;
  torch::Tensor before = m.forward(x);
  fold_layernorms(m);
  EXPECT_EQ(m.config.norm, "rmsnorm");
  EXPECT_TRUE(m.verify().empty());
  EXPECT_FALSE(m.has("blk.0.attn_norm.weight"));
  EXPECT_LT(rel_err(m.forward(x), before), 1e-12);
}

TEST(SliceGpt, SlicingZeroReproducesDenseLogitsFloat32) {
  Model m = tiny_model(2);
  torch::Tensor calib = torch::randn({64, 1, 8, 8});
  torch::Tensor x = torch::randn({16, 1, 8, 8});
  torch::NoGradGuard ng;
  torch::Tensor before = m.forward(x);
  SliceGptOptions o;
  o.slicing = 0.0;
  slice_gpt(m, calib, o, 32, [](const std::string&) {});
  EXPECT_EQ(m.dtype(), torch::kFloat32);
  EXPECT_TRUE(m.config.shortcuts);
  EXPECT_LT(rel_err(m.forward(x), before), 1e-4);
}

TEST(SliceGpt, ShapesAfterSlicingMatchConfig) {
  Model m = tiny_model(3);
  torch::Tensor calib = torch::randn({64, 1, 8, 8});
  SliceGptOptions o;
  o.slicing = 0.25;
  auto notes = slice_gpt(m, calib, o, 64, [](const std::string&) {});
  EXPECT_TRUE(m.verify().empty());
  EXPECT_EQ(notes["sliced_width"], 24);
  for (int64_t s = 0; s + 1 < m.config.num_sites(); ++s) EXPECT_EQ(m.config.site_dim(s), 24);
  EXPECT_EQ(m.config.out_dim, 32);  // head unsliced by default
  EXPECT_EQ(m.at("blk.0.attn_q.weight").sizes(), (std::vector<int64_t>{32, 24}));
  EXPECT_EQ(m.at("blk.0.attn_o.weight").sizes(), (std::vector<int64_t>{24, 32}));
  EXPECT_EQ(m.at("blk.1.ffn_down.weight").sizes(), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(m.at("blk.1.ffn_shortcut").sizes(), (std::vector<int64_t>{24, 32}));
  EXPECT_EQ(m.at("pos_embd").sizes(), (std::vector<int64_t>{1, 5, 24}));
  torch::NoGradGuard ng;
  EXPECT_EQ(m.forward(torch::randn({3, 1, 8, 8})).sizes(), (std::vector<int64_t>{3, 5}));
}

TEST(SliceGpt, SliceHeadSlicesClassifierInput) {
  Model m = tiny_model(4);
  SliceGptOptions o;
  o.slicing = 0.5;
  o.slice_head = true;
  slice_gpt(m, torch::randn({32, 1, 8, 8}), o, 32, [](const std::string&) {});
  EXPECT_EQ(m.config.out_dim, 16);
  EXPECT_EQ(m.at("cls_head.weight").sizes(), (std::vector<int64_t>{5, 16}));
  EXPECT_TRUE(m.verify().empty());
}

// Parameters after slicing against a count by hand from the shapes SliceGPT must produce.
TEST(SliceGpt, ParamsAndFlopsAfterSlicingMatchHandCount) {
  Model m = tiny_model(5);
  int64_t p0 = m.num_params();
  SliceGptOptions o;
  o.slicing = 0.5;
  slice_gpt(m, torch::randn({32, 1, 8, 8}), o, 32, [](const std::string&) {});
  // Hand count for D = 32, d = 16, I = 64, 4 heads × 8, 5 labels, 4 patches + CLS, head unsliced.
  const int64_t d = 16, D = 32, I = 64, T = 5, P = 16;
  int64_t emb = d * P + d + d + T * d;
  auto layer = [&](int64_t next) {
    return 3 * (D * d + D) + (d * D + d) + (I * d + I) + (next * I + next) + d * d + d * next;
  };
  int64_t head = 5 * D + 5;
  EXPECT_EQ(m.num_params(), emb + layer(d) + layer(D) + head);
  EXPECT_LT(m.num_params(), p0);
  // FLOPs = 2 x MACs: patch projection on N = 4 patches, per layer Q/K/V/O, MLP, QK^T and AV
  // (4 heads x 8), both shortcuts, classifier on CLS.
  const int64_t N = 4, H = 4, hd = 8;
  auto layer_macs = [&](int64_t next) {
    return T * (3 * D * d + d * D + I * d + next * I) + 2 * H * T * T * hd + T * (d * d + d * next);
  };
  EXPECT_EQ(model_flops(m), 2 * (N * P * d + layer_macs(d) + layer_macs(D) + 5 * D));
}

TEST(SliceGpt, RefusesAnAlreadySlicedModel) {
  Model m = tiny_model(6);
  SliceGptOptions o;
  slice_gpt(m, torch::randn({16, 1, 8, 8}), o, 16, [](const std::string&) {});
  EXPECT_THROW(slice_gpt(m, torch::randn({16, 1, 8, 8}), o, 16, [](const std::string&) {}),
               InputError);
}

TEST(PassTable, SlicegptOptionsValidatedWithPaths) {
  register_builtin_passes();
  std::vector<std::string> problems;
  nlohmann::json st = {{"pass", "slicegpt"}, {"slicing", 1.5}, {"slice_heads", true}};
  PassTable::global().resolve(st, "/pipeline/0", problems);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find("/pipeline/0/slicing: expected a number in [0, 1), got 1.5"),
            std::string::npos)
      << problems[0];
  EXPECT_NE(problems[1].find("/pipeline/0/slice_heads: unknown key"), std::string::npos);
  problems.clear();
  PassOptions o = PassTable::global().resolve({{"pass", "slicegpt"}}, "/p", problems);
  EXPECT_TRUE(problems.empty());
  EXPECT_DOUBLE_EQ(o.number("slicing"), 0.25);
  PassTable::global().resolve({{"pass", "slicegtp"}}, "/pipeline/1", problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("unknown pass 'slicegtp'"), std::string::npos);
}

}  // namespace
}  // namespace pare

namespace pare {
namespace {

// Against tests/fixtures/make_slicegpt_reference.py: an independent Python implementation of
// SliceGPT (python3-torch) on the tiny HF ViT fixture, same calibration images.
TEST(SliceGpt, MatchesIndependentPythonReference) {
  SafetensorsFile io = read_safetensors(pare_test::fixture("tiny_vit_slicegpt.safetensors"));
  for (auto [slicing, head, key] : {std::tuple{0.5, false, "logits_s0.5_head0"},
                                    std::tuple{0.5, true, "logits_s0.5_head1"},
                                    std::tuple{0.25, false, "logits_s0.25_head0"}}) {
    Model m = load_model(pare_test::fixture("tiny_vit"));
    SliceGptOptions o;
    o.slicing = slicing;
    o.slice_head = head;
    slice_gpt(m, io.tensors.at("calibration"), o, 16, [](const std::string&) {});
    torch::NoGradGuard ng;
    torch::Tensor got = m.forward(io.tensors.at("images"));
    torch::Tensor want = io.tensors.at(key);
    EXPECT_LT(((got - want).norm() / want.norm()).item<double>(), 1e-4) << key << "\n" << got
                                                                        << "\n" << want;
  }
}

}  // namespace
}  // namespace pare
