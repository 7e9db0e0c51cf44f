// End-to-end tests of the `pare` command line: each test runs the built binary (PARE_BIN) in a
// child process from its own temporary folder, captures stdout, stderr and the exit code, and
// checks them together with the files written (or, for bad input, not written).
//
// Exit codes under test: 0 ok, 1 budget not met, 2 bad input or usage (stderr: exactly one line
// "pare: error: ..." naming the file or key and what was expected), 3 internal error.
//
// The suite trains one tiny ViT with `pare train` (SetUpTestSuite). ctest runs every test in its
// own process, so the trained model is kept in PARE_CLI_CACHE_DIR, keyed by the recipe text and
// the pare binary's size and mtime, and a file lock makes parallel test processes train it once.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// 28x28 ViT, 1 epoch on 1,024 train images: trains in seconds.
const char* const kTinyRecipe = R"(model:
  model_type: vit
  hidden_size: 32
  num_hidden_layers: 2
  num_attention_heads: 2
  intermediate_size: 64
  image_size: 28
  patch_size: 4
  num_channels: 1
  num_labels: 10
train:
  epochs: 1
  batch_size: 64
  limit_train: 1024
  lr: 3.0e-3
  warmup_steps: 5
  log_every: 0
)";

const char* const kSliceRecipe = R"(pipeline:
  - pass: slicegpt
    slicing: 0.25
)";

// ------------------------------------------------------------------------------------------------
// Files and processes.

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("test: cannot read " + p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("test: cannot write " + p.string());
  out << bytes;
  if (!out) throw std::runtime_error("test: write failed: " + p.string());
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

uint64_t fnv1a(const std::string& s, uint64_t h = 1469598103934665603ULL) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// Cells of a Markdown table row "| a | b |" (trimmed), empty when `line` is not a row.
std::vector<std::string> md_cells(const std::string& line) {
  std::vector<std::string> cells;
  if (line.size() < 2 || line.front() != '|' || line.back() != '|') return cells;
  std::string cur;
  for (size_t i = 1; i < line.size(); ++i) {
    if (line[i] == '|') {
      size_t b = cur.find_first_not_of(' '), e = cur.find_last_not_of(' ');
      cells.push_back(b == std::string::npos ? "" : cur.substr(b, e - b + 1));
      cur.clear();
    } else {
      cur += line[i];
    }
  }
  return cells;
}

// Rows of the first Markdown table in `text` whose header contains `first_header_cell`, as maps
// header -> cell.
std::vector<std::map<std::string, std::string>> md_table(const std::string& text,
                                                         const std::string& first_header_cell) {
  std::vector<std::map<std::string, std::string>> rows;
  auto ls = lines_of(text);
  for (size_t i = 0; i < ls.size(); ++i) {
    auto header = md_cells(ls[i]);
    if (header.empty() || header[0] != first_header_cell) continue;
    for (size_t j = i + 2; j < ls.size(); ++j) {  // skip the |---| line
      auto cells = md_cells(ls[j]);
      if (cells.empty()) break;
      std::map<std::string, std::string> row;
      for (size_t k = 0; k < header.size() && k < cells.size(); ++k) row[header[k]] = cells[k];
      rows.push_back(row);
    }
    break;
  }
  return rows;
}

// Checks the `pare passes` listing of pass `pass`: a line starting "PASS ", then indented option
// lines "  NAME (TYPE, default VALUE[, range ...]): help"; every option in `want` is listed and
// its text after the name starts with the given prefix. Returns NAME -> the rest of its line.
std::map<std::string, std::string> expect_pass_options(
    const std::string& out, const std::string& pass,
    const std::map<std::string, std::string>& want) {
  std::map<std::string, std::string> opts;
  auto ls = lines_of(out);
  auto it = std::find_if(ls.begin(), ls.end(),
                         [&](const std::string& l) { return l.rfind(pass + " ", 0) == 0; });
  if (it == ls.end()) {
    ADD_FAILURE() << "no line starting with '" << pass << " '";
    return opts;
  }
  for (auto j = std::next(it); j != ls.end() && j->rfind("  ", 0) == 0; ++j) {
    const std::string body = j->substr(2);
    const size_t sp = body.find(' ');
    if (sp != std::string::npos) opts[body.substr(0, sp)] = body.substr(sp + 1);
  }
  for (const auto& [name, prefix] : want) {
    auto o = opts.find(name);
    if (o == opts.end()) ADD_FAILURE() << pass << ": option " << name << " not listed";
    else EXPECT_EQ(o->second.rfind(prefix, 0), 0u) << pass << " " << name << ": " << o->second;
  }
  return opts;
}

struct Proc {
  std::string cmd;
  int code = -1;
  std::string out, err;
};

std::string describe(const Proc& r) {
  return "command: " + r.cmd + "\nexit code: " + std::to_string(r.code) + "\n--- stdout ---\n" +
         r.out + "--- stderr ---\n" + r.err + "--------------";
}

// Runs `pare --threads 2 ARGS...` (ARGS alone when they set --threads) in `cwd`; stdout and
// stderr go to files under `capture_dir`.
Proc run_pare(const std::vector<std::string>& args, const fs::path& cwd,
              const fs::path& capture_dir) {
  static int counter = 0;
  fs::create_directories(capture_dir);
  const std::string stem = std::to_string(::getpid()) + "." + std::to_string(counter++);
  const fs::path out = capture_dir / (stem + ".stdout"), err = capture_dir / (stem + ".stderr");
  Proc r;
  r.cmd = shell_quote(PARE_BIN);
  if (std::find(args.begin(), args.end(), "--threads") == args.end()) r.cmd += " --threads 2";
  for (const auto& a : args) r.cmd += " " + shell_quote(a);
  const std::string sh = "cd " + shell_quote(cwd.string()) + " && exec " + r.cmd + " >" +
                         shell_quote(out.string()) + " 2>" + shell_quote(err.string()) +
                         " </dev/null";
  int st = std::system(sh.c_str());
  if (st == -1) r.code = -1;
  else if (WIFEXITED(st)) r.code = WEXITSTATUS(st);
  else if (WIFSIGNALED(st)) r.code = 128 + WTERMSIG(st);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

// Every regular file under `dirs` (recursively) with its bytes; folders appear with "<dir>".
// Paths named in `skip` (a folder name) are left out.
std::map<std::string, std::string> snapshot(const std::vector<fs::path>& dirs,
                                            const std::string& skip = "cap") {
  std::map<std::string, std::string> s;
  for (const auto& d : dirs) {
    if (!fs::exists(d)) continue;
    for (auto it = fs::recursive_directory_iterator(d); it != fs::recursive_directory_iterator();
         ++it) {
      if (it->path().filename() == skip) {
        it.disable_recursion_pending();
        continue;
      }
      s[it->path().string()] = it->is_directory() ? std::string("<dir>") : read_file(it->path());
    }
  }
  return s;
}

// ------------------------------------------------------------------------------------------------
// safetensors editing (the format: u64 little-endian header length N, N bytes of JSON, data).

struct RawSafetensors {
  json header;
  std::string data;
};

RawSafetensors split_safetensors(const std::string& bytes) {
  if (bytes.size() < 8) throw std::runtime_error("test: safetensors file too short");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  if (n > bytes.size() - 8) throw std::runtime_error("test: bad safetensors header length");
  return {json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
}

std::string join_safetensors(const json& header, const std::string& data) {
  std::string h = header.dump();
  while ((h.size() + 8) % 8 != 0) h.push_back(' ');
  std::string out;
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + h + data;
}

// ------------------------------------------------------------------------------------------------
// The shared tiny model.

struct TinyModel {
  fs::path dir;       // the model folder (config.json, model.safetensors, train.json)
  std::string error;  // non-empty when training failed
};

TinyModel& tiny() {
  static TinyModel t;
  return t;
}

void train_tiny_model_once() {
  TinyModel& t = tiny();
  const fs::path cache = PARE_CLI_CACHE_DIR;
  std::error_code ec;
  fs::create_directories(cache, ec);
  if (ec) {
    t.error = "cannot create " + cache.string() + ": " + ec.message();
    return;
  }
  // Key: recipe text + the pare binary's size and mtime (a rebuilt pare retrains the model).
  struct stat st {};
  if (::stat(PARE_BIN, &st) != 0) {
    t.error = std::string("pare binary not found: ") + PARE_BIN;
    return;
  }
  const std::string key =
      hex(fnv1a(std::string(kTinyRecipe) + "|" + std::to_string(st.st_size) + "|" +
                std::to_string(static_cast<long long>(st.st_mtim.tv_sec)) + "." +
                std::to_string(static_cast<long long>(st.st_mtim.tv_nsec))));
  t.dir = cache / ("tiny-" + key);
  const std::string lock_path = (cache / "lock").string();
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT, 0644);
  if (fd < 0 || ::flock(fd, LOCK_EX) != 0) {
    t.error = "cannot lock " + lock_path;
    if (fd >= 0) ::close(fd);
    return;
  }
  if (!fs::exists(t.dir / "model.safetensors")) {
    for (const auto& e : fs::directory_iterator(cache))  // models of older pare builds
      if (e.path().filename().string().rfind("tiny-", 0) == 0) fs::remove_all(e.path(), ec);
    write_file(cache / "tiny.yaml", kTinyRecipe);
    Proc r = run_pare({"train", "--recipe", "tiny.yaml", "--out", t.dir.string()}, cache,
                     cache / "cap");
    if (r.code != 0 || !fs::exists(t.dir / "model.safetensors") ||
        !contains(r.out, "trained " + t.dir.string() + ": test_accuracy"))
      t.error = "pare train of the tiny model failed\n" + describe(r);
  }
  ::flock(fd, LOCK_UN);
  ::close(fd);
}

// ------------------------------------------------------------------------------------------------

class PareCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { train_tiny_model_once(); }

  void SetUp() override {
    ASSERT_TRUE(tiny().error.empty()) << tiny().error;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() / ("pare_cli_" + std::to_string(::getpid()));
    dir_ = root_ / info->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "[ kept     ] " << dir_.string() << "\n";
      return;
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
    fs::remove(root_, ec);  // only when empty
  }

  const fs::path& model() const { return tiny().dir; }

  Proc pare(const std::vector<std::string>& args) { return run_pare(args, dir_, dir_ / "cap"); }

  fs::path write(const std::string& name, const std::string& bytes) {
    write_file(dir_ / name, bytes);
    return dir_ / name;
  }

  // A copy of the tiny model's config.json and model.safetensors in dir_/name.
  fs::path copy_model(const std::string& name) {
    fs::path d = dir_ / name;
    fs::create_directories(d);
    fs::copy_file(model() / "config.json", d / "config.json");
    fs::copy_file(model() / "model.safetensors", d / "model.safetensors");
    return d;
  }

  // compress arguments with the test-size evaluation settings.
  std::vector<std::string> compress_args(const fs::path& model_dir, const fs::path& recipe,
                                         const fs::path& out) {
    return {"compress", "--model", model_dir.string(), "--recipe", recipe.string(), "--out",
            out.string(), "--set", "eval.limit=500", "--set", "eval.latency_reps=2", "--set",
            "calibration.samples=64"};
  }

  // Runs pare with bad input and checks the contract: exit 2; stderr exactly one line starting
  // "pare: error:" that contains every needle; nothing written (no --out folder, no *.partial.* or
  // *.tmp.* leftovers beside it) and the inputs (this test's folder, the tiny model) unchanged.
  // Returns the run (its one stderr line in r.err).
  Proc expect_rejected(const std::vector<std::string>& args,
                       const std::vector<std::string>& needles) {
    const auto before = snapshot({dir_, model()});
    Proc r = pare(args);
    SCOPED_TRACE(describe(r));
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(r.err.rfind("pare: error: ", 0), 0u) << "stderr must start with 'pare: error: '";
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr must be one line";
    EXPECT_FALSE(r.err.empty() || r.err.back() != '\n') << "stderr must end with a newline";
    for (const auto& n : needles) EXPECT_TRUE(contains(r.err, n)) << "stderr lacks '" << n << "'";
    EXPECT_TRUE(r.out.empty()) << "nothing expected on stdout";
    auto out_it = std::find(args.begin(), args.end(), "--out");
    if (out_it != args.end() && std::next(out_it) != args.end()) {
      const fs::path out = *std::next(out_it);
      EXPECT_FALSE(fs::exists(out)) << out << " was created";
      if (fs::exists(out.parent_path()))
        for (const auto& e : fs::directory_iterator(out.parent_path())) {
          const std::string n = e.path().filename().string();
          EXPECT_FALSE(contains(n, ".partial.") || contains(n, ".tmp.")) << "leftover " << e.path();
        }
    }
    const auto after = snapshot({dir_, model()});
    EXPECT_TRUE(before == after) << "files under " << dir_ << " or " << model()
                                 << " were created, removed or changed";
    if (before != after) {
      for (const auto& [p, b] : after)
        if (!before.count(p)) ADD_FAILURE() << "created: " << p;
        else if (before.at(p) != b) ADD_FAILURE() << "changed: " << p;
      for (const auto& [p, b] : before)
        if (!after.count(p)) ADD_FAILURE() << "removed: " << p;
    }
    return r;
  }

  fs::path root_, dir_;
};

// ------------------------------------------------------------------------------------------------
// Training, listing, inspecting.

TEST_F(PareCli, TrainWroteTinyModel) {
  for (const char* f : {"config.json", "model.safetensors", "train.json"})
    EXPECT_TRUE(fs::is_regular_file(model() / f)) << f;
  json cfg = json::parse(read_file(model() / "config.json"));
  EXPECT_EQ(cfg["hidden_size"], 32);
  EXPECT_EQ(cfg["num_hidden_layers"], 2);
  EXPECT_EQ(cfg["num_attention_heads"], 2);
  EXPECT_EQ(cfg["intermediate_size"], 64);
  EXPECT_EQ(cfg["num_labels"], 10);
  ASSERT_TRUE(cfg.contains("pare") && cfg["pare"]["layers"].is_array()) << cfg.dump(2);
  EXPECT_EQ(cfg["pare"]["layers"].size(), 2u);
  json log = json::parse(read_file(model() / "train.json"));
  EXPECT_EQ(log["params"], 19658) << "hidden 32, 2 layers, intermediate 64, 50 tokens, 10 labels";
  EXPECT_GT(log["test_accuracy"].get<double>(), 0.0);
  EXPECT_EQ(log["threads"], 2);
}

TEST_F(PareCli, PassesListsSliceGptWithOptionsAndDefaults) {
  Proc r = pare({"passes"});
  SCOPED_TRACE(describe(r));
  ASSERT_EQ(r.code, 0);
  EXPECT_TRUE(r.err.empty());
  auto opts = expect_pass_options(r.out, "slicegpt",
                                  {{"slicing", "(number, default 0.25"},
                                   {"round_to", "(integer, default 8"},
                                   {"slice_head", "(bool, default false"},
                                   {"damping", "(number, default 0.01"}});
  EXPECT_TRUE(contains(opts["slicing"], "range [0, 1)")) << "slicing must be listed as [0, 1) "
                                                        << opts["slicing"];
}

TEST_F(PareCli, InspectBaselineShowsFullWidth) {
  Proc r = pare({"inspect", "--model", model().string()});
  SCOPED_TRACE(describe(r));
  ASSERT_EQ(r.code, 0);
  EXPECT_TRUE(contains(r.out, "2 layers, hidden size 32"));
  auto rows = md_table(r.out, "layer");
  int blocks = 0;
  for (auto& row : rows)
    if (row["layer"].rfind("blk.", 0) == 0) {
      ++blocks;
      EXPECT_EQ(row["attn in"], "32") << row["layer"];
      EXPECT_EQ(row["heads"], "2") << row["layer"];
      EXPECT_EQ(row["intermediate"], "64") << row["layer"];
    }
  EXPECT_EQ(blocks, 2);
}

// ------------------------------------------------------------------------------------------------
// compress -> save -> eval / inspect in fresh processes.

TEST_F(PareCli, CompressSliceGptThenEvalAndInspectTheSavedModel) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe), out = dir_ / "out";
  const auto model_before = snapshot({model()});
  Proc c = pare(compress_args(model(), recipe, out));
  SCOPED_TRACE(describe(c));
  ASSERT_EQ(c.code, 0);
  for (const char* f : {"model.safetensors", "config.json", "report.json", "report.md"})
    EXPECT_TRUE(fs::is_regular_file(out / f)) << f;
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_FALSE(contains(e.path().filename().string(), ".partial.")) << e.path();
  EXPECT_TRUE(snapshot({model()}) == model_before) << "compress changed its input model";

  // report.json: a baseline and a slicegpt row; the sliced model is smaller and cheaper.
  json rep = json::parse(read_file(out / "report.json"));
  ASSERT_TRUE(rep.contains("stages") && rep["stages"].is_array()) << rep.dump(2);
  ASSERT_EQ(rep["stages"].size(), 2u);
  const json& base = rep["stages"][0];
  const json& sliced = rep["stages"][1];
  EXPECT_EQ(base["stage"], "baseline");
  EXPECT_EQ(sliced["stage"], "slicegpt");
  EXPECT_EQ(base["params"], 19658);
  EXPECT_LT(sliced["params"].get<int64_t>(), base["params"].get<int64_t>());
  EXPECT_LT(sliced["flops"].get<int64_t>(), base["flops"].get<int64_t>());
  EXPECT_LT(sliced["bytes"].get<int64_t>(), base["bytes"].get<int64_t>());
  for (const auto& l : sliced["layers"])
    if (l["name"].get<std::string>().rfind("blk.", 0) == 0) {
      EXPECT_EQ(l["attn_in"], 24) << l;
    }
  EXPECT_EQ(rep["task"]["calibration"]["samples"], 64);
  EXPECT_EQ(rep["recipe_resolved"]["eval"]["limit"], 500);

  // stdout: the Markdown stage table, the same figures as report.json.
  EXPECT_TRUE(contains(c.out, "| stage | accuracy %")) << "no Markdown table on stdout";
  auto table = md_table(c.out, "stage");
  ASSERT_EQ(table.size(), 2u);
  EXPECT_EQ(table[0]["stage"], "baseline");
  EXPECT_EQ(table[1]["stage"], "slicegpt");
  char acc[32];
  std::snprintf(acc, sizeof acc, "%.2f", 100.0 * sliced["metrics"]["accuracy"].get<double>());
  EXPECT_EQ(table[1]["accuracy %"], acc);
  EXPECT_EQ(table[1]["params"], std::to_string(sliced["params"].get<int64_t>()));
  const std::string md = read_file(out / "report.md");
  EXPECT_TRUE(contains(md, "# pare compression report"));
  EXPECT_TRUE(contains(md, "| slicegpt | " + std::string(acc) + " |")) << md;

  // eval in a fresh process: every dimension comes from the saved config.json, the accuracy on the
  // same 500 images must be the slicegpt row's.
  const fs::path eval_json = dir_ / "eval.json";
  Proc e = pare({"eval", "--model", out.string(), "--limit", "500", "--latency-batches", "1",
                "--json", eval_json.string()});
  SCOPED_TRACE(describe(e));
  ASSERT_EQ(e.code, 0);
  EXPECT_TRUE(contains(e.out, "measured on 500 images")) << e.out;
  auto erows = md_table(e.out, "stage");
  ASSERT_EQ(erows.size(), 1u);
  EXPECT_EQ(erows[0]["stage"], out.string());
  EXPECT_EQ(erows[0]["accuracy %"], acc) << "eval of the saved model disagrees with report.json";
  EXPECT_EQ(erows[0]["params"], std::to_string(sliced["params"].get<int64_t>()));
  ASSERT_TRUE(fs::is_regular_file(eval_json));
  json ej = json::parse(read_file(eval_json));
  EXPECT_DOUBLE_EQ(ej["metrics"]["accuracy"].get<double>(), sliced["metrics"]["accuracy"].get<double>());
  EXPECT_EQ(ej["params"], sliced["params"]);
  EXPECT_EQ(ej["flops"], sliced["flops"]);
  EXPECT_EQ(ej["bytes"], sliced["bytes"]);

  // inspect: the attention input of every block is 24 wide (32 x 0.75, rounded down to 8).
  Proc i = pare({"inspect", "--model", out.string()});
  SCOPED_TRACE(describe(i));
  ASSERT_EQ(i.code, 0);
  auto irows = md_table(i.out, "layer");
  int blocks = 0;
  for (auto& row : irows)
    if (row["layer"].rfind("blk.", 0) == 0) {
      ++blocks;
      EXPECT_EQ(row["attn in"], "24") << row["layer"];
      EXPECT_EQ(row["mlp in"], "24") << row["layer"];
    }
  EXPECT_EQ(blocks, 2);
  EXPECT_TRUE(contains(i.out, "params " + std::to_string(sliced["params"].get<int64_t>())));
  EXPECT_TRUE(contains(i.out, "history:")) << "the saved config keeps the pass history";
}

