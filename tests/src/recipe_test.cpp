// Recipes: YAML and JSON read to the same JSON, --set overrides, FieldReader's collected problems.
#include "base/recipe.h"

#include "test_util.h"

namespace pare {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using pare_test::TempDir;
using nlohmann::json;

const char* kYaml = R"(# a recipe
model:
  family: vit
  hidden_size: 128
  layer_norm_eps: 1.0e-12
train:
  epochs: 8
  lr: 0.001
  warmup: -2
  out: "models/vit"
  amp: false
data:
  path: /usr/share/datasets/fashion-mnist
pipeline:
  - pass: slicegpt
    slicing: 0.25
    quoted: "0.5"
  - {pass: prune_heads, ratio: 0.5, keep: [1, 2, 3]}
budget:
  accuracy: {max_drop: 1.0}
eval:
  limit: -1
  flag: true
  nothing: null
  tilde: ~
)";

const char* kJson = R"({
  "model": {"family": "vit", "hidden_size": 128, "layer_norm_eps": 1e-12},
  "train": {"epochs": 8, "lr": 0.001, "warmup": -2, "out": "models/vit", "amp": false},
  "data": {"path": "/usr/share/datasets/fashion-mnist"},
  "pipeline": [
    {"pass": "slicegpt", "slicing": 0.25, "quoted": "0.5"},
    {"pass": "prune_heads", "ratio": 0.5, "keep": [1, 2, 3]}
  ],
  "budget": {"accuracy": {"max_drop": 1.0}},
  "eval": {"limit": -1, "flag": true, "nothing": null, "tilde": null}
})";

TEST(Recipe, YamlAndJsonGiveEqualJson) {
  TempDir tmp;
  pare_test::write_bytes(tmp.file("r.yaml"), kYaml);
  pare_test::write_bytes(tmp.file("r.json"), kJson);
  json y = load_yaml_or_json(tmp.file("r.yaml"));
  json j = load_yaml_or_json(tmp.file("r.json"));
  json want = json::parse(kJson);  // nlohmann's own parser as the reference
  EXPECT_EQ(y, want) << y.dump(2);
  EXPECT_EQ(j, want) << j.dump(2);
  // Scalars are typed.
  EXPECT_TRUE(y["model"]["hidden_size"].is_number_integer());
  EXPECT_TRUE(y["train"]["lr"].is_number_float());
  EXPECT_TRUE(y["train"]["amp"].is_boolean());
  EXPECT_TRUE(y["pipeline"][0]["quoted"].is_string()) << "quoted YAML scalars stay strings";
  EXPECT_TRUE(y["eval"]["tilde"].is_null());
  EXPECT_EQ(y["train"]["warmup"], -2);
}

TEST(Recipe, SyntaxErrorsNameFileAndLine) {
  TempDir tmp;
  const std::string p = tmp.file("bad.yaml");
  pare_test::write_bytes(p, "model:\n  family: vit\n  x: [1, 2\n");
  EXPECT_INPUT_ERROR(load_yaml_or_json(p), AllOf(HasSubstr(p), HasSubstr("line")));
  pare_test::write_bytes(p, "- a\n- b\n");
  EXPECT_INPUT_ERROR(load_yaml_or_json(p), AllOf(HasSubstr(p), HasSubstr("mapping")));
  EXPECT_INPUT_ERROR(load_yaml_or_json(tmp.file("absent.yaml")), HasSubstr("absent.yaml"));
}

TEST(Recipe, ApplyOverrides) {
  json j = json::parse(kJson);
  apply_overrides(j, {"pipeline.0.slicing=0.3", "train.epochs=2", "eval.flag=false",
                      "data.path=/tmp/x", "budget.accuracy.min=85", "new.key=hello"});
  EXPECT_EQ(j["pipeline"][0]["slicing"], 0.3);
  EXPECT_TRUE(j["pipeline"][0]["slicing"].is_number_float());
  EXPECT_EQ(j["train"]["epochs"], 2);
  EXPECT_TRUE(j["train"]["epochs"].is_number_integer());
  EXPECT_EQ(j["eval"]["flag"], false);
  EXPECT_EQ(j["data"]["path"], "/tmp/x");
  EXPECT_EQ(j["budget"]["accuracy"], (json{{"max_drop", 1.0}, {"min", 85}}));
  EXPECT_EQ(j["new"]["key"], "hello");
  // Everything else is untouched.
  json want = json::parse(kJson);
  EXPECT_EQ(j["pipeline"][1], want["pipeline"][1]);
  EXPECT_EQ(j["model"], want["model"]);

  // A value containing '=' (split at the first one), and an empty value (null).
  apply_overrides(j, {"data.path=a=b", "eval.limit="});
  EXPECT_EQ(j["data"]["path"], "a=b");
  EXPECT_TRUE(j["eval"]["limit"].is_null());

  // Bad specs.
  EXPECT_INPUT_ERROR(apply_overrides(j, {"pipeline.7.slicing=0.1"}),
                     AllOf(HasSubstr("pipeline.7.slicing"), HasSubstr("7")));
  EXPECT_INPUT_ERROR(apply_overrides(j, {"pipeline.first.slicing=0.1"}), HasSubstr("first"));
  EXPECT_INPUT_ERROR(apply_overrides(j, {"no_equals_sign"}), HasSubstr("KEY=VALUE"));
  EXPECT_INPUT_ERROR(apply_overrides(j, {"=5"}), HasSubstr("KEY=VALUE"));
  EXPECT_INPUT_ERROR(apply_overrides(j, {"train..epochs=5"}), HasSubstr("empty"));
}

