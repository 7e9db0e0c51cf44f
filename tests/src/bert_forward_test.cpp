// The bert family against an independent reference: tests/fixtures/make_bert_fixtures.py writes a
// tiny HF-named BertForSequenceClassification and the logits / last hidden states of a hand-written
// Hugging Face BERT forward (plain PyTorch, no pare, no transformers). Also: packed (padding-free)
// equals padded per sequence, per-layer heads and removed layers save and reload, FLOPs against a
// hand formula, bad input.
#include "families/attention.h"
#include "families/bert.h"
#include "families/checkpoint.h"
#include "families/family.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace pare {
namespace {

// The fixture's architecture, as written in make_bert_fixtures.py.
constexpr int64_t kV = 40, kD = 16, kLayers = 2, kHeads = 4, kInter = 24, kP = 12, kLabels = 2;

class TinyBert : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = load_model(pare_test::fixture("tiny_bert"));
    auto io = read_safetensors(pare_test::fixture("tiny_bert_io.safetensors"));
    ids_ = io.tensors.at("input_ids");
    mask_ = io.tensors.at("attention_mask");
    logits_ = io.tensors.at("logits_f64");
    hidden_ = io.tensors.at("hidden_last");
  }
  Model model_;
  torch::Tensor ids_, mask_, logits_, hidden_;
};

TEST_F(TinyBert, ConfigReadFromHfFields) {
  const ArchConfig& c = model_.config;
  EXPECT_EQ(c.family, "bert");
  EXPECT_TRUE(c.is_text_encoder());
  EXPECT_FALSE(c.is_lm());
  EXPECT_EQ(c.vocab_size, kV);
  EXPECT_EQ(c.hidden_size, kD);
  EXPECT_EQ(c.num_hidden_layers, kLayers);
  EXPECT_EQ(c.max_position_embeddings, kP);
  EXPECT_EQ(c.type_vocab_size, 2);
  EXPECT_EQ(c.pad_token_id, 0);
  EXPECT_EQ(c.num_labels, kLabels);
  EXPECT_EQ(c.id2label, (std::vector<std::string>{"negative", "positive"}));
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, 1e-12);
  for (const auto& l : c.layers) EXPECT_EQ(l, (LayerDims{kHeads, kD / kHeads, kInter, kD, kD, kHeads}));
  EXPECT_TRUE(model_.verify().empty());
}

TEST_F(TinyBert, ForwardMatchesIndependentReferenceInEveryLayout) {
  ASSERT_EQ(ids_.sizes(), (std::vector<int64_t>{4, 10}));
  // The fixture's mask is ids != pad: the family's own rule.
  ASSERT_TRUE(torch::equal(mask_.to(torch::kBool), ids_.ne(0)));
  torch::NoGradGuard ng;
  for (BertLayout layout : {BertLayout::kPacked, BertLayout::kPadded}) {
    torch::Tensor got = bert_forward(model_, ids_, layout);
    ASSERT_EQ(got.sizes(), (std::vector<int64_t>{4, kLabels}));
    EXPECT_LT(pare_test::max_abs_diff(got.to(torch::kFloat64), logits_), 2e-5);
  }
  EXPECT_LT(pare_test::max_abs_diff(model_.forward(ids_).to(torch::kFloat64), logits_), 2e-5);
}

TEST_F(TinyBert, AutogradPathMatchesReferenceAndGivesGradients) {
  // With autograd the padded layout runs LibTorch ops with the additive key mask (training).
  Model m = model_.clone();
  m.set_requires_grad(true);
  torch::Tensor got = bert_forward(m, ids_);
  EXPECT_LT(pare_test::max_abs_diff(got.detach().to(torch::kFloat64), logits_), 2e-5);
  got.sum().backward();
  EXPECT_GT(m.at("blk.0.attn_q.weight").grad().abs().sum().item<double>(), 0);
  // Padding tokens never reach a real token: their embeddings get no gradient (id 0 = [PAD]).
  EXPECT_EQ(m.at("tok_embd").grad()[0].abs().sum().item<double>(), 0.0);
}

TEST_F(TinyBert, SequenceOutputMatchesReferenceOnRealTokens) {
  torch::NoGradGuard ng;
  torch::Tensor got = bert_sequence_output(model_, ids_);
  ASSERT_EQ(got.sizes(), hidden_.sizes());
  torch::Tensor real = ids_.ne(0).unsqueeze(-1);
  EXPECT_LT(pare_test::max_abs_diff(got * real, hidden_ * real), 2e-5);
}

