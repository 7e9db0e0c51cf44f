// Model IR: dimension groups, Rewriter::keep / rotate / add_shortcuts, verify().
//
// Exactness claims are checked against independent constructions: dropping a head equals zeroing
// its columns of the output projection in the original model; an orthogonal rotation of a
// residual site leaves the logits of a model without norm weights unchanged.
#include <ATen/ATen.h>

#include "families/checkpoint.h"
#include "families/family.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace pare {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

Model tiny_vit() { return load_model(pare_test::fixture("tiny_vit")); }
torch::Tensor tiny_images() {
  return read_safetensors(pare_test::fixture("tiny_vit_io.safetensors")).tensors.at("images");
}

std::vector<std::string> group_names(const Model& m) {
  std::vector<std::string> out;
  for (const auto& g : Rewriter(const_cast<Model&>(m)).groups()) out.push_back(g.name);
  return out;
}

// A random orthogonal [n, n] matrix (QR of a Gaussian matrix).
torch::Tensor random_orthogonal(int64_t n, torch::ScalarType dt = torch::kFloat64) {
  auto qr = at::linalg_qr(torch::randn({n, n}, torch::TensorOptions().dtype(torch::kFloat64)));
  return std::get<0>(qr).to(dt);
}

// A ViT built by the family with folded (weightless) RMS norms, and non-trivial random weights
// (the family's init uses std 0.02, which makes every layer nearly linear).
Model rmsnorm_vit(uint64_t seed) {
  ArchConfig c = pare_test::tiny_vit_config("rmsnorm");
  Model m = family_by_name("vit").init(c, seed);
  torch::NoGradGuard ng;
  for (const auto& [name, t] : m.flat_tensors()) m.at(name).normal_(0.0, 0.4);
  m.to_dtype(torch::kFloat64);
  return m;
}

// ---------------------------------------------------------------------------------------------

TEST(Groups, LayerNormModelHasOneHiddenGroupAndPerLayerGroups) {
  Model m = tiny_vit();
  EXPECT_EQ(group_names(m), (std::vector<std::string>{"hidden", "blk.0.heads", "blk.0.ffn",
                                                       "blk.1.heads", "blk.1.ffn"}));
  Rewriter rw(m);
  DimGroup h = rw.group("hidden");
  EXPECT_EQ(h.size, 16);
  bool has_norm = false;
  for (const auto& u : h.uses) {
    EXPECT_EQ(m.at(u.name).size(u.axis), 16) << u.name;
    has_norm |= u.is_norm;
  }
  EXPECT_TRUE(has_norm);
  DimGroup heads = rw.group("blk.1.heads");
  EXPECT_EQ(heads.size, 2);
  for (const auto& u : heads.uses) {
    EXPECT_EQ(u.block, 8) << u.name;
    EXPECT_EQ(m.at(u.name).size(u.axis), 16) << u.name;
  }
  EXPECT_EQ(rw.group("blk.0.ffn").size, 32);
  EXPECT_INPUT_ERROR(rw.group("blk.2.heads"), HasSubstr("blk.2.heads"));
}

TEST(Rewriter, RotateRefusesLayerNormModel) {
  Model m = tiny_vit();
  const auto before = m.flat_tensors();
  EXPECT_INPUT_ERROR(Rewriter(m).rotate("hidden", torch::eye(16)),
                     AllOf(HasSubstr("hidden"), HasSubstr("norm")));
  // Refused before touching anything.
  for (const auto& [name, t] : m.flat_tensors())
    EXPECT_TRUE(torch::equal(t, before.at(name))) << name;
  EXPECT_EQ(m.config.hidden_size, 16);
}

