// End-to-end tests of `pare train / eval / inspect` for graph transformers (gps): a tiny GraphGPS
// (GIN + Transformer, hidden 16, 1 layer, RWSE 4) is trained on MUTAG (188 graphs, 2 epochs, about
// a second) once per pare binary and kept in PARE_CLI_CACHE_DIR; eval reproduces the test metric
// train.json recorded (same split from the config), inspect shows the per-layer table, and bad
// input (a missing data path, a data set whose node vocabulary exceeds the model's, a regression
// set for a classification model, an unknown split, a bad data section) is one line, exit 2.
// Needs the shared data (PARE_SHARED_DATA, else <source>/../shared/data); skipped without it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli_util.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace pare_cli_test;

namespace {

std::string shared_data() {
  if (const char* e = std::getenv("PARE_SHARED_DATA"); e && *e) return e;
  return std::string(PARE_SOURCE_DIR) + "/../shared/data";
}

// Tiny GraphGPS on MUTAG: 2 epochs of 150 graphs.
std::string tiny_recipe(const std::string& mutag) {
  return "model:\n"
         "  model_type: gps\n"
         "  hidden_size: 16\n"
         "  num_hidden_layers: 1\n"
         "  num_attention_heads: 2\n"
         "  gps: {local_model: GIN, pooling: add, rwse_steps: 4, rwse_dim: 4}\n"
         "data: {dataset: graph, path: " + mutag + ", split_seed: 1}\n"
         "train: {epochs: 2, batch_size: 32, lr: 0.003, weight_decay: 0.0, warmup_epochs: 1, "
         "log_every: 0}\n";
}

struct TinyGps {
  fs::path dir;
  std::string error;
};

TinyGps& tiny_gps() {
  static TinyGps t;
  return t;
}

void train_tiny_gps_once() {
  TinyGps& t = tiny_gps();
  const std::string mutag = shared_data() + "/tudatasets/MUTAG";
  if (!fs::is_directory(mutag)) return;  // tests skip
  const fs::path cache = PARE_CLI_CACHE_DIR;
  fs::create_directories(cache);
  struct stat st {};
  if (::stat(PARE_BIN, &st) != 0) {
    t.error = std::string("pare binary not found: ") + PARE_BIN;
    return;
  }
  const std::string recipe = tiny_recipe(mutag);
  const std::string key = std::to_string(std::hash<std::string>{}(
      recipe + "|" + std::to_string(st.st_size) + "|" + std::to_string(st.st_mtim.tv_sec) + "." +
      std::to_string(st.st_mtim.tv_nsec)));
  t.dir = cache / ("tiny-gps-" + key);
  const std::string lock = (cache / "gps.lock").string();
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT, 0644);
  if (fd < 0 || ::flock(fd, LOCK_EX) != 0) {
    t.error = "cannot lock " + lock;
    if (fd >= 0) ::close(fd);
    return;
  }
  if (!fs::exists(t.dir / "model.safetensors")) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(cache))
      if (e.path().filename().string().rfind("tiny-gps-", 0) == 0) fs::remove_all(e.path(), ec);
    std::ofstream(cache / "tiny-gps.yaml") << recipe;
    PareRun r = pare_in(cache, {"train", "--recipe", "tiny-gps.yaml", "--out", t.dir.string()});
    if (r.code != 0 || !fs::exists(t.dir / "model.safetensors"))
      t.error = "pare train of the tiny gps model failed\n" + show(r);
  }
  ::flock(fd, LOCK_UN);
  ::close(fd);
}

class GpsCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { train_tiny_gps_once(); }
  void SetUp() override {
    if (!fs::is_directory(data("MUTAG"))) GTEST_SKIP() << "no shared data at " << shared_data();
    ASSERT_TRUE(tiny_gps().error.empty()) << tiny_gps().error;
    dir_ = fs::temp_directory_path() /
           ("pare_gps_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!HasFailure()) fs::remove_all(dir_, ec);
  }
  static std::string data(const std::string& name) { return shared_data() + "/tudatasets/" + name; }
  const fs::path& model() const { return tiny_gps().dir; }
  PareRun pare(const std::vector<std::string>& args) { return pare_in(dir_, args); }

  // Exit 2, one stderr line "pare: error: ..." holding every needle, nothing on stdout, no files.
  void expect_rejected(const std::vector<std::string>& args,
                       const std::vector<std::string>& needles) {
    PareRun r = pare(args);
    SCOPED_TRACE(show(r));
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(r.err.rfind("pare: error: ", 0), 0u);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr must be one line";
    EXPECT_TRUE(r.out.empty());
    for (const auto& n : needles) EXPECT_NE(r.err.find(n), std::string::npos) << "lacks " << n;
    EXPECT_TRUE(fs::is_empty(dir_)) << "files were written into " << dir_;
  }

  // The same for a run whose inputs sit in dir_: nothing new appears there (no "o" output).
  void expect_rejected_keep(const std::vector<std::string>& args,
                            const std::vector<std::string>& needles) {
    std::vector<fs::path> before;
    for (const auto& e : fs::directory_iterator(dir_)) before.push_back(e.path());
    PareRun r = pare(args);
    SCOPED_TRACE(show(r));
    EXPECT_EQ(r.code, 2);
    // Progress lines (the data loaded) may come first; the error is the last line, and the only one.
    const size_t at = r.err.find("pare: error: ");
    ASSERT_NE(at, std::string::npos);
    const std::string line = r.err.substr(at);
    EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << "the error must be one last line";
    EXPECT_EQ(r.err.find("pare: error: ", at + 1), std::string::npos);
    EXPECT_TRUE(r.out.empty());
    for (const auto& n : needles) EXPECT_NE(line.find(n), std::string::npos) << "lacks " << n;
    size_t now = 0;
    for (const auto& e : fs::directory_iterator(dir_)) (void)e, ++now;
    EXPECT_EQ(now, before.size()) << "files were written into " << dir_;
  }

  fs::path dir_;
};

TEST_F(GpsCli, TrainRecordsSplitStatsAndPerEpochMetrics) {
  const json cfg = json::parse(read_all(model() / "config.json"));
  EXPECT_EQ(cfg["model_type"], "gps");
  const json& g = cfg["gps"];
  EXPECT_EQ(g["split"], "random");
  EXPECT_EQ(g["split_seed"], 1);
  EXPECT_EQ(g["node_encoder"], "TypeDictNode");
  EXPECT_EQ(g["node_vocab"], json::array({7}));  // MUTAG: 7 node labels
  EXPECT_EQ(g["edge_encoder"], "None");          // GIN reads no edge features
  EXPECT_EQ(g["task"], "classification");
  EXPECT_EQ(cfg["num_labels"], 2);
  EXPECT_EQ(g["stats_dataset"], "MUTAG train split");
  // MUTAG has 17.93 nodes per graph on average (3371 / 188); the 150 training graphs are close.
  EXPECT_GT(g["mean_nodes"].get<double>(), 15.0);
  EXPECT_LT(g["mean_nodes"].get<double>(), 21.0);
  EXPECT_LE(g["max_nodes"].get<int64_t>(), 28);
  const json log = json::parse(read_all(model() / "train.json"));
  EXPECT_EQ(log["metric"], "accuracy");
  ASSERT_EQ(log["epochs"].size(), 2u);
  for (const auto& e : log["epochs"]) {
    EXPECT_GE(e["valid_accuracy"].get<double>(), 0.0);
    EXPECT_LE(e["test_accuracy"].get<double>(), 1.0);
    EXPECT_GT(e["train_seconds"].get<double>(), 0.0);
  }
  const int best = log["best_epoch"].get<int>();
  ASSERT_TRUE(best == 1 || best == 2);
  EXPECT_DOUBLE_EQ(log["test_accuracy"].get<double>(),
                   log["epochs"][best - 1]["test_accuracy"].get<double>());
  EXPECT_EQ(log["train_graphs"], 150);
  EXPECT_EQ(log["threads"], 2);
}