TEST_F(TinyBert, PackedEqualsPaddedPerSequenceAndIgnoresPaddingIds) {
  torch::NoGradGuard ng;
  // Each sequence alone (no padding at all) gives the same logits as inside the padded batch.
  torch::Tensor batch = bert_forward(model_, ids_, BertLayout::kPacked);
  torch::Tensor lengths = bert_lengths(model_.config, ids_);
  for (int64_t b = 0; b < ids_.size(0); ++b) {
    torch::Tensor alone = ids_[b].narrow(0, 0, lengths[b].item<int64_t>()).unsqueeze(0);
    EXPECT_LT(pare_test::max_abs_diff(bert_forward(model_, alone, BertLayout::kPadded)[0], batch[b]), 1e-5) << b;
  }
  // Longer padding changes nothing.
  torch::Tensor wider = torch::cat({ids_, torch::zeros({4, 2}, ids_.options())}, 1);
  EXPECT_LT(pare_test::max_abs_diff(bert_forward(model_, wider, BertLayout::kPadded), batch), 1e-5);
}

TEST(RangedAttention, EqualsLibTorchAttentionPerSequence) {
  torch::manual_seed(3);
  const int64_t heads = 2, C = 32;
  // Three sequences in one buffer with a gap (rows 9..10 belong to none).
  torch::Tensor qkv = torch::randn({20, 3 * C});
  torch::Tensor q = qkv.narrow(1, 0, C), k = qkv.narrow(1, C, C), v = qkv.narrow(1, 2 * C, C);
  torch::Tensor starts = torch::tensor({0, 11, 4}, torch::kLong), lengths = torch::tensor({4, 9, 5}, torch::kLong);
  torch::NoGradGuard ng;
  torch::Tensor ctx = ranged_multi_head_attention(q, k, v, starts, lengths, heads);
  ASSERT_EQ(ctx.sizes(), (std::vector<int64_t>{20, C}));
  for (int64_t b = 0; b < 3; ++b) {
    const int64_t s = starts[b].item<int64_t>(), n = lengths[b].item<int64_t>(), hd = C / heads;
    auto split = [&](const torch::Tensor& t) { return t.narrow(0, s, n).reshape({n, heads, hd}).transpose(0, 1); };
    torch::Tensor p = torch::softmax(torch::matmul(split(q), split(k).transpose(-2, -1)) / std::sqrt(double(hd)), -1);
    torch::Tensor ref = torch::matmul(p, split(v)).transpose(0, 1).reshape({n, C});
    EXPECT_LT(pare_test::max_abs_diff(ctx.narrow(0, s, n), ref), 1e-5) << b;
  }
  EXPECT_EQ(ctx.narrow(0, 9, 2).abs().sum().item<double>(), 0.0);
}

TEST_F(TinyBert, FlopsAndParamsFollowTheHandFormula) {
  // One sequence of T tokens: per layer 4·T·d² (Q, K, V, O) + 2·T·d·I (FFN) + 2·T²·d (QKᵀ, AV)
  // multiply-accumulates; head d² + d·labels (pooler and classifier on CLS); FLOPs = 2 × MACs.
  Model m = model_;  // shallow: only the config's context length changes
  for (int64_t T : {1, 5, 12}) {
    m.config.context_length = T;
    int64_t flops = 0;
    for (const auto& r : m.family().costs(m)) flops += r.flops;
    const int64_t macs = kLayers * (4 * T * kD * kD + 2 * T * kD * kInter + 2 * T * T * kD) + kD * kD + kD * kLabels;
    EXPECT_EQ(flops, 2 * macs) << T;
  }
  const int64_t emb = kV * kD + kP * kD + 2 * kD + 2 * kD;
  const int64_t layer = 4 * (kD * kD + kD) + 2 * kD + (kD * kInter + kInter) + (kInter * kD + kD) + 2 * kD;
  EXPECT_EQ(m.num_params(), emb + kLayers * layer + (kD * kD + kD) + (kD * kLabels + kLabels));
}

TEST_F(TinyBert, SavesHfNamesAndReloads) {
  pare_test::TempDir dir;
  save_model(model_, dir.path());
  const auto st = read_safetensors(dir.file("model.safetensors"));
  for (const char* n : {"bert.embeddings.word_embeddings.weight", "bert.encoder.layer.1.attention.self.query.weight",
                        "bert.encoder.layer.0.attention.output.LayerNorm.bias", "bert.encoder.layer.1.output.dense.weight",
                        "bert.pooler.dense.weight", "classifier.bias"})
    EXPECT_TRUE(st.tensors.count(n)) << n;
  const auto j = nlohmann::json::parse(pare_test::read_bytes(dir.file("config.json")));
  EXPECT_EQ(j.at("architectures")[0], "BertForSequenceClassification");
  EXPECT_EQ(j.at("type_vocab_size"), 2);
  EXPECT_EQ(j.at("id2label").at("1"), "positive");
  Model back = load_model(dir.path());
  torch::NoGradGuard ng;
  EXPECT_EQ(pare_test::max_abs_diff(back.forward(ids_), model_.forward(ids_)), 0.0);
}

