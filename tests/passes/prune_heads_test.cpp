// prune-heads: sparsity 0 is exactly dense; the removed heads are the ones made smallest by
// construction (and the scores equal norms computed here from the raw slots); the pruned model
// equals the dense model with the removed heads' attn_o columns zeroed (a reference built here on
// a clone, without the Rewriter); shapes, params and config after pruning; the global scope; a
// save → load round trip; every bad option as a one-line InputError; quantized slots refused; on
// decoder LM fixtures: MHA models (gpt2, opt, phi) pruned head by head and grouped-query models
// (llama, qwen2) pruned by whole KV groups, both against the zeroed-attn_o reference.
#include <gtest/gtest.h>

#include <cmath>

#include "builtin.h"
#include "families/checkpoint.h"
#include "base/error.h"
#include "tasks/evaluate.h"
#include "families/family.h"
#include "base/fileio.h"
#include "prune_heads.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace pare {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// tiny_vit_config with 4 heads of 4: 8x8 single-channel images in 4x4 patches (4 patches + CLS),
// hidden 16, intermediate 32, 3 labels.
constexpr int64_t kD = 16, kHeads = 4, kHd = 4;

Model ph_model(uint64_t seed, int64_t layers = 2) {
  ArchConfig c = pare_test::tiny_vit_config("layernorm");  // hidden 16, 8x8 images, 4x4 patches
  c.num_hidden_layers = layers;
  c.num_attention_heads = kHeads;
  c.layers.clear();  // rebuilt by finalize from the fields above
  c.finalize("test");
  Model m = family_by_name("vit").init(c, seed);
  pare_test::order_one_weights(m, seed + 100);  // init's std 0.02 makes every head near-silent
  return m;
}

torch::Tensor images(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn({n, 1, 8, 8});
}

std::string blk(int64_t l) { return "blk." + std::to_string(l) + "."; }

// Multiplies head h's weights in layer l (its Q/K/V rows and O columns) by f.
void scale_head(Model& m, int64_t l, int64_t h, double f, int64_t hd = kHd) {
  torch::NoGradGuard ng;
  for (const char* q : {"attn_q", "attn_k", "attn_v"}) m.dense(blk(l) + q).weight.narrow(0, h * hd, hd).mul_(f);
  m.dense(blk(l) + "attn_o").weight.narrow(1, h * hd, hd).mul_(f);
}

// The reference: a clone of the dense model whose removed heads write nothing (their attn_o
// columns zeroed); shapes unchanged, no Rewriter involved.
Model zeroed_reference(const Model& dense, const std::map<int64_t, std::vector<int64_t>>& removed) {
  Model r = dense.clone();
  torch::NoGradGuard ng;
  for (const auto& [l, heads] : removed) {
    const int64_t hd = r.config.layers[l].head_dim;
    for (int64_t h : heads) r.dense(blk(l) + "attn_o").weight.narrow(1, h * hd, hd).zero_();
  }
  return r;
}

// Resolves a recipe stage, runs the pass's check and the pass; returns the notes.
nlohmann::json run_pass(Model& m, const nlohmann::json& options, std::vector<std::string>* log = nullptr) {
  register_builtin_passes();
  nlohmann::json stage = options;
  stage["pass"] = "prune-heads";
  std::vector<std::string> problems;
  const PassInfo* info = PassTable::global().find("prune-heads");
  EXPECT_NE(info, nullptr);
  PassOptions po = PassTable::global().resolve(stage, "/pipeline/0", problems);
  EXPECT_TRUE(problems.empty()) << problems.front();
  info->check(m, po);
  AnalysisManager am;
  PassContext ctx;
  nlohmann::json notes;
  ctx.notes = &notes;
  if (log) ctx.log = [log](const std::string& s) { log->push_back(s); };
  info->create(po)->run(m, am, ctx);
  EXPECT_TRUE(m.verify().empty()) << m.verify().front();
  return notes;
}

std::map<int64_t, std::vector<int64_t>> removed_of(const nlohmann::json& notes) {
  std::map<int64_t, std::vector<int64_t>> r;
  for (const auto& row : notes["layers"])
    r[row["layer"].get<int64_t>()] = row["removed"].get<std::vector<int64_t>>();
  return r;
}

