// Checkpoints: save_model / load_model round trips, the config.json written (HF fields + "pare"),
// and every kind of bad input (InputError naming the file; inputs left unchanged).
#include "families/checkpoint.h"

#include <nlohmann/json.hpp>

#include "families/family.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace pare {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using pare_test::TempDir;

std::string fixture_dir() { return pare_test::fixture("tiny_vit"); }
torch::Tensor tiny_images() {
  return read_safetensors(pare_test::fixture("tiny_vit_io.safetensors")).tensors.at("images");
}

nlohmann::json read_json(const std::string& path) {
  return nlohmann::json::parse(pare_test::read_bytes(path));
}

// Copies the fixture model into `dir` and returns dir.
std::string copy_fixture(const std::string& dir) {
  fs::create_directories(dir);
  fs::copy_file(fixture_dir() + "/config.json", dir + "/config.json");
  fs::copy_file(fixture_dir() + "/model.safetensors", dir + "/model.safetensors");
  return dir;
}

TEST(Checkpoint, SaveLoadRoundTripGivesIdenticalLogits) {
  TempDir tmp;
  Model m = load_model(fixture_dir());
  const std::string out = tmp.file("saved");
  save_model(m, out);
  Model back = load_model(out);
  torch::NoGradGuard ng;
  torch::Tensor x = tiny_images();
  EXPECT_TRUE(torch::equal(back.forward(x), m.forward(x)));
  auto a = m.flat_tensors(), b = back.flat_tensors();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << name;

  // The saved weights are the fixture's: same HF names, same float32 bits.
  auto fx = read_safetensors(fixture_dir() + "/model.safetensors");
  auto sv = read_safetensors(out + "/model.safetensors");
  ASSERT_EQ(fx.tensors.size(), sv.tensors.size());
  for (const auto& [name, t] : fx.tensors) {
    ASSERT_TRUE(sv.tensors.count(name)) << name;
    EXPECT_EQ(sv.tensors.at(name).scalar_type(), torch::kFloat32) << name;
    EXPECT_TRUE(torch::equal(sv.tensors.at(name), t)) << name;
  }
  EXPECT_EQ(sv.metadata.at("format"), "pt");

  // Saving is deterministic: a second save of the loaded model gives the same bytes.
  save_model(back, tmp.file("again"));
  EXPECT_EQ(pare_test::read_bytes(tmp.file("again/model.safetensors")),
            pare_test::read_bytes(out + "/model.safetensors"));
  EXPECT_EQ(pare_test::read_bytes(tmp.file("again/config.json")),
            pare_test::read_bytes(out + "/config.json"));
  EXPECT_EQ(checkpoint_bytes(m), static_cast<int64_t>(fs::file_size(out + "/model.safetensors") +
                                                      fs::file_size(out + "/config.json")));
}

TEST(Checkpoint, ConfigJsonHasHfFieldsAndPareSection) {
  TempDir tmp;
  Model m = load_model(fixture_dir());
  save_model(m, tmp.path());
  nlohmann::json j = read_json(tmp.file("config.json"));
  EXPECT_EQ(j.at("model_type"), "vit");
  EXPECT_EQ(j.at("hidden_size"), 16);
  EXPECT_EQ(j.at("num_hidden_layers"), 2);
  EXPECT_EQ(j.at("num_attention_heads"), 2);
  EXPECT_EQ(j.at("intermediate_size"), 32);
  EXPECT_EQ(j.at("image_size"), 8);
  EXPECT_EQ(j.at("patch_size"), 4);
  EXPECT_EQ(j.at("num_channels"), 1);
  EXPECT_DOUBLE_EQ(j.at("layer_norm_eps").get<double>(), 1e-6);
  EXPECT_EQ(j.at("hidden_act"), "gelu");
  EXPECT_EQ(j.at("id2label"), (nlohmann::json{{"0", "ankle"}, {"1", "bag"}, {"2", "coat"}}));
  EXPECT_EQ(j.at("label2id"), (nlohmann::json{{"ankle", 0}, {"bag", 1}, {"coat", 2}}));
  EXPECT_EQ(j.at("architectures"), nlohmann::json::array({"ViTForImageClassification"}));
  ASSERT_TRUE(j.contains("pare"));
  const auto& p = j["pare"];
  ASSERT_TRUE(p.is_object());
  EXPECT_EQ(p.at("norm"), "layernorm");
  EXPECT_EQ(p.at("shortcuts"), false);
  EXPECT_EQ(p.at("out_dim"), 16);
  ASSERT_EQ(p.at("layers").size(), 2u);
  EXPECT_EQ(p["layers"][1], (nlohmann::json{{"heads", 2}, {"head_dim", 8}, {"intermediate_size", 32},
                                            {"attn_in", 16}, {"mlp_in", 16}, {"kv_heads", 2}}));
  // The HF fields alone describe the same model (a plain HF reader gets the same config).
  nlohmann::json hf_only = j;
  hf_only.erase("pare");
  ArchConfig c = config_from_json(hf_only, "hf_only");
  EXPECT_EQ(c.layers, m.config.layers);
  EXPECT_EQ(c.id2label, m.config.id2label);
}