TEST_F(TinyBert, HeadPruningEqualsZeroingTheHeadsOutputColumnsAndReloads) {
  torch::NoGradGuard ng;
  // Reference: the dense model with heads 1 and 3 of layer 0 silenced by zeroing their columns of
  // the output projection (their context then adds nothing).
  Model ref = model_.clone();
  const int64_t hd = kD / kHeads;
  for (int64_t h : {1, 3}) ref.at("blk.0.attn_o.weight").narrow(1, h * hd, hd).zero_();
  Model pruned = model_.clone();
  Rewriter(pruned).keep("blk.0.heads", {0, 2});
  EXPECT_EQ(pruned.config.layers[0].heads, 2);
  EXPECT_TRUE(pruned.verify().empty());
  EXPECT_LT(pare_test::max_abs_diff(pruned.forward(ids_), ref.forward(ids_)), 1e-5);
  pare_test::TempDir dir;
  save_model(pruned, dir.path());
  Model back = load_model(dir.path());
  EXPECT_EQ(back.config.layers[0].heads, 2);
  EXPECT_EQ(pare_test::max_abs_diff(back.forward(ids_), pruned.forward(ids_)), 0.0);
}

TEST_F(TinyBert, RemovedLayerIsTheIdentityAndReloads) {
  torch::NoGradGuard ng;
  Model m = model_.clone();
  Rewriter rw(m);
  rw.remove_branch(0, "attention");
  rw.remove_branch(0, "ffn");
  rw.remove_layer(0);
  ASSERT_EQ(m.config.num_hidden_layers, 1);
  EXPECT_TRUE(m.verify().empty());
  // Reference: embeddings then the old layer 1 alone (hidden states before the head).
  pare_test::TempDir dir;
  save_model(m, dir.path());
  Model back = load_model(dir.path());
  EXPECT_EQ(back.config.num_hidden_layers, 1);
  EXPECT_EQ(pare_test::max_abs_diff(back.forward(ids_), m.forward(ids_)), 0.0);
  // The survivor is the old layer 1: its query weight moved to blk.0.
  EXPECT_TRUE(torch::equal(back.at("blk.0.attn_q.weight"), model_.at("blk.1.attn_q.weight")));
  // A hand composition: embed, then the old layer 1, then the head.
  const Family& f = model_.family();
  ForwardState s = f.embed(model_, ids_);
  f.attention(model_, 1, s);
  f.mlp(model_, 1, s);
  EXPECT_LT(pare_test::max_abs_diff(f.head(model_, s), m.forward(ids_)), 1e-6);
}

TEST_F(TinyBert, BadInputsAreNamed) {
  torch::NoGradGuard ng;
  torch::Tensor lead_pad = ids_.clone();
  lead_pad[3][0] = 0;
  EXPECT_INPUT_ERROR(model_.forward(lead_pad), ::testing::HasSubstr("row 3 starts with the padding id"));
  EXPECT_INPUT_ERROR(model_.forward(torch::full({1, kP + 1}, 5, torch::kLong)),
                     ::testing::HasSubstr("more than the model's 12 positions"));
  torch::Tensor big = ids_.clone();
  big[0][1] = kV;
  EXPECT_INPUT_ERROR(model_.forward(big), ::testing::HasSubstr("token id 40 outside the vocabulary"));
  EXPECT_INPUT_ERROR(model_.forward(torch::zeros({2, 3})), ::testing::HasSubstr("expected token ids"));
}

TEST(BertConfig, RefusesWhatItDoesNotImplement) {
  nlohmann::json j = nlohmann::json::parse(pare_test::read_bytes(pare_test::fixture("tiny_bert/config.json")));
  j["position_embedding_type"] = "relative_key";
  EXPECT_INPUT_ERROR(config_from_json(j, "c.json"), ::testing::HasSubstr("c.json: position_embedding_type"));
  j.erase("position_embedding_type");
  j["pad_token_id"] = 40;
  EXPECT_INPUT_ERROR(config_from_json(j, "c.json"), ::testing::HasSubstr("c.json: pad_token_id: expected 0..39"));
  j["pad_token_id"] = 0;
  nlohmann::json k = j;
  k["model_type"] = "roberta";
  k["pare"] = {{"family", "bert"}};
  EXPECT_INPUT_ERROR(config_from_json(k, "c.json"),
                     ::testing::HasSubstr("c.json: model_type 'roberta' disagrees with pare.family 'bert'"));
  j["hidden_act"] = "relu";
  EXPECT_INPUT_ERROR(config_from_json(j, "c.json"), ::testing::HasSubstr("hidden_act 'relu'"));
}

}  // namespace
}  // namespace pare