TEST(Rewriter, KeepOneHeadSlicesQkvRowsAndOutputColumns) {
  Model m = tiny_vit();
  const Model orig = m.clone();
  Rewriter rw(m);
  rw.keep("blk.0.heads", {1});

  for (const char* q : {"attn_q", "attn_k", "attn_v"}) {
    const std::string w = std::string("blk.0.") + q + ".weight", b = std::string("blk.0.") + q + ".bias";
    ASSERT_EQ(m.at(w).sizes(), (std::vector<int64_t>{8, 16})) << w;
    EXPECT_TRUE(torch::equal(m.at(w), orig.at(w).slice(0, 8, 16))) << w;
    ASSERT_EQ(m.at(b).sizes(), (std::vector<int64_t>{8})) << b;
    EXPECT_TRUE(torch::equal(m.at(b), orig.at(b).slice(0, 8, 16))) << b;
  }
  ASSERT_EQ(m.at("blk.0.attn_o.weight").sizes(), (std::vector<int64_t>{16, 8}));
  EXPECT_TRUE(torch::equal(m.at("blk.0.attn_o.weight"), orig.at("blk.0.attn_o.weight").slice(1, 8, 16)));
  EXPECT_TRUE(torch::equal(m.at("blk.0.attn_o.bias"), orig.at("blk.0.attn_o.bias")));
  // Layer 1 is untouched.
  EXPECT_TRUE(torch::equal(m.at("blk.1.attn_q.weight"), orig.at("blk.1.attn_q.weight")));

  EXPECT_EQ(m.config.layers[0].heads, 1);
  EXPECT_EQ(m.config.layers[0].head_dim, 8);
  EXPECT_EQ(m.config.layers[1].heads, 2);
  EXPECT_EQ(rw.group("blk.0.heads").size, 1);
  EXPECT_TRUE(m.verify().empty());
  EXPECT_FALSE(m.config.hf_expressible());

  // Dropping head 0 equals zeroing its columns of the output projection.
  Model masked = orig.clone();
  masked.at("blk.0.attn_o.weight").slice(1, 0, 8).zero_();
  torch::NoGradGuard ng;
  torch::Tensor x = tiny_images();
  EXPECT_LT(pare_test::max_abs_diff(m.forward(x), masked.forward(x)), 1e-5);
  EXPECT_GT(pare_test::max_abs_diff(orig.forward(x), masked.forward(x)), 1e-3) << "head 0 matters";
}

TEST(Rewriter, KeepNoHeadsAndFfnUnits) {
  Model m = tiny_vit();
  const Model orig = m.clone();
  Rewriter rw(m);
  rw.keep("blk.1.heads", {});
  const std::vector<int64_t> units{0, 3, 4, 10, 31};
  rw.keep("blk.0.ffn", units);
  EXPECT_EQ(m.config.layers[1].heads, 0);
  EXPECT_EQ(m.config.layers[0].intermediate_size, 5);
  EXPECT_EQ(m.at("blk.0.ffn_up.weight").sizes(), (std::vector<int64_t>{5, 16}));
  EXPECT_EQ(m.at("blk.0.ffn_down.weight").sizes(), (std::vector<int64_t>{16, 5}));
  EXPECT_TRUE(m.verify().empty());

  Model masked = orig.clone();
  masked.at("blk.1.attn_o.weight").zero_();
  torch::Tensor kept = torch::zeros({32});
  for (int64_t u : units) kept[u] = 1;
  masked.at("blk.0.ffn_down.weight").mul_(kept);  // zero the dropped units' columns
  torch::NoGradGuard ng;
  torch::Tensor x = tiny_images();
  EXPECT_LT(pare_test::max_abs_diff(m.forward(x), masked.forward(x)), 1e-5);
}

TEST(Rewriter, KeepRejectsBadIndices) {
  Model m = tiny_vit();
  Rewriter rw(m);
  EXPECT_INPUT_ERROR(rw.keep("blk.0.heads", {2}), HasSubstr("2"));
  EXPECT_INPUT_ERROR(rw.keep("blk.0.heads", {-1}), HasSubstr("-1"));
  EXPECT_INPUT_ERROR(rw.keep("blk.0.ffn", {3, 1}), HasSubstr("sorted"));
  EXPECT_INPUT_ERROR(rw.keep("blk.0.ffn", {1, 1}), HasSubstr("unique"));
  EXPECT_INPUT_ERROR(rw.keep("blk.9.ffn", {0}), HasSubstr("blk.9.ffn"));
  EXPECT_TRUE(m.verify().empty());
  EXPECT_EQ(m.config.layers[0].intermediate_size, 32);
}

TEST(Verify, ReportsWrongShapesMissingAndUnexpectedTensors) {
  Model m = tiny_vit();
  EXPECT_TRUE(m.verify().empty());
  m.at("blk.0.attn_q.weight") = torch::zeros({15, 16});
  auto p = m.verify();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_THAT(p[0], AllOf(HasSubstr("blk.0.attn_q.weight"), HasSubstr("expected"), HasSubstr("got"),
                          HasSubstr("[16, 16]"), HasSubstr("[15, 16]")));
  EXPECT_INPUT_ERROR(m.verify_or_throw("ctx"), AllOf(HasSubstr("ctx"), HasSubstr("blk.0.attn_q.weight")));

  m.tensors.erase("pos_embd");
  m.tensors["stray"] = torch::zeros({2});
  p = m.verify();
  EXPECT_EQ(p.size(), 3u);
  EXPECT_THAT(p, ::testing::Contains(AllOf(HasSubstr("pos_embd"), HasSubstr("missing"))));
  EXPECT_THAT(p, ::testing::Contains(AllOf(HasSubstr("stray"), HasSubstr("not expected"))));
}

// ---------------------------------------------------------------------------------------------
// Rotations (models without norm weights).