// gtsp on the tiny ViT: nodes + heads + whole attention / FFN branches at 40% of the FLOPs
// (more than heads and tokens can give, so branches go), fine-tuned on 128 images; the saved
// model (a learned token step, fewer heads, layers without a branch or fewer layers) evaluates in
// a fresh process to the report's accuracy and FLOPs.
TEST_F(PareCli, CompressGtspOnVitThenEvalTheSavedModel) {
  const fs::path recipe = write("gtsp.yaml", "pipeline:\n  - pass: gtsp\n    nodes: true\n    heads: true\n"
                                             "    layers: true\n    branches: both\n    target_flops: 0.4\n"
                                             "    epochs: 1\n    limit_train: 128\n    update_every: 1\n"
                                             "    batch_size: 16\n    seed: 1\n"),
                 out = dir_ / "out";
  Proc c = pare(compress_args(model(), recipe, out));
  SCOPED_TRACE(describe(c));
  ASSERT_EQ(c.code, 0);
  const json rep = json::parse(read_file(out / "report.json"));
  const json& base = rep["stages"][0];
  const json& g = rep["stages"][1];
  const double share = g["flops"].get<double>() / base["flops"].get<double>();
  EXPECT_NEAR(share, 0.4, 0.02) << g["notes"].dump();
  const json& removed = g["notes"]["removed"];
  EXPECT_FALSE(removed["branches"].empty()) << removed.dump();
  const json cfg = json::parse(read_file(out / "config.json"));
  EXPECT_EQ(cfg["pare"]["token_pruning"][0]["method"], "learned");
  int64_t missing = 0;
  for (const auto& l : cfg["pare"]["layers"])
    missing += (l.contains("attention") && !l["attention"].get<bool>()) + (l.contains("ffn") && !l["ffn"].get<bool>());
  const int64_t layers_gone = 2 - cfg["num_hidden_layers"].get<int64_t>();
  EXPECT_EQ(missing + 2 * layers_gone, static_cast<int64_t>(removed["branches"].size())) << cfg.dump();
  const fs::path eval_json = dir_ / "eval.json";
  Proc e = pare({"eval", "--model", out.string(), "--limit", "500", "--latency-batches", "1",
                 "--json", eval_json.string()});
  SCOPED_TRACE(describe(e));
  ASSERT_EQ(e.code, 0);
  const json ej = json::parse(read_file(eval_json));
  EXPECT_DOUBLE_EQ(ej["metrics"]["accuracy"].get<double>(), g["metrics"]["accuracy"].get<double>());
  EXPECT_EQ(ej["flops"], g["flops"]);
  EXPECT_EQ(ej["params"], g["params"]);
}

