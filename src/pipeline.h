// Pipeline: runs a compression recipe in order, verifies shapes after each pass, measures every
// stage (accuracy, params, FLOPs, checkpoint bytes, latency, pass time) and checks the budget.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "family.h"
#include "graph_data.h"
#include "images.h"
#include "pass.h"

namespace pare {

struct Budget {
  std::optional<double> max_drop;  // accuracy points (percent) below the baseline
  std::optional<double> min;       // accuracy in percent
  std::optional<double> max_ppl_increase;  // LMs: perplexity increase over the baseline, percent
  // LMs: fidelity to the dense model on the evaluation tokens (a model compressed into gibberish
  // fails these even where its perplexity on the text is not budgeted).
  std::optional<double> max_kl;    // mean KL(dense ‖ compressed) per token, nats
  std::optional<double> min_top1;  // top-1 agreement with the dense model, percent
  // Ceilings on the final model, any task.
  std::optional<int64_t> max_params, max_flops, max_bytes;  // FLOPs per image / graph / token
  std::optional<double> max_latency_ms;  // median latency at latency_batch (image models)
  int64_t latency_batch = 1;
  // The general form {metric: NAME, max_drop | min | max_increase_pct | max: X}: the metric named
  // (accuracy, rocauc, perplexity, kl, top1, mae), checked against the model's task before
  // anything runs; its bound lands in the fields above (mae: max_mae).
  std::string metric;
  std::optional<double> max_mae;
  // Whether a metric budget (accuracy, perplexity, KL, top-1) is set; ceilings aside.
  bool has_metric() const {
    return max_drop || min || max_ppl_increase || max_kl || min_top1 || max_mae;
  }
  bool empty() const {
    return !has_metric() && !max_params && !max_flops && !max_bytes && !max_latency_ms;
  }
};

struct EvalSettings {
  int64_t batch_size = 256;
  std::vector<int64_t> latency_batches{1, 256};
  int64_t latency_reps = 10;
  int64_t limit = -1;  // test images (LMs: windows) used (-1: all)
  int64_t seq_len = 0;  // LMs: tokens per perplexity window (0: the model's context_length)
};

// What a stage is measured on: test images (vit), or a tokenised test text cut into windows
// [n, seq_len] for decoder LMs, whose rows also get KL / top-1 agreement against `reference`
// (the baseline model, kept by the pipeline).
struct EvalData {
  const ImageDataset* images = nullptr;
  torch::Tensor lm_windows;
  const Model* reference = nullptr;
  // Graph transformers (gps): the data set and the graphs measured (the test split).
  const GraphDataset* graphs = nullptr;
  std::vector<int64_t> graph_idx;
  std::vector<int64_t> calibration_graph_idx;  // rows of `graphs` for passes that calibrate
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
  // LMs (data.dataset: text): the evaluation text, an optional tokenizer path, the calibration
  // text (calibration.path) and its window length (calibration.seq_len, 0: eval seq_len).
  std::string dataset = "fashion-mnist";  // fashion-mnist | text | graph
  bool dataset_given = false;             // the recipe states data.dataset
  std::string graph_path;                 // data.dataset graph: a TU folder or MoleculeNet CSV
  std::string text_path, tokenizer_path, calibration_path;
  int64_t calibration_seq_len = 0;
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
  bool lm = false;      // LM rows: perplexity instead of accuracy
  // Graph rows (gps): `metric` is accuracy / rocauc (then `accuracy` holds it in percent, so the
  // accuracy budget applies in points) or mae (then `accuracy` holds the MAE itself).
  std::string metric;
  double graphs_per_second = 0;
  double perplexity = 0, kl = 0, top1 = 0, tokens_per_second = 0;
  int64_t params = 0, flops = 0, bytes = 0;
  // What the metric was measured on: images, graphs, or predicted tokens (LMs), after eval.limit.
  int64_t samples = 0;
  std::string samples_unit;  // "images", "graphs" or "tokens"
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
  // Where a pass did something other than asked, or made the model larger: one line each (also in
  // that stage's notes["warnings"] in report.json). The CLI prints them on stderr, even --quiet.
  std::vector<std::string> warnings;
};

// Measures one stage.
StageRow measure_stage(const std::string& name, const Model& m, const EvalData& data,
                       const EvalSettings& eval);
StageRow measure_stage(const std::string& name, const Model& m, const ImageDataset& test,
                       const EvalSettings& eval);

// Runs every stage's PassInfo::plan in order on a copy of `c` (the shapes each stage will leave),
// before anything is measured; InputError "RECIPE: /pipeline/I (PASS): ..." for the first stage
// that cannot apply. Returns how many stages were planned (planning stops at a pass without a
// plan). run_pipeline calls it.
size_t check_recipe_plan(const ArchConfig& c, const CompressRecipe& r);

// Runs every stage on `m` (edited in place). `log` gets progress lines. For LMs `data` holds the
// test windows and ctx-level calibration tokens come from `calibration_tokens`.
PipelineResult run_pipeline(Model& m, const CompressRecipe& r, const EvalData& data,
                            const std::function<void(const std::string&)>& log,
                            const torch::Tensor& calibration_tokens = torch::Tensor());
PipelineResult run_pipeline(Model& m, const CompressRecipe& r, const ImageDataset& test,
                            const std::function<void(const std::string&)>& log);

// report.json's "schema_version": raised when a field changes meaning or moves (1: first with a
// version, 2026-12-07: runtime, warnings, per-stage samples).
inline constexpr int kReportSchemaVersion = 1;

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