std::vector<int64_t> ints(const nlohmann::json& j) { return j.get<std::vector<int64_t>>(); }

std::vector<int64_t> heads_per_layer(const Model& m) {
  std::vector<int64_t> h;
  for (const auto& d : m.config.layers) h.push_back(d.heads);
  return h;
}

// ---- vit -----------------------------------------------------------------------------------------

TEST(PruneHeads, SparsityZeroOrKeepAllIsIdentical) {
  Model dense = ph_model(1);
  torch::NoGradGuard ng;
  const torch::Tensor x = images(5, 2);
  const torch::Tensor want = dense.forward(x);
  for (const nlohmann::json& o : {nlohmann::json{{"sparsity", 0.0}}, nlohmann::json{{"keep", 4}},
                                  nlohmann::json{{"sparsity", 0.0}, {"scope", "global"}}}) {
    Model m = dense.clone();
    nlohmann::json notes = run_pass(m, o);
    EXPECT_TRUE(torch::equal(m.forward(x), want)) << o.dump();
    EXPECT_EQ(heads_per_layer(m), (std::vector<int64_t>{4, 4})) << o.dump();
    EXPECT_EQ(notes["heads_after"], 8);
    for (const auto& [name, t] : dense.flat_tensors()) EXPECT_TRUE(torch::equal(m.flat_tensors().at(name), t)) << name;
  }
}

TEST(PruneHeads, RemovesTheHeadsWithTheSmallestNormsAndScoresAreTheNorms) {
  Model m = ph_model(3);
  // By construction: layer 0's smallest heads are 1 (×0.01) then 2 (×0.05); layer 1's are 3 then 0.
  scale_head(m, 0, 1, 0.01);
  scale_head(m, 0, 2, 0.05);
  scale_head(m, 1, 3, 0.01);
  scale_head(m, 1, 0, 0.05);
  for (const char* criterion : {"l2", "l1"}) {
    Model p = m.clone();
    std::vector<std::string> log;
    nlohmann::json notes = run_pass(p, {{"keep", 2}, {"criterion", criterion}}, &log);
    ASSERT_EQ(notes["layers"].size(), 2u);
    EXPECT_EQ(ints(notes["layers"][0]["kept"]), (std::vector<int64_t>{0, 3})) << criterion;
    EXPECT_EQ(ints(notes["layers"][0]["removed"]), (std::vector<int64_t>{1, 2})) << criterion;
    EXPECT_EQ(ints(notes["layers"][1]["kept"]), (std::vector<int64_t>{1, 2})) << criterion;
    EXPECT_EQ(notes["heads_before"], 8);
    EXPECT_EQ(notes["heads_after"], 4);
    ASSERT_EQ(log.size(), 2u);
    EXPECT_THAT(log[0], AllOf(HasSubstr("layer 0 keeps heads [0, 3] of 4"), HasSubstr("removed [1, 2]")));
    // Scores: the norm of the head's Q/K/V rows and O columns, from the dense slots.
    for (int64_t l = 0; l < 2; ++l)
      for (int64_t h = 0; h < kHeads; ++h) {
        double s = 0.0;
        auto add = [&](const torch::Tensor& w) {
          torch::Tensor w64 = w.to(torch::kFloat64);
          s += std::string(criterion) == "l1" ? w64.abs().sum().item<double>() : w64.square().sum().item<double>();
        };
        for (const char* q : {"attn_q", "attn_k", "attn_v"}) add(m.dense(blk(l) + q).weight.narrow(0, h * kHd, kHd));
        add(m.dense(blk(l) + "attn_o").weight.narrow(1, h * kHd, kHd));
        if (std::string(criterion) == "l2") s = std::sqrt(s);
        EXPECT_NEAR(notes["layers"][l]["scores"][h].get<double>(), s, 1e-9 * s) << criterion << " " << l << " " << h;
      }
  }
}