// shrp on the tiny ViT (2 layers x 2 heads) with a validation split carved from train
// (data.valid_images): keeping one head removes a layer; the fixed-routing phase picks its epoch on
// the validation images and never reports test per epoch; the saved model evaluates in a fresh
// process to the report's accuracy. Then drop-layers + fine-tune, and drop-layers' bad options.
TEST_F(PareCli, ShrpAndDropLayersOnVitWithAValidationSplit) {
  const fs::path recipe = write("shrp.yaml", "pipeline:\n  - pass: shrp\n    keep_heads: 1\n    route_epochs: 1\n"
                                             "    epochs: 2\n    limit_train: 128\n    batch_size: 16\n"
                                             "data:\n  valid_images: 200\n  valid_seed: 1\n"),
                 out = dir_ / "out";
  Proc c = pare(compress_args(model(), recipe, out));
  SCOPED_TRACE(describe(c));
  ASSERT_EQ(c.code, 0);
  const json rep = json::parse(read_file(out / "report.json"));
  const json& n = rep["stages"][1]["notes"];
  EXPECT_EQ(n["final"]["layers"], 1) << n.dump();
  EXPECT_EQ(n["final"]["heads"], 1);
  EXPECT_EQ(rep["task"]["splits"]["valid"]["size"], 200);
  for (const auto& e : n["fixed_phase"]["epochs_log"]) {
    EXPECT_TRUE(e.contains("valid_accuracy")) << e.dump();
    EXPECT_FALSE(e.contains("test_accuracy")) << "test is not looked at while choosing the epoch";
  }
  const fs::path eval_json = dir_ / "eval.json";
  Proc e = pare({"eval", "--model", out.string(), "--limit", "500", "--latency-batches", "1", "--json",
                 eval_json.string()});
  SCOPED_TRACE(describe(e));
  ASSERT_EQ(e.code, 0);
  const json ej = json::parse(read_file(eval_json));
  EXPECT_DOUBLE_EQ(ej["metrics"]["accuracy"].get<double>(), rep["stages"][1]["metrics"]["accuracy"].get<double>());
  EXPECT_EQ(ej["params"], rep["stages"][1]["params"]);

  const fs::path drop = write("drop.yaml", "pipeline:\n  - pass: drop-layers\n    keep: 1\n  - pass: fine-tune\n"
                                           "    epochs: 1\n    limit_train: 64\n    batch_size: 16\n"),
                 out2 = dir_ / "out2";
  Proc d = pare(compress_args(model(), drop, out2));
  SCOPED_TRACE(describe(d));
  ASSERT_EQ(d.code, 0);
  const json drep = json::parse(read_file(out2 / "report.json"));
  EXPECT_EQ(drep["stages"][1]["notes"]["removed_layers"], json::array({1}));
  EXPECT_EQ(drep["stages"][2]["notes"]["fine_tuning"]["steps"], 4);  // 64 images / 16
  EXPECT_EQ(json::parse(read_file(out2 / "config.json"))["num_hidden_layers"], 1);

  const std::vector<std::pair<std::string, std::vector<std::string>>> bad = {
      {"    keep: 1\n    layers: [0]\n", {"drop-layers: give either layers", "not both"}},
      {"    keep: 0\n", {"drop-layers: give either layers", "not neither"}},
      {"    layers: [5]\n", {"drop-layers: layers: 5 outside [0, 2)"}},
      {"    layers: [0, 1]\n", {"drop-layers: layers: every layer would go"}},
      {"    keep: 2\n", {"drop-layers: keep 2: the model has 2 layers"}},
  };
  for (const auto& [opts, needles] : bad) {
    const fs::path r = write("bad.yaml", "pipeline:\n  - pass: drop-layers\n" + opts);
    std::vector<std::string> want = needles;
    want.push_back("bad.yaml");
    expect_rejected(compress_args(model(), r, dir_ / "bad_out"), want);
  }
  const fs::path big = write("bigvalid.yaml", "pipeline:\n  - pass: fine-tune\n    epochs: 1\ndata:\n  valid_images: 60000\n");
  expect_rejected(compress_args(model(), big, dir_ / "bad_out"), {"/data/valid_images", "60000"});
}

// report.json without what may differ between two identical runs: timings and memory readings
// (keys naming seconds, latency, throughput, elapsed, rss) and the output folder's path.
json without_timings(const json& j, const std::string& out) {
  if (j.is_object()) {
    json r = json::object();
    for (const auto& [k, v] : j.items()) {
      if (contains(k, "second") || contains(k, "latency") || contains(k, "throughput") || contains(k, "elapsed") ||
          contains(k, "rss"))
        continue;
      r[k] = without_timings(v, out);
    }
    return r;
  }
  if (j.is_array()) {
    json r = json::array();
    for (const auto& v : j) r.push_back(without_timings(v, out));
    return r;
  }
  if (j.is_string() && contains(j.get<std::string>(), out)) return "OUT";
  return j;
}

// Determinism (issue 25 item 4): the same recipe, inputs and thread count (2) give byte-identical
// model.safetensors and config.json, and report.json identical except timings, for the
// post-training passes and the training-time ones with a fixed seed.
TEST_F(PareCli, SameRecipeSameBytes) {
  const std::vector<std::pair<std::string, std::string>> recipes = {
      {"slicegpt", "  - pass: slicegpt\n    slicing: 0.25\n"},
      {"gptq", "  - pass: quantize\n    bits: 4\n    group_size: 32\n"},
      {"zero-tprune", "  - pass: zero-tprune\n    layers: [0]\n    keep_rate: 0.7\n"},
      {"prune-heads", "  - pass: prune-heads\n    sparsity: 0.5\n"},
      {"gtsp", "  - pass: gtsp\n    nodes: true\n    heads: true\n    target_flops: 0.7\n    epochs: 1\n"
               "    limit_train: 64\n    batch_size: 16\n    seed: 3\n"},
      {"shrp", "  - pass: shrp\n    keep_heads: 2\n    route_epochs: 1\n    epochs: 1\n    limit_train: 64\n"
               "    batch_size: 16\n    seed: 3\n"},
      {"drop-layers+fine-tune", "  - pass: drop-layers\n    keep: 1\n  - pass: fine-tune\n    epochs: 1\n"
                                "    limit_train: 64\n    batch_size: 16\n    seed: 3\n"},
  };
  for (const auto& [name, stages] : recipes) {
    SCOPED_TRACE(name);
    const fs::path recipe = write(name + ".yaml", "pipeline:\n" + stages);
    std::vector<fs::path> outs;
    for (int run = 0; run < 2; ++run) {
      outs.push_back(dir_ / (name + "-" + std::to_string(run)));
      Proc c = pare(compress_args(model(), recipe, outs.back()));
      ASSERT_EQ(c.code, 0) << describe(c);
    }
    EXPECT_TRUE(read_file(outs[0] / "model.safetensors") == read_file(outs[1] / "model.safetensors"))
        << "model.safetensors differs";
    EXPECT_EQ(read_file(outs[0] / "config.json"), read_file(outs[1] / "config.json"));
    const json a = without_timings(json::parse(read_file(outs[0] / "report.json")), outs[0].string());
    const json b = without_timings(json::parse(read_file(outs[1] / "report.json")), outs[1].string());
    EXPECT_EQ(a, b) << json::diff(a, b).dump(1);
  }
}

// compress with GPTQ int4 -> save -> eval in a fresh process: the saved model holds uint8 codes,
// is smaller, and evaluates to the report's accuracy.
TEST_F(PareCli, CompressQuantizeThenEvalTheSavedModel) {
  const fs::path recipe = write("quant.yaml",
                                "pipeline:\n  - pass: quantize\n    bits: 4\n    group_size: 32\n");
  const fs::path out = dir_ / "out";
  Proc c = pare(compress_args(model(), recipe, out));
  SCOPED_TRACE(describe(c));
  ASSERT_EQ(c.code, 0);
  json rep = json::parse(read_file(out / "report.json"));
  ASSERT_EQ(rep["stages"].size(), 2u);
  const json& base = rep["stages"][0];
  const json& q = rep["stages"][1];
  EXPECT_EQ(q["stage"], "quantize");
  EXPECT_EQ(q["params"], base["params"]) << "quantization keeps the logical parameters";
  EXPECT_EQ(q["flops"], base["flops"]);
  EXPECT_LT(q["bytes"].get<int64_t>(), base["bytes"].get<int64_t>());

  // model.safetensors shrank and holds the codes as U8: 2 layers x 6 block linears.
  const std::string before = read_file(model() / "model.safetensors");
  const std::string after = read_file(out / "model.safetensors");
  EXPECT_LT(after.size(), before.size() / 2);
  RawSafetensors st = split_safetensors(after);
  int qweights = 0;
  for (const auto& [name, e] : st.header.items()) {
    auto ends = [&](const std::string& suf) {
      return name.size() > suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
    };
    if (ends(".qweight")) {
      ++qweights;
      EXPECT_EQ(e["dtype"], "U8") << name;
    }
    if (name.rfind("vit.encoder.", 0) == 0 && !contains(name, "layernorm")) {
      EXPECT_FALSE(ends(".weight")) << name << ": a block linear kept its float weight";
    }
  }
  EXPECT_EQ(qweights, 12);
  const std::string qk = "vit.encoder.layer.0.attention.attention.query.";
  ASSERT_TRUE(st.header.contains(qk + "qweight")) << st.header.dump();
  EXPECT_EQ(st.header[qk + "qweight"]["shape"], json::array({32, 16}));
  EXPECT_EQ(st.header[qk + "scales"]["shape"], json::array({32, 1}));
  EXPECT_EQ(st.header[qk + "scales"]["dtype"], "F32");
  json cfg = json::parse(read_file(out / "config.json"));
  EXPECT_EQ(cfg["pare"]["quantization"]["method"], "gptq");
  EXPECT_EQ(cfg["pare"]["quantization"]["slots"].size(), 12u);
  EXPECT_EQ(cfg["pare"]["quantization"]["slots"]["blk.1.ffn_down"],
            json({{"bits", 4}, {"group_size", 32}, {"symmetric", true}}));

  const fs::path eval_json = dir_ / "eval.json";
  Proc e = pare({"eval", "--model", out.string(), "--limit", "500", "--latency-batches", "1",
                "--json", eval_json.string()});
  SCOPED_TRACE(describe(e));
  ASSERT_EQ(e.code, 0);
  json ej = json::parse(read_file(eval_json));
  EXPECT_DOUBLE_EQ(ej["metrics"]["accuracy"].get<double>(), q["metrics"]["accuracy"].get<double>())
      << "eval of the saved quantized model disagrees with report.json";
  EXPECT_EQ(ej["params"], q["params"]);
  EXPECT_EQ(ej["bytes"], q["bytes"]);

  // config.json saying 8 bits where the file holds 4-bit codes: one line naming the file, the
  // tensor and both shapes, exit 2, nothing written.
  cfg["pare"]["quantization"]["slots"]["blk.0.attn_q"]["bits"] = 8;
  write_file(out / "config.json", cfg.dump(2));
  expect_rejected({"eval", "--model", out.string(), "--limit", "10"},
                  {(out / "model.safetensors").string(), qk + "qweight",
                   "expected [32, 32], got [32, 16]"});
}

// slicegpt 0.25 leaves 24-wide slots: a group of 16 does not divide them (error names the slot and
// width, nothing written); 8 does. SliceGPT after quantize refuses the quantized slots.
TEST_F(PareCli, QuantizeChainsAfterSliceGptAndNotBefore) {
  const std::string slice = "pipeline:\n  - pass: slicegpt\n    slicing: 0.25\n";
  const fs::path bad = write("bad.yaml", slice + "  - pass: quantize\n    group_size: 16\n");
  auto args = compress_args(model(), bad, dir_ / "out");
  args.push_back("--quiet");
  expect_rejected(args, {"group_size 16", "input width 24", "'blk.0.attn_q'"});

  const fs::path good = write("good.yaml", slice + "  - pass: quantize\n    group_size: 8\n");
  Proc c = pare(compress_args(model(), good, dir_ / "out"));
  SCOPED_TRACE(describe(c));
  EXPECT_EQ(c.code, 0);

  const fs::path rev = write("rev.yaml",
                             "pipeline:\n  - pass: quantize\n    method: rtn\n    bits: 8\n"
                             "    group_size: 0\n  - pass: slicegpt\n");
  args = compress_args(model(), rev, dir_ / "out2");
  args.push_back("--quiet");
  expect_rejected(args, {"blk.0.attn_q", "quantized", "dense form"});
}

