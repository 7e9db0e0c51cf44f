// End-to-end tests of `pare train / eval / inspect / compress` for text encoders (bert), on a
// synthetic sentiment set written by the test (no shared data needed): each sentence holds neutral
// words and one sentiment word that decides its label. A tiny BERT (hidden 32, 2 layers) is
// pre-trained with masked-LM on the training sentences, then fine-tuned on them (init_from), once
// per pare binary (kept in PARE_CLI_CACHE_DIR). eval reproduces the dev accuracy train.json
// recorded; prune-heads compresses it and the saved model reloads; a removed layer survives a
// fresh process; bad input (a sentence file with a bad label or no sentence, a vocab.txt without
// [CLS], a model without vocab.txt) is one line, exit 2, nothing written.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_util.h"

using nlohmann::json;
using namespace pare_cli_test;

namespace {

// Sentences of 3-8 neutral words with one sentiment word at a position drawn by an LCG; label 1
// for a positive word. Deterministic: the same files every run.
std::string sentences(int n, uint32_t seed) {
  const char* neutral[] = {"the", "movie", "film", "plot", "actor", "story", "was", "is", "a", "very", "and", "it"};
  const char* pos[] = {"good", "great", "lovely", "superb", "fine"};
  const char* neg[] = {"bad", "awful", "poor", "dull", "weak"};
  uint32_t s = seed;
  auto next = [&](uint32_t k) {
    s = s * 1664525u + 1013904223u;
    return (s >> 8) % k;
  };
  std::string out;
  for (int i = 0; i < n; ++i) {
    const int label = static_cast<int>(next(2));
    const uint32_t len = 3 + next(6), at = next(len + 1);
    std::string text;
    for (uint32_t w = 0; w <= len; ++w) {
      const char* word = w == at ? (label ? pos[next(5)] : neg[next(5)]) : neutral[next(12)];
      text += (text.empty() ? "" : " ") + std::string(word);
    }
    out += std::to_string(label) + " " + text + "\n";
  }
  return out;
}

std::string mlm_recipe() {
  return "model: {model_type: bert, vocab_size: 64, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2,\n"
         "        intermediate_size: 64, max_position_embeddings: 32, type_vocab_size: 2}\n"
         "data: {dataset: mlm-text, labelled_files: [data/stsa.binary.train], seq_len: 16}\n"
         "train: {epochs: 2, batch_size: 16, lr: 0.003, weight_decay: 0.0, warmup_steps: 5, log_every: 0}\n";
}

std::string ft_recipe() {
  return "model: {model_type: bert, vocab_size: 64, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2,\n"
         "        intermediate_size: 64, max_position_embeddings: 32, type_vocab_size: 2}\n"
         "data: {dataset: sst2, path: data, vocab: mlm/vocab.txt, labels: [negative, positive]}\n"
         "train: {init_from: mlm, epochs: 4, batch_size: 16, lr: 0.003, weight_decay: 0.0, warmup_steps: 5,\n"
         "        log_every: 0}\n";
}

struct TinyBert {
  fs::path dir, cache;
  std::string error;
};

TinyBert& tiny_bert() {
  static TinyBert t;
  return t;
}

void train_tiny_bert_once() {
  TinyBert& t = tiny_bert();
  struct stat st {};
  if (::stat(PARE_BIN, &st) != 0) {
    t.error = std::string("pare binary not found: ") + PARE_BIN;
    return;
  }
  const std::string key = std::to_string(std::hash<std::string>{}(
      mlm_recipe() + ft_recipe() + "|" + std::to_string(st.st_size) + "|" + std::to_string(st.st_mtim.tv_sec) +
      "." + std::to_string(st.st_mtim.tv_nsec)));
  const fs::path cache = PARE_CLI_CACHE_DIR;
  t.cache = cache / ("tiny-bert-" + key);
  t.dir = t.cache / "model";
  fs::create_directories(cache);
  const std::string lock = (cache / "bert.lock").string();
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT, 0644);
  if (fd < 0 || ::flock(fd, LOCK_EX) != 0) {
    t.error = "cannot lock " + lock;
    if (fd >= 0) ::close(fd);
    return;
  }
  if (!fs::exists(t.dir / "model.safetensors")) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(cache))
      if (e.path().filename().string().rfind("tiny-bert-", 0) == 0) fs::remove_all(e.path(), ec);
    fs::create_directories(t.cache / "data");
    std::ofstream(t.cache / "data/stsa.binary.train") << sentences(480, 1);
    std::ofstream(t.cache / "data/stsa.binary.dev") << sentences(120, 2);
    std::ofstream(t.cache / "data/stsa.binary.test") << sentences(120, 3);
    std::ofstream(t.cache / "mlm.yaml") << mlm_recipe();
    std::ofstream(t.cache / "ft.yaml") << ft_recipe();
    PareRun r = pare_in(t.cache, {"train", "--recipe", "mlm.yaml", "--out", "mlm"});
    if (r.code != 0) t.error = "masked-LM pre-training of the tiny bert failed\n" + show(r);
    if (t.error.empty()) {
      r = pare_in(t.cache, {"train", "--recipe", "ft.yaml", "--out", "model"});
      if (r.code != 0 || !fs::exists(t.dir / "model.safetensors"))
        t.error = "fine-tuning of the tiny bert failed\n" + show(r);
    }
  }
  ::flock(fd, LOCK_UN);
  ::close(fd);
}

class BertCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { train_tiny_bert_once(); }
  void SetUp() override {
    ASSERT_TRUE(tiny_bert().error.empty()) << tiny_bert().error;
    dir_ = fs::temp_directory_path() / ("pare_bert_cli_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!HasFailure()) fs::remove_all(dir_, ec);
  }
  const fs::path& model() const { return tiny_bert().dir; }
  std::string data() const { return (tiny_bert().cache / "data").string(); }
  PareRun pare(const std::vector<std::string>& args) { return pare_in(dir_, args); }

  // Exit 2, the last stderr line "pare: error: ..." holding every needle, nothing new in dir_.
  void expect_rejected(const std::vector<std::string>& args, const std::vector<std::string>& needles) {
    size_t before = 0;
    for (const auto& e : fs::directory_iterator(dir_)) (void)e, ++before;
    PareRun r = pare(args);
    SCOPED_TRACE(show(r));
    EXPECT_EQ(r.code, 2);
    const size_t at = r.err.find("pare: error: ");
    ASSERT_NE(at, std::string::npos);
    const std::string line = r.err.substr(at);
    EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << "the error must be one last line";
    for (const auto& n : needles) EXPECT_NE(line.find(n), std::string::npos) << "lacks " << n;
    size_t now = 0;
    for (const auto& e : fs::directory_iterator(dir_)) (void)e, ++now;
    EXPECT_EQ(now, before) << "files were written into " << dir_;
  }

  fs::path dir_;
};

TEST_F(BertCli, PreTrainingThenFineTuningLearnsTheRule) {
  const json mlm = json::parse(read_all(tiny_bert().cache / "mlm/train.json"));
  EXPECT_GT(mlm["valid_mlm_accuracy"].get<double>(), 0.0);
  const json cfg = json::parse(read_all(model() / "config.json"));
  EXPECT_EQ(cfg["architectures"][0], "BertForSequenceClassification");
  // The fine-tuned model's task is bert's own (text-classification: not recorded); the
  // pre-trained one records masked-lm.
  EXPECT_FALSE(cfg["pare"].contains("task"));
  EXPECT_EQ(json::parse(read_all(tiny_bert().cache / "mlm/config.json"))["pare"]["task"], "masked-lm");
  EXPECT_FALSE(cfg["pare"].contains("mlm_head"));  // the MLM head stays with the pre-trained model
  EXPECT_EQ(cfg["id2label"]["1"], "positive");
  EXPECT_TRUE(fs::exists(model() / "vocab.txt"));
  const json log = json::parse(read_all(model() / "train.json"));
  // One word decides the label: a working encoder + classifier learns it.
  EXPECT_GT(log["dev_accuracy"].get<double>(), 0.85) << log.dump(2);
  EXPECT_EQ(log["valid_sentences"], 48);  // 10% of 480 carved from train
  EXPECT_EQ(log["dev_sentences"], 120);
  // The per-epoch choice is made on the validation split.
  EXPECT_TRUE(log["epochs"][0].contains("valid_accuracy"));
  EXPECT_FALSE(log["epochs"][0].contains("test_accuracy"));
}

