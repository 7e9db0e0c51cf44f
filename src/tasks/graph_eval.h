// Graph data for the gps family as the command line and the passes use it (which file is which
// data set, which split, which encodings), the metrics graph transformers are judged by, and the
// evaluation of a model on a split.
//
// Data (load_graph_data): a TUDataset folder (graph_data.h: NCI1, MUTAG, PROTEINS, ENZYMES,
// zinc/subset_tu/ZINC_test, ...) gets a seeded random 80/10/10 split (random_split); a MoleculeNet
// CSV — HIV.csv (ogbg-molhiv) or delaney-processed.csv (ESOL, "molesol") — carries OGB's scaffold
// split (molecules.h). A gps model records the split it was trained on (ArchConfig::gps.split and
// split_seed), so `pare eval` measures the same test graphs as `pare train` reported.
//
// Metrics (Hu et al. 2020, "Open Graph Benchmark", ogb/graphproppred/evaluate.py):
//   accuracy  classification: argmax of the logits == class, over the graphs.
//   rocauc    binary (molhiv): per task, only when both classes are present, the area under the
//             ROC curve as sklearn.metrics.roc_auc_score computes it = the Mann–Whitney statistic
//             P(score(positive) > score(negative)) + ½ P(equal); mean over such tasks (OGB's
//             _eval_rocauc). Computed on the raw logit (the sigmoid is monotone, so the ranking and
//             the AUC are the same, without float32 saturation ties).
//   mae       regression: mean |prediction − target| over graphs and outputs.
// Losses (training and the eval "loss" figure): cross-entropy (classification), BCE with logits
// (binary), L1 (regression), each the mean over the graphs of the batch.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/graph_data.h"
#include "families/model.h"