TEST_F(GpsCli, EvalReproducesTheTestMetricOfTraining) {
  PareRun r = pare({"eval", "--model", model().string(), "--data", data("MUTAG"), "--json", "e.json"});
  ASSERT_EQ(r.code, 0) << show(r);
  const json j = json::parse(read_all(dir_ / "e.json"));
  const json log = json::parse(read_all(model() / "train.json"));
  EXPECT_EQ(j["task"]["metrics"][0]["name"], "accuracy");
  EXPECT_EQ(j["samples"], 19);  // 188 - 150 - round(18.8)
  EXPECT_DOUBLE_EQ(j["metrics"]["accuracy"].get<double>(), log["test_accuracy"].get<double>());
  EXPECT_EQ(j["params"], log["params"]);
  EXPECT_GT(j["flops"].get<double>(), 0.0);
  EXPECT_GT(j["throughput"]["value"].get<double>(), 0.0);
  EXPECT_EQ(j["throughput"]["unit"], "graphs/s");
  EXPECT_NE(r.out.find("| stage | accuracy % |"), std::string::npos) << r.out;
  // Other splits and --limit.
  r = pare({"eval", "--model", model().string(), "--data", data("MUTAG"), "--split", "valid",
            "--limit", "5", "--json", "v.json"});
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(json::parse(read_all(dir_ / "v.json"))["samples"], 5);
}

TEST_F(GpsCli, InspectShowsLayersAndFlopsAtTheStatedDataSet) {
  PareRun r = pare({"inspect", "--model", model().string()});
  ASSERT_EQ(r.code, 0) << show(r);
  for (const char* needle : {"gps (GraphGPS), 1 layers, hidden size 16", "local GIN",
                             "global Transformer", "RWSE K=4 -> 4", "pooling add",
                             "MUTAG train split", "| blk.0 |", "| head |", "split random seed 1"})
    EXPECT_NE(r.out.find(needle), std::string::npos) << needle << "\n" << r.out;
}

TEST_F(GpsCli, BadDataIsOneLineAndExit2) {
  const std::string m = model().string();
  // A data path that does not exist.
  expect_rejected({"eval", "--model", m, "--data", "/nonexistent/NCI1"},
                  {"/nonexistent/NCI1", "no such file or folder"});
  // NCI1 has 37 node labels; the model's TypeDictNode vocabulary is MUTAG's 7.
  if (fs::is_directory(data("NCI1")))
    expect_rejected({"eval", "--model", m, "--data", data("NCI1")},
                    {data("NCI1"), "37 categories, more than the model's TypeDictNode vocabulary of 7"});
  // ZINC_test is a regression set.
  const std::string zinc = shared_data() + "/zinc/subset_tu/ZINC_test";
  if (fs::is_directory(shared_data() + "/zinc/subset_tu"))
    expect_rejected({"eval", "--model", m, "--data", zinc},
                    {zinc, "regression task, the model was made for classification (trained on MUTAG)"});
  expect_rejected({"eval", "--model", m, "--data", data("MUTAG"), "--split", "dev"},
                  {"--split: expected one of train, valid, test, got \"dev\""});
  // No --data for a graph model.
  expect_rejected({"eval", "--model", m}, {"--data", "graph model needs its data set"});
  // PROTEINS fits the model's shapes (3 node labels within MUTAG's 7, 2 classes), but the model
  // learned MUTAG: its config says so, and a metric on PROTEINS would mean nothing.
  if (fs::is_directory(data("PROTEINS")))
    expect_rejected({"eval", "--model", m, "--data", data("PROTEINS")},
                    {data("PROTEINS"), "the data set is PROTEINS, the model was trained on MUTAG",
                     "gps.stats_dataset"});
  // HIV.csv is a binary task: refused before its 41k molecules are converted, so no molecule
  // cache is written (expect_rejected checks that dir_ stays empty).
  const std::string hiv = shared_data() + "/moleculenet/HIV.csv";
  if (fs::is_regular_file(hiv))
    expect_rejected({"eval", "--model", m, "--data", hiv, "--cache", (dir_ / "cache").string()},
                    {hiv, "the data set molhiv is a binary task, the model was made for "
                          "classification (trained on MUTAG)"});
}

