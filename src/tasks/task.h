// Task: what a model is trained, calibrated and measured on (DESIGN.md "Tasks"; README
// "Architecture"). The pipeline, the budget check, the reports, `pare eval` and the one training
// loop (train/trainer.h) talk to a model's data only through this interface, so a new kind of data
// plugs in as one file: a Task subclass and a TaskInfo in the task table.
//
// Built-in tasks (one file each):
//   image-classification  tasks/image_classification.cpp  Fashion-MNIST idx files: top-1 accuracy,
//                         latency at batch sizes; recipe `data: {dataset: fashion-mnist, path}`
//   lm-perplexity         tasks/lm_perplexity.cpp  a text file cut into windows: perplexity, and
//                         KL / top-1 agreement against a reference (the dense) model;
//                         `data: {dataset: text, path, tokenizer}`
//   graph                 tasks/graph_task.cpp  TU folders / MoleculeNet CSVs with the split the
//                         model records: accuracy, ROC-AUC or MAE by the model's gps.task;
//                         `data: {dataset: graph, path, split, cache}`
//   text-classification   tasks/text_classification.cpp  labelled sentences (SST-2 stsa.binary.*,
//                         TSV/CSV): accuracy and F1 on dev or test; `data: {dataset: sst2, path}`
//   masked-lm             tasks/masked_lm.cpp  masked-language-model pre-training of a bert on
//                         text files; `data: {dataset: mlm-text, files: [...]}`
//
// Life of a task: TaskTable::parse reads the recipe's data + calibration sections (every problem
// collected, before weights load); Task::load reads the files for a model (and refuses a model
// whose outputs do not fit the data: InputError naming the data path); then measure / calibration
// / the training methods.
//
// Units. Metric values are in their own unit everywhere (report.json, Measurement): accuracy,
// ROC-AUC and top-1 agreement as fractions in [0, 1] (MetricSpec::percent: tables print 100 ×,
// budgets are written in percent and percent points), perplexity as is, KL in nats per token, MAE
// in the target's unit. FLOPs = 2 × MACs per sample (an image, a token, a graph: flops_unit()).
#pragma once

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "families/model.h"

namespace pare {

struct GraphBatch;    // data/graph_data.h
struct GraphDataset;  // data/graph_data.h

// One metric of a task, and how a budget is written for it.
struct MetricSpec {
  std::string name;   // "accuracy", "rocauc", "mae", "perplexity", "kl", "top1"
  std::string label;  // table heading: "accuracy %", "ROC-AUC %", "MAE", "perplexity", ...
  std::string unit;   // "fraction", "nats/token", "perplexity", "target unit"
  bool higher_is_better = true;
  bool percent = false;  // a fraction shown as percent; budget bounds in percent / points
  // How the table shows the change from the baseline: "points" (100 × difference, percent
  // metrics), "percent" (relative change, perplexity), "absolute" (difference); "" none.
  std::string delta;
  // Budget bounds the metric takes: max_drop (points below the baseline), min (a floor, percent
  // for percent metrics), max_increase_pct (relative increase over the baseline), max (a ceiling).
  std::vector<std::string> bounds;
  bool needs_reference = false;  // measured against the baseline model (KL, top-1 agreement)
  int digits = 2;                // decimals in tables (of the shown value: 100 × for percent)
};

// Evaluation settings of a recipe's `eval:` section (also `pare eval`'s flags).
struct EvalSettings {
  int64_t batch_size = 256;
  std::vector<int64_t> latency_batches{1, 256};
  int64_t latency_reps = 10;
  int64_t limit = -1;   // samples used for the metric (images, LM windows, graphs); -1: all
  int64_t seq_len = 0;  // LMs: tokens per perplexity window (0: the model's context_length)
};

// A model measured on a task's evaluation split.
struct Measurement {
  std::map<std::string, double> metrics;  // name -> value in the metric's unit (see above)
  int64_t samples = 0;                    // what the metric was measured on, after eval.limit
  std::string samples_unit;               // "images", "tokens", "graphs"
  double flops = 0;                       // FLOPs per sample (flops_unit), 2 × MACs
  double throughput = 0;                  // samples (throughput_unit) per second of forward passes
  std::string throughput_unit;            // "images/s", "tokens/s", "graphs/s"; "" none
  std::vector<std::pair<int64_t, double>> latency_ms;  // (batch, median ms); tasks with latency
  double eval_seconds = 0;
  nlohmann::json extra = nlohmann::json::object();  // task-specific figures (graph: mean loss)
};

// Calibration data for passes that need it (SliceGPT, GPTQ): tensor inputs [n, ...] for models that
// take tensors (normalised images, token windows), or graphs of a data set.
struct CalibrationSet {
  torch::Tensor inputs;
  const GraphDataset* graphs = nullptr;
  std::vector<int64_t> graph_idx;
};

// Training options: the recipe's `train:` section. A task reads the ones that apply to it.
struct TrainOptions {
  int epochs = 1;
  int64_t steps = 0;            // tasks that train by steps (lm-perplexity) instead of epochs
  int64_t batch_size = 128;
  double lr = 1e-3;             // peak learning rate
  double weight_decay = 0.05;   // AdamW, decoupled, on linear weights only
  int64_t warmup_steps = 100;
  int64_t warmup_epochs = -1;   // >= 0: warm-up of this many epochs (replaces warmup_steps)
  double clip_grad_norm = 1.0;  // <= 0: off
  uint64_t seed = 0;
  int64_t limit_train = -1;     // use N training samples (images: the first N; graphs: a seeded subset)
  int64_t log_every = 50;       // steps
  // Image classification: label smoothing and augmentation (random horizontal flip, random
  // translation by up to `translate` pixels with zero padding).
  double label_smoothing = 0.0;
  bool hflip = false;
  int64_t translate = 0;
  int64_t seq_len = 128;        // lm-perplexity: tokens per training window
  int64_t eval_batch_size = 256;  // per-epoch evaluation batch size
};

// A batch of training (or evaluation) samples.
struct TaskBatch {
  torch::Tensor inputs;   // normalised images [B, C, H, W], token ids [B, T]
  torch::Tensor targets;  // class labels [B], next tokens [B, T], graph targets [G(, out)]
  std::shared_ptr<GraphBatch> graphs;  // graph tasks: the collated graphs (inputs undefined)
  int64_t size = 0;       // samples (images, windows, graphs)
  int64_t units = 0;      // what progress counts (images, tokens, graphs)
};

// How the training loop walks a task's training data.
struct TrainPlan {
  int epochs = 1;
  int64_t steps_per_epoch = 0;
  std::string unit;  // progress unit: "img", "tokens", "graphs"
};

// What a task reports after a training epoch: the validation metric when it has a validation split
// (the loop keeps the best epoch's weights), and figures for train.json and the progress line.
struct EpochEval {
  std::optional<double> valid;   // primary metric on the validation split
  nlohmann::json figures = nlohmann::json::object();
  std::string line;              // one progress line (without "train: ")
};

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  // Metrics in report order; the first is the primary one (the `accuracy:` budget of old recipes
  // applies to it, as do the Δ columns).
  virtual std::vector<MetricSpec> metrics() const = 0;
  virtual std::string flops_unit() const = 0;  // "image", "token", "graph"
  // How FLOPs are counted, one paragraph (report.json "flops_counted", report.md).
  virtual std::string flops_counted() const = 0;

