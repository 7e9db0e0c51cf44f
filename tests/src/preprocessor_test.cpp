// Hugging Face ViT checkpoints carry their input normalisation in preprocessor_config.json
// (issue 17 item 10): load_config reads it when config.json's pare section has none, and the
// forward of evaluation then sees (x/255 − mean)/std with those values (checked against the
// normalisation written out here by hand).
#include <filesystem>
#include <nlohmann/json.hpp>

#include "families/checkpoint.h"
#include "tasks/evaluate.h"
#include "test_util.h"

namespace pare {
namespace {

namespace fs = std::filesystem;
using pare_test::TempDir;

class Preprocessor : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(tmp_.path()) / "vit";
    fs::create_directories(dir_);
    for (const char* f : {"config.json", "model.safetensors"})
      fs::copy_file(pare_test::fixture(std::string("tiny_vit/") + f), dir_ / f);
  }
  void write_pre(const std::string& text) {
    pare_test::write_bytes((dir_ / "preprocessor_config.json").string(), text);
  }
  TempDir tmp_;
  fs::path dir_;
};

TEST_F(Preprocessor, WithoutOneTheHfDefaultApplies) {
  const Model m = load_model(dir_.string());
  EXPECT_EQ(m.config.image_mean, std::vector<double>{0.5});
  EXPECT_EQ(m.config.image_std, std::vector<double>{0.5});
}

TEST_F(Preprocessor, MeanAndStdAreReadAndUsedByEvaluation) {
  write_pre(R"({"image_processor_type": "ViTImageProcessor", "do_normalize": true,
                "do_rescale": true, "rescale_factor": 0.00392156862745098,
                "image_mean": [0.2], "image_std": [0.3], "size": {"height": 8, "width": 8}})");
  const Model m = load_model(dir_.string());
  EXPECT_EQ(m.config.image_mean, std::vector<double>{0.2});
  EXPECT_EQ(m.config.image_std, std::vector<double>{0.3});
  torch::manual_seed(0);
  const torch::Tensor u8 = torch::randint(0, 256, {3, 1, 8, 8}, torch::kUInt8);
  torch::NoGradGuard ng;
  const torch::Tensor want = m.forward((u8.to(torch::kFloat) / 255.0 - 0.2) / 0.3);
  EXPECT_LT(pare_test::max_abs_diff(predict_logits(m, u8, 2), want), 1e-5);
  // Saved by pare, the normalisation travels in config.json's pare section.
  TempDir out;
  save_model(m, out.path());
  const Model again = load_model(out.path());
  EXPECT_EQ(again.config.image_mean, std::vector<double>{0.2});
  EXPECT_EQ(again.config.image_std, std::vector<double>{0.3});
}

TEST_F(Preprocessor, SingleNumbersApplyToEveryChannel) {
  write_pre(R"({"image_mean": 0.25, "image_std": 0.75})");
  const Model m = load_model(dir_.string());
  EXPECT_EQ(m.config.image_mean, std::vector<double>{0.25});
  EXPECT_EQ(m.config.image_std, std::vector<double>{0.75});
}

TEST_F(Preprocessor, DoNormalizeFalseMeansPixelsOverTwoFiftyFive) {
  write_pre(R"({"do_normalize": false, "image_mean": [0.2], "image_std": [0.3]})");
  const Model m = load_model(dir_.string());
  EXPECT_EQ(m.config.image_mean, std::vector<double>{0.0});
  EXPECT_EQ(m.config.image_std, std::vector<double>{1.0});
}

TEST_F(Preprocessor, ConfigJsonsOwnNormalisationWins) {
  write_pre(R"({"image_mean": [0.2], "image_std": [0.3]})");
  auto cfg = nlohmann::json::parse(pare_test::read_bytes((dir_ / "config.json").string()));
  cfg["pare"]["image_mean"] = {0.1};
  cfg["pare"]["image_std"] = {0.7};
  pare_test::write_bytes((dir_ / "config.json").string(), cfg.dump());
  const Model m = load_model(dir_.string());
  EXPECT_EQ(m.config.image_mean, std::vector<double>{0.1});
  EXPECT_EQ(m.config.image_std, std::vector<double>{0.7});
}

TEST_F(Preprocessor, BadFilesAreRefusedByName) {
  const struct {
    const char* text;
    const char* needle;
  } cases[] = {
      {"{not json", "not valid JSON"},
      {"[1, 2]", "expected a JSON object"},
      {R"({"rescale_factor": 1.0})", "rescale_factor: pare scales uint8 pixels by 1/255, got 1"},
      {R"({"do_rescale": false})", "do_rescale: false is not supported"},
      {R"({"do_normalize": "yes"})", "do_normalize: expected true or false"},
      {R"({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5]})", "image_mean: expected 1 value(s)"},
      {R"({"image_mean": [0.5], "image_std": "wide"})", "image_std: expected a list of numbers"},
      {R"({"image_mean": [0.5], "image_std": [0]})", "image_std: expected positive values, got 0"},
  };
  for (const auto& c : cases) {
    write_pre(c.text);
    const std::string msg = pare_test::input_error_message([&] { load_model(dir_.string()); });
    EXPECT_NE(msg.find("preprocessor_config.json: "), std::string::npos) << c.text << " -> " << msg;
    EXPECT_NE(msg.find(c.needle), std::string::npos) << c.text << " -> " << msg;
  }
}

}  // namespace
}  // namespace pare