TEST(Rewriter, RotateHiddenOfRmsNormModelKeepsLogits) {
  torch::manual_seed(11);
  Model m = rmsnorm_vit(1);
  EXPECT_EQ(group_names(m).front(), "hidden");
  torch::NoGradGuard ng;
  torch::Tensor x = torch::randn({3, 1, 8, 8}, torch::kFloat64);
  torch::Tensor before = m.forward(x);
  EXPECT_GT(before.abs().max().item<double>(), 0.1);
  const torch::Tensor q0 = m.at("blk.0.attn_q.weight").clone();
  Rewriter(m).rotate("hidden", random_orthogonal(16));
  EXPECT_TRUE(m.verify().empty());
  EXPECT_GT(pare_test::max_abs_diff(m.at("blk.0.attn_q.weight"), q0), 0.1) << "weights rotated";
  EXPECT_LT(pare_test::rel_err(m.forward(x), before), 1e-4);
}

TEST(Rewriter, ShortcutsThenRotateEverySiteKeepsLogits) {
  torch::manual_seed(12);
  Model m = rmsnorm_vit(2);
  torch::NoGradGuard ng;
  torch::Tensor x = torch::randn({3, 1, 8, 8}, torch::kFloat64);
  torch::Tensor before = m.forward(x);

  Rewriter rw(m);
  rw.add_shortcuts();
  EXPECT_TRUE(m.config.shortcuts);
  EXPECT_TRUE(m.verify().empty());
  ASSERT_TRUE(m.has("blk.1.ffn_shortcut"));
  EXPECT_TRUE(torch::equal(m.at("blk.1.ffn_shortcut"), torch::eye(16, torch::kFloat64)));
  EXPECT_EQ(m.at("blk.1.ffn_shortcut").scalar_type(), torch::kFloat64);
  EXPECT_LT(pare_test::rel_err(m.forward(x), before), 1e-12);
  rw.add_shortcuts();  // idempotent
  EXPECT_TRUE(m.verify().empty());

  std::vector<std::string> want{"resid.0", "resid.1", "resid.2", "resid.3", "resid.4"};
  auto names = group_names(m);
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + 5), want);
  EXPECT_EQ(m.config.num_sites(), 5);

  for (int64_t s = 0; s < m.config.num_sites(); ++s)
    rw.rotate("resid." + std::to_string(s), random_orthogonal(16));
  EXPECT_TRUE(m.verify().empty());
  EXPECT_FALSE(torch::allclose(m.at("blk.0.attn_shortcut"), torch::eye(16, torch::kFloat64)));
  EXPECT_LT(pare_test::rel_err(m.forward(x), before), 1e-4);
}

TEST(Rewriter, NonSquareRotationSlicesASite) {
  torch::manual_seed(13);
  Model m = rmsnorm_vit(3);
  Rewriter rw(m);
  rw.add_shortcuts();
  const int64_t d = 12;
  for (int64_t s : {1, 0, 4}) {
    rw.rotate("resid." + std::to_string(s), random_orthogonal(16).slice(1, 0, d));
    EXPECT_TRUE(m.verify().empty()) << "site " << s;
    EXPECT_EQ(m.config.site_dim(s), d);
    EXPECT_EQ(rw.group("resid." + std::to_string(s)).size, d);
  }
  EXPECT_EQ(m.config.layers[0].attn_in, d);
  EXPECT_EQ(m.config.layers[0].mlp_in, d);
  EXPECT_EQ(m.config.layers[1].attn_in, 16);
  EXPECT_EQ(m.config.layers[1].mlp_in, 16);
  EXPECT_EQ(m.config.out_dim, d);
  EXPECT_EQ(m.config.hidden_size, 16) << "the folded RMSNorm keeps dividing by the trained width";
  EXPECT_EQ(m.at("blk.0.attn_shortcut").sizes(), (std::vector<int64_t>{d, d}));
  EXPECT_EQ(m.at("blk.0.ffn_shortcut").sizes(), (std::vector<int64_t>{d, 16}));
  EXPECT_EQ(m.at("cls_token").sizes(), (std::vector<int64_t>{1, 1, d}));
  EXPECT_EQ(m.at("cls_head.weight").sizes(), (std::vector<int64_t>{3, d}));
  torch::NoGradGuard ng;
  EXPECT_EQ(m.forward(torch::randn({2, 1, 8, 8})).sizes(), (std::vector<int64_t>{2, 3}));

  // Q must be [size, d <= size].
  EXPECT_INPUT_ERROR(rw.rotate("resid.2", torch::eye(15)), HasSubstr("resid.2"));
  EXPECT_INPUT_ERROR(rw.rotate("resid.2", torch::ones({16, 17})), HasSubstr("resid.2"));
  EXPECT_TRUE(m.verify().empty());
}

}  // namespace
}  // namespace pare