  // Reads the data for model `m` (its path: `model_path`, for a tokenizer beside it), refusing data
  // the model does not fit (InputError naming the data path). `calibrate`: the recipe has passes,
  // prepare what they may ask for (or check it exists). `log` gets progress lines.
  virtual void load(const Model& m, const std::string& model_path, const EvalSettings& eval,
                    bool calibrate, const std::function<void(const std::string&)>& log) = 0;
  // Lines for report.md (data, splits, calibration) and the same as JSON (report.json "task").
  virtual std::string describe_markdown() const = 0;
  virtual nlohmann::json describe() const = 0;
  // The data argument as given (report.json inputs.data).
  virtual std::string data_path() const = 0;

  // ---- evaluation ----
  // Measures `m` on the evaluation split; `reference` (the baseline) for metrics that need one.
  virtual Measurement measure(const Model& m, const EvalSettings& eval,
                              const Model* reference) const = 0;
  // The evaluation batch size of `pare eval` when none is given.
  virtual int64_t default_eval_batch_size() const { return 256; }
  // Whether measure() gives latency figures (EvalSettings::latency_batches; a latency budget).
  virtual bool has_latency() const { return false; }

  // ---- calibration (passes ask through PassContext::task) ----
  // InputError naming `pass` when the recipe gave no calibration data the task can offer.
  virtual CalibrationSet calibration(const Model& m, const std::string& pass) const = 0;