// The whole recipe is checked against the shapes each stage will leave before the baseline is
// measured (issue 17 item 8): without --quiet the one stderr line is the error, so no progress
// (loading data, measuring the baseline) came before it.
TEST_F(PareCli, RecipePlanIsCheckedBeforeTheBaseline) {
  const fs::path bad = write("bad.yaml", std::string(kSliceRecipe) + "  - pass: quantize\n    group_size: 16\n");
  expect_rejected(compress_args(model(), bad, dir_ / "out"),
                  {"bad.yaml: /pipeline/1 (quantize)", "group_size 16", "input width 24"});
  const fs::path rev = write("rev.yaml",
                             "pipeline:\n  - pass: quantize\n    method: rtn\n    bits: 8\n"
                             "    group_size: 0\n  - pass: slicegpt\n");
  expect_rejected(compress_args(model(), rev, dir_ / "out"),
                  {"rev.yaml: /pipeline/1 (slicegpt)", "'blk.0.attn_q' is quantized",
                   "put quantize after slicegpt"});
  const fs::path twice = write("twice.yaml",
                               "pipeline:\n  - pass: quantize\n    group_size: 0\n"
                               "  - pass: quantize\n    group_size: 0\n");
  expect_rejected(compress_args(model(), twice, dir_ / "out"),
                  {"twice.yaml: /pipeline/1 (quantize)", "already quantized"});
  const fs::path tp = write("tp.yaml",
                            "pipeline:\n  - pass: zero-tprune\n    keep_rate: 0.5\n"
                            "  - pass: zero-tprune\n    keep_rate: 0.5\n");
  expect_rejected(compress_args(model(), tp, dir_ / "out"),
                  {"tp.yaml: /pipeline/1 (zero-tprune)", "already has a token-pruning schedule"});
  // prune-heads (per-layer scope) plans its head counts: 2 heads of 16 → 1, so attn_o's input is
  // 16 wide and a group size of 32 cannot apply; quantized attention cannot be pruned.
  const fs::path ph = write("ph.yaml",
                            "pipeline:\n  - pass: prune-heads\n    sparsity: 0.5\n"
                            "  - pass: quantize\n    group_size: 32\n");
  expect_rejected(compress_args(model(), ph, dir_ / "out"),
                  {"ph.yaml: /pipeline/1 (quantize)", "group_size 32", "input width 16",
                   "'blk.0.attn_o'"});
  const fs::path qp = write("qp.yaml",
                            "pipeline:\n  - pass: quantize\n    group_size: 0\n"
                            "  - pass: prune-heads\n    sparsity: 0.5\n");
  expect_rejected(compress_args(model(), qp, dir_ / "out"),
                  {"qp.yaml: /pipeline/1 (prune-heads)", "'blk.0.attn_q' is quantized",
                   "put quantize after prune-heads"});
  // A budget on a metric the model's task does not have: also before anything is measured.
  const fs::path ppl = write("ppl.yaml", std::string(kSliceRecipe) +
                                             "budget:\n  perplexity:\n    max_increase: 10\n");
  expect_rejected(compress_args(model(), ppl, dir_ / "out"),
                  {"ppl.yaml: /budget/perplexity: perplexity is not a metric of the image-classification task "
                   "(its metrics and their bounds: accuracy {max_drop, min})"});
}

TEST_F(PareCli, QuantizeBitsThreeIsARecipeError) {
  const fs::path recipe = write("q3.yaml", "pipeline:\n  - pass: quantize\n    bits: 3\n");
  expect_rejected(compress_args(model(), recipe, dir_ / "out"),
                  {"q3.yaml", "/pipeline/0/bits", "got 3"});
}

TEST_F(PareCli, BudgetNotMetExitsOneAndStillWritesOutputs) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe), out = dir_ / "out";
  auto args = compress_args(model(), recipe, out);
  args.insert(args.end(), {"--set", "budget.accuracy.min=99.9"});
  Proc r = pare(args);
  SCOPED_TRACE(describe(r));
  EXPECT_EQ(r.code, 1);
  EXPECT_FALSE(contains(r.out, "BUDGET")) << "the verdict goes to stderr; stdout keeps the report";
  auto ls = lines_of(r.err);
  auto it = std::find_if(ls.begin(), ls.end(), [](const std::string& l) {
    return contains(l, "BUDGET NOT MET");
  });
  ASSERT_NE(it, ls.end());
  EXPECT_TRUE(contains(*it, "accuracy")) << *it;
  EXPECT_TRUE(contains(*it, "99.9")) << *it;
  for (const char* f : {"model.safetensors", "config.json", "report.json", "report.md"})
    EXPECT_TRUE(fs::is_regular_file(out / f)) << f;
  json rep = json::parse(read_file(out / "report.json"));
  EXPECT_EQ(rep["budget"]["ok"], false);
  EXPECT_TRUE(contains(rep["budget"]["message"].get<std::string>(), "accuracy"));
}

// Ceilings on the final model (params, FLOPs, bytes, latency) are budgets too, judged with the
// metric budget; the verdict is one stderr line, also with --quiet (issue 17 item 6).
TEST_F(PareCli, CeilingBudgetsAreJudgedAndTheVerdictGoesToStderr) {
  const fs::path tight = write("tight.yaml", std::string(kSliceRecipe) +
                                                 "budget:\n  accuracy:\n    max_drop: 100\n"
                                                 "  params:\n    max: 1\n");
  auto args = compress_args(model(), tight, dir_ / "t");
  args.push_back("--quiet");
  Proc r = pare(args);
  EXPECT_EQ(r.code, 1) << describe(r);
  json rep = json::parse(read_file(dir_ / "t" / "report.json"));
  const int64_t params = rep["stages"][1]["params"];
  EXPECT_EQ(r.err.rfind("pare: BUDGET NOT MET: params " + std::to_string(params) +
                            " (max 1) (within budget: accuracy ", 0),
            0u)
      << describe(r);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << describe(r);
  EXPECT_EQ("pare: BUDGET NOT MET: " + rep["budget"]["message"].get<std::string>() + "\n", r.err);
  EXPECT_EQ(rep["budget"]["ok"], false);
  const fs::path loose = write("loose.yaml", std::string(kSliceRecipe) +
                                                 "budget:\n  bytes:\n    max: 100000000\n"
                                                 "  latency:\n    max_ms: 100000\n    batch: 1\n");
  args = compress_args(model(), loose, dir_ / "l");
  args.push_back("--quiet");
  r = pare(args);
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, "pare: budget met: bytes ")) << describe(r);
  EXPECT_TRUE(contains(r.err, "; latency b1 ")) << describe(r);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << describe(r);
  EXPECT_FALSE(contains(r.out, "budget")) << describe(r);
  // Refused before anything runs: fidelity budgets on a classifier, a latency batch not measured,
  // a ceiling without its number.
  expect_rejected(compress_args(model(), write("kl.yaml", std::string(kSliceRecipe) +
                                                              "budget:\n  kl:\n    max: 0.1\n"),
                                dir_ / "out"),
                  {"kl.yaml: /budget/kl: kl is not a metric of the image-classification task"});
  expect_rejected(compress_args(model(), write("lat.yaml", std::string(kSliceRecipe) +
                                                               "budget:\n  latency:\n    max_ms: 5\n"
                                                               "    batch: 7\n"),
                                dir_ / "out"),
                  {"lat.yaml: /budget/latency/batch: 7 is not one of eval.latency_batches"});
  expect_rejected(compress_args(model(), write("np.yaml", std::string(kSliceRecipe) +
                                                              "budget:\n  params: {}\n"),
                                dir_ / "out"),
                  {"np.yaml", "/budget/params/max", "expected a number"});
}

// The general budget form names the metric; the old keys keep working. A metric the model's task
// does not have, a bound that does not fit the metric, or no bound are refused before the run.
TEST_F(PareCli, BudgetNamesAnyMetricOfTheTask) {
  const fs::path ok = write("ok.yaml", std::string(kSliceRecipe) +
                                           "budget:\n  metric: accuracy\n  max_drop: 100\n");
  std::vector<std::string> args = compress_args(model(), ok, dir_ / "ok");
  args.push_back("--quiet");
  Proc r = pare(args);
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, "pare: budget met: accuracy ")) << describe(r);
  const fs::path miss = write("miss.yaml", std::string(kSliceRecipe) +
                                               "budget:\n  metric: accuracy\n  min: 99.9\n");
  args = compress_args(model(), miss, dir_ / "miss");
  args.push_back("--quiet");
  r = pare(args);
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "(min 99.9%)")) << describe(r);
  expect_rejected(compress_args(model(), write("ppl.yaml", std::string(kSliceRecipe) +
                                                               "budget:\n  metric: perplexity\n"
                                                               "  max_increase_pct: 10\n"),
                                dir_ / "out"),
                  {"ppl.yaml: /budget/metric: perplexity is not a metric of the image-classification task "
                   "(its metrics and their bounds: accuracy {max_drop, min})"});
  expect_rejected(compress_args(model(), write("nob.yaml", std::string(kSliceRecipe) +
                                                               "budget:\n  metric: accuracy\n"),
                                dir_ / "out"),
                  {"nob.yaml", "/budget/metric", "needs a bound beside it"});
  expect_rejected(compress_args(model(), write("bad.yaml", std::string(kSliceRecipe) +
                                                               "budget:\n  metric: accuracy\n  max: 3\n"),
                                dir_ / "out"),
                  {"bad.yaml", "/budget/max: does not apply to accuracy"});
  expect_rejected(compress_args(model(), write("unk.yaml", std::string(kSliceRecipe) +
                                                               "budget:\n  metric: bleu\n  min: 3\n"),
                                dir_ / "out"),
                  {"unk.yaml", "/budget/metric", "bleu"});
}

// ------------------------------------------------------------------------------------------------
// Bad model input: exit 2, one line naming the file, nothing written.

TEST_F(PareCli, MissingModelFolder) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe);
  const fs::path missing = dir_ / "no-such-model";
  expect_rejected(compress_args(missing, recipe, dir_ / "out"), {missing.string(), "not found"});
  expect_rejected({"eval", "--model", missing.string(), "--limit", "10"}, {missing.string()});
  expect_rejected({"inspect", "--model", missing.string()}, {missing.string()});
}

TEST_F(PareCli, ModelFolderWithoutSafetensors) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe);
  const fs::path m = dir_ / "model";
  fs::create_directories(m);
  fs::copy_file(model() / "config.json", m / "config.json");
  expect_rejected(compress_args(m, recipe, dir_ / "out"), {(m / "model.safetensors").string()});
  expect_rejected({"inspect", "--model", m.string()}, {"model.safetensors"});
}

TEST_F(PareCli, TruncatedSafetensors) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe);
  const fs::path m = copy_model("model");
  fs::resize_file(m / "model.safetensors", fs::file_size(m / "model.safetensors") / 2);
  expect_rejected(compress_args(m, recipe, dir_ / "out"), {(m / "model.safetensors").string()});
  expect_rejected({"eval", "--model", m.string(), "--limit", "10"}, {"model.safetensors"});
}

TEST_F(PareCli, SafetensorsHeaderLengthHuge) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe);
  const fs::path m = copy_model("model");
  std::string bytes = read_file(m / "model.safetensors");
  const uint64_t huge = uint64_t(1) << 60;
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((huge >> (8 * i)) & 0xff);
  write_file(m / "model.safetensors", bytes);
  expect_rejected(compress_args(m, recipe, dir_ / "out"), {"model.safetensors", "header length"});
}

// A header of garbage bytes (not UTF-8, with a newline): the error quotes them as \xNN escapes,
// so the message stays one line of valid UTF-8 whatever the file holds.
TEST_F(PareCli, SafetensorsGarbageHeaderIsQuotedAsEscapes) {
  const fs::path m = copy_model("model");
  std::string bytes = read_file(m / "model.safetensors");
  const std::string junk = "\xff\xfe\n\x01garbage";
  bytes.replace(8, junk.size(), junk);
  write_file(m / "model.safetensors", bytes);
  Proc r = expect_rejected({"inspect", "--model", m.string()}, {"model.safetensors"});
  for (unsigned char c : r.err) {
    EXPECT_LT(c, 0x80) << "raw non-ASCII byte in: " << r.err;
    EXPECT_TRUE(c >= 0x20 || c == '\n') << "raw control byte in: " << r.err;
  }
  EXPECT_TRUE(contains(r.err, "\\xff")) << r.err;
  // A NUL inside a header string (JSON "\u0000") no longer cuts the message short.
  const std::string header =
      R"({"a\u0000b":{"dtype":"Q\u0000Z","shape":[1],"data_offsets":[0,4]}})";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  write_file(m / "model.safetensors", file + header + std::string(4, '\0'));
  r = expect_rejected({"inspect", "--model", m.string()},
                      {"model.safetensors", "tensor 'a\\x00b'", "dtype 'Q\\x00Z'",
                       "(expected F64"});
}

fs::path lm_fixture(const std::string& name);  // below, with the LM tests

