// SliceGPT on the decoder LM families: slicing 0 reproduces the dense logits (grouped-query
// attention, tied embeddings untied, Phi's parallel blocks with one shortcut per layer, OPT's
// biases and positions, GPT-2's fused attention); slicing 0.25 gives consistent shapes, fewer
// parameters in the blocks, and a model that saves and reloads to the same logits. Streaming the
// embedding and head through the scratch file changes nothing; precision float32 stays close to
// float64.
#include <gtest/gtest.h>

#include "families/checkpoint.h"
#include "base/error.h"
#include "families/family.h"
#include "base/fileio.h"
#include "tasks/lm_eval.h"
#include "io/safetensors.h"
#include "slicegpt.h"
#include "test_util.h"

namespace pare {
namespace {

Model fixture_model(const std::string& name) { return load_model(pare_test::fixture("lm/" + name)); }

torch::Tensor reference_ids(const std::string& name) {
  return read_safetensors(pare_test::fixture("lm/" + name + "/reference.safetensors")).tensors.at("input_ids");
}

// Calibration: random in-vocabulary windows (the fixtures are random models; any tokens do).
torch::Tensor calibration(const Model& m) {
  torch::manual_seed(7);
  return torch::randint(m.config.vocab_size, {16, 7}, torch::kLong);
}

class SliceGptLm : public ::testing::TestWithParam<std::string> {};

TEST_P(SliceGptLm, SlicingZeroReproducesDenseLogits) {
  Model m = fixture_model(GetParam());
  torch::NoGradGuard ng;
  torch::Tensor ids = reference_ids(GetParam());
  torch::Tensor dense = m.forward(ids);
  SliceGptOptions o;
  o.slicing = 0.0;
  slice_gpt(m, calibration(m), o, 8, [](const std::string&) {});
  EXPECT_TRUE(m.config.shortcuts);
  EXPECT_EQ(m.config.norm, "rmsnorm");
  EXPECT_FALSE(m.config.tie_word_embeddings);
  EXPECT_TRUE(m.verify().empty());
  EXPECT_LT(pare_test::max_abs_diff(m.forward(ids), dense), 1e-4) << GetParam();
  if (m.config.parallel_blocks())  // Phi: one shortcut per layer
    for (int64_t l = 0; l < m.config.num_hidden_layers; ++l) {
      EXPECT_FALSE(m.has("blk." + std::to_string(l) + ".attn_shortcut"));
      EXPECT_TRUE(m.has("blk." + std::to_string(l) + ".ffn_shortcut"));
    }
}

TEST_P(SliceGptLm, SlicingQuarterShrinksBlocksAndRoundTrips) {
  Model m = fixture_model(GetParam());
  torch::NoGradGuard ng;
  const int64_t D = m.config.hidden_size;
  auto block_params = [](const Model& x) {
    int64_t n = 0;
    for (const auto& r : x.family().costs(x))
      if (r.name.rfind("blk.", 0) == 0) n += r.params;
    return n;
  };
  const int64_t before = block_params(m);
  SliceGptOptions o;
  o.slicing = 0.25;
  slice_gpt(m, calibration(m), o, 8, [](const std::string&) {});
  EXPECT_TRUE(m.verify().empty());
  EXPECT_EQ(m.config.layers[0].attn_in, sliced_width(D, 0.25, 8));
  EXPECT_EQ(m.config.out_dim, D);  // head unsliced by default
  EXPECT_LT(block_params(m), before);
  torch::Tensor ids = reference_ids(GetParam());
  torch::Tensor logits = m.forward(ids);
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
  pare_test::TempDir tmp;
  save_model(m, tmp.path());
  Model back = load_model(tmp.path());
  EXPECT_TRUE(torch::allclose(back.forward(ids), logits, 1e-5, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(Families, SliceGptLm,
                         ::testing::Values("llama", "llama_tied_f16", "qwen2", "opt", "gpt2", "phi"));

TEST(LmEval, PerplexityOfAUniformModelIsTheVocabularySize) {
  // A llama whose head is all zeros predicts uniformly: perplexity = vocab size exactly.
  Model m = fixture_model("llama");
  m.dense("lm_head").weight.zero_();
  torch::Tensor tokens = torch::randint(m.config.vocab_size, {50}, torch::kLong);
  torch::Tensor w = token_windows(tokens, 8, -1, "t");
  EXPECT_EQ(w.size(0), 6);  // 50 / 8, the partial window dropped
  LmEvalResult r = evaluate_lm(m, w, 4, &m);
  EXPECT_NEAR(r.perplexity, m.config.vocab_size, 1e-6);
  EXPECT_EQ(r.predicted, 6 * 7);
  EXPECT_NEAR(r.kl, 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(r.top1, 1.0);
}

TEST(LmEval, PerplexityMatchesAHandComputedMeanNll) {
  Model m = fixture_model("opt");
  torch::NoGradGuard ng;
  torch::Tensor ids = reference_ids("opt");  // [2, 7]
  LmEvalResult r = evaluate_lm(m, ids, 1);
  // exp(mean over the 2·6 predicted tokens of −log p(next)), from the committed reference logits.
  torch::Tensor ref = read_safetensors(pare_test::fixture("lm/opt/reference.safetensors")).tensors.at("logits");
  double nll = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 6; ++t) {
      torch::Tensor lp = torch::log_softmax(ref[b][t].to(torch::kFloat64), 0);
      nll -= lp[ids[b][t + 1].item<int64_t>()].item<double>();
    }
  EXPECT_NEAR(r.perplexity, std::exp(nll / 12), 1e-4 * std::exp(nll / 12));
}

TEST(LmEval, TooShortTextIsAnInputError) {
  EXPECT_INPUT_ERROR(token_windows(torch::arange(5), 8, -1, "wiki.test.raw"),
                     ::testing::HasSubstr("wiki.test.raw: 5 tokens are fewer than one window of 8"));
}

}  // namespace
}  // namespace pare

namespace pare {
namespace {

// A llama with a 70,000-token vocabulary (from the llama fixture's config.json, hidden 32), so
// the embedding and head (2.24M elements, 9 MiB) are rotated and folded into the scratch file in
// two chunks of at most 2M elements (SpillFile::allocate, release, page_out), and read back.
Model big_vocab_llama() {
  nlohmann::json j = nlohmann::json::parse(
      read_file(pare_test::fixture("lm/llama/config.json")));
  j["vocab_size"] = 70000;
  j["tie_word_embeddings"] = false;
  Model m = family_by_name("llama").init(config_from_json(j, "config.json"), 3);
  torch::manual_seed(4);
  for (auto& [name, t] : m.tensors)  // norms away from 1, so folding is visible
    if (name.find("norm") != std::string::npos) t = 1.0 + 0.3 * torch::randn(t.sizes());
  return m;
}

TEST(SliceGptScratch, StreamingThroughTheScratchFileChangesNothing) {
  torch::NoGradGuard ng;
  Model a = big_vocab_llama(), b = a.clone();
  ASSERT_GT(a.at("tok_embd").numel(), int64_t(2) << 20);  // more than one chunk
  torch::manual_seed(7);
  const torch::Tensor calib = torch::randint(70000, {8, 9}, torch::kLong);
  const torch::Tensor ids = torch::randint(70000, {2, 9}, torch::kLong);
  SliceGptOptions o;
  o.slicing = 0.25;
  slice_gpt(a, calib, o, 8, [](const std::string&) {});  // in memory, one batch
  pare_test::TempDir tmp;
  o.spill_dir = tmp.path();
  slice_gpt(b, calib, o, 1, [](const std::string&) {});  // scratch file, one window per batch
  const torch::Tensor la = a.forward(ids), lb = b.forward(ids);
  EXPECT_LT(pare_test::max_abs_diff(lb, la), 1e-5 * (1 + la.abs().max().item<double>()));
  // The head and embedding live in the scratch file and read back what was written.
  EXPECT_TRUE(torch::allclose(b.dense("lm_head").weight, a.dense("lm_head").weight, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(b.at("tok_embd"), a.at("tok_embd"), 1e-6, 1e-6));
}

TEST(SliceGptScratch, Float32PrecisionReproducesDenseAndStaysCloseToFloat64) {
  torch::NoGradGuard ng;
  torch::manual_seed(7);
  const torch::Tensor calib = torch::randint(70000, {8, 9}, torch::kLong);
  const torch::Tensor ids = torch::randint(70000, {2, 9}, torch::kLong);
  pare_test::TempDir tmp;
  SliceGptOptions o;
  o.spill_dir = tmp.path();
  o.precision = "float32";
  o.slicing = 0.0;
  Model z = big_vocab_llama();
  const torch::Tensor dense = z.forward(ids);
  slice_gpt(z, calib, o, 1, [](const std::string&) {});
  EXPECT_LT(pare_test::max_abs_diff(z.forward(ids), dense), 1e-4 * (1 + dense.abs().max().item<double>()));
  o.slicing = 0.25;
  Model f32 = big_vocab_llama(), f64 = f32.clone();
  slice_gpt(f32, calib, o, 1, [](const std::string&) {});
  o.precision = "float64";
  slice_gpt(f64, calib, o, 1, [](const std::string&) {});
  const torch::Tensor a = f32.forward(ids), b = f64.forward(ids);
  const double rel = ((a - b).norm() / b.norm()).item<double>();
  RecordProperty("float32_vs_float64_rel_err", concat(rel));
  EXPECT_LT(rel, 1e-3);
  o.precision = "float16";
  Model bad = big_vocab_llama();
  EXPECT_INPUT_ERROR(slice_gpt(bad, calib, o, 1, [](const std::string&) {}),
                     ::testing::HasSubstr("precision: expected float64 or float32, got 'float16'"));
}

}  // namespace
}  // namespace pare
