// A task defined only here plugs into pare once (issue 17: the Task interface): "tiny-quadrants",
// 1×8×8 images with a bright 4×4 square in one of three places (top-left, top-right, bottom-left)
// under Gaussian noise, the label being the place. Registered in the task table by this file
// alone, it is trained by the one training loop, measured by measure_stage, and compressed by a
// recipe (prune-heads) through parse_compress_recipe_json, bind_task and run_pipeline, whose
// budget and report speak of its metric. Nothing in src/pipeline, src/train or cli/ knows it.
#include <gtest/gtest.h>

#include "base/error.h"
#include "base/recipe.h"
#include "builtin.h"
#include "families/family.h"
#include "gates.h"
#include "groups.h"
#include "pipeline/pipeline.h"
#include "test_util.h"
#include "train/trainer.h"

namespace pare {
namespace {

using ::testing::HasSubstr;

// n images and labels drawn with `seed`: label k puts +3 on the k-th 4×4 square.
std::pair<torch::Tensor, torch::Tensor> quadrants(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  torch::Tensor y = torch::randint(0, 3, {n}, gen, torch::kLong);
  torch::Tensor x = torch::randn({n, 1, 8, 8}, gen);
  const int64_t r0[3] = {0, 0, 4}, c0[3] = {0, 4, 0};
  auto ya = y.accessor<int64_t, 1>();
  for (int64_t i = 0; i < n; ++i) x[i][0].narrow(0, r0[ya[i]], 4).narrow(1, c0[ya[i]], 4).add_(3.0);
  return {x, y};
}

// Top-1 accuracy computed here, independently of the task: argmax of the logits against labels.
double accuracy_here(const Model& m, const torch::Tensor& x, const torch::Tensor& y) {
  torch::NoGradGuard ng;
  return m.forward(x).argmax(1).eq(y).to(torch::kDouble).mean().item<double>();
}

class Quadrants : public Task {
 public:
  explicit Quadrants(int64_t test_size) : n_test_(test_size) {}
  std::string name() const override { return "tiny-quadrants"; }
  std::vector<MetricSpec> metrics() const override {
    return {{"accuracy", "accuracy %", "fraction", true, true, "points", {"max_drop", "min"}, false, 2}};
  }
  std::string flops_unit() const override { return "image"; }
  std::string flops_counted() const override { return "2 x MACs of the model's matmuls per image"; }
  std::string data_path() const override { return "(synthetic)"; }
  void load(const Model& m, const std::string&, const EvalSettings&, bool,
            const std::function<void(const std::string&)>&) override {
    PARE_CHECK(m.config.num_labels == 3, "tiny-quadrants: 3 classes, the model has ", m.config.num_labels);
    std::tie(test_x_, test_y_) = quadrants(n_test_, 7);
  }
  std::string describe_markdown() const override { return "- data: synthetic quadrants\n"; }
  nlohmann::json describe() const override { return {{"name", name()}, {"test_size", n_test_}}; }
  Measurement measure(const Model& m, const EvalSettings&, const Model*) const override {
    Measurement r;
    r.metrics["accuracy"] = accuracy_here(m, test_x_, test_y_);
    r.samples = n_test_;
    r.samples_unit = "images";
    int64_t f = 0;
    for (const auto& c : m.family().costs(m)) f += c.flops;
    r.flops = double(f);
    return r;
  }
  CalibrationSet calibration(const Model&, const std::string&) const override {
    CalibrationSet s;
    s.inputs = quadrants(64, 11).first;
    return s;
  }
  void prepare_training(nlohmann::json&, const TrainOptions&, std::vector<std::string>&,
                        const std::function<void(const std::string&)>&) override {
    std::tie(train_x_, train_y_) = quadrants(1024, 5);
  }
  TrainPlan begin_training(const Model&, const TrainOptions& o, torch::Generator&) override {
    bs_ = o.batch_size;
    return {o.epochs, train_x_.size(0) / bs_, "img"};
  }
  void begin_epoch(int, torch::Generator& gen) override { perm_ = torch::randperm(train_x_.size(0), gen, torch::kLong); }
  TaskBatch train_batch(int64_t s, torch::Generator&) override {
    torch::Tensor idx = perm_.narrow(0, s * bs_, bs_);
    TaskBatch b;
    b.inputs = train_x_.index_select(0, idx);
    b.targets = train_y_.index_select(0, idx);
    b.size = b.units = bs_;
    return b;
  }
  torch::Tensor forward(const Model& m, const TaskBatch& b) const override { return m.forward(b.inputs); }
  torch::Tensor loss(const torch::Tensor& logits, const TaskBatch& b) const override {
    return torch::nn::functional::cross_entropy(logits, b.targets);
  }
  std::optional<EpochEval> end_epoch(const Model& m, int) const override {
    EpochEval e;
    e.valid = accuracy_here(m, test_x_, test_y_);  // (a real task uses a validation split)
    e.figures = {{"valid_accuracy", *e.valid}};
    e.line = "valid accuracy " + std::to_string(*e.valid);
    return e;
  }
  nlohmann::json final_figures(const Model& m) const override {
    return {{"test_accuracy", accuracy_here(m, test_x_, test_y_)}};
  }

