// The ViT forward against an independent reference: tests/fixtures/make_fixtures.py writes a tiny
// HF-named ViT and the logits of a hand-written float64 Hugging Face ViTForImageClassification
// forward (plain PyTorch, no pare, no transformers). Also FLOPs and parameters against hand
// formulas.
#include "families/checkpoint.h"
#include "tasks/evaluate.h"
#include "families/family.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace pare {
namespace {

// The fixture's architecture, as written in make_fixtures.py.
constexpr int64_t kImage = 8, kPatch = 4, kChannels = 1, kD = 16, kLayers = 2, kHeads = 2,
                  kInter = 32, kLabels = 3;
constexpr int64_t kN = (kImage / kPatch) * (kImage / kPatch), kT = kN + 1, kHeadDim = kD / kHeads;

class TinyVit : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = load_model(pare_test::fixture("tiny_vit"));
    auto io = read_safetensors(pare_test::fixture("tiny_vit_io.safetensors"));
    images_ = io.tensors.at("images");
    logits_ = io.tensors.at("logits");
  }
  Model model_;
  torch::Tensor images_, logits_;
};

TEST_F(TinyVit, ConfigReadFromHfFields) {
  const ArchConfig& c = model_.config;
  EXPECT_EQ(c.family, "vit");
  EXPECT_EQ(c.hidden_size, kD);
  EXPECT_EQ(c.num_hidden_layers, kLayers);
  EXPECT_EQ(c.num_attention_heads, kHeads);
  EXPECT_EQ(c.intermediate_size, kInter);
  EXPECT_EQ(c.image_size, kImage);
  EXPECT_EQ(c.patch_size, kPatch);
  EXPECT_EQ(c.num_channels, kChannels);
  EXPECT_EQ(c.num_labels, kLabels);
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, 1e-6);
  EXPECT_EQ(c.id2label, (std::vector<std::string>{"ankle", "bag", "coat"}));
  EXPECT_EQ(c.norm, "layernorm");
  EXPECT_FALSE(c.shortcuts);
  ASSERT_EQ(c.layers.size(), 2u);
  for (const auto& l : c.layers) EXPECT_EQ(l, (LayerDims{kHeads, kHeadDim, kInter, kD, kD, kHeads}));
  EXPECT_EQ(c.out_dim, kD);
  EXPECT_EQ(c.seq_len(), kT);
  EXPECT_TRUE(c.hf_expressible());
  EXPECT_TRUE(model_.verify().empty());
}

TEST_F(TinyVit, ForwardMatchesIndependentReference) {
  ASSERT_EQ(images_.sizes(), (std::vector<int64_t>{4, 1, 8, 8}));
  ASSERT_EQ(logits_.sizes(), (std::vector<int64_t>{4, 3}));
  torch::NoGradGuard ng;
  torch::Tensor got = model_.forward(images_);
  ASSERT_EQ(got.sizes(), logits_.sizes());
  EXPECT_EQ(got.scalar_type(), torch::kFloat32);
  EXPECT_LT(pare_test::max_abs_diff(got, logits_), 1e-5) << "got\n" << got << "\nwant\n" << logits_;
  // The reference is not degenerate: logits differ between images and classes.
  EXPECT_GT(logits_.std().item<double>(), 0.3);

  // Batches are independent: one image at a time gives the same rows.
  for (int64_t i = 0; i < 4; ++i)
    EXPECT_LT(pare_test::max_abs_diff(model_.forward(images_.narrow(0, i, 1)), logits_.narrow(0, i, 1)),
              1e-5);

  // In float64 the agreement is much tighter (the reference ran in float64 on the same weights).
  Model m64 = model_.clone();
  m64.to_dtype(torch::kFloat64);
  torch::Tensor got64 = m64.forward(images_.to(torch::kFloat64));
  EXPECT_EQ(got64.scalar_type(), torch::kFloat64);
  EXPECT_LT(pare_test::max_abs_diff(got64, logits_), 1e-6);  // float32 rounding of the stored logits
}

// From 512 token rows on, the forward computes Q, K and V in one GEMM and the fused attention
// reads them as strided views of that product (vit.cpp, qkv_projection): 128 images × 5 tokens
// take that path, and every row must still match the independent reference.
TEST_F(TinyVit, FusedQkvOnLargeBatchesMatchesReference) {
  torch::NoGradGuard ng;
  const torch::Tensor many = images_.repeat({32, 1, 1, 1});  // 128 images, 640 token rows
  ASSERT_GE(many.size(0) * kT, 512);
  const torch::Tensor got = model_.forward(many);
  EXPECT_LT(pare_test::max_abs_diff(got, logits_.repeat({32, 1})), 1e-5);
}