TEST_F(GpsCli, BadTrainRecipesAreOneLineAndExit2) {
  const std::string mutag = data("MUTAG");
  auto recipe = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  };
  std::string r1 = recipe("r1.yaml", "model: {model_type: gps, hidden_size: 16, num_hidden_layers: 1, "
                                     "num_attention_heads: 2, gps: {local_model: GIN}}\n"
                                     "data: {dataset: graph, path: /nonexistent/MUTAG}\n"
                                     "train: {epochs: 1, out: m}\n");
  PareRun r = pare({"train", "--recipe", r1});
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_NE(r.err.find("/nonexistent/MUTAG"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "m"));
  std::string r2 = recipe("r2.yaml", "model: {model_type: gps, hidden_size: 16, num_hidden_layers: 1, "
                                     "num_attention_heads: 2, gps: {local_model: GIN}}\n"
                                     "data: {dataset: graph, path: " + mutag + ", splt: 3}\n"
                                     "train: {epochs: 1, out: m}\n");
  r = pare({"train", "--recipe", r2});
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_NE(r.err.find("/data/splt"), std::string::npos) << r.err;
  // GINE needs edge features; MUTAG's come from its edge labels, so ask for GINE on NCI1 (none).
  if (fs::is_directory(data("NCI1"))) {
    std::string r3 = recipe("r3.yaml", "model: {model_type: gps, hidden_size: 16, num_hidden_layers: 1, "
                                       "num_attention_heads: 2, gps: {local_model: GINE}}\n"
                                       "data: {dataset: graph, path: " + data("NCI1") + "}\n"
                                       "train: {epochs: 1, out: m}\n");
    r = pare({"train", "--recipe", r3});
    EXPECT_EQ(r.code, 2) << show(r);
    EXPECT_NE(r.err.find("GINE needs edge features"), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir_ / "m"));
}

// pare compress on a gps model: prune-heads keep 1 of the 2 heads. The report's rows carry the
// test metric (the baseline equals `pare eval`'s), params and FLOPs per graph; the params removed
// are counted by hand: one head's Q/K/V rows with their biases (3 x (head_dim x d + head_dim)) and
// its attn_o columns (d x head_dim), with d = 16 and head_dim = 8.
TEST_F(GpsCli, CompressPruneHeadsReportsGraphRows) {
  std::ofstream(dir_ / "r.yaml") << "pipeline:\n  - pass: prune-heads\n    keep: 1\n"
                                    "data: {dataset: graph, path: " + data("MUTAG") + "}\n";
  PareRun e = pare({"eval", "--model", model().string(), "--data", data("MUTAG"), "--json", "e.json"});
  ASSERT_EQ(e.code, 0) << show(e);
  const json ev = json::parse(read_all(dir_ / "e.json"));
  PareRun r = pare({"compress", "--model", model().string(), "--recipe", "r.yaml", "--out", "out"});
  ASSERT_EQ(r.code, 0) << show(r);
  const json rep = json::parse(read_all(dir_ / "out" / "report.json"));
  const auto& st = rep["stages"];
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(rep["task"]["metrics"][0]["name"], "accuracy");
  EXPECT_NEAR(st[0]["metrics"]["accuracy"].get<double>(), ev["metrics"]["accuracy"].get<double>(), 1e-9) << ev.dump();
  const int64_t d = 16, hd = 8;
  EXPECT_EQ(st[0]["params"].get<int64_t>() - st[1]["params"].get<int64_t>(),
            3 * (hd * d + hd) + d * hd);
  EXPECT_LT(st[1]["flops"].get<int64_t>(), st[0]["flops"].get<int64_t>());
  EXPECT_TRUE(fs::exists(dir_ / "out" / "model.safetensors"));
  // The written model loads and evaluates in a fresh process to the report's figure.
  PareRun e2 = pare({"eval", "--model", (dir_ / "out").string(), "--data", data("MUTAG"), "--json",
                     "e2.json"});
  ASSERT_EQ(e2.code, 0) << show(e2);
  EXPECT_NEAR(json::parse(read_all(dir_ / "e2.json"))["metrics"]["accuracy"].get<double>(),
              st[1]["metrics"]["accuracy"].get<double>(), 1e-9);
}