 private:
  int64_t n_test_, bs_ = 32;
  torch::Tensor test_x_, test_y_, train_x_, train_y_, perm_;
};

void register_quadrants() {
  static bool done = false;
  if (done) return;
  done = true;
  TaskInfo t;
  t.name = "tiny-quadrants";
  t.dataset = "quadrants";
  t.parse = [](const nlohmann::json& data, const nlohmann::json& calib, bool, std::vector<std::string>& problems) {
    FieldReader d(data, "/data", problems);
    d.string("dataset", "");
    const int64_t n = d.integer("test_size", 300, 30, 100000);
    d.reject_unknown();
    FieldReader c(calib, "/calibration", problems);
    c.reject_unknown();
    return std::unique_ptr<Task>(new Quadrants(n));
  };
  TaskTable::global().add(t);
}

Model quadrant_vit() {
  ArchConfig c = pare_test::tiny_vit_config("layernorm");
  c.num_attention_heads = 4;
  c.layers.clear();
  c.finalize("test");
  c.task = "tiny-quadrants";  // the config records the task the model is for
  return family_by_name("vit").init(c, 3);
}

TEST(TaskPlugin, TrainsEvaluatesAndCompressesThroughPareCodePaths) {
  register_quadrants();
  register_builtin_passes();
  // Config round trip: pare.task is written because it is not the vit family's own.
  EXPECT_EQ(config_to_json(quadrant_vit().config)["pare"]["task"], "tiny-quadrants");
  EXPECT_EQ(model_task(config_from_json(config_to_json(quadrant_vit().config), "rt")), "tiny-quadrants");

  std::vector<std::string> problems;
  std::unique_ptr<Task> task = TaskTable::global().find("quadrants")->parse(
      {{"dataset", "quadrants"}, {"test_size", 300}}, nlohmann::json::object(), true, problems);
  ASSERT_TRUE(problems.empty());
  Model m = quadrant_vit();
  nlohmann::json model_section = nlohmann::json::object();
  task->prepare_training(model_section, {}, problems, [](const std::string&) {});
  task->load(m, "", {}, false, [](const std::string&) {});
  const double before = task->measure(m, {}, nullptr).metrics.at("accuracy");

  TrainOptions o;
  o.epochs = 6;
  o.batch_size = 32;
  o.lr = 3e-3;
  o.warmup_steps = 20;
  o.log_every = 0;
  TrainResult tr = train(m, *task, o);
  EXPECT_EQ(tr.steps, 6 * (1024 / 32));
  ASSERT_EQ(tr.epochs.size(), 6u);
  EXPECT_GE(tr.best_epoch, 1);
  // The kept weights are the best validation epoch's: its figure is the model's accuracy now.
  const double after = accuracy_here(m, quadrants(300, 7).first, quadrants(300, 7).second);
  EXPECT_DOUBLE_EQ(after, tr.epochs[tr.best_epoch - 1]["valid_accuracy"].get<double>());
  EXPECT_GT(after, 0.9) << "before training " << before;  // chance is 1/3

  // measure_stage asks the task.
  const StageRow row = measure_stage("trained", m, *task, {});
  EXPECT_DOUBLE_EQ(row.metric("accuracy"), after);
  EXPECT_EQ(row.m.samples, 300);

  // A recipe naming the task by its data set, a pass, a budget on its metric.
  nlohmann::json recipe = {{"pipeline", {{{"pass", "prune-heads"}, {"sparsity", 0.5}}}},
                           {"data", {{"dataset", "quadrants"}, {"test_size", 300}}},
                           {"budget", {{"metric", "accuracy"}, {"max_drop", 100.0}}}};
  CompressRecipe r = parse_compress_recipe_json(recipe, "quadrants.yaml");
  bind_task(r, m.config);
  r.task->load(m, "", r.eval, true, [](const std::string&) {});
  PipelineResult res = run_pipeline(m, r, [](const std::string&) {});
  ASSERT_EQ(res.rows.size(), 2u);
  EXPECT_DOUBLE_EQ(res.rows[0].metric("accuracy"), after);
  EXPECT_DOUBLE_EQ(res.rows[1].metric("accuracy"), accuracy_here(m, quadrants(300, 7).first, quadrants(300, 7).second));
  EXPECT_EQ(m.config.layers[0].heads + m.config.layers[1].heads, 4);  // half of 2 × 4 heads
  EXPECT_TRUE(res.budget_ok) << res.budget_message;
  EXPECT_THAT(res.budget_message, HasSubstr("accuracy"));
  const nlohmann::json rep = report_json(res, r, nlohmann::json::object());
  EXPECT_EQ(rep["task"]["name"], "tiny-quadrants");
  EXPECT_EQ(rep["task"]["metrics"][0]["name"], "accuracy");
  EXPECT_EQ(rep["stages"][1]["metrics"]["accuracy"], res.rows[1].metric("accuracy"));
  EXPECT_THAT(stage_table_markdown(res.rows, *r.task), HasSubstr("| accuracy % | Δ (points) |"));

  // A budget on a metric the task does not have fails before the baseline, naming the task.
  recipe["budget"] = {{"metric", "perplexity"}, {"max_increase_pct", 5}};
  CompressRecipe bad = parse_compress_recipe_json(recipe, "quadrants.yaml");
  bind_task(bad, m.config);
  EXPECT_INPUT_ERROR(run_pipeline(m, bad, [](const std::string&) {}),
                     HasSubstr("perplexity is not a metric of the tiny-quadrants task"));
  // The model's task is recorded: image data for it is refused, as is this task for a plain vit.
  nlohmann::json images = {{"pipeline", nlohmann::json::array()}, {"data", {{"dataset", "fashion-mnist"}}}};
  CompressRecipe other = parse_compress_recipe_json(images, "images.yaml");
  EXPECT_INPUT_ERROR(bind_task(other, m.config), HasSubstr("does not fit a vit model (its task is tiny-quadrants"));
  CompressRecipe mine = parse_compress_recipe_json(recipe, "quadrants.yaml");
  EXPECT_INPUT_ERROR(bind_task(mine, pare_test::tiny_vit_config("layernorm")),
                     HasSubstr("does not fit a vit model (its task is image-classification"));
}

// Mask fine-tuning through the one training loop, with nothing copied from it: hard-concrete
// gates on every head (masks/), their log α as TrainHooks::extra_parameters with the model's
// weights frozen, an expected-L0 penalty as extra_loss, a fresh gate sample before every step
// (on_step) and deterministic masks for each epoch's evaluation (on_mode). The weights stay
// bitwise as they were, the penalty pulls the expected number of open heads down, a seed
// reproduces the run, and the evaluation each epoch reported is the deterministic masks' accuracy.
TEST(TaskPlugin, MaskFineTuningRunsThroughTheOneLoop) {
  register_quadrants();
  auto run = [](std::vector<torch::Tensor>* log_alpha_out, double* valid_out) {
    std::vector<std::string> problems;
    std::unique_ptr<Task> task = TaskTable::global().find("quadrants")->parse(
        {{"dataset", "quadrants"}}, nlohmann::json::object(), true, problems);
    Model m = quadrant_vit();
    nlohmann::json section = nlohmann::json::object();
    task->prepare_training(section, {}, problems, [](const std::string&) {});
    task->load(m, "", {}, false, [](const std::string&) {});
    TrainOptions o;
    o.epochs = 3;
    o.batch_size = 32;
    o.lr = 3e-3;
    o.warmup_steps = 10;
    o.log_every = 0;
    train(m, *task, o);  // the dense model first
    std::map<std::string, torch::Tensor> before;
    for (const auto& [name, t] : m.tensors) before[name] = t.clone();
    for (const auto& [slot, f] : m.linears) before[slot] = m.dense(slot).weight.clone();

    std::vector<masks::HardConcrete> gates{masks::HardConcrete(4, 0.9), masks::HardConcrete(4, 0.9)};
    masks::MaskSet set;
    set.attach(m);
    auto gen = at::detail::createCPUGenerator(21);
    bool training = true;
    auto apply = [&] {
      for (int64_t l = 0; l < 2; ++l)
        set.set(masks::MaskGroupKind::kHeads, l, training ? gates[l].sample(gen) : gates[l].deterministic());
    };
    const double l0_start = (gates[0].expected_l0() + gates[1].expected_l0()).item<double>();
    TrainHooks h;
    h.train_weights = false;
    h.extra_parameters = {gates[0].log_alpha, gates[1].log_alpha};
    h.extra_lr = 0.1;
    h.extra_loss = [&](const StepContext&) { return 0.05 * (gates[0].expected_l0() + gates[1].expected_l0()); };
    h.on_step = [&](const StepContext&) { apply(); };
    h.on_mode = [&](Model&, bool t) {
      training = t;
      apply();
    };
    o.lr = 1e-3;  // unused by the frozen weights; the gates use extra_lr
    TrainResult r = train(m, *task, o, h);
    // Frozen weights, bitwise.
    for (const auto& [name, t] : m.tensors) EXPECT_TRUE(torch::equal(t, before.at(name))) << name;
    for (const auto& [slot, f] : m.linears) EXPECT_TRUE(torch::equal(m.dense(slot).weight, before.at(slot))) << slot;
    const double l0_end = (gates[0].expected_l0() + gates[1].expected_l0()).item<double>();
    EXPECT_LT(l0_end, l0_start - 0.5) << "the L0 penalty did not move the gates";
    // After training the masks are the deterministic ones (on_mode(false)), and the model with
    // them scores what the kept epoch reported.
    EXPECT_FALSE(training);
    const double acc = accuracy_here(m, quadrants(300, 7).first, quadrants(300, 7).second);
    EXPECT_DOUBLE_EQ(acc, r.epochs[r.best_epoch - 1]["valid_accuracy"].get<double>());
    *log_alpha_out = {gates[0].log_alpha.detach().clone(), gates[1].log_alpha.detach().clone()};
    *valid_out = acc;
  };
  std::vector<torch::Tensor> a1, a2;
  double v1 = 0, v2 = 0;
  run(&a1, &v1);
  run(&a2, &v2);
  EXPECT_TRUE(torch::equal(a1[0], a2[0]) && torch::equal(a1[1], a2[1])) << "a seed must reproduce the run";
  EXPECT_DOUBLE_EQ(v1, v2);
}

}  // namespace
}  // namespace pare