TEST(Checkpoint, PrunedSlicedModelRoundTrips) {
  // RMS-norm model with shortcuts, a sliced site, one head and some FFN units removed: only the
  // "pare" section can describe it.
  ArchConfig c = pare_test::tiny_vit_config("rmsnorm");
  Model m = family_by_name("vit").init(c, 5);
  {
    torch::NoGradGuard ng;
    for (const auto& [name, t] : m.flat_tensors()) m.at(name).normal_(0.0, 0.4);
  }
  Rewriter rw(m);
  rw.add_shortcuts();
  torch::manual_seed(3);
  auto q = std::get<0>(at::linalg_qr(torch::randn({16, 16}))).slice(1, 0, 10);
  rw.rotate("resid.1", q);
  rw.keep("blk.1.heads", {1});
  rw.keep("blk.0.ffn", {1, 2, 3, 5, 8, 13, 21});
  m.config.history.push_back({{"pass", "test"}, {"slicing", 0.375}});
  ASSERT_TRUE(m.verify().empty());
  EXPECT_FALSE(m.config.hf_expressible());

  TempDir tmp;
  save_model(m, tmp.path());
  Model back = load_model(tmp.path());
  EXPECT_EQ(back.config.layers, m.config.layers);
  EXPECT_EQ(back.config.norm, "rmsnorm");
  EXPECT_TRUE(back.config.shortcuts);
  EXPECT_EQ(back.config.out_dim, 16);
  EXPECT_EQ(back.config.site_dim(1), 10);
  EXPECT_EQ(back.config.history, m.config.history);
  torch::NoGradGuard ng;
  torch::Tensor x = tiny_images();
  EXPECT_TRUE(torch::equal(back.forward(x), m.forward(x)));

  auto st = read_safetensors(tmp.file("model.safetensors"));
  EXPECT_TRUE(st.tensors.count("pare.blk.0.attn_shortcut"));
  EXPECT_TRUE(st.tensors.count("pare.blk.1.ffn_shortcut"));
  EXPECT_FALSE(st.tensors.count("vit.layernorm.weight")) << "folded norms have no weights";
  EXPECT_EQ(st.tensors.at("pare.blk.0.attn_shortcut").sizes(), (std::vector<int64_t>{16, 10}));
  nlohmann::json j = read_json(tmp.file("config.json"));
  EXPECT_EQ(j["pare"]["layers"][0]["mlp_in"], 10);
  EXPECT_EQ(j["pare"]["layers"][0]["intermediate_size"], 7);
  EXPECT_EQ(j["pare"]["layers"][1]["heads"], 1);
}