// pare compress with zero-tprune on a gps model: nodes leave the global attention; the schedule
// (keep_rate per step) is saved in config.json and a fresh `pare eval` applies it, reproducing the
// report's metric and FLOPs. Token counts (keep) and cls-attention are refused for graphs: one
// line, exit 2, nothing written.
TEST_F(GpsCli, CompressZeroTPruneSavesTheNodeScheduleAndEvalAppliesIt) {
  std::ofstream(dir_ / "z.yaml") << "pipeline:\n  - pass: zero-tprune\n    layers: [0]\n"
                                    "    keep_rate: 0.5\n    iterations: 1\n    similar: 1\n"
                                    "data: {dataset: graph, path: " + data("MUTAG") + "}\n";
  PareRun r = pare({"compress", "--model", model().string(), "--recipe", "z.yaml", "--out", "out"});
  ASSERT_EQ(r.code, 0) << show(r);
  const json rep = json::parse(read_all(dir_ / "out" / "report.json"));
  const auto& st = rep["stages"];
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0]["params"], st[1]["params"]);  // weights untouched
  // The CLI model has one layer: a step after its attention saves nothing later, and the FLOPs
  // grow by the selection's own products (PageRank heads·n², S stage lower·upper·key_dim).
  EXPECT_GT(st[1]["flops"].get<double>(), st[0]["flops"].get<double>());
  const json cfg = json::parse(read_all(dir_ / "out" / "config.json"));
  const json& tp = cfg["pare"]["token_pruning"];
  ASSERT_EQ(tp.size(), 1u);
  EXPECT_EQ(tp[0]["layer"], 0);
  EXPECT_DOUBLE_EQ(tp[0]["keep_rate"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(tp[0]["similar_rate"].get<double>(), 1.0);
  EXPECT_FALSE(tp[0].contains("keep"));
  PareRun e = pare({"eval", "--model", (dir_ / "out").string(), "--data", data("MUTAG"), "--json",
                    "e.json"});
  ASSERT_EQ(e.code, 0) << show(e);
  const json ev = json::parse(read_all(dir_ / "e.json"));
  EXPECT_NEAR(ev["metrics"]["accuracy"].get<double>(), st[1]["metrics"]["accuracy"].get<double>(), 1e-9);
  EXPECT_NEAR(ev["flops"].get<double>(), st[1]["flops"].get<double>(), 1.0);
  for (const char* bad : {"    keep: [5]\n", "    keep_rate: 0.5\n    method: cls-attention\n"}) {
    std::ofstream(dir_ / "b.yaml") << "pipeline:\n  - pass: zero-tprune\n    layers: [0]\n" << bad
                                   << "data: {dataset: graph, path: " + data("MUTAG") + "}\n";
    PareRun b = pare({"compress", "--model", model().string(), "--recipe", "b.yaml", "--out", "o"});
    EXPECT_EQ(b.code, 2) << show(b);
    EXPECT_NE(b.err.find("graphs"), std::string::npos) << b.err;
    EXPECT_EQ(std::count(b.err.begin(), b.err.end(), '\n') <= 2, true) << b.err;
    EXPECT_FALSE(fs::exists(dir_ / "o"));
  }
}

// GPTQ on a gps model calibrates on graphs of the recipe data's train split (embed_graph, layer by
// layer): every block linear becomes 4-bit codes, the report notes how many graphs calibrated it
// and each slot's relative output error on them, and a fresh `pare eval` of the written model
// reproduces the report's metric. RTN with the same format needs no calibration graphs.
TEST_F(GpsCli, CompressGptqCalibratesOnTrainGraphsAndEvalReproducesIt) {
  auto recipe = [&](const char* method) {
    std::ofstream(dir_ / "q.yaml") << "pipeline:\n  - pass: quantize\n    method: " << method
                                   << "\n    bits: 4\n    group_size: 8\n"
                                      "data: {dataset: graph, path: " + data("MUTAG") + "}\n";
  };
  recipe("gptq");
  PareRun r = pare({"compress", "--model", model().string(), "--recipe", "q.yaml", "--out", "out"});
  ASSERT_EQ(r.code, 0) << show(r);
  const json rep = json::parse(read_all(dir_ / "out" / "report.json"));
  const auto& st = rep["stages"];
  ASSERT_EQ(st.size(), 2u);
  const json& notes = st[1]["notes"];
  // MUTAG has 188 graphs; the model's split keeps 80% for training, all of them calibrate.
  EXPECT_GE(notes["calibration_samples"].get<int64_t>(), 140) << notes.dump();
  EXPECT_LE(notes["calibration_samples"].get<int64_t>(), 160) << notes.dump();
  // The recipe's default asks for 1024; the report states the count used, in both places.
  EXPECT_EQ(rep["task"]["calibration"]["samples"], notes["calibration_samples"]) << rep["task"]["calibration"];
  EXPECT_NE(read_all(dir_ / "out" / "report.md")
                .find("- calibration (passes that need it): " +
                      std::to_string(notes["calibration_samples"].get<int64_t>()) + " train graphs"),
            std::string::npos);
  const json cfg = json::parse(read_all(dir_ / "out" / "config.json"));
  EXPECT_EQ(cfg["pare"]["quantization"]["method"], "gptq");
  const json& q = cfg["pare"]["quantization"]["slots"];
  ASSERT_FALSE(q.empty());
  for (auto it = q.begin(); it != q.end(); ++it) {
    EXPECT_EQ(it.key().rfind("blk.", 0), 0u) << it.key();
    ASSERT_TRUE(notes["slots"].contains(it.key())) << it.key();
    const double err = notes["slots"][it.key()]["rel_output_error"].get<double>();
    EXPECT_GT(err, 0.0) << it.key();
    EXPECT_LT(err, 0.1) << it.key();
  }
  EXPECT_EQ(q.size(), notes["slots"].size());
  EXPECT_LT(st[1]["bytes"].get<int64_t>(), st[0]["bytes"].get<int64_t>());
  PareRun e = pare({"eval", "--model", (dir_ / "out").string(), "--data", data("MUTAG"), "--json",
                    "e.json"});
  ASSERT_EQ(e.code, 0) << show(e);
  EXPECT_NEAR(json::parse(read_all(dir_ / "e.json"))["metrics"]["accuracy"].get<double>(),
              st[1]["metrics"]["accuracy"].get<double>(), 1e-9);
  recipe("rtn");
  PareRun t = pare({"compress", "--model", model().string(), "--recipe", "q.yaml", "--out", "rtn"});
  ASSERT_EQ(t.code, 0) << show(t);
  EXPECT_EQ(json::parse(read_all(dir_ / "rtn" / "report.json"))["stages"][1]["notes"]
                ["calibration_samples"], 0);
}

// SliceGPT on a gps model, image data for a gps model, a recipe without a data section and no
// --data, another data set than the model's: one line, exit 2, nothing written.
TEST_F(GpsCli, CompressRefusesSliceGptAndWrongData) {
  std::ofstream(dir_ / "s.yaml") << "pipeline:\n  - pass: slicegpt\n"
                                    "data: {dataset: graph, path: " + data("MUTAG") + "}\n";
  std::ofstream(dir_ / "f.yaml") << "pipeline:\n  - pass: prune-heads\n"
                                    "data: {dataset: fashion-mnist}\n";
  std::ofstream(dir_ / "n.yaml") << "pipeline:\n  - pass: prune-heads\n";
  PareRun s = pare({"compress", "--model", model().string(), "--recipe", "s.yaml", "--out", "o"});
  EXPECT_EQ(s.code, 2) << show(s);
  EXPECT_NE(s.err.find("BatchNorm"), std::string::npos) << s.err;
  EXPECT_FALSE(fs::exists(dir_ / "o"));
  PareRun f = pare({"compress", "--model", model().string(), "--recipe", "f.yaml", "--out", "o"});
  EXPECT_EQ(f.code, 2) << show(f);
  EXPECT_NE(f.err.find("dataset: graph"), std::string::npos) << f.err;
  EXPECT_FALSE(fs::exists(dir_ / "o"));
  PareRun n = pare({"compress", "--model", model().string(), "--recipe", "n.yaml", "--out", "o"});
  EXPECT_EQ(n.code, 2) << show(n);
  EXPECT_NE(n.err.find("n.yaml: 1 problem(s): /data/path: missing: a graph model needs its data set"),
            std::string::npos) << n.err;
  EXPECT_FALSE(fs::exists(dir_ / "o"));
  if (fs::is_directory(data("PROTEINS"))) {
    PareRun p = pare({"compress", "--model", model().string(), "--recipe", "n.yaml", "--data",
                      data("PROTEINS"), "--out", "o"});
    EXPECT_EQ(p.code, 2) << show(p);
    EXPECT_NE(p.err.find("the model was trained on MUTAG"), std::string::npos) << p.err;
    EXPECT_FALSE(fs::exists(dir_ / "o"));
  }
}

// --data fills data.path when the recipe states the kind but no path; a recipe with data.path but
// no kind takes the kind from the model and runs without --data.
TEST_F(GpsCli, CompressDataPathComesFromTheRecipeOrFromData) {
  std::ofstream(dir_ / "k.yaml") << "pipeline:\n  - pass: zero-tprune\n    layers: [0]\n"
                                    "    keep_rate: 0.5\ndata: {dataset: graph}\n";
  std::ofstream(dir_ / "p.yaml") << "pipeline:\n  - pass: zero-tprune\n    layers: [0]\n"
                                    "    keep_rate: 0.5\ndata: {path: " + data("MUTAG") + "}\n";
  PareRun k = pare({"compress", "--model", model().string(), "--recipe", "k.yaml", "--data",
                    data("MUTAG"), "--out", "k"});
  ASSERT_EQ(k.code, 0) << show(k);
  PareRun p = pare({"compress", "--model", model().string(), "--recipe", "p.yaml", "--out", "p"});
  ASSERT_EQ(p.code, 0) << show(p);
  for (const char* o : {"k", "p"})
    EXPECT_EQ(json::parse(read_all(dir_ / o / "report.json"))["inputs"]["data"], data("MUTAG"));
  PareRun n = pare({"compress", "--model", model().string(), "--recipe", "k.yaml", "--out", "n"});
  EXPECT_EQ(n.code, 2) << show(n);
  EXPECT_NE(n.err.find("/data/path: missing"), std::string::npos) << n.err;
  EXPECT_FALSE(fs::exists(dir_ / "n"));
}

// bench zero-tprune on a gps model without --data: one line naming --data (it used to look for
// Fashion-MNIST graph files).
TEST_F(GpsCli, BenchZeroTPruneNeedsTheGraphData) {
  PareRun b = pare({"bench", "zero-tprune", "--model", model().string(), "--no-timing", "--out",
                    "b.md"});
  EXPECT_EQ(b.code, 2) << show(b);
  EXPECT_NE(b.err.find("--data must name its graph data set"), std::string::npos) << b.err;
  EXPECT_FALSE(fs::exists(dir_ / "b.md"));
  // With its data: rows per rate and method; the header says what was (not) measured.
  b = pare({"bench", "zero-tprune", "--model", model().string(), "--data", data("MUTAG"),
            "--layers", "0", "--rates", "0.5", "--random-seeds", "1", "--no-timing", "--out",
            "b.md"});
  ASSERT_EQ(b.code, 0) << show(b);
  const std::string md = read_all(dir_ / "b.md");
  EXPECT_NE(md.find("Throughput: not measured (--no-timing)"), std::string::npos) << md;
  EXPECT_EQ(md.find("alternating dense/pruned"), std::string::npos) << md;
  EXPECT_NE(md.find("| keep rate | method | MFLOPs/graph | FLOPs cut | accuracy % |"),
            std::string::npos) << md;
  for (const char* method : {"| 0.50 | zero-tprune |", "| 0.50 | attention |", "| 0.50 | random |"})
    EXPECT_NE(md.find(method), std::string::npos) << method << "\n" << md;
}

// A recipe without a data section (like recipes/zero-tprune.yaml, written for the ViT) runs on a
// gps model with --data naming the graphs: the family picks the kind, the report names the data.
TEST_F(GpsCli, CompressTakesGraphDataFromDataWhenTheRecipeHasNone) {
  std::ofstream(dir_ / "n.yaml") << "pipeline:\n  - pass: zero-tprune\n    layers: [0]\n"
                                    "    keep_rate: 0.5\n";
  PareRun r = pare({"compress", "--model", model().string(), "--recipe", "n.yaml", "--data",
                    data("MUTAG"), "--out", "out"});
  ASSERT_EQ(r.code, 0) << show(r);
  const json rep = json::parse(read_all(dir_ / "out" / "report.json"));
  EXPECT_EQ(rep["inputs"]["data"], data("MUTAG")) << rep["inputs"].dump();
  ASSERT_EQ(rep["stages"].size(), 2u);
  EXPECT_TRUE(rep["stages"][1]["metrics"].contains("accuracy")) << rep["stages"][1].dump();
}

}  // namespace