// `bench zero-tprune --schedule LAYERS@RATE ...`: one row per spec and method, each with its own
// layers and keep rate (tokens per layer show where the steps are); bad specs are one line, exit 2,
// no results file.
TEST_F(PareCli, BenchZeroTPruneScheduleGivesEachRowItsLayers) {
  const std::string out = (dir_ / "r.md").string();
  Proc r = pare({"bench", "zero-tprune", "--model", model().string(), "--schedule", "0@0.5",
                 "0,1@0.75", "--iterations", "1", "--similar", "1", "--random-seeds", "1",
                 "--limit", "64", "--no-timing", "--out", out});
  ASSERT_EQ(r.code, 0) << describe(r);
  const std::string md = read_file(out);
  // 50 tokens (CLS + 49 patches of 4×4). 0@0.5: layer 0 keeps 1 + round(24.5) = 26;
  // 0,1@0.75: 1 + round(36.75) = 38, then 1 + round(37 · 0.75 = 27.75) = 29.
  EXPECT_TRUE(contains(md, "| 0 | 0.50 | 50→26, 26 | zero-tprune |")) << md;
  EXPECT_TRUE(contains(md, "| 0, 1 | 0.75 | 50→38, 38→29 | zero-tprune |")) << md;
  EXPECT_TRUE(contains(md, "| 0 | 0.50 | 50→26, 26 | random |")) << md;
  // The header describes this run: the model given, no timing, its token count.
  EXPECT_TRUE(contains(md, "(" + model().string() + ")")) << md;
  EXPECT_TRUE(contains(md, "Throughput: not measured (--no-timing)")) << md;
  EXPECT_FALSE(contains(md, "alternating dense/pruned")) << md;
  EXPECT_TRUE(contains(md, "MFLOPs/image, 50 tokens.")) << md;
  EXPECT_TRUE(contains(md, "zero-tprune-paper =")) << md;  // --iterations given: paper rows run
  // Without --iterations and --similar the paper rows equal zero-tprune: neither rows nor header.
  const std::string out2 = (dir_ / "r2.md").string();
  r = pare({"bench", "zero-tprune", "--model", model().string(), "--schedule", "0@0.5",
            "--random-seeds", "1", "--limit", "64", "--no-timing", "--out", out2});
  ASSERT_EQ(r.code, 0) << describe(r);
  const std::string md2 = read_file(out2);
  EXPECT_FALSE(contains(md2, "zero-tprune-paper")) << md2;
  EXPECT_TRUE(contains(md2, "| 0 | 0.50 | 50→26, 26 | cls-attention |")) << md2;
  // expect_rejected also checks that nothing under dir_ changed (r.md included) and that the
  // refused runs' --out was not created.
  for (const char* bad : {"0.5", "x@0.5", "0@1.5", "0@", "0,@0.5", "+0@0.5", "0@0.5@0.6"})
    expect_rejected({"bench", "zero-tprune", "--model", model().string(), "--schedule", bad,
                     "--no-timing", "--out", (dir_ / "bad.md").string()},
                    {"--schedule", bad});
  // A schedule the model cannot take names the spec too: layers must increase; layer 2 does not
  // exist in a 2-layer model.
  expect_rejected({"bench", "zero-tprune", "--model", model().string(), "--schedule", "1,1@0.5",
                   "--no-timing", "--out", (dir_ / "bad.md").string()},
                  {"--schedule '1,1@0.5'", "increase"});
  expect_rejected({"bench", "zero-tprune", "--model", model().string(), "--schedule", "2@0.5",
                   "--no-timing", "--out", (dir_ / "bad.md").string()},
                  {"--schedule '2@0.5'", "expected 0..1"});
  expect_rejected({"bench", "zero-tprune", "--model", model().string(), "--schedule", "0@0.5",
                   "--layers", "1", "--no-timing", "--out", (dir_ / "bad.md").string()},
                  {"--schedule", "not both"});
  expect_rejected({"bench", "zero-tprune", "--model", model().string(), "--similar", "2",
                   "--no-timing", "--out", (dir_ / "bad.md").string()},
                  {"--similar"});
  // A language model has no tokens to prune in this sweep.
  expect_rejected({"bench", "zero-tprune", "--model", lm_fixture("llama").string(), "--no-timing",
                   "--out", (dir_ / "bad.md").string()},
                  {"bench zero-tprune", "llama", "ViT models"});
}

TEST_F(PareCli, SafetensorsDataOffsetsPastTheEnd) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe);
  const fs::path m = copy_model("model");
  RawSafetensors st = split_safetensors(read_file(m / "model.safetensors"));
  std::string victim;
  for (auto it = st.header.begin(); it != st.header.end(); ++it)
    if (it.key() != "__metadata__") victim = it.key();  // the last tensor
  ASSERT_FALSE(victim.empty());
  const uint64_t begin = st.header[victim]["data_offsets"][0].get<uint64_t>();
  st.header[victim]["data_offsets"] = {begin, st.data.size() + 64};
  write_file(m / "model.safetensors", join_safetensors(st.header, st.data));
  expect_rejected(compress_args(m, recipe, dir_ / "out"),
                  {"model.safetensors", "data_offsets", victim});
}

TEST_F(PareCli, ConfigDisagreesWithWeights) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe);
  const fs::path m = copy_model("model");
  json cfg = json::parse(read_file(m / "config.json"));
  cfg["hidden_size"] = 48;
  cfg.erase("pare");  // per-layer dims then follow hidden_size
  write_file(m / "config.json", cfg.dump(2));
  Proc r = expect_rejected(compress_args(m, recipe, dir_ / "out"), {"expected"});
  // The message names a tensor of the checkpoint.
  std::smatch sm;
  ASSERT_TRUE(std::regex_search(r.err, sm, std::regex("tensor '([^']+)'"))) << r.err;
  RawSafetensors st = split_safetensors(read_file(m / "model.safetensors"));
  EXPECT_TRUE(st.header.contains(sm[1].str())) << sm[1].str() << " is not a tensor of the file";
  expect_rejected({"inspect", "--model", m.string()}, {"expected", sm[1].str()});
}

// A classifier whose outputs do not fit the data's classes is refused before anything runs
// (issue 17 item 5): with one output on Fashion-MNIST's ten classes, its "accuracy" would be the
// share of class 0 and a budget would read met.
TEST_F(PareCli, ClassifierWithOneOutputIsRefusedOnTenClassData) {
  const fs::path m = copy_model("one-output");
  // Keep the classifier's first row only: a valid checkpoint of a 1-output model.
  RawSafetensors st = split_safetensors(read_file(m / "model.safetensors"));
  std::vector<std::pair<int64_t, std::string>> order;
  for (auto& [name, info] : st.header.items())
    if (name != "__metadata__") order.emplace_back(info["data_offsets"][0].get<int64_t>(), name);
  std::sort(order.begin(), order.end());
  std::string data;
  for (const auto& [begin, name] : order) {
    json& info = st.header[name];
    ASSERT_EQ(info["dtype"], "F32") << name;
    int64_t bytes = info["data_offsets"][1].get<int64_t>() - begin;
    if (name == "classifier.weight" || name == "classifier.bias") {
      info["shape"][0] = 1;
      bytes = 4;
      for (size_t i = 1; i < info["shape"].size(); ++i) bytes *= info["shape"][i].get<int64_t>();
    }
    info["data_offsets"] = {static_cast<int64_t>(data.size()), static_cast<int64_t>(data.size()) + bytes};
    data += st.data.substr(static_cast<size_t>(begin), static_cast<size_t>(bytes));
  }
  ASSERT_TRUE(st.header.contains("classifier.weight"));
  write_file(m / "model.safetensors", join_safetensors(st.header, data));
  json cfg = json::parse(read_file(m / "config.json"));
  cfg["num_labels"] = 1;
  cfg["id2label"] = {{"0", "only"}};
  cfg["label2id"] = {{"only", 0}};
  write_file(m / "config.json", cfg.dump(2));
  // The model itself is valid: inspect loads it.
  Proc i = pare({"inspect", "--model", m.string()});
  ASSERT_EQ(i.code, 0) << describe(i);
  const std::string want = "10 classes (labels 0..9), the model has num_labels = 1 outputs";
  expect_rejected({"eval", "--model", m.string(), "--limit", "10"}, {want});
  expect_rejected(compress_args(m, write("slice.yaml", kSliceRecipe), dir_ / "out"), {want});
}

// A pass that does something other than what was asked says so on stderr, even with --quiet,
// and in report.json (issue 17 item 9): heads come whole (2 per layer here, so sparsity 0.125
// removes none), and slicing a 32-wide model by 3% (round_to 1: 31 kept) adds more
// shortcut-matrix parameters than it removes.
TEST_F(PareCli, PassesWarnWhenTheyDoOtherThanAsked) {
  const fs::path heads = write("heads.yaml", "pipeline:\n  - pass: prune-heads\n    sparsity: 0.125\n");
  std::vector<std::string> args = compress_args(model(), heads, dir_ / "h");
  args.push_back("--quiet");
  Proc r = pare(args);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(r.err,
            "pare: warning: prune-heads: sparsity 0.125 asked, 0 of 4 heads removed (0): heads are "
            "removed whole, round(sparsity × heads) per layer, never a layer's last\n")
      << describe(r);
  json rep = json::parse(read_file(dir_ / "h" / "report.json"));
  const json& notes = rep["stages"][1]["notes"];
  EXPECT_EQ(notes["sparsity_asked"], 0.125);
  EXPECT_EQ(notes["sparsity_removed"], 0.0);
  ASSERT_EQ(notes["warnings"].size(), 1u) << notes.dump();
  // report.json (issue 17 item 7, in part): schema version, the run's warnings, the --set
  // overrides as given, how many images each stage was measured on, the kernel it ran on.
  EXPECT_EQ(rep["schema_version"], 2);
  EXPECT_EQ(rep["warnings"], notes["warnings"]);
  EXPECT_EQ(rep["inputs"]["set"],
            json({"eval.limit=500", "eval.latency_reps=2", "calibration.samples=64"}));
  for (const auto& st : rep["stages"]) {
    EXPECT_EQ(st["samples"], 500) << st.dump();
    EXPECT_EQ(st["samples_unit"], "images");
  }
  EXPECT_FALSE(rep["runtime"]["blas"]["library"].get<std::string>().empty());
  EXPECT_FALSE(rep["runtime"]["pare_version"].get<std::string>().empty());
  // Asked and done agree: no warning (0.5 of 2 heads per layer = 1).
  const fs::path half = write("half.yaml", "pipeline:\n  - pass: prune-heads\n    sparsity: 0.5\n");
  args = compress_args(model(), half, dir_ / "h2");
  args.push_back("--quiet");
  r = pare(args);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(r.err, "") << describe(r);
  // SliceGPT at 3%: the model grows.
  const fs::path small = write("small.yaml", "pipeline:\n  - pass: slicegpt\n    slicing: 0.03\n    round_to: 1\n");
  args = compress_args(model(), small, dir_ / "s");
  args.push_back("--quiet");
  r = pare(args);
  ASSERT_EQ(r.code, 0) << describe(r);
  rep = json::parse(read_file(dir_ / "s" / "report.json"));
  const int64_t p0 = rep["stages"][0]["params"], p1 = rep["stages"][1]["params"];
  ASSERT_GT(p1, p0) << rep["stages"].dump();
  EXPECT_TRUE(contains(r.err, "pare: warning: slicegpt made the model larger: " + std::to_string(p0) +
                                  " -> " + std::to_string(p1) + " params"))
      << describe(r);
}

TEST_F(PareCli, ConfigIsNotJson) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe);
  const fs::path m = copy_model("model");
  write_file(m / "config.json", "{ this is not json\n  \"hidden_size\": 32\n");
  expect_rejected(compress_args(m, recipe, dir_ / "out"), {(m / "config.json").string()});
  expect_rejected({"inspect", "--model", m.string()}, {"config.json", "JSON"});
}

TEST_F(PareCli, MissingDataset) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe);
  auto args = compress_args(model(), recipe, dir_ / "out");
  args.insert(args.end(), {"--data", "/nonexistent"});
  expect_rejected(args, {"/nonexistent"});
  expect_rejected({"eval", "--model", model().string(), "--data", "/nonexistent"},
                  {"/nonexistent"});
}

// The calibration images come from the train split, which only the pass reads: a data folder
// holding just the test split fails after the weights are loaded and the output is staged. It must
// still exit 2 with one line (--quiet: no progress lines) and leave no output or staging folder.
TEST_F(PareCli, MissingTrainSplitForCalibration) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe);
  const fs::path data = dir_ / "test-split-only";
  fs::create_directories(data);
  for (const char* f : {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"})
    fs::copy_file(fs::path("/usr/share/datasets/fashion-mnist") / f, data / f);
  auto args = compress_args(model(), recipe, dir_ / "out");
  args.insert(args.end(), {"--data", data.string(), "--quiet"});
  expect_rejected(args, {data.string(), "train-images-idx3-ubyte"});
}

// Usage errors (CLI11 parse errors) are bad input too: exit 2, one "pare: error:" line.
TEST_F(PareCli, UsageErrors) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe);
  {
    SCOPED_TRACE("missing --recipe");
    expect_rejected({"compress", "--model", model().string(), "--out", (dir_ / "out").string()},
                    {"--recipe"});
  }
  {
    SCOPED_TRACE("unknown option");
    auto args = compress_args(model(), recipe, dir_ / "out");
    args.push_back("--bogus");
    expect_rejected(args, {"--bogus"});
  }
  {
    SCOPED_TRACE("--limit abc");
    expect_rejected({"eval", "--model", model().string(), "--limit", "abc"}, {"--limit", "abc"});
  }
  {
    SCOPED_TRACE("no subcommand");
    expect_rejected({}, {"subcommand"});
  }
  {
    SCOPED_TRACE("--threads -1");  // 0 means all cores; below that is an error
    expect_rejected({"--threads", "-1", "eval", "--model", model().string(), "--limit", "10"},
                    {"--threads", "-1"});
  }
}