// Known bug (src/base/recipe.cpp, apply_overrides): a non-scalar VALUE ("--set pipeline.1.keep=[4, 5]")
// goes through scalar_to_json, which reads Scalar() of a sequence node (""), so the key silently
// becomes null. Fix: convert with to_json(YAML::Load(value)) (or reject non-scalars with an
// InputError). Enable this test with the fix.
TEST(Recipe, OverrideWithListOrMapValue) {
  json j = json::parse(kJson);
  apply_overrides(j, {"pipeline.1.keep=[4, 5]", "budget.accuracy={min: 85}"});
  EXPECT_EQ(j["pipeline"][1]["keep"], json::array({4, 5}));
  EXPECT_EQ(j["budget"]["accuracy"], (json{{"min", 85}}));
}

TEST(FieldReader, CollectsEveryProblemWithItsPath) {
  json pass = json::parse(R"({"pass": "slicegpt", "slicing": 1.5, "samples": "many",
                             "seed": 3, "ortho": "yes", "method": "pca2", "sizes": [1, -2],
                             "typo_key": 1, "other": 2})");
  std::vector<std::string> problems;
  FieldReader r(pass, "/pipeline/0", problems);
  EXPECT_EQ(r.string("pass", ""), "slicegpt");
  EXPECT_DOUBLE_EQ(r.number("slicing", 0.25, 0.0, 1.0, false), 0.25);  // out of range -> default
  EXPECT_EQ(r.integer("samples", 1024, 1), 1024);                      // wrong type -> default
  EXPECT_EQ(r.integer("seed", 0, 0, 100), 3);
  EXPECT_EQ(r.boolean("ortho", true), true);
  EXPECT_EQ(r.string("method", "pca", {"pca", "random"}), "pca");
  EXPECT_EQ(r.int_list("sizes", {8}), std::vector<int64_t>{8});
  EXPECT_DOUBLE_EQ(r.number("absent", 7.5), 7.5);
  r.reject_unknown();

  EXPECT_THAT(problems,
              ElementsAre(AllOf(StartsWith("/pipeline/0/slicing: expected a number in [0, 1)"),
                                HasSubstr("got 1.5")),
                          AllOf(StartsWith("/pipeline/0/samples: expected an integer"),
                                HasSubstr("\"many\"")),
                          StartsWith("/pipeline/0/ortho: expected true or false"),
                          AllOf(StartsWith("/pipeline/0/method: expected one of pca, random"),
                                HasSubstr("pca2")),
                          StartsWith("/pipeline/0/sizes: expected a list of positive integers"),
                          AllOf(StartsWith("/pipeline/0/other: unknown key"), HasSubstr("slicing")),
                          StartsWith("/pipeline/0/typo_key: unknown key")));

  // RecipeError reports them all in one message.
  RecipeError e("recipe.yaml", problems);
  EXPECT_EQ(e.problems.size(), 7u);
  EXPECT_THAT(std::string(e.what()),
              AllOf(StartsWith("recipe.yaml: 7 problem(s): "), HasSubstr("/pipeline/0/slicing"),
                    HasSubstr("/pipeline/0/typo_key")));
  const InputError& as_input = e;  // the CLI treats it as bad input
  EXPECT_THAT(as_input.what(), HasSubstr("samples"));
}

TEST(FieldReader, RangesAndTypes) {
  std::vector<std::string> problems;
  json o = json::parse(R"({"a": 1.0, "b": 0, "c": 5, "d": 2.5, "e": -1, "f": "x"})");
  FieldReader r(o, "/eval", problems);
  EXPECT_DOUBLE_EQ(r.number("a", 0.0, 0.0, 1.0, true), 1.0);  // inclusive upper bound
  EXPECT_DOUBLE_EQ(r.number("b", 9.0, 0.0), 0.0);             // integers are numbers
  EXPECT_EQ(r.integer("c", 1, 1, 4), 1);                      // above hi
  EXPECT_EQ(r.integer("d", 1), 1);                            // not an integer
  EXPECT_EQ(r.integer("e", -1, -1), -1);
  EXPECT_DOUBLE_EQ(r.number("f", 0.5), 0.5);
  r.reject_unknown();
  EXPECT_THAT(problems, ElementsAre(StartsWith("/eval/c: expected an integer in [1, 4], got 5"),
                                    StartsWith("/eval/d: expected an integer"),
                                    StartsWith("/eval/f: expected a number")));
  // Not a mapping at all.
  std::vector<std::string> p2;
  FieldReader bad(json::array({1, 2}), "/budget", p2);
  EXPECT_EQ(bad.integer("x", 3), 3);
  ASSERT_EQ(p2.size(), 1u);
  EXPECT_THAT(p2[0], StartsWith("/budget: expected a mapping"));
}

}  // namespace
}  // namespace pare

namespace pare {
namespace {

// A key given twice is an error naming the file, the line and the key (YAML and JSON alike).
TEST(RecipeDuplicateKeys, RejectedWithLine) {
  pare_test::TempDir tmp;
  for (const char* text : {"pipeline:\n  - pass: slicegpt\n    slicing: 0.2\n    slicing: 0.3\n",
                           "{\"pipeline\": [{\"pass\": \"slicegpt\", \"slicing\": 0.2,\n \"slicing\": 0.3}]}"}) {
    const std::string path = tmp.file("dup.yaml");
    pare_test::write_bytes(path, text);
    try {
      load_yaml_or_json(path);
      FAIL() << "expected InputError for " << text;
    } catch (const InputError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(path), std::string::npos) << m;
      EXPECT_NE(m.find("duplicate key 'slicing'"), std::string::npos) << m;
      EXPECT_NE(m.find("line "), std::string::npos) << m;
    }
  }
}

}  // namespace
}  // namespace pare