// gtsp on the shipped GraphGPS (NCI1): all four axes on a 320-graph fine-tuning subset; the
// report holds the removed units and the exact FLOPs share beside the target, the written model
// has a layer without attention or fewer heads, learned node steps and zeroed weights, and a
// fresh `pare eval` reproduces the report's accuracy and FLOPs. Bad input is one line, exit 2,
// nothing written: no axis, a target outside (0, 1], a model without a training split.
TEST_F(GpsCli, CompressGtspRemovesWhatItLearnedAndEvalReproducesIt) {
  const std::string nci1 = data("NCI1");
  const fs::path shipped = fs::path(PARE_SOURCE_DIR) / "models" / "gps-nci1";
  if (!fs::is_directory(nci1) || !fs::exists(shipped / "config.json")) GTEST_SKIP() << "no NCI1 or shipped model";
  std::ofstream(dir_ / "g.yaml") << "pipeline:\n  - pass: gtsp\n    nodes: true\n    heads: true\n"
                                    "    layers: true\n    weights: true\n    sparsity: 0.5\n"
                                    "    target_flops: 0.6\n    epochs: 2\n    limit_train: 320\n"
                                    "    update_every: 4\n    seed: 3\n"
                                    "data: {dataset: graph, path: " + nci1 + "}\neval: {batch_size: 128}\n";
  PareRun r = pare({"compress", "--model", shipped.string(), "--recipe", "g.yaml", "--out", "out"});
  ASSERT_EQ(r.code, 0) << show(r);
  const json rep = json::parse(read_all(dir_ / "out" / "report.json"));
  const auto& st = rep["stages"];
  ASSERT_EQ(st.size(), 2u);
  const json& notes = st[1]["notes"];
  const double share = st[1]["flops"].get<double>() / st[0]["flops"].get<double>();
  // The controller lands on the target in pare's cost at the data set's mean graph (notes); the
  // report averages each test graph's own FLOPs, which node pruning makes differ by about a point.
  EXPECT_NEAR(notes["final_flops_share"].get<double>(), 0.6, 0.005) << notes.dump();
  EXPECT_NEAR(share, 0.6, 0.02) << notes.dump();
  EXPECT_LT(st[1]["params"].get<double>(), st[0]["params"].get<double>());
  EXPECT_NEAR(notes["weight_density"].get<double>(), 0.5, 0.01);
  EXPECT_NE(notes.dump().find("stored dense with zeros"), std::string::npos) << "the weights axis must say no speedup follows";
  const json cfg = json::parse(read_all(dir_ / "out" / "config.json"));
  const auto& tp = cfg["pare"]["token_pruning"];
  ASSERT_FALSE(tp.empty());
  EXPECT_EQ(tp[0]["method"], "learned");
  int64_t heads = 0, dense_heads = 0;
  const json dense_cfg = json::parse(read_all(shipped / "config.json"));
  for (const auto& l : cfg["pare"]["layers"]) heads += l["heads"].get<int64_t>();
  for (const auto& l : dense_cfg["pare"]["layers"]) dense_heads += l["heads"].get<int64_t>();
  EXPECT_LT(heads, dense_heads);
  PareRun e = pare({"eval", "--model", (dir_ / "out").string(), "--data", nci1, "--json", "e.json"});
  ASSERT_EQ(e.code, 0) << show(e);
  const json ev = json::parse(read_all(dir_ / "e.json"));
  EXPECT_NEAR(ev["metrics"]["accuracy"].get<double>(), st[1]["metrics"]["accuracy"].get<double>(), 1e-9);
  EXPECT_NEAR(ev["flops"].get<double>(), st[1]["flops"].get<double>(), 1.0);
  fs::remove_all(dir_ / "out");
  fs::remove(dir_ / "e.json");
  auto bad = [&](const std::string& opts, const std::vector<std::string>& needles, const fs::path& model) {
    std::ofstream(dir_ / "b.yaml") << "pipeline:\n  - pass: gtsp\n" << opts
                                   << "data: {dataset: graph, path: " + nci1 + "}\n";
    expect_rejected_keep({"compress", "--model", model.string(), "--recipe", "b.yaml", "--out", "o"}, needles);
  };
  bad("    heads: false\n", {"b.yaml", "no axis chosen"}, shipped);
  bad("    heads: true\n    target_flops: 1.5\n", {"b.yaml", "target_flops"}, shipped);
  bad("    heads: true\n    target_flops: 0\n", {"b.yaml", "target_flops"}, shipped);
  // A copy of the model whose config records no split: its test graphs could enter fine-tuning.
  const fs::path nosplit = dir_ / "nosplit";
  fs::create_directories(nosplit);
  json c2 = dense_cfg;
  c2["gps"]["split"] = "";
  std::ofstream(nosplit / "config.json") << c2.dump();
  fs::copy_file(shipped / "model.safetensors", nosplit / "model.safetensors");
  bad("    heads: true\n", {"b.yaml", "no training split"}, nosplit);
}