// eval's sizes: --limit is -1 (all) or positive, latency batch sizes are positive (as in recipes).
TEST_F(PareCli, EvalRejectsBadSizes) {
  const std::string m = model().string();
  for (const char* limit : {"0", "-7"}) {
    SCOPED_TRACE(std::string("--limit ") + limit);
    expect_rejected({"eval", "--model", m, "--limit", limit, "--latency-batches", "1"},
                    {"--limit"});
  }
  {
    SCOPED_TRACE("--latency-batches 0");
    expect_rejected({"eval", "--model", m, "--limit", "10", "--latency-batches", "0"},
                    {"--latency-batches"});
  }
  {
    SCOPED_TRACE("--batch-size 0");
    expect_rejected({"eval", "--model", m, "--limit", "10", "--batch-size", "0"},
                    {"--batch-size"});
  }
}

// ------------------------------------------------------------------------------------------------
// Bad recipes: exit 2, one line naming the recipe and the key path, checked before any weights
// load (the model path given does not exist).

class PareCliRecipe : public PareCli {
 protected:
  // compress with `recipe_text` and a model folder that does not exist: the message must be about
  // the recipe (it is validated first).
  Proc reject_recipe(const std::string& recipe_text, const std::vector<std::string>& needles,
                     const std::vector<std::string>& extra_args = {}) {
    const fs::path recipe = write("recipe.yaml", recipe_text);
    auto args = compress_args(dir_ / "no-such-model", recipe, dir_ / "out");
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::vector<std::string> all = needles;
    all.push_back(recipe.string());
    Proc r = expect_rejected(args, all);
    EXPECT_FALSE(contains(r.err, "no-such-model")) << "the model was looked at before the recipe";
    return r;
  }
};

TEST_F(PareCliRecipe, UnknownPass) {
  reject_recipe("pipeline:\n  - pass: slicegptt\n    slicing: 0.2\n",
                {"/pipeline/0/pass", "unknown pass", "slicegptt"});
}

TEST_F(PareCliRecipe, UnknownPassIsReportedBeforeTheModelEvenWithAGoodModel) {
  const fs::path recipe = write("recipe.yaml", "pipeline:\n  - pass: nosuchpass\n");
  expect_rejected(compress_args(model(), recipe, dir_ / "out"),
                  {recipe.string(), "/pipeline/0/pass", "unknown pass"});
}

TEST_F(PareCliRecipe, UnknownKeyInPass) {
  reject_recipe("pipeline:\n  - pass: slicegpt\n    slicingg: 0.2\n",
                {"/pipeline/0/slicingg", "unknown key"});
}

TEST_F(PareCliRecipe, SlicingOutOfRange) {
  for (const char* v : {"1.5", "-0.1", "1.0", "1"}) {
    SCOPED_TRACE(std::string("slicing: ") + v);
    reject_recipe(std::string("pipeline:\n  - pass: slicegpt\n    slicing: ") + v + "\n",
                  {"/pipeline/0/slicing", "[0, 1)"});
  }
}

TEST_F(PareCliRecipe, SlicingOutOfRangeThroughSet) {
  reject_recipe(kSliceRecipe, {"/pipeline/0/slicing", "[0, 1)", "1.5"},
                {"--set", "pipeline.0.slicing=1.5"});
}

TEST_F(PareCliRecipe, TwoProblemsReportedInOneLine) {
  reject_recipe("pipeline:\n  - pass: nosuchpass\n  - pass: slicegpt\n    slicing: 1.5\n",
                {"/pipeline/0/pass", "unknown pass", "/pipeline/1/slicing", "[0, 1)", "2 problem"});
}

TEST_F(PareCliRecipe, EvalLimitZero) {
  reject_recipe(kSliceRecipe, {"/eval/limit"}, {"--set", "eval.limit=0"});
}

TEST_F(PareCliRecipe, NotValidYaml) {
  Proc r =
      reject_recipe("pipeline:\n  - pass: slicegpt\n    slicing: [0.25\nbudget: {\n", {"line "});
  EXPECT_TRUE(std::regex_search(r.err, std::regex("line [0-9]+"))) << r.err;
}

TEST_F(PareCliRecipe, MissingRecipeFile) {
  const fs::path missing = dir_ / "no-such-recipe.yaml";
  expect_rejected(compress_args(model(), missing, dir_ / "out"), {missing.string()});
}

TEST_F(PareCliRecipe, MalformedSet) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe);
  for (const char* bad : {"nokey", "=0.3", "pipeline.7.slicing=0.3", "pipeline.x.slicing=0.3"}) {
    SCOPED_TRACE(std::string("--set ") + bad);
    auto args = compress_args(dir_ / "no-such-model", recipe, dir_ / "out");
    args.insert(args.end(), {"--set", bad});
    Proc r = expect_rejected(args, {"--set"});
    EXPECT_FALSE(contains(r.err, "no-such-model"));
  }
}

// ------------------------------------------------------------------------------------------------
// zero-tprune: token pruning on the tiny model (28x28 in 4x4 patches: 49 patches + CLS = 50
// tokens; hidden 32, 2 heads of 16, intermediate 64, 10 labels).

// Layer 0 keeps 1 + round(0.6 · 49 = 29.4) = 30 of 50 tokens, layer 1 keeps 1 + round(0.6 · 29 =
// 17.4) = 18 of 30. S stage: round(0.25 · 20) = 5 and round(0.25 · 12) = 3 tokens. Iterations by
// depth for 2 layers: 30 in layer 0, 1 in layer 1.
const char* const kTPruneRecipe = R"(pipeline:
  - pass: zero-tprune
    layers: [0, 1]
    keep_rate: 0.6
    similar: 0.25
)";

class PareCliTPrune : public PareCli {
 protected:
  // compress the tiny model with `recipe_text` into dir_/out (exit 0 expected, the run in `run`);
  // returns report.json with its two stages.
  json compress_ok(const std::string& recipe_text, Proc& run) {
    const fs::path recipe = write("recipe.yaml", recipe_text);
    run = pare(compress_args(model(), recipe, dir_ / "out"));
    if (run.code != 0) {
      ADD_FAILURE() << describe(run);
      return json::object();
    }
    json rep = json::parse(read_file(dir_ / "out" / "report.json"));
    EXPECT_EQ(rep["stages"].size(), 2u) << rep.dump(2);
    return rep;
  }
  // `pare eval --json` of a model folder in a fresh process on the report's 500 images.
  json eval_ok(const fs::path& model_dir) {
    const fs::path out = dir_ / "eval.json";
    Proc e = pare({"eval", "--model", model_dir.string(), "--limit", "500", "--latency-batches",
                   "1", "--json", out.string()});
    if (e.code != 0) {
      ADD_FAILURE() << describe(e);
      return json::object();
    }
    return json::parse(read_file(out));
  }
};

TEST_F(PareCli, PassesListsZeroTPruneWithOptions) {
  Proc r = pare({"passes"});
  SCOPED_TRACE(describe(r));
  ASSERT_EQ(r.code, 0);
  auto opts = expect_pass_options(r.out, "zero-tprune",
                                  {{"method", "(string, default \"zero-tprune\""},
                                   {"layers", "(integers, default [1]"},
                                   {"keep_rate", "(numbers, default [0.7]"},
                                   {"keep", "(integers, default []"},
                                   {"iterations", "(integers, default []"},
                                   {"similar", "(number, default 0"},
                                   {"uniform_init", "(bool, default false"},
                                   {"seed", "(integer, default 0"}});
  EXPECT_TRUE(contains(opts["keep_rate"], "range [0, 1]")) << opts["keep_rate"];
  EXPECT_TRUE(contains(opts["method"], "cls-attention")) << opts["method"];
}

TEST_F(PareCliTPrune, CompressZeroTPruneThenEvalAndInspectTheSavedModel) {
  Proc c;
  const json rep = compress_ok(kTPruneRecipe, c);
  SCOPED_TRACE(describe(c));
  ASSERT_EQ(rep["stages"].size(), 2u);
  const fs::path out = dir_ / "out";

  // FLOPs by hand (2 × MACs): embeddings 49 patches · 16 · 32; per layer q, k, v at T_in tokens,
  // QKᵀ + AV 2·heads·T_in²·head_dim, attn_o, ffn_up, ffn_down at T_out tokens, and the selection:
  // heads·T_in²·iterations (the I′ scores are the first iteration; r < dropped in both steps, so
  // the I stage runs them all) + lower·upper·32 (S stage on the T_in − 1 non-special tokens split
  // upper = ceil, lower = floor of half); head 32 · 10 on CLS.
  auto layer = [](int64_t ti, int64_t to, int64_t iters, int64_t upper, int64_t lower) {
    const int64_t sel = 2 * ti * ti * iters + lower * upper * 32;
    return 2 * (3 * ti * 32 * 32 + 2 * 2 * ti * ti * 16 + to * (32 * 32 + 32 * 64 + 64 * 32) + sel);
  };
  const int64_t dense_layer = 2 * (4 * 50 * 32 * 32 + 2 * 50 * 32 * 64 + 2 * 2 * 50 * 50 * 16);
  const int64_t emb = 2 * 49 * 16 * 32, head = 2 * 32 * 10;
  const int64_t flops = emb + layer(50, 30, 30, 25, 24) + layer(30, 18, 1, 15, 14) + head;

  const json& base = rep["stages"][0];
  const json& pruned = rep["stages"][1];
  EXPECT_EQ(pruned["stage"], "zero-tprune");
  EXPECT_EQ(base["flops"], emb + 2 * dense_layer + head);
  EXPECT_EQ(pruned["flops"], flops);
  EXPECT_EQ(pruned["params"], base["params"]) << "token pruning leaves the weights alone";
  ASSERT_EQ(pruned["layers"].size(), 4u);
  EXPECT_EQ(pruned["layers"][1]["tokens"], 50);
  EXPECT_EQ(pruned["layers"][1]["tokens_out"], 30);
  EXPECT_EQ(pruned["layers"][2]["tokens"], 30);
  EXPECT_EQ(pruned["layers"][2]["tokens_out"], 18);
  ASSERT_TRUE(pruned["notes"]["steps"].is_array()) << pruned.dump(2);
  EXPECT_EQ(pruned["notes"]["steps"][1]["similar"], 3);

  json cfg = json::parse(read_file(out / "config.json"));
  ASSERT_TRUE(cfg["pare"]["token_pruning"].is_array()) << cfg.dump(2);
  ASSERT_EQ(cfg["pare"]["token_pruning"].size(), 2u);
  EXPECT_EQ(cfg["pare"]["token_pruning"][0]["keep"], 30);
  EXPECT_EQ(cfg["pare"]["token_pruning"][1]["keep"], 18);
  EXPECT_EQ(cfg["pare"]["token_pruning"][0]["iterations"], 30);
  EXPECT_EQ(cfg["pare"]["token_pruning"][1]["iterations"], 1);

  // eval in a fresh process: the schedule comes from config.json; same accuracy as the report.
  const json ej = eval_ok(out);
  ASSERT_TRUE(ej["metrics"].contains("accuracy"));
  EXPECT_DOUBLE_EQ(ej["metrics"]["accuracy"].get<double>(), pruned["metrics"]["accuracy"].get<double>());
  EXPECT_EQ(ej["flops"], flops);

  // inspect: one line per step and the tokens column "in→out".
  Proc i = pare({"inspect", "--model", out.string()});
  SCOPED_TRACE(describe(i));
  ASSERT_EQ(i.code, 0);
  EXPECT_TRUE(contains(i.out, "token pruning in layer 0: zero-tprune, keep 30 of 50 tokens, 30 "
                              "PageRank iterations, S stage drops 5"));
  EXPECT_TRUE(contains(i.out, "token pruning in layer 1: zero-tprune, keep 18 of 30 tokens, 1 "
                              "PageRank iterations, S stage drops 3"));
  EXPECT_TRUE(contains(i.out, "FLOPs/image " + std::to_string(flops)));
  auto rows = md_table(i.out, "layer");
  std::map<std::string, std::string> tokens;
  for (auto& row : rows) tokens[row["layer"]] = row["tokens"];
  EXPECT_EQ(tokens["embeddings"], "50");
  EXPECT_EQ(tokens["blk.0"], "50→30");
  EXPECT_EQ(tokens["blk.1"], "30→18");
  EXPECT_EQ(tokens["head"], "1");
}