TEST_F(BertCli, EvalReproducesDevAccuracyAndInspectShowsLayers) {
  PareRun r = pare({"eval", "--model", model().string(), "--data", data(), "--json", "e.json"});
  ASSERT_EQ(r.code, 0) << show(r);
  const json j = json::parse(read_all(dir_ / "e.json"));
  const json log = json::parse(read_all(model() / "train.json"));
  EXPECT_DOUBLE_EQ(j["metrics"]["accuracy"].get<double>(), log["dev_accuracy"].get<double>());
  EXPECT_DOUBLE_EQ(j["metrics"]["f1"].get<double>(), log["dev_f1"].get<double>());
  EXPECT_EQ(j["samples"], 120);
  EXPECT_EQ(j["throughput"]["unit"], "sentences/s");
  EXPECT_NE(r.out.find("at its own token count (no padding)"), std::string::npos) << r.out;
  r = pare({"eval", "--model", model().string(), "--data", data(), "--split", "test", "--json", "t.json"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_DOUBLE_EQ(json::parse(read_all(dir_ / "t.json"))["metrics"]["accuracy"].get<double>(),
                   log["test_accuracy"].get<double>());
  r = pare({"inspect", "--model", model().string()});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_NE(r.out.find("blk.1"), std::string::npos) << r.out;
}

TEST_F(BertCli, PruneHeadsCompressesAndTheSavedModelEvaluates) {
  std::ofstream(dir_ / "r.yaml") << "pipeline:\n  - pass: prune-heads\n    sparsity: 0.5\n    scope: global\n";
  PareRun r = pare({"compress", "--model", model().string(), "--recipe", "r.yaml", "--out", "o", "--data",
                    data()});
  ASSERT_EQ(r.code, 0) << show(r);
  const json cfg = json::parse(read_all(dir_ / "o/config.json"));
  int64_t heads = 0;
  for (const auto& l : cfg["pare"]["layers"]) heads += l["heads"].get<int64_t>();
  EXPECT_EQ(heads, 2);  // half of 2 × 2
  EXPECT_TRUE(fs::exists(dir_ / "o/vocab.txt"));
  const json rep = json::parse(read_all(dir_ / "o/report.json"));
  // The same run again replaces the folder (vocab.txt and tokenizer_config.json are pare's files).
  r = pare({"compress", "--model", model().string(), "--recipe", "r.yaml", "--out", "o", "--data", data()});
  ASSERT_EQ(r.code, 0) << show(r);
  r = pare({"eval", "--model", "o", "--data", data(), "--json", "e.json"});
  ASSERT_EQ(r.code, 0) << show(r);
  const json j = json::parse(read_all(dir_ / "e.json"));
  EXPECT_DOUBLE_EQ(j["metrics"]["accuracy"].get<double>(),
                   rep["stages"].back()["metrics"]["accuracy"].get<double>());
}

// SHRP on the tiny bert (2 layers x 2 heads): keeping one head removes a whole layer; the written
// model evaluates to the report's figure in a fresh process. Then prune-heads + fine-tune.
TEST_F(BertCli, ShrpRemovesALayerAndTheSavedModelReloads) {
  std::ofstream(dir_ / "r.yaml") << "pipeline:\n  - pass: shrp\n    keep_heads: 1\n    route_epochs: 2\n"
                                    "    epochs: 1\n    batch_size: 16\n    lr: 0.001\n";
  PareRun r = pare({"compress", "--model", model().string(), "--recipe", "r.yaml", "--out", "o", "--data", data()});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_NE(r.err.find("stage 2 (Top-1 routing)"), std::string::npos) << r.err;
  const json cfg = json::parse(read_all(dir_ / "o/config.json"));
  EXPECT_EQ(cfg["num_hidden_layers"], 1);
  ASSERT_EQ(cfg["pare"]["layers"].size(), 1u);
  EXPECT_EQ(cfg["pare"]["layers"][0]["heads"], 1);
  const json rep = json::parse(read_all(dir_ / "o/report.json"));
  const json notes = rep["stages"].back()["notes"];
  EXPECT_EQ(notes["removed"]["layers"].size(), 1u) << notes.dump(2);
  EXPECT_EQ(notes["final"]["heads"], 1);
  EXPECT_EQ(notes["final"]["layers"], 1);
  EXPECT_LT(notes["final"]["encoder_params"].get<int64_t>(), notes["dense"]["encoder_params"].get<int64_t>() / 2);
  // Stage-2 usage of every routed layer: shares of the samples, summing to one.
  for (const auto& u : notes["usage"]) {
    double sum = 0;
    for (const auto& v : u["usage"]) sum += v.get<double>();
    EXPECT_NEAR(sum, 1.0, 1e-9);
  }
  EXPECT_GT(notes["fixed_phase"]["steps"].get<int64_t>(), 0);
  r = pare({"eval", "--model", "o", "--data", data(), "--json", "e.json"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_DOUBLE_EQ(json::parse(read_all(dir_ / "e.json"))["metrics"]["accuracy"].get<double>(),
                   rep["stages"].back()["metrics"]["accuracy"].get<double>());

  std::ofstream(dir_ / "f.yaml") << "pipeline:\n  - pass: prune-heads\n    sparsity: 0.5\n"
                                    "  - pass: fine-tune\n    epochs: 1\n    batch_size: 16\n";
  r = pare({"compress", "--model", model().string(), "--recipe", "f.yaml", "--out", "f", "--data", data()});
  ASSERT_EQ(r.code, 0) << show(r);
  const json frep = json::parse(read_all(dir_ / "f/report.json"));
  EXPECT_EQ(frep["stages"].back()["notes"]["fine_tuning"]["steps"], 27);  // 432 sentences / 16
}

TEST_F(BertCli, ShrpBadOptionsAreOneLine) {
  for (const char* t : {"1.5", "-0.1"}) {
    std::ofstream(dir_ / "t.yaml", std::ios::trunc) << "pipeline:\n  - pass: shrp\n    threshold: " << t << "\n";
    expect_rejected({"compress", "--model", model().string(), "--recipe", "t.yaml", "--out", "o", "--data", data()},
                    {"t.yaml", "/pipeline/0/threshold: expected a number in [0, 1], got " + std::string(t)});
  }
  std::ofstream(dir_ / "t.yaml", std::ios::trunc) << "pipeline:\n  - pass: shrp\n    keep_heads: 5\n";
  expect_rejected({"compress", "--model", model().string(), "--recipe", "t.yaml", "--out", "o", "--data", data()},
                  {"t.yaml", "shrp: keep_heads 5: the model has 4 heads"});
}

TEST_F(BertCli, BadSentenceFilesVocabAndMissingVocabAreOneLine) {
  std::ofstream(dir_ / "bad.txt") << "1 fine movie\nyes great\n";
  expect_rejected({"eval", "--model", model().string(), "--data", dir_.string(), "--json", "x.json"},
                  {"stsa.binary.dev"});  // the folder has no dev file
  fs::copy_file(dir_ / "bad.txt", dir_ / "stsa.binary.dev");
  expect_rejected({"eval", "--model", model().string(), "--data", dir_.string()},
                  {"stsa.binary.dev:2: expected a label (a non-negative integer), got 'yes'"});
  std::ofstream(dir_ / "stsa.binary.dev", std::ios::trunc) << "1 fine movie\n0\n";
  expect_rejected({"eval", "--model", model().string(), "--data", dir_.string()},
                  {"stsa.binary.dev:2: no sentence after the label"});
  // A model folder whose vocab.txt lacks [CLS].
  fs::create_directories(dir_ / "m");
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(model() / f, dir_ / "m" / f);
  std::string vocab = read_all(model() / "vocab.txt");
  vocab.replace(vocab.find("[CLS]"), 5, "[CLX]");
  std::ofstream(dir_ / "m/vocab.txt") << vocab;
  expect_rejected({"eval", "--model", "m", "--data", data()}, {"vocab.txt", "[CLS]"});
  fs::remove(dir_ / "m/vocab.txt");
  expect_rejected({"eval", "--model", "m", "--data", data()}, {"no vocab.txt beside the model"});
  // tokenizer_config.json decides do_lower_case: bad JSON or a non-boolean is refused.
  fs::copy_file(model() / "vocab.txt", dir_ / "m/vocab.txt");
  std::ofstream(dir_ / "m/tokenizer_config.json") << "{do_lower";
  expect_rejected({"eval", "--model", "m", "--data", data()}, {"m/tokenizer_config.json: not JSON"});
  std::ofstream(dir_ / "m/tokenizer_config.json", std::ios::trunc) << "{\"do_lower_case\": \"yes\"}";
  expect_rejected({"eval", "--model", "m", "--data", data()},
                  {"m/tokenizer_config.json: do_lower_case: expected true or false, got \"yes\""});
  // SliceGPT needs pre-LN blocks: refused by name before anything runs.
  std::ofstream(dir_ / "s.yaml") << "pipeline:\n  - pass: slicegpt\n    slicing: 0.2\n";
  expect_rejected({"compress", "--model", model().string(), "--recipe", "s.yaml", "--out", "o", "--data", data()},
                  {"slicegpt: the bert family is refused", "post-LN"});
}

}  // namespace