TEST(PruneHeads, PrunedLogitsEqualDenseWithTheHeadsZeroedInAttnO) {
  Model dense = ph_model(4, 3);
  dense.to_dtype(torch::kFloat64);  // so the comparison is tight: only summation order differs
  torch::NoGradGuard ng;
  const torch::Tensor x = images(6, 5).to(torch::kFloat64);
  for (const nlohmann::json& o :
       {nlohmann::json{{"sparsity", 0.5}}, nlohmann::json{{"keep", {3, 1, 2}}, {"criterion", "l1"}},
        nlohmann::json{{"keep", 1}, {"layers", {1}}}, nlohmann::json{{"sparsity", 0.5}, {"scope", "global"}}}) {
    Model m = dense.clone();
    nlohmann::json notes = run_pass(m, o);
    Model ref = zeroed_reference(dense, removed_of(notes));
    const torch::Tensor got = m.forward(x), want = ref.forward(x);
    EXPECT_LT(pare_test::max_abs_diff(got, want), 1e-10) << o.dump();
    // And the heads mattered: the dense logits differ.
    EXPECT_GT(pare_test::max_abs_diff(got, dense.forward(x)), 1e-3) << o.dump();
  }
}

TEST(PruneHeads, ShapesParamsAndConfigAfterPruning) {
  Model dense = ph_model(5, 3);
  Model m = dense.clone();
  nlohmann::json notes = run_pass(m, {{"keep", {3, 1}}, {"layers", {2, 0}}});
  EXPECT_EQ(heads_per_layer(m), (std::vector<int64_t>{1, 4, 3}));
  for (const auto& d : m.config.layers) EXPECT_EQ(d.kv_heads, d.heads);
  EXPECT_TRUE(m.verify().empty());
  EXPECT_EQ(m.at("blk.0.attn_q.weight").sizes(), (std::vector<int64_t>{kHd, kD}));
  EXPECT_EQ(m.at("blk.0.attn_v.bias").sizes(), (std::vector<int64_t>{kHd}));
  EXPECT_EQ(m.at("blk.0.attn_o.weight").sizes(), (std::vector<int64_t>{kD, kHd}));
  EXPECT_EQ(m.at("blk.2.attn_k.weight").sizes(), (std::vector<int64_t>{3 * kHd, kD}));
  EXPECT_EQ(m.at("blk.1.attn_k.weight").sizes(), (std::vector<int64_t>{4 * kHd, kD}));
  // Kept heads are copied unchanged: layer 0's one kept head is its rows of the dense weights.
  const int64_t h0 = notes["layers"][1]["kept"][0];
  EXPECT_EQ(notes["layers"][1]["layer"], 0);
  EXPECT_TRUE(torch::equal(m.at("blk.0.attn_q.weight"), dense.at("blk.0.attn_q.weight").narrow(0, h0 * kHd, kHd)));
  EXPECT_TRUE(torch::equal(m.at("blk.0.attn_o.weight"), dense.at("blk.0.attn_o.weight").narrow(1, h0 * kHd, kHd)));
  // Each removed head takes 3·(hd·D + hd) Q/K/V weights and biases and D·hd attn_o weights.
  const int64_t per_head = 3 * (kHd * kD + kHd) + kD * kHd;
  EXPECT_EQ(dense.num_params() - m.num_params(), 4 * per_head);
  // FLOPs/image: per removed head, 2·T·(3·D·hd + hd·D) projections and 2·2·T²·hd attention.
  const int64_t T = 5;
  EXPECT_EQ(model_flops(dense) - model_flops(m), 4 * (2 * T * 4 * kD * kHd + 4 * T * T * kHd));
}