TEST_F(PareCliTPrune, CompressZeroTPruneKeepRateOneKeepsAccuracyAndFlops) {
  Proc c;
  const json rep =
      compress_ok("pipeline:\n  - pass: zero-tprune\n    layers: [0, 1]\n    keep_rate: 1\n", c);
  ASSERT_EQ(rep["stages"].size(), 2u);
  EXPECT_DOUBLE_EQ(rep["stages"][1]["metrics"]["accuracy"].get<double>(),
                   rep["stages"][0]["metrics"]["accuracy"].get<double>());
  EXPECT_EQ(rep["stages"][1]["flops"], rep["stages"][0]["flops"]);
  json cfg = json::parse(read_file(dir_ / "out" / "config.json"));
  EXPECT_FALSE(cfg["pare"].contains("token_pruning")) << cfg.dump(2);
}

// Schedules that need the model (its layer and token counts) fail when the pass runs: still exit
// 2, one line naming the option and what was expected, nothing written.
TEST_F(PareCli, ZeroTPruneBadSchedulesAgainstTheModel) {
  struct Bad {
    const char* what;
    const char* stage;
    std::vector<std::string> needles;
  };
  const std::vector<Bad> bad = {
      {"keep_rate list longer than layers", "    layers: [0]\n    keep_rate: [0.5, 0.5]\n",
       {"zero-tprune", "keep_rate", "2 entries", "expected 1 or one per layer in layers (1)"}},
      {"layer beyond the layer count", "    layers: [0, 2]\n    keep_rate: 0.5\n",
       {"zero-tprune", "layers[1] = 2", "expected 0..1"}},
      {"more steps than layers", "    layers: [0, 1, 2]\n    keep_rate: 0.5\n",
       {"zero-tprune", "layers", "3 steps", "2 layers"}},
      {"keep 1: only the CLS token", "    layers: [0]\n    keep: [1]\n",
       {"zero-tprune", "keep[0] = 1", "expected 2..50", "special"}},
      {"keep above the tokens entering", "    layers: [0, 1]\n    keep: [30, 31]\n",
       {"zero-tprune", "keep[1] = 31", "expected 2..30"}},
  };
  for (const auto& b : bad) {
    SCOPED_TRACE(b.what);
    const fs::path recipe =
        write("bad.yaml", std::string("pipeline:\n  - pass: zero-tprune\n") + b.stage);
    auto args = compress_args(model(), recipe, dir_ / "out");
    args.push_back("--quiet");
    expect_rejected(args, b.needles);
  }
}

TEST_F(PareCliRecipe, ZeroTPruneUnknownMethod) {
  reject_recipe("pipeline:\n  - pass: zero-tprune\n    method: pagerank\n",
                {"/pipeline/0/method", "zero-tprune, random, cls-attention", "pagerank"});
}

TEST_F(PareCliRecipe, ZeroTPruneOptionTypesAndRanges) {
  reject_recipe("pipeline:\n  - pass: zero-tprune\n    keep_rate: [0.5, 1.5]\n",
                {"/pipeline/0/keep_rate", "list of numbers in [0, 1]"});
  reject_recipe("pipeline:\n  - pass: zero-tprune\n    layers: [0.5]\n",
                {"/pipeline/0/layers", "list of integers"});
  reject_recipe("pipeline:\n  - pass: zero-tprune\n    keep: [0]\n",
                {"/pipeline/0/keep", "list of integers"});
}

// A config.json whose token-pruning schedule is out of range names the field.
TEST_F(PareCli, ConfigWithBadTokenPruningSchedule) {
  const fs::path recipe = write("slice.yaml", kSliceRecipe);
  const fs::path m = copy_model("model");
  json cfg = json::parse(read_file(m / "config.json"));
  cfg["pare"]["token_pruning"] = json::array({{{"layer", 2}, {"keep", 20}}});
  write_file(m / "config.json", cfg.dump(2));
  expect_rejected({"inspect", "--model", m.string()},
                  {"config.json", "pare.token_pruning[0].layer", "expected 0..1", "got 2"});
  cfg["pare"]["token_pruning"] = json::array({{{"layer", 0}, {"keep", 1}}});
  write_file(m / "config.json", cfg.dump(2));
  expect_rejected({"eval", "--model", m.string(), "--limit", "10"},
                  {"config.json", "pare.token_pruning[0].keep", "expected 2..50", "got 1"});
  cfg["pare"]["token_pruning"] = json::array({{{"layer", 0}, {"keep", 20}, {"method", "bogus"}}});
  write_file(m / "config.json", cfg.dump(2));
  expect_rejected(compress_args(m, recipe, dir_ / "out"),
                  {"config.json", "pare.token_pruning[0].method", "'bogus'"});
}

}  // namespace

// ---- decoder LMs -------------------------------------------------------------------------------

namespace {
fs::path shared_data() {
  const char* e = std::getenv("PARE_SHARED_DATA");
  return fs::path(e && *e ? e : PARE_SOURCE_DIR "/../shared/data");
}
fs::path lm_fixture(const std::string& name) {
  return fs::path(PARE_SOURCE_DIR) / "tests/fixtures/lm" / name;
}
}  // namespace

// An accuracy budget for a language model is refused before anything is measured.
TEST_F(PareCli, LmAccuracyBudgetIsRefusedBeforeTheBaseline) {
  const fs::path d = shared_data() / "llama2c";
  if (!fs::exists(d / "stories260K.bin")) GTEST_SKIP() << "no " << d;
  const fs::path acc = write("acc.yaml", "data:\n  tokenizer: " + (d / "tok512.bin").string() +
                                             "\npipeline:\n  - pass: quantize\n    method: rtn\n"
                                             "    bits: 8\n    group_size: 0\n"
                                             "budget:\n  accuracy:\n    max_drop: 1\n");
  // --quiet: reading the evaluation text is logged first; the refusal comes before the baseline.
  expect_rejected({"compress", "--quiet", "--model", (d / "stories260K.bin").string(), "--recipe", acc.string(),
                   "--data", (d / "tinystories_sample.txt").string(), "--out", (dir_ / "out").string()},
                  {"acc.yaml: /budget/accuracy/max_drop: does not apply to perplexity (the primary metric of the "
                   "lm-perplexity task); the task's metrics and their bounds: perplexity {max_increase_pct}"});
}

// An LM budgeted by fidelity to the dense model: 4-bit per-channel RTN moves the logits, so a
// KL ceiling of 1e-9 nats fails while a loose one (with top-1 agreement) passes.
TEST_F(PareCli, LmFidelityBudgetsCanFail) {
  const fs::path d = shared_data() / "llama2c";
  if (!fs::exists(d / "stories260K.bin")) GTEST_SKIP() << "no " << d;
  const std::string head = "data:\n  tokenizer: " + (d / "tok512.bin").string() +
                           "\npipeline:\n  - pass: quantize\n    method: rtn\n    bits: 4\n"
                           "    group_size: 0\neval:\n  seq_len: 64\n  limit: 4\n";
  const fs::path strict = write("strict.yaml", head + "budget:\n  kl:\n    max: 1.0e-9\n");
  Proc r = pare({"compress", "--quiet", "--model", (d / "stories260K.bin").string(), "--recipe",
                 strict.string(), "--data", (d / "tinystories_sample.txt").string(), "--out",
                 (dir_ / "s").string()});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "pare: BUDGET NOT MET: KL vs dense ")) << describe(r);
  json rep = json::parse(read_file(dir_ / "s" / "report.json"));
  EXPECT_GT(rep["stages"][1]["metrics"]["kl"].get<double>(), 1e-9);
  const fs::path loose = write("loose.yaml", head + "budget:\n  kl:\n    max: 10\n  top1:\n    min: 1\n");
  r = pare({"compress", "--quiet", "--model", (d / "stories260K.bin").string(), "--recipe",
            loose.string(), "--data", (d / "tinystories_sample.txt").string(), "--out",
            (dir_ / "l").string()});
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, "pare: budget met: KL vs dense ")) << describe(r);
  EXPECT_TRUE(contains(r.err, "; top-1 agreement with dense ")) << describe(r);
  // The general form judges the same figures (it was once overwritten by the absent old keys).
  for (const std::string& b : {std::string("budget:\n  metric: top1\n  min: 99.9\n"),
                               std::string("budget:\n  metric: kl\n  max: 1.0e-9\n")}) {
    const fs::path g = write("general.yaml", head + b);
    r = pare({"compress", "--quiet", "--model", (d / "stories260K.bin").string(), "--recipe",
              g.string(), "--data", (d / "tinystories_sample.txt").string(), "--out",
              (dir_ / "g").string()});
    EXPECT_EQ(r.code, 1) << describe(r);
    EXPECT_TRUE(contains(r.err, "pare: BUDGET NOT MET: ")) << describe(r);
    EXPECT_TRUE(contains(r.err, b.find("top1") != std::string::npos ? "top-1 agreement" : "KL vs dense"))
        << describe(r);
    fs::remove_all(dir_ / "g");
  }
}

// The shipped stories260K recipe measures the model on TinyStories text with perplexity, KL and
// top-1 budgets: int8 meets them, int4 per-channel (a model gone noticeably wrong) fails them.
TEST_F(PareCli, ShippedStories260KRecipeBudgetsFailABrokenModel) {
  const fs::path d = shared_data() / "llama2c";
  if (!fs::exists(d / "stories260K.bin")) GTEST_SKIP() << "no " << d;
  if (fs::path(PARE_SOURCE_DIR) / "../shared/data" != shared_data()) GTEST_SKIP() << "data elsewhere";
  auto run = [&](const std::string& bits, const std::string& out) {
    return run_pare({"compress", "--quiet", "--model", "../shared/data/llama2c/stories260K.bin",
                     "--recipe", "recipes/stories260K.yaml", "--set", "pipeline.0.bits=" + bits,
                     "--out", (dir_ / out).string()},
                    PARE_SOURCE_DIR, dir_ / "cap");
  };
  Proc r = run("8", "q8");
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, "pare: budget met: perplexity ")) << describe(r);
  const json rep = json::parse(read_file(dir_ / "q8" / "report.json"));
  EXPECT_TRUE(contains(rep["inputs"]["data"].get<std::string>(), "tinystories_sample.txt"));
  r = run("4", "q4");
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "pare: BUDGET NOT MET: ")) << describe(r);
  EXPECT_TRUE(contains(r.err, "KL vs dense")) << describe(r);
}

TEST_F(PareCli, LmGenerateEvalAndCompressOnStories260K) {
  const fs::path d = shared_data() / "llama2c";
  if (!fs::exists(d / "stories260K.bin")) GTEST_SKIP() << "no " << d;
  const std::string bin = (d / "stories260K.bin").string(), tok = (d / "tok512.bin").string();
  Proc g = pare({"generate", "--model", bin, "--tokenizer", tok, "--max-new", "40"});
  ASSERT_EQ(g.code, 0) << describe(g);
  EXPECT_TRUE(contains(g.out, "Once upon a time, there was a little girl named Lily.")) << g.out;

  const fs::path recipe = write("slice.yaml",
                                "data:\n  dataset: text\n  path: " + (d / "tinystories_sample.txt").string() +
                                    "\n  tokenizer: " + tok + "\ncalibration:\n  path: " +
                                    (shared_data() / "wikitext-2/wiki.valid.raw").string() +
                                    "\n  samples: 16\n  seq_len: 64\npipeline:\n  - pass: slicegpt\n"
                                    "    slicing: 0.25\n    round_to: 1\neval:\n  seq_len: 64\n");
  const fs::path out = dir_ / "sliced";
  Proc c = pare({"compress", "--model", bin, "--recipe", recipe.string(), "--out", out.string()});
  ASSERT_EQ(c.code, 0) << describe(c);
  json rep = json::parse(read_file(out / "report.json"));
  ASSERT_EQ(rep["stages"].size(), 2u);
  const json& base = rep["stages"][0];
  const json& sliced = rep["stages"][1];
  EXPECT_EQ(base["metrics"]["kl"], 0.0);
  EXPECT_EQ(base["metrics"]["top1"], 1.0);
  EXPECT_GT(sliced["metrics"]["kl"].get<double>(), 0.0);
  EXPECT_LT(sliced["flops"].get<int64_t>(), base["flops"].get<int64_t>());
  // The saved model reloads in a fresh process and gives the report's perplexity on the same
  // windows, and its KL against the dense .bin.
  Proc e = pare({"eval", "--model", out.string(), "--tokenizer", tok, "--data",
                 (d / "tinystories_sample.txt").string(), "--seq-len", "64", "--reference", bin,
                 "--json", (dir_ / "e.json").string()});
  ASSERT_EQ(e.code, 0) << describe(e);
  json ej = json::parse(read_file(dir_ / "e.json"));
  EXPECT_NEAR(ej["metrics"]["perplexity"].get<double>(), sliced["metrics"]["perplexity"].get<double>(),
              1e-4 * sliced["metrics"]["perplexity"].get<double>());
  EXPECT_NEAR(ej["metrics"]["kl"].get<double>(), sliced["metrics"]["kl"].get<double>(), 1e-4);
  Proc i = pare({"inspect", "--model", out.string()});
  ASSERT_EQ(i.code, 0) << describe(i);
  EXPECT_TRUE(contains(i.out, "SliceGPT shortcuts")) << i.out;
}