namespace pare {

struct GraphDataOptions {
  // Cache folder for converted molecules (a file "KIND-HASH.graphs" per CSV; HASH of its absolute
  // path). Empty: $XDG_CACHE_HOME/pare, else $HOME/.cache/pare; "none": no cache.
  std::string cache_dir;
  // Split of a TU data set (molecules always carry the scaffold split): "random" (fractions
  // 0.8 / 0.1 / 0.1 with `split_seed`) or "all" (every graph in each of train, valid and test:
  // for sets that are a split already, as ZINC_test).
  std::string split = "random";
  uint64_t split_seed = 0;
  int64_t rwse_steps = 0;  // computed when > 0 (K)
  int64_t lappe_k = 0;     // computed when > 0 (k eigenpairs)
  // The model the data is for (graph_data_options fills them; empty: no check). A MoleculeNet CSV
  // whose task differs, or that is not the data set named in `model_stats_dataset` ("molhiv train
  // split"), is refused before its molecules are converted (same messages as
  // check_graph_data_fits).
  std::string model_task, model_stats_dataset;
};

struct GraphData {
  GraphDataset ds;     // with splits "train", "valid", "test" and the encodings asked for
  std::string kind;    // "tu", "molhiv" or "molesol"
  std::string split;   // "random", "all" or "scaffold"
  uint64_t split_seed = 0;
  std::string path;    // as given
  std::string describe() const;  // "NCI1 (TU), random 80/10/10 split, seed 0"
};

// Reads `path`: a folder → TU data set (FOLDER/NAME, not itself a file or folder, reads data set
// NAME from a FOLDER holding several: zinc/subset_tu/ZINC_test); a file named HIV.csv → molhiv,
// delaney-processed.csv →
// molesol (the MoleculeNet names; other CSVs are refused). Throws InputError "PATH: expected a TU
// data set folder or a MoleculeNet HIV.csv / delaney-processed.csv, got ..." for anything else,
// and the readers' errors (file and line) for bad files.
GraphData load_graph_data(const std::string& path, const GraphDataOptions& opt = {});

// The options a gps model asks for: its recorded split and seed (random / seed 0 when it records
// none), its RWSE K and LapPE k; `cache_dir` as above.
GraphDataOptions graph_data_options(const ArchConfig& c, const std::string& cache_dir = "");

// gps.stats_dataset of a model pare trained on `dataset`: "NCI1 train split" (pare train writes
// it). trained_on_dataset reads it back: "NCI1"; "" when the config states none in that form
// (imported or built models).
std::string train_split_label(const std::string& dataset);
std::string trained_on_dataset(const GpsConfig& g);

// InputError (one line naming `path` and the model) unless the data fits the model: the task
// (classification / binary / regression) and output width agree, the node encoder finds its input
// (TypeDictNode / Atom: categorical columns whose vocabularies are at most the model's; LinearNode:
// node_attr_dims dense features), likewise the edge encoder, and the encodings are computed; and,
// for a model pare trained (trained_on_dataset non-empty), the data set is the one it learned.
void check_graph_data_fits(const ArchConfig& c, const GraphDataset& ds, const std::string& path);

// The metric of a task: "accuracy" (classification), "rocauc" (binary), "mae" (regression).
std::string graph_metric_name(const std::string& task);
bool metric_higher_is_better(const std::string& metric);  // false for mae
// The column heading every table uses for a metric: "accuracy %" and "ROC-AUC %" (printed as
// 100 × the value), "MAE" (as is). Throws InputError for an unknown metric.
std::string graph_metric_label(const std::string& metric);

// Mean loss of logits [G, out] against batch targets y [G] (int64 classes, or float targets):
// cross-entropy, BCE with logits (out = 1) or L1 (out = 1; or y [G, out]). Differentiable.
torch::Tensor graph_loss(const std::string& task, const torch::Tensor& logits,
                         const torch::Tensor& y);

// ROC-AUC of scores against 0/1 labels (sklearn roc_auc_score semantics, ties count ½). Throws
// InputError when a class is absent (the AUC is undefined). O(n log n).
double roc_auc(const std::vector<double>& scores, const std::vector<int>& labels);
// OGB's _eval_rocauc: y_true, y_pred [n, T] (or [n]); rows with NaN y_true are unlabeled for that
// task; the mean over the tasks that have both classes. InputError when no task has both
// ("No positively labeled data available" in OGB).
double ogb_rocauc(const torch::Tensor& y_true, const torch::Tensor& y_pred);
// Fraction of rows whose argmax of logits [n, C] equals y [n].
double accuracy_of(const torch::Tensor& logits, const torch::Tensor& y);
// mean |pred − y| over all elements (pred [n, out] against y [n] or [n, out]).
double mae_of(const torch::Tensor& pred, const torch::Tensor& y);
// The task's metric of logits [n, out] against y [n].
double graph_metric(const std::string& task, const torch::Tensor& logits, const torch::Tensor& y);

struct GraphEvalResult {
  std::string metric;        // accuracy | rocauc | mae
  double value = 0;          // the metric (accuracy and ROC-AUC as fractions in [0, 1])
  double loss = 0;           // mean loss per graph (graph_loss)
  double graphs_per_second = 0;  // graphs / seconds of forward passes only (collate not timed)
  double forward_seconds = 0;
  int64_t count = 0;         // graphs evaluated
};

// Runs the model on graphs `idx` of `ds` in batches of `batch_size` (in the given order) under
// c10::InferenceMode, BatchNorm with running statistics. InputError when idx is empty or a graph
// is out of range; the data must fit the model (check_graph_data_fits).
GraphEvalResult evaluate_graph(const Model& m, const GraphDataset& ds,
                               const std::vector<int64_t>& idx, int64_t batch_size = 128);

// Logits [n, out] (float32) of graphs `idx` in order, under InferenceMode.
torch::Tensor predict_graph_logits(const Model& m, const GraphDataset& ds,
                                   const std::vector<int64_t>& idx, int64_t batch_size = 128);

// Mean over graphs `idx` of the model's FLOPs per graph counted at each graph's own node and
// directed-edge counts (Family::costs with gps.mean_nodes / mean_edges set to that graph's; the
// attention term is quadratic in n, so this differs from the cost at the mean n).
double mean_graph_flops(const Model& m, const GraphDataset& ds, const std::vector<int64_t>& idx);

// The split's graph indices: "train", "valid" or "test" (InputError naming the known splits).
const std::vector<int64_t>& split_indices(const GraphData& d, const std::string& split);

// At most k of `idx`, evenly spaced (idx[i·n/k] for i < k; all of idx when k ≥ n or k ≤ 0):
// calibration graphs drawn without a random number generator, so the same on every platform.
std::vector<int64_t> spaced_subset(const std::vector<int64_t>& idx, int64_t k);

}  // namespace pare