TEST(PruneHeads, GlobalScopeRanksAcrossLayersAndKeepsOneHeadPerLayer) {
  Model m = ph_model(6);
  for (int64_t h = 0; h < kHeads; ++h) scale_head(m, 0, h, 0.01 * (h + 1));  // layer 0: all tiny, 3 largest
  scale_head(m, 1, 2, 0.1);                                                   // layer 1: head 2 smallest
  // Per layer, sparsity 0.5 removes 2 + 2; global removes 4 too: 3 of layer 0 (never its last),
  // then layer 1's smallest.
  Model per = m.clone(), glob = m.clone();
  nlohmann::json np = run_pass(per, {{"sparsity", 0.5}});
  nlohmann::json ng = run_pass(glob, {{"sparsity", 0.5}, {"scope", "global"}});
  EXPECT_EQ(heads_per_layer(per), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(heads_per_layer(glob), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(ints(ng["layers"][0]["kept"]), (std::vector<int64_t>{3}));
  EXPECT_EQ(ints(ng["layers"][1]["removed"]), (std::vector<int64_t>{2}));
  EXPECT_EQ(ints(np["layers"][0]["kept"]), (std::vector<int64_t>{2, 3}));
}

TEST(PruneHeads, SparsityRoundsPerLayerAndKeepsAtLeastOneHead) {
  for (const auto& [s, want] : std::vector<std::pair<double, int64_t>>{
           {0.1, 4}, {0.2, 3}, {0.25, 3}, {0.5, 2}, {0.6, 2}, {0.7, 1}, {0.99, 1}}) {
    PruneHeadsOptions o;
    o.sparsity = s;
    std::vector<HeadLayerPlan> plans = plan_head_pruning(ph_model(7), o);
    ASSERT_EQ(plans.size(), 2u);
    EXPECT_EQ(plans[0].keep_units, want) << s;  // 4 − min(3, round(4·s))
  }
}

TEST(PruneHeads, SaveLoadRoundTripKeepsLogitsAndPerLayerHeads) {
  Model m = ph_model(8);
  run_pass(m, {{"keep", {3, 1}}});
  pare_test::TempDir dir;
  save_model(m, dir.path());
  nlohmann::json cfg = nlohmann::json::parse(read_file(dir.file("config.json")));
  ASSERT_EQ(cfg["pare"]["layers"].size(), 2u);
  EXPECT_EQ(cfg["pare"]["layers"][0]["heads"], 3);
  EXPECT_EQ(cfg["pare"]["layers"][1]["heads"], 1);
  Model back = load_model(dir.path());
  EXPECT_EQ(heads_per_layer(back), (std::vector<int64_t>{3, 1}));
  torch::NoGradGuard ng;
  const torch::Tensor x = images(4, 9);
  EXPECT_TRUE(torch::equal(back.forward(x), m.forward(x)));
  EXPECT_EQ(model_flops(back), model_flops(m));
  // Pruning the loaded model again works on its per-layer heads.
  run_pass(back, {{"keep", 1}});
  EXPECT_EQ(heads_per_layer(back), (std::vector<int64_t>{1, 1}));
}

TEST(PruneHeads, BadOptionsAreOneLineInputErrors) {
  register_builtin_passes();
  const PassInfo* info = PassTable::global().find("prune-heads");
  ASSERT_NE(info, nullptr);
  Model m = ph_model(10);
  auto check = [&](const nlohmann::json& options) {
    nlohmann::json stage = options;
    stage["pass"] = "prune-heads";
    std::vector<std::string> problems;
    PassOptions po = PassTable::global().resolve(stage, "/pipeline/0", problems);
    EXPECT_TRUE(problems.empty()) << problems.front();
    info->check(m, po);
  };
  auto one_line = [](const std::string& s) { return s.find('\n') == std::string::npos; };
  const std::vector<std::pair<nlohmann::json, std::vector<std::string>>> cases = {
      {{{"keep", 5}}, {"keep = 5", "layer 0 has only 4 heads"}},
      {{{"keep", {4, 5}}}, {"keep[1] = 5", "layer 1 has only 4 heads"}},
      {{{"keep", {2, 2, 2}}}, {"keep has 3 entries", "one per pruned layer (2"}},
      {{{"layers", {2}}}, {"layers[0] = 2", "expected 0..1", "2 layers"}},
      {{{"layers", {1, 1}}}, {"layer 1 is listed twice"}},
  };
  for (const auto& [options, parts] : cases) {
    const std::string msg = pare_test::input_error_message([&] { check(options); });
    EXPECT_TRUE(one_line(msg)) << msg;
    EXPECT_THAT(msg, HasSubstr("prune-heads: ")) << options.dump();
    for (const auto& p : parts) EXPECT_THAT(msg, HasSubstr(p)) << options.dump();
  }
  // keep 0 and sparsity 1 never get past the recipe check (range, with the path) ...
  for (const auto& [options, path] : std::vector<std::pair<nlohmann::json, std::string>>{
           {{{"pass", "prune-heads"}, {"keep", 0}}, "/pipeline/0/keep"},
           {{{"pass", "prune-heads"}, {"sparsity", 1.0}}, "/pipeline/0/sparsity"},
           {{{"pass", "prune-heads"}, {"criterion", "l3"}}, "/pipeline/0/criterion"},
           {{{"pass", "prune-heads"}, {"scope", "model"}}, "/pipeline/0/scope"}}) {
    std::vector<std::string> problems;
    PassTable::global().resolve(options, "/pipeline/0", problems);
    ASSERT_EQ(problems.size(), 1u) << options.dump();
    EXPECT_THAT(problems[0], HasSubstr(path));
  }
  // ... and the planner refuses them too when called directly.
  PruneHeadsOptions o;
  o.keep = {0};
  EXPECT_INPUT_ERROR(plan_head_pruning(m, o), AllOf(HasSubstr("keep = 0"), HasSubstr("at least 1 head")));
  o = {};
  o.sparsity = 1.0;
  EXPECT_INPUT_ERROR(plan_head_pruning(m, o), AllOf(HasSubstr("sparsity 1"), HasSubstr("[0, 1)")));
  // The model is untouched by a refused check.
  EXPECT_EQ(heads_per_layer(m), (std::vector<int64_t>{4, 4}));
}

TEST(PruneHeads, QuantizedModelIsRefused) {
  register_builtin_passes();
  Model m = ph_model(11);
  std::vector<std::string> problems;
  PassOptions q = PassTable::global().resolve(
      {{"pass", "quantize"}, {"method", "rtn"}, {"bits", 8}, {"group_size", 0}}, "/pipeline/0", problems);
  ASSERT_TRUE(problems.empty()) << problems.front();
  AnalysisManager am;
  PassContext ctx;
  PassTable::global().find("quantize")->create(q)->run(m, am, ctx);
  ASSERT_FALSE(m.config.quantized.empty());
  PruneHeadsOptions o;
  EXPECT_INPUT_ERROR(plan_head_pruning(m, o),
                     AllOf(HasSubstr("blk.0.attn_"), HasSubstr("quantized to 8 bits"),
                           HasSubstr("run prune-heads before quantize")));
}

// ---- decoder LMs (tests/fixtures/lm) -------------------------------------------------------------

std::string lm_fixture(const std::string& name) { return pare_test::fixture("lm/" + name); }

torch::Tensor fixture_ids(const std::string& name) {
  return read_safetensors(lm_fixture(name) + "/reference.safetensors").tensors.at("input_ids");
}

// The pruned float64 LM `m` equals the zeroed-attn_o reference built from `d64`, and saved
// (float32; gpt2: fused c_attn of the pruned width) and loaded it gives the logits of m in float32.
void expect_zeroed_reference_and_round_trip(const Model& d64, const Model& m, const nlohmann::json& notes,
                                            const torch::Tensor& ids, const std::string& name) {
  Model ref = zeroed_reference(d64, removed_of(notes));
  EXPECT_LT(pare_test::max_abs_diff(m.forward(ids), ref.forward(ids)), 1e-10) << name;
  pare_test::TempDir dir;
  save_model(m, dir.path());
  Model back = load_model(dir.path());
  EXPECT_EQ(back.config.layers, m.config.layers) << name;
  Model m32 = m.clone();
  m32.to_dtype(torch::kFloat32);
  EXPECT_TRUE(torch::equal(back.forward(ids), m32.forward(ids))) << name;
}

class PruneHeadsMha : public ::testing::TestWithParam<std::string> {};

TEST_P(PruneHeadsMha, SparsityZeroIdenticalAndKeepOneEqualsZeroedReference) {
  Model dense = load_model(lm_fixture(GetParam()));
  ASSERT_EQ(dense.config.layers[0].kv_heads, dense.config.layers[0].heads);
  const torch::Tensor ids = fixture_ids(GetParam());
  torch::NoGradGuard ng;
  {
    Model m = dense.clone();
    run_pass(m, {{"sparsity", 0.0}});
    EXPECT_TRUE(torch::equal(m.forward(ids), dense.forward(ids)));
  }
  Model d64 = dense.clone();
  d64.to_dtype(torch::kFloat64);
  Model m = d64.clone();
  nlohmann::json notes = run_pass(m, {{"keep", 1}});
  for (const auto& d : m.config.layers) {
    EXPECT_EQ(d.heads, 1);
    EXPECT_EQ(d.kv_heads, 1);
  }
  expect_zeroed_reference_and_round_trip(d64, m, notes, ids, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Families, PruneHeadsMha, ::testing::Values("gpt2", "opt", "phi"));

class PruneHeadsGqa : public ::testing::TestWithParam<std::string> {};

TEST_P(PruneHeadsGqa, PrunesWholeKvGroupsAndRefusesSplittingOne) {
  Model dense = load_model(lm_fixture(GetParam()));
  ASSERT_EQ(dense.config.layers[0].heads, 4);
  ASSERT_EQ(dense.config.layers[0].kv_heads, 2);
  // A keep that would split a KV group is refused before anything changes, naming the layer.
  PruneHeadsOptions o;
  o.keep = {1};
  EXPECT_INPUT_ERROR(plan_head_pruning(dense, o),
                     AllOf(HasSubstr("keep = 1 at layer 0"), HasSubstr("4 heads, 2 kv heads"),
                           HasSubstr("multiple of 2")));
  o.keep = {3};
  EXPECT_INPUT_ERROR(plan_head_pruning(dense, o), HasSubstr("multiple of 2"));
  // keep 2 = one KV group of two query heads per layer.
  const torch::Tensor ids = fixture_ids(GetParam());
  torch::NoGradGuard ng;
  Model d64 = dense.clone();
  d64.to_dtype(torch::kFloat64);
  Model m = d64.clone();
  nlohmann::json notes = run_pass(m, {{"keep", 2}});
  for (const auto& d : m.config.layers) {
    EXPECT_EQ(d.heads, 2);
    EXPECT_EQ(d.kv_heads, 1);
  }
  EXPECT_EQ(m.at("blk.0.attn_k.weight").size(0), dense.config.layers[0].head_dim);
  for (const auto& row : notes["layers"]) {
    ASSERT_EQ(row["scores"].size(), 2u);  // one per KV group
    const int64_t g = row["kept_kv_heads"][0];
    EXPECT_EQ(ints(row["kept"]), (std::vector<int64_t>{2 * g, 2 * g + 1}));
    // The group's score: Q rows and O columns of its two query heads, K and V rows of its KV head.
    const int64_t l = row["layer"], hd = dense.config.layers[l].head_dim;
    for (int64_t u = 0; u < 2; ++u) {
      double s = 0.0;
      auto add = [&](const torch::Tensor& w) { s += w.to(torch::kFloat64).square().sum().item<double>(); };
      add(d64.at(blk(l) + "attn_q.weight").narrow(0, 2 * u * hd, 2 * hd));
      add(d64.at(blk(l) + "attn_o.weight").narrow(1, 2 * u * hd, 2 * hd));
      add(d64.at(blk(l) + "attn_k.weight").narrow(0, u * hd, hd));
      add(d64.at(blk(l) + "attn_v.weight").narrow(0, u * hd, hd));
      EXPECT_NEAR(row["scores"][u].get<double>(), std::sqrt(s), 1e-9 * std::sqrt(s));
    }
    EXPECT_GE(row["scores"][g].get<double>(), row["scores"][1 - g].get<double>());
  }
  expect_zeroed_reference_and_round_trip(d64, m, notes, ids, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Families, PruneHeadsGqa, ::testing::Values("llama", "qwen2"));

}  // namespace
}  // namespace pare