TEST(Checkpoint, HalfPrecisionStorage) {
  TempDir tmp;
  Model m = load_model(fixture_dir());
  for (auto dt : {torch::kFloat16, torch::kBFloat16}) {
    const std::string out = tmp.file(dt == torch::kFloat16 ? "f16" : "bf16");
    save_model(m, out, dt);
    auto st = read_safetensors(out + "/model.safetensors");
    for (const auto& [name, t] : st.tensors) EXPECT_EQ(t.scalar_type(), dt) << name;
    Model back = load_model(out);
    EXPECT_EQ(back.dtype(), torch::kFloat32);
    torch::NoGradGuard ng;
    torch::Tensor x = tiny_images();
    EXPECT_LT(pare_test::max_abs_diff(back.forward(x), m.forward(x)), 0.1);
    EXPECT_LT(checkpoint_bytes(m, dt), checkpoint_bytes(m));
  }
  EXPECT_INPUT_ERROR(save_model(m, tmp.file("i8"), torch::kInt8), HasSubstr("dtype"));
}

// ---------------------------------------------------------------------------------------------
// Bad input.

class CheckpointBadInput : public ::testing::Test {
 protected:
  // A copy of the fixture; remembers its bytes to check that failed loads do not modify it.
  std::string make_copy(const std::string& name) {
    dir_ = copy_fixture(tmp_.file(name));
    return dir_;
  }
  void snapshot() {
    cfg_ = pare_test::read_bytes(dir_ + "/config.json");
    st_ = pare_test::read_bytes(dir_ + "/model.safetensors");
  }
  void expect_unchanged() {
    EXPECT_EQ(pare_test::read_bytes(dir_ + "/config.json"), cfg_);
    EXPECT_EQ(pare_test::read_bytes(dir_ + "/model.safetensors"), st_);
    int n = 0;
    for (const auto& e : fs::directory_iterator(dir_)) {
      (void)e;
      ++n;
    }
    EXPECT_EQ(n, 2) << "no files added to the input folder";
  }
  void edit_config(const std::function<void(nlohmann::json&)>& f) {
    nlohmann::json j = read_json(dir_ + "/config.json");
    f(j);
    pare_test::write_bytes(dir_ + "/config.json", j.dump(2));
  }
  void edit_tensors(const std::function<void(std::map<std::string, torch::Tensor>&)>& f) {
    auto st = read_safetensors(dir_ + "/model.safetensors");
    f(st.tensors);
    write_safetensors(dir_ + "/model.safetensors", st.tensors, st.metadata);
  }
  TempDir tmp_;
  std::string dir_, cfg_, st_;
};

TEST_F(CheckpointBadInput, MissingFolderOrFiles) {
  const std::string absent = tmp_.file("absent");
  EXPECT_INPUT_ERROR(load_model(absent), AllOf(HasSubstr(absent), HasSubstr("not found")));

  const std::string file = tmp_.file("a_file");
  pare_test::write_bytes(file, "x");
  EXPECT_INPUT_ERROR(load_model(file), HasSubstr(file));

  make_copy("no_config");
  fs::remove(dir_ + "/config.json");
  EXPECT_INPUT_ERROR(load_model(dir_), HasSubstr(dir_ + "/config.json"));

  make_copy("no_weights");
  fs::remove(dir_ + "/model.safetensors");
  EXPECT_INPUT_ERROR(load_model(dir_), HasSubstr(dir_ + "/model.safetensors"));
}

TEST_F(CheckpointBadInput, ConfigDisagreesWithWeights) {
  struct Edit {
    const char* key;
    int value;
  };
  for (const Edit& e : {Edit{"hidden_size", 32}, Edit{"intermediate_size", 24},
                        Edit{"num_hidden_layers", 3}, Edit{"num_hidden_layers", 1},
                        Edit{"num_labels", 4}}) {
    SCOPED_TRACE(std::string(e.key) + "=" + std::to_string(e.value));
    make_copy(std::string("edit_") + e.key + std::to_string(e.value));
    edit_config([&](nlohmann::json& j) {
      j[e.key] = e.value;
      if (std::string(e.key) == "num_labels")
        j["id2label"] = {{"0", "a"}, {"1", "b"}, {"2", "c"}, {"3", "d"}};
    });
    snapshot();
    const std::string msg = pare_test::input_error_message([&] { load_model(dir_); });
    EXPECT_THAT(msg, HasSubstr(dir_));
    // A shape mismatch names expected and actual; a tensor count mismatch lists the names.
    EXPECT_THAT(msg, ::testing::AnyOf(HasSubstr("expected"), HasSubstr("missing tensors"),
                                      HasSubstr("unexpected tensors")));
    expect_unchanged();
  }
  // The shape mismatch of hidden_size names the tensor, expected and actual shapes.
  make_copy("hidden");
  edit_config([](nlohmann::json& j) { j["hidden_size"] = 32; });
  EXPECT_INPUT_ERROR(load_model(dir_), AllOf(HasSubstr(dir_ + "/model.safetensors"),
                                             HasSubstr("expected"), HasSubstr("32"), HasSubstr("got"),
                                             HasSubstr("config.json")));
}