TEST_F(TinyVit, RejectsImagesOfTheWrongShape) {
  EXPECT_INPUT_ERROR(model_.forward(torch::zeros({2, 3, 8, 8})), ::testing::HasSubstr("[2, 3, 8, 8]"));
  EXPECT_INPUT_ERROR(model_.forward(torch::zeros({2, 1, 9, 9})), ::testing::HasSubstr("expected"));
}

TEST_F(TinyVit, FlopsMatchHandFormula) {
  // FLOPs = 2 × MACs per image: patch projection N·(C·p·p)·D; per layer Q,K,V,O T·D·D each,
  // MLP 2·T·D·I, attention QKᵀ and AV 2·H·T·T·hd; classifier on the CLS token D·labels.
  const int64_t patch = kN * (kChannels * kPatch * kPatch) * kD;
  const int64_t layer = kT * kD * kD * 4 + 2 * kT * kD * kInter + 2 * kHeads * kT * kT * kHeadDim;
  const int64_t head = kD * kLabels;
  const int64_t want = 2 * (patch + kLayers * layer + head);
  EXPECT_EQ(want, 2 * (4 * 16 * 16 + 2 * (5 * 16 * 16 * 4 + 2 * 5 * 16 * 32 + 2 * 2 * 5 * 5 * 8) +
                       16 * 3));  // 43,488 spelled out
  EXPECT_EQ(model_flops(model_), want);

  // The per-row table adds up and names its rows.
  auto rows = model_.family().costs(model_);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].name, "embeddings");
  EXPECT_EQ(rows[0].flops, 2 * patch);
  EXPECT_EQ(rows[1].name, "blk.0");
  EXPECT_EQ(rows[1].flops, 2 * layer);
  EXPECT_EQ(rows[2].flops, 2 * layer);
  EXPECT_EQ(rows[3].name, "head");
  EXPECT_EQ(rows[3].flops, 2 * head);

  // After dropping one head of layer 0 the attention terms of that layer halve.
  Rewriter(model_).keep("blk.0.heads", {0});
  const int64_t inner = kHeadDim;  // one head left
  const int64_t layer0 =
      kT * (3 * inner * kD + kD * inner) + 2 * kT * kD * kInter + 2 * 1 * kT * kT * kHeadDim;
  EXPECT_EQ(model_flops(model_), 2 * (patch + layer0 + layer + head));
}

TEST_F(TinyVit, ParamsEqualFixtureTensorCount) {
  // Sum of the numel of the tensors in the fixture file.
  auto st = read_safetensors(pare_test::fixture("tiny_vit/model.safetensors"));
  int64_t n = 0;
  for (const auto& [name, t] : st.tensors) n += t.numel();
  // The same count from the architecture.
  const int64_t emb = kD * kChannels * kPatch * kPatch + kD + kD + kT * kD;
  const int64_t per_layer = 4 * (kD * kD + kD) + 2 * 2 * kD + (kInter * kD + kInter) + (kD * kInter + kD);
  const int64_t top = 2 * kD + kLabels * kD + kLabels;
  EXPECT_EQ(n, emb + kLayers * per_layer + top);
  EXPECT_EQ(st.tensors.size(), 4u + kLayers * 16u + 4u);
  EXPECT_EQ(model_.num_params(), n);
  int64_t rows = 0;
  for (const auto& r : model_.family().costs(model_)) rows += r.params;
  EXPECT_EQ(rows, n);
}

TEST_F(TinyVit, PredictAndAccuracyOnUint8Images) {
  torch::manual_seed(5);
  torch::Tensor u8 = torch::randint(0, 256, {5, 1, 8, 8}).to(torch::kUInt8);
  // The config has no image_mean/std: the defaults 0.5/0.5 map [0, 255] to [-1, 1].
  torch::Tensor x = u8.to(torch::kFloat32) / 255.0f * 2.0f - 1.0f;
  torch::NoGradGuard ng;
  torch::Tensor want = model_.forward(x);
  torch::Tensor got = predict_logits(model_, u8, 2);  // batches of 2, 2, 1
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{5, 3}));
  EXPECT_LT(pare_test::max_abs_diff(got, want), 1e-5);

  torch::Tensor labels = want.argmax(1);
  labels[1] = (labels[1] + 1) % 3;  // two wrong labels
  labels[4] = (labels[4] + 2) % 3;
  ImageDataset data{u8, labels};
  AccuracyResult r = evaluate_accuracy(model_, data, 3);
  EXPECT_EQ(r.total, 5);
  EXPECT_EQ(r.correct, 3);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.6);
  r = evaluate_accuracy(model_, data, 3, 2);  // first two images only
  EXPECT_EQ(r.total, 2);
  EXPECT_EQ(r.correct, 1);
}

}  // namespace
}  // namespace pare
