// Pipeline: runs a compression recipe in order, verifies shapes after each pass, measures every
// stage (accuracy, params, FLOPs, checkpoint bytes, latency, pass time) and checks the budget.
#pragma once

#include <nlohmann/json.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "families/family.h"
#include "pipeline/pass.h"
#include "tasks/task.h"

namespace pare {

// One bound on a metric of the task: {metric: NAME, BOUND: VALUE} in a recipe's budget (the old
// keys accuracy: {max_drop, min}, perplexity: {max_increase}, kl: {max}, top1: {min} map to it;
// old `accuracy:` bounds apply to the task's primary metric, metric ""). Bounds (MetricSpec):
//   max_drop          points below the baseline (percent metrics, higher is better)
//   min               a floor (percent for percent metrics)
//   max_increase_pct  relative increase over the baseline, percent (perplexity)
//   max               a ceiling in the metric's unit (KL nats/token, MAE)
struct MetricBound {
  std::string metric;  // "" = the task's primary metric
  std::string bound;
  double value = 0;
  std::string key;     // where the recipe wrote it, for errors: "/budget/accuracy"
};

struct Budget {
  std::vector<MetricBound> bounds;
  // Ceilings on the final model, any task.
  std::optional<int64_t> max_params, max_flops, max_bytes;  // FLOPs per sample of the task
  std::optional<double> max_latency_ms;  // median latency at latency_batch (tasks with latency)
  int64_t latency_batch = 1;
  bool has_metric() const { return !bounds.empty(); }
  bool empty() const {
    return !has_metric() && !max_params && !max_flops && !max_bytes && !max_latency_ms;
  }
};

struct Stage {
  std::string pass;
  PassOptions options;
};

struct CompressRecipe {
  std::string path;
  nlohmann::json raw;
  std::vector<Stage> stages;
  Budget budget;
  EvalSettings eval;
  // The task (data.dataset or data.task), parsed from the data and calibration sections; null
  // when the recipe names none (bind_task then takes the model's own).
  std::shared_ptr<Task> task;
  std::string one_line() const;  // "slicegpt(slicing=0.25,...) | ..."
};

// Parses and validates a compression recipe (every problem collected; RecipeError).
CompressRecipe parse_compress_recipe(const std::string& path, const std::vector<std::string>& sets);
CompressRecipe parse_compress_recipe_json(nlohmann::json j, const std::string& source);

// Makes r.task the model's: parses the data and calibration sections with the task the model's
// config records when the recipe names none; InputError (naming the recipe) when the recipe names
// another task than the model's ("/data/dataset: X does not fit a FAMILY model (its task is ...)").
void bind_task(CompressRecipe& r, const ArchConfig& c);

struct StageRow {
  std::string stage;  // "baseline", "slicegpt", ...
  Measurement m;      // metrics, samples, FLOPs per sample, throughput, latency
  int64_t params = 0, flops = 0, bytes = 0;
  double pass_seconds = 0;
  nlohmann::json notes = nlohmann::json::object();
  std::vector<CostRow> layers;
  double metric(const std::string& name) const;  // NaN when not measured
};

struct PipelineResult {
  std::vector<StageRow> rows;
  bool budget_ok = true;
  std::string budget_message;
  int threads = 0;
  // Where a pass did something other than asked, or made the model larger: one line each (also in
  // that stage's notes["warnings"] in report.json). The CLI prints them on stderr, even --quiet.
  std::vector<std::string> warnings;
};

// Measures one stage on the task's evaluation split (Task::measure) plus params, bytes and the
// per-layer table; `reference` is the baseline (KL, top-1 agreement).
StageRow measure_stage(const std::string& name, const Model& m, const Task& task,
                       const EvalSettings& eval, const Model* reference = nullptr);

// Runs every stage's PassInfo::plan in order on a copy of `c` (the shapes each stage will leave),
// before anything is measured; InputError "RECIPE: /pipeline/I (PASS): ..." for the first stage
// that cannot apply. Returns how many stages were planned (planning stops at a pass without a
// plan). run_pipeline calls it.
size_t check_recipe_plan(const ArchConfig& c, const CompressRecipe& r);

// Checks the budget against the task (every metric one of its metrics, every bound one the metric
// takes, a latency budget only for tasks with latency at a measured batch): InputError naming the
// recipe's key. run_pipeline calls it before the baseline.
void check_budget(const Budget& b, const Task& task, const EvalSettings& eval, const std::string& recipe);

// Runs every stage on `m` (edited in place) and measures each on r.task (loaded: Task::load).
// Checks what can be checked from the recipe and the shapes before the baseline is measured (the
// first pass's check, every pass's plan, the budget against the task). `log` gets progress lines.
PipelineResult run_pipeline(Model& m, const CompressRecipe& r,
                            const std::function<void(const std::string&)>& log);

// report.json's "schema_version": raised when a field changes meaning or moves (1: first with a
// version, runtime, warnings, per-stage samples; 2: one shape for every task: "task" with its
// metrics (name, unit, direction), per stage "metrics" {name: value in its unit}, "flops" per
// task flops_unit, "throughput" {value, unit}).
inline constexpr int kReportSchemaVersion = 2;

// Report as JSON and Markdown (a table, a row per stage, then per-layer shapes).
nlohmann::json report_json(const PipelineResult& res, const CompressRecipe& r,
                           const nlohmann::json& inputs);
std::string report_markdown(const PipelineResult& res, const CompressRecipe& r,
                            const nlohmann::json& inputs);
std::string stage_table_markdown(const std::vector<StageRow>& rows, const Task& task);
// One stage row as report.json writes it (pare eval --json writes the same fields), and the task
// with its metrics (name, label, unit, direction, budget bounds) and FLOPs unit.
nlohmann::json stage_json(const StageRow& row);
nlohmann::json task_json(const Task& task);
std::string layer_table_markdown(const std::vector<CostRow>& rows);

// 64-bit FNV-1a of a file's bytes, hex (input hashes in reports).
std::string file_hash(const std::string& path);

}  // namespace pare