TEST_F(CheckpointBadInput, InvalidConfig) {
  make_copy("heads");
  edit_config([](nlohmann::json& j) { j["num_attention_heads"] = 3; });
  snapshot();
  EXPECT_INPUT_ERROR(load_model(dir_), AllOf(HasSubstr(dir_ + "/config.json"),
                                             HasSubstr("num_attention_heads")));
  expect_unchanged();

  make_copy("type");
  edit_config([](nlohmann::json& j) { j["hidden_size"] = "sixteen"; });
  EXPECT_INPUT_ERROR(load_model(dir_), AllOf(HasSubstr(dir_ + "/config.json"),
                                             HasSubstr("hidden_size"), HasSubstr("expected")));

  // A fractional value for an integer key is refused, not truncated; an integral float is an
  // integer.
  make_copy("fraction");
  edit_config([](nlohmann::json& j) { j["num_attention_heads"] = 2.5; });
  EXPECT_INPUT_ERROR(load_model(dir_), AllOf(HasSubstr(dir_ + "/config.json"), HasSubstr("num_attention_heads"),
                                             HasSubstr("expected an integer"), HasSubstr("2.5")));
  make_copy("integral_float");
  edit_config([](nlohmann::json& j) { j["num_attention_heads"] = j["num_attention_heads"].get<double>(); });
  EXPECT_NO_THROW(load_model(dir_));

  make_copy("json");
  pare_test::write_bytes(dir_ + "/config.json", "{\"hidden_size\": 16,");
  snapshot();
  EXPECT_INPUT_ERROR(load_model(dir_), HasSubstr(dir_ + "/config.json"));
  expect_unchanged();
}

TEST_F(CheckpointBadInput, UnexpectedTensorIsListed) {
  make_copy("extra");
  edit_tensors([](auto& t) { t["vit.pooler.dense.weight"] = torch::zeros({16, 16}); });
  snapshot();
  EXPECT_INPUT_ERROR(load_model(dir_), AllOf(HasSubstr(dir_ + "/model.safetensors"),
                                             HasSubstr("unexpected"),
                                             HasSubstr("vit.pooler.dense.weight")));
  expect_unchanged();
  // A shortcut matrix in a model whose config has no shortcuts is unexpected too.
  make_copy("extra_shortcut");
  edit_tensors([](auto& t) { t["pare.blk.0.attn_shortcut"] = torch::eye(16); });
  EXPECT_INPUT_ERROR(load_model(dir_), HasSubstr("pare.blk.0.attn_shortcut"));
}

TEST_F(CheckpointBadInput, MissingTensorIsListed) {
  make_copy("missing");
  edit_tensors([](auto& t) {
    t.erase("vit.encoder.layer.1.output.dense.bias");
    t.erase("classifier.weight");
  });
  snapshot();
  EXPECT_INPUT_ERROR(load_model(dir_),
                     AllOf(HasSubstr(dir_ + "/model.safetensors"), HasSubstr("missing"),
                           HasSubstr("vit.encoder.layer.1.output.dense.bias"),
                           HasSubstr("classifier.weight")));
  expect_unchanged();
}