// A recipe without data.dataset on a language model: --data is the evaluation text, and a pass
// that needs no calibration (RTN quantization) needs no calibration text either. A pass that does
// (slicegpt) is refused without one: one line, exit 2, nothing written.
TEST_F(PareCli, LmCompressTakesTextFromDataWhenTheRecipeHasNoDataKind) {
  const fs::path d = shared_data() / "llama2c";
  if (!fs::exists(d / "stories260K.bin")) GTEST_SKIP() << "no " << d;
  const std::string bin = (d / "stories260K.bin").string(), tok = (d / "tok512.bin").string();
  const std::string text = (d / "tinystories_sample.txt").string();
  const fs::path q = write("q.yaml", "data:\n  tokenizer: " + tok +
                                         "\npipeline:\n  - pass: quantize\n    method: rtn\n"
                                         "    bits: 8\n    group_size: 0\neval:\n  seq_len: 64\n  limit: 4\n");
  Proc c = pare({"compress", "--model", bin, "--recipe", q.string(), "--data", text, "--out",
                 (dir_ / "q").string()});
  ASSERT_EQ(c.code, 0) << describe(c);
  const json rep = json::parse(read_file(dir_ / "q" / "report.json"));
  EXPECT_EQ(rep["inputs"]["data"], text);
  ASSERT_EQ(rep["stages"].size(), 2u);
  EXPECT_GT(rep["stages"][1]["metrics"]["perplexity"].get<double>(), 1.0);
  const fs::path s2 = write("s.yaml", "data:\n  tokenizer: " + tok +
                                          "\npipeline:\n  - pass: slicegpt\n    slicing: 0.25\n"
                                          "eval:\n  seq_len: 64\n  limit: 4\n");
  expect_rejected({"compress", "--quiet", "--model", bin, "--recipe", s2.string(), "--data", text,
                   "--out", (dir_ / "s").string()},
                  {"slicegpt", "calibration"});
  // Without --data and without data.path there is no text to evaluate.
  expect_rejected({"compress", "--model", bin, "--recipe", q.string(), "--out",
                   (dir_ / "n").string()},
                  {"q.yaml: 1 problem(s): /data/path: missing: a language model needs an evaluation text",
                   "--data gives it too"});
  // Without a tokenizer the error names how compress takes one (compress has no --tokenizer).
  const fs::path nt = write("nt.yaml", "pipeline:\n  - pass: quantize\n    method: rtn\n    bits: 8\n"
                                       "    group_size: 0\neval:\n  seq_len: 64\n  limit: 4\n");
  Proc r = expect_rejected({"compress", "--model", bin, "--recipe", nt.string(), "--data", text,
                            "--out", (dir_ / "t").string()},
                           {"stories260K.bin", "carries no tokenizer", "data.tokenizer",
                            "--set data.tokenizer=PATH"});
  EXPECT_FALSE(contains(r.err, "--tokenizer")) << r.err;
}

TEST_F(PareCli, LmBadInputIsOneLineAndExit2) {
  const fs::path d = shared_data() / "llama2c";
  if (!fs::exists(d / "stories260K.bin")) GTEST_SKIP() << "no " << d;
  const std::string bin = (d / "stories260K.bin").string(), tok = (d / "tok512.bin").string();
  const fs::path empty = write("empty.txt", "");
  expect_rejected({"eval", "--model", bin, "--tokenizer", tok, "--data", empty.string()},
                  {"empty.txt", "empty"});
  const fs::path shorttext = write("short.txt", "Once upon a time.");
  expect_rejected({"eval", "--model", bin, "--tokenizer", tok, "--data", shorttext.string()},
                  {"short.txt", "fewer than one window of 256 tokens"});
  expect_rejected({"eval", "--model", bin, "--data", shorttext.string()},
                  {"stories260K.bin", "--tokenizer"});
  // A tokenizer with more tokens than the model's vocabulary.
  json chars = json::array();
  for (int c = 0x100; c < 0x100 + 100; ++c)  // U+0100.. as two-byte UTF-8
    chars.push_back(std::string{static_cast<char>(0xC0 | (c >> 6)), static_cast<char>(0x80 | (c & 0x3F))});
  const fs::path big = write("tokenizer.json", json{{"kind", "char"}, {"chars", chars}}.dump());
  expect_rejected({"eval", "--model", lm_fixture("llama").string(), "--tokenizer", big.string(),
                   "--data", shorttext.string()},
                  {"tokenizer.json", "100", "64"});
  // A config that disagrees with the weights.
  fs::path m = dir_ / "llama_bad";
  fs::copy(lm_fixture("llama"), m, fs::copy_options::recursive);
  json cfg = json::parse(read_file(m / "config.json"));
  cfg["num_key_value_heads"] = 4;
  write_file(m / "config.json", cfg.dump());
  expect_rejected({"inspect", "--model", m.string()}, {"model.safetensors", "k_proj.weight", "expected [32, 32], got [16, 32]"});
  // convert never writes into its input; generate without BOS needs a prompt; --seq-len >= 0.
  fs::path good = dir_ / "llama_copy";
  fs::copy(lm_fixture("llama"), good, fs::copy_options::recursive);
  expect_rejected({"convert", "--model", good.string(), "--out", (good / "sub").string()},
                  {"llama_copy/sub", "must not be inside the input model folder"});
  const fs::path gpt2 = fs::path(PARE_SOURCE_DIR) / "models/gpt2-shakespeare-char";
  expect_rejected({"generate", "--model", gpt2.string(), "--max-new", "3"},
                  {"--prompt", "no BOS token"});
  expect_rejected({"eval", "--model", bin, "--tokenizer", tok, "--data", shorttext.string(),
                   "--seq-len", "-1"},
                  {"--seq-len", "got -1"});
}

// ------------------------------------------------------------------------------------------------
// The task layer as a user meets it (issue 17; found by a new-user trial of the Task refactor).

// pare train: a data set the model_type cannot take is refused before anything loads, naming the
// recipe; the output folder of a model is not replaced without --force; --data replaces an LM's
// training text (data.text), so the held-out split of it stays held out.
TEST_F(PareCli, TrainChecksTheTaskAgainstTheModelAndKeepsModels) {
  const fs::path vt = write("vt.yaml", "model: {model_type: vit, hidden_size: 16, num_hidden_layers: 1, "
                                       "num_attention_heads: 2, intermediate_size: 32, image_size: 28, "
                                       "patch_size: 7, num_channels: 1, num_labels: 10}\n"
                                       "data: {dataset: text, text: /nonexistent.txt}\n"
                                       "train: {epochs: 1, out: m}\n");
  expect_rejected({"train", "--recipe", vt.string()},
                  {"vt.yaml: /data/dataset: text does not fit a vit model (its task is image-classification; "
                   "use dataset: fashion-mnist)"});
  const fs::path both = write("both.yaml", "model: {model_type: vit}\n"
                                           "data: {task: image-classification, dataset: text}\n");
  expect_rejected({"train", "--recipe", both.string()},
                  {"both.yaml", "/data/dataset: text is data of the lm-perplexity task, not of task "
                                "image-classification"});
  // An existing model folder (here: the tiny model's own) is not replaced.
  const fs::path m = copy_model("existing");
  const auto before = snapshot({m});
  Proc r = pare({"train", "--recipe", (model().parent_path() / "tiny.yaml").string(), "--out", m.string()});
  EXPECT_EQ(r.code, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "holds a model already")) << describe(r);
  EXPECT_TRUE(contains(r.err, "--force")) << describe(r);
  EXPECT_TRUE(snapshot({m}) == before);
  // --data on an LM recipe: 90% of that text trains, the rest is the test text.
  const fs::path text = write("t.txt", std::string(20000, 'a') + std::string(20000, 'b'));
  const fs::path lm = write("lm.yaml", "model: {model_type: gpt2, n_embd: 16, n_layer: 1, n_head: 2, "
                                       "n_inner: 32, n_positions: 32}\n"
                                       "data: {dataset: text, text: /nonexistent.txt, split: 0.9, tokenizer: char}\n"
                                       "train: {steps: 3, batch_size: 2, seq_len: 16, log_every: 0}\n");
  r = pare({"train", "--recipe", lm.string(), "--data", text.string(), "--out", (dir_ / "lm").string()});
  ASSERT_EQ(r.code, 0) << describe(r);
  const json log = json::parse(read_file(dir_ / "lm" / "train.json"));
  EXPECT_EQ(log["train_tokens"], 36000);
  EXPECT_EQ(log["test_tokens"], 4000);
  EXPECT_EQ(log["recipe"]["model"]["vocab_size"], 2) << "the char tokenizer decides the vocabulary";
  EXPECT_EQ(log["recipe"]["train"]["out"], (dir_ / "lm").string());
  EXPECT_TRUE(fs::is_regular_file(dir_ / "lm" / "tokenizer.json"));
}

// Budgets: a metric section for any metric of the task, ceilings listed in report.json, a
// percentage written as a fraction warned about, a bad --set value named as the --set.
TEST_F(PareCli, BudgetSectionsCeilingsAndWarnings) {
  const fs::path rec = write("b.yaml", std::string(kSliceRecipe) +
                                           "budget:\n  accuracy: {min: 0.5}\n  params: {max: 1000000}\n");
  std::vector<std::string> args = compress_args(model(), rec, dir_ / "o");
  args.push_back("--quiet");
  Proc r = pare(args);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_TRUE(contains(r.err, "pare: warning: ")) << describe(r);
  EXPECT_TRUE(contains(r.err, "min 0.5 is in percent")) << describe(r);
  const json rep = json::parse(read_file(dir_ / "o" / "report.json"));
  ASSERT_EQ(rep["budget"]["bounds"].size(), 2u) << rep["budget"].dump();
  EXPECT_EQ(rep["budget"]["bounds"][0], json({{"metric", "accuracy"}, {"bound", "min"}, {"value", 0.5}}));
  EXPECT_EQ(rep["budget"]["bounds"][1], json({{"metric", "params"}, {"bound", "max"}, {"value", 1000000}}));
  EXPECT_EQ(rep["warnings"].size(), 1u);
  // A metric section names the metric: rocauc is not the classifier's.
  expect_rejected(compress_args(model(), write("roc.yaml", std::string(kSliceRecipe) +
                                                               "budget:\n  rocauc: {min: 74}\n"),
                                dir_ / "out"),
                  {"roc.yaml: /budget/rocauc: rocauc is not a metric of the image-classification task"});
  auto bad = compress_args(model(), write("s.yaml", kSliceRecipe), dir_ / "out");
  bad.insert(bad.end(), {"--set", "pipeline.0.slicing=1.5"});
  expect_rejected(bad, {"s.yaml", "/pipeline/0/slicing", "got 1.5 (from --set pipeline.0.slicing=1.5)"});
}

// pare eval: flags of another task are refused in flag words; --reference without a metric that
// uses one is a warning; a --json folder that does not exist fails before anything is measured.
TEST_F(PareCli, EvalFlagsSpeakTheTask) {
  expect_rejected({"eval", "--model", model().string(), "--split", "train"},
                  {"--split: not a flag of the image-classification task"});
  expect_rejected({"eval", "--model", model().string(), "--json", (dir_ / "no" / "e.json").string()},
                  {"no/e.json: --json: the folder does not exist"});
  Proc r = pare({"eval", "--model", model().string(), "--limit", "50", "--latency-batches", "1",
                 "--reference", model().string()});
  EXPECT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(r.err, "pare: warning: --reference: the image-classification task measures nothing against a "
                   "reference model; ignored\n");
  EXPECT_FALSE(contains(r.out, "Δ")) << "one model, no baseline: no change column\n" << r.out;
}
