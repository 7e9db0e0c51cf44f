// Pipeline: runs a compression recipe in order, verifies shapes after each pass, measures every
// stage (accuracy, params, FLOPs, checkpoint bytes, latency, pass time) and checks the budget.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "family.h"
#include "images.h"
#include "pass.h"

namespace pare {

struct Budget {
  std::optional<double> max_drop;  // accuracy points (percent) below the baseline
  std::optional<double> min;       // accuracy in percent
  bool empty() const { return !max_drop && !min; }
};

struct EvalSettings {
  int64_t batch_size = 256;
  std::vector<int64_t> latency_batches{1, 256};
  int64_t latency_reps = 10;
  int64_t limit = -1;  // test images used (-1: all 10,000)
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
  std::string data_dir = kDefaultFashionMnistDir;
  int64_t calibration_samples = 1024;
  uint64_t calibration_seed = 0;
  std::string one_line() const;  // "slicegpt(slicing=0.25,...) | ..."
};

// Parses and validates a compression recipe (every problem collected; RecipeError).
CompressRecipe parse_compress_recipe(const std::string& path, const std::vector<std::string>& sets);
CompressRecipe parse_compress_recipe_json(nlohmann::json j, const std::string& source);

struct StageRow {
  std::string stage;  // "baseline", "slicegpt", ...
  double accuracy = 0;  // percent
  int64_t params = 0, flops = 0, bytes = 0;
  std::vector<std::pair<int64_t, double>> latency_ms;  // (batch, median ms)
  double pass_seconds = 0, eval_seconds = 0;
  nlohmann::json notes = nlohmann::json::object();
  std::vector<CostRow> layers;
};

struct PipelineResult {
  std::vector<StageRow> rows;
  bool budget_ok = true;
  std::string budget_message;
  int threads = 0;
};

// Measures one stage.
StageRow measure_stage(const std::string& name, const Model& m, const ImageDataset& test,
                       const EvalSettings& eval);

// Runs every stage on `m` (edited in place). `log` gets progress lines.
PipelineResult run_pipeline(Model& m, const CompressRecipe& r, const ImageDataset& test,
                            const std::function<void(const std::string&)>& log);

// Report as JSON and Markdown (a table, a row per stage, then per-layer shapes).
nlohmann::json report_json(const PipelineResult& res, const CompressRecipe& r,
                           const nlohmann::json& inputs);
std::string report_markdown(const PipelineResult& res, const CompressRecipe& r,
                            const nlohmann::json& inputs);
std::string stage_table_markdown(const std::vector<StageRow>& rows);
std::string layer_table_markdown(const std::vector<CostRow>& rows);

// 64-bit FNV-1a of a file's bytes, hex (input hashes in reports).
std::string file_hash(const std::string& path);

}  // namespace pare