TEST_F(CheckpointBadInput, WrongShapeOrDtypeOfOneTensor) {
  make_copy("shape");
  edit_tensors([](auto& t) { t["vit.encoder.layer.0.intermediate.dense.weight"] = torch::zeros({31, 16}); });
  snapshot();
  EXPECT_INPUT_ERROR(load_model(dir_), AllOf(HasSubstr(dir_ + "/model.safetensors"),
                                             HasSubstr("vit.encoder.layer.0.intermediate.dense.weight"),
                                             HasSubstr("expected"), HasSubstr("[32, 16]"),
                                             HasSubstr("[31, 16]")));
  expect_unchanged();

  make_copy("dtype");
  edit_tensors([](auto& t) { t["classifier.bias"] = torch::zeros({3}, torch::kInt32); });
  EXPECT_INPUT_ERROR(load_model(dir_), AllOf(HasSubstr("classifier.bias"), HasSubstr("floating")));

  make_copy("truncated");
  std::string bytes = pare_test::read_bytes(dir_ + "/model.safetensors");
  pare_test::write_bytes(dir_ + "/model.safetensors", bytes.substr(0, bytes.size() / 2));
  snapshot();
  EXPECT_INPUT_ERROR(load_model(dir_), HasSubstr(dir_ + "/model.safetensors"));
  expect_unchanged();
}

TEST(StagedDir, CommitReplacesAndUncommittedIsRemoved) {
  TempDir tmp;
  const std::string out = tmp.file("out");
  {
    StagedDir s(out);
    pare_test::write_bytes(s.file("report.md"), "one");
    EXPECT_FALSE(fs::exists(out));
  }
  EXPECT_FALSE(fs::exists(out));
  int n = 0;
  for (const auto& e : fs::directory_iterator(tmp.path())) {
    (void)e;
    ++n;
  }
  EXPECT_EQ(n, 0) << "uncommitted staging folder removed";
  {
    StagedDir s(out);
    pare_test::write_bytes(s.file("report.md"), "one");
    s.commit();
  }
  EXPECT_EQ(pare_test::read_bytes(out + "/report.md"), "one");
  {
    StagedDir s(out);
    pare_test::write_bytes(s.file("config.json"), "two");
    s.commit();
  }
  EXPECT_FALSE(fs::exists(out + "/report.md")) << "the old folder is replaced, not merged";
  EXPECT_EQ(pare_test::read_bytes(out + "/config.json"), "two");
}

// Staging folders left by killed runs (no destructor ran) are removed by the next run for the
// same output, but only those whose process is gone and whose names pare would have made.
TEST(StagedDir, StaleStagingFoldersOfDeadProcessesAreRemoved) {
  TempDir tmp;
  const std::string out = tmp.file("out");
  const std::string dead = "999999999";  // above any pid_max: no such process
  for (const std::string& n : std::vector<std::string>{"out.partial." + dead, "out.old." + dead, "out.partial.1", "out.partial.x1",
                              "other.partial." + dead})
    fs::create_directories(tmp.file(n));
  {
    StagedDir s(out);
    pare_test::write_bytes(s.file("report.md"), "one");
    s.commit();
  }
  EXPECT_FALSE(fs::exists(tmp.file("out.partial." + dead)));
  EXPECT_FALSE(fs::exists(tmp.file("out.old." + dead)));
  EXPECT_TRUE(fs::exists(tmp.file("out.partial.1"))) << "pid 1 is alive";
  EXPECT_TRUE(fs::exists(tmp.file("out.partial.x1"))) << "not a name pare makes";
  EXPECT_TRUE(fs::exists(tmp.file("other.partial." + dead))) << "another output's";
  EXPECT_EQ(pare_test::read_bytes(out + "/report.md"), "one");
}

// A folder holding anything pare did not write is never replaced (a mistyped --out must not
// delete a user's files or an input model inside it).
TEST(StagedDir, RefusesFolderWithForeignFiles) {
  TempDir tmp;
  const std::string out = tmp.file("out");
  fs::create_directories(out + "/m");
  pare_test::write_bytes(out + "/notes.txt", "keep");
  try {
    StagedDir s(out);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("which pare did not write"), std::string::npos) << e.what();
  }
  EXPECT_EQ(pare_test::read_bytes(out + "/notes.txt"), "keep");
  EXPECT_TRUE(fs::is_directory(out + "/m"));
}

}  // namespace
}  // namespace pare