  // ---- training (train/trainer.h, pare train) ----
  // Reads the training data (and what the final figures are measured on) and completes the
  // recipe's `model:` section from it where the data decides (graph: task, output width, encoder
  // vocabularies, graph statistics; lm-perplexity: the tokenizer built and its vocabulary checked
  // against vocab_size). Problems are appended ("/model/...", "/data/..."); InputError for bad
  // files. Called before the model is built.
  virtual void prepare_training(nlohmann::json& model_section, const TrainOptions& o,
                                std::vector<std::string>& problems,
                                const std::function<void(const std::string&)>& log) = 0;
  // Fine-tuning an existing model inside a pass (masks/ methods such as gtsp): reads the training
  // data of the split `m` records (graph: config.gps.split and split_seed, so the evaluation
  // split never enters training) instead of prepare_training; begin_training etc. follow as in
  // pare train. InputError naming the data when the task or the model has no training split.
  // A fine-tuning task is a fresh parse of the recipe's data (PassContext::fine_tuning_task);
  // adopt() hands it what the compress run's loaded task read from the model folder (text tasks:
  // the model's WordPiece vocabulary), before prepare_fine_tuning. Default: nothing to take.
  virtual void adopt(const Task& loaded) { (void)loaded; }
  virtual void prepare_fine_tuning(const Model& m, const std::function<void(const std::string&)>& log) {
    (void)m;
    (void)log;
    throw InputError(concat("task ", name(), " offers no training split for fine-tuning"));
  }
  // Files written beside a trained or compressed model (name, content): an LM's tokenizer.json.
  virtual std::vector<std::pair<std::string, std::string>> model_files() const { return {}; }
  // Called once before the first step, after torch::manual_seed(seed), with the loop's generator
  // (seeded with the same seed); draws what it needs from it in a fixed order.
  virtual TrainPlan begin_training(const Model& m, const TrainOptions& o, torch::Generator& gen) = 0;
  virtual void begin_epoch(int epoch, torch::Generator& gen) {
    (void)epoch;
    (void)gen;
  }
  virtual TaskBatch train_batch(int64_t step_in_epoch, torch::Generator& gen) = 0;
  // Logits of a batch (differentiable), and the task's training loss of them (mean over the batch).
  virtual torch::Tensor forward(const Model& m, const TaskBatch& b) const = 0;
  virtual torch::Tensor loss(const torch::Tensor& logits, const TaskBatch& b) const = 0;
  // Switches what differs between training and evaluation forwards (gps: BatchNorm statistics).
  virtual void set_training(Model& m, bool on) const {
    (void)m;
    (void)on;
  }
  // After each epoch, with the weights of that epoch; nullopt when the task measures nothing.
  virtual std::optional<EpochEval> end_epoch(const Model& m, int epoch) const {
    (void)m;
    (void)epoch;
    return std::nullopt;
  }
  // Final figures of the trained model for train.json (test metric, ...).
  virtual nlohmann::json final_figures(const Model& m) const = 0;

  // How a user sets data key KEY, for error messages: a command that maps a flag to a data key
  // (pare eval --tokenizer -> data.tokenizer) records it in `flags`; otherwise the recipe's key.
  std::map<std::string, std::string> flags;
  std::string how_to_set(const std::string& key) const {
    auto it = flags.find(key);
    return it != flags.end() ? it->second
                             : "data." + key + " in the recipe (or --set data." + key + "=PATH)";
  }
};

// How a recipe names a task and makes one.
struct TaskInfo {
  std::string name;       // "image-classification"
  std::string dataset;    // the recipe's data.dataset value: "fashion-mnist", "text", "graph"
  // Whether a model of this architecture takes the task's inputs (images, token ids, graphs):
  // pare train refuses a recipe whose model cannot (null: any).
  std::function<bool(const ArchConfig&)> fits;
  // The data key `pare train --data` sets (the training data): "path", or "text" for LMs.
  std::string train_data_key = "path";
  // Parses the recipe's data and calibration sections (paths reported as "/data/KEY"); problems
  // are appended (every one collected); returns the task, not yet loaded. `training`: for
  // `pare train` (the training data is required instead of the evaluation data).
  std::function<std::unique_ptr<Task>(const nlohmann::json& data, const nlohmann::json& calibration,
                                      bool training, std::vector<std::string>& problems)>
      parse;
};

// The task table: the three built-in tasks are in it from the first call (no set-up call);
// add() registers more (a test task, a library user's task).
class TaskTable {
 public:
  static TaskTable& global();
  void add(TaskInfo info);  // InternalError when the name or dataset is taken
  const TaskInfo* find(const std::string& name_or_dataset) const;
  std::vector<std::string> datasets() const;  // "fashion-mnist, text, graph, ..."
  // The task a recipe's data section names: data.task (a task name) or data.dataset (a data set
  // name or a task name); both given must name the same task. nullptr when it names none or on a
  // problem (appended: "/data/task: ..."); `named_as` gets "task" or "dataset".
  const TaskInfo* from_data(const nlohmann::json& data, std::string& named_as,
                            std::vector<std::string>& problems) const;
  const std::vector<TaskInfo>& all() const { return tasks_; }

 private:
  std::vector<TaskInfo> tasks_;
};

// The task a model's config records (ArchConfig::task; by family when it records none).
std::string model_task(const ArchConfig& c);

// "" when a recipe naming task `named` fits a model of config `c`; otherwise why not, in one phrase:
// "text does not fit a vit model (its task is image-classification; use dataset: fashion-mnist)".
// `training`: the model is being built, so any task that `fits` its architecture will do; else the
// task must be the one the model's config records.
std::string task_mismatch(const TaskInfo& named, const std::string& named_as, const ArchConfig& c,
                          bool training);

// The metric spec `name` of `t`, if it has one.
std::optional<MetricSpec> find_metric(const Task& t, const std::string& name);

}  // namespace pare
