// Graph data sets by path, the OGB metrics (accuracy, ROC-AUC as ogb/graphproppred/evaluate.py,
// MAE), losses, and the evaluation of a gps model on a split. See graph_eval.h.
#include "tasks/graph_eval.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <utility>

#include "base/error.h"
#include "families/family.h"
#include "data/molecules.h"

namespace fs = std::filesystem;

namespace pare {

namespace {

// 64-bit FNV-1a of a string, hex: names a cache file after the CSV's absolute path.
std::string fnv_hex(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string default_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/pare";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/pare";
  return "";
}

// The cache file for a molecule CSV ("" when caching is off or no folder can be made).
std::string molecule_cache_path(const std::string& csv, const std::string& kind,
                                const std::string& cache_dir) {
  if (cache_dir == "none") return "";
  const std::string dir = cache_dir.empty() ? default_cache_dir() : cache_dir;
  if (dir.empty()) return "";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return "";  // an unwritable cache only costs time
  return dir + "/" + kind + "-" + fnv_hex(fs::absolute(csv).lexically_normal().string()) +
         ".graphs";
}

void all_split(GraphDataset& ds) {
  std::vector<int64_t> all(ds.size());
  for (int64_t i = 0; i < ds.size(); ++i) all[i] = i;
  ds.splits = {{"train", all}, {"valid", all}, {"test", all}};
}

std::string vocab_str(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

// 2-D float64 copy of y / predictions on the CPU.
torch::Tensor as_2d_double(const torch::Tensor& t) {
  torch::Tensor d = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  return d.dim() == 1 ? d.unsqueeze(1) : d;
}

// A shallow copy of `m` with BatchNorm in eval mode (tensors shared), when `m` is in training mode.
const Model& eval_mode(const Model& m, Model& holder) {
  if (!m.config.gps.training) return m;
  holder = m;
  holder.config.gps.training = false;
  return holder;
}

// The data's task must be the model's; with check_name, a model pare trained (gps.stats_dataset
// "X train split") takes only data set X.
void check_task_and_name(const GpsConfig& g, const std::string& name, const std::string& task,
                         const std::string& path, bool check_name) {
  const std::string trained_on = trained_on_dataset(g);
  PARE_CHECK(task == g.task, path, ": the data set ", name, " is a ", task,
             " task, the model was made for ", g.task,
             trained_on.empty() ? std::string() : " (trained on " + trained_on + ")");
  PARE_CHECK(!check_name || trained_on.empty() || trained_on == name, path, ": the data set is ",
             name, ", the model was trained on ", trained_on, " (config.json gps.stats_dataset: '",
             g.stats_dataset, "'); its metric on other data would mean nothing");
}

}  // namespace

std::string GraphData::describe() const {
  std::string s = concat(ds.name, " (", kind == "tu" ? "TU" : "MoleculeNet CSV", ", ", ds.size(),
                         " graphs, task ", ds.task, "), ");
  if (split == "random")
    s += concat("random 80/10/10 split, seed ", split_seed);
  else if (split == "scaffold")
    s += "scaffold split (OGB)";
  else
    s += "every graph in each split";
  auto n = [&](const char* k) { return ds.splits.count(k) ? ds.splits.at(k).size() : size_t(0); };
  return s + concat(" (train ", n("train"), " / valid ", n("valid"), " / test ", n("test"), ")");
}

GraphData load_graph_data(const std::string& path, const GraphDataOptions& opt) {
  GraphData d;
  d.path = path;
  PARE_CHECK(opt.rwse_steps >= 0 && opt.lappe_k >= 0, path,
             ": expected non-negative RWSE steps and LapPE k, got ", opt.rwse_steps, " and ",
             opt.lappe_k);
  std::error_code ec;
  // FOLDER/NAME where FOLDER holds NAME_A.txt: one of several TU data sets in one folder
  // (zinc/subset_tu/ZINC_test).
  const fs::path p(path);
  const bool tu_named = !fs::exists(p, ec) && !p.filename().empty() &&
                        fs::is_regular_file(p.parent_path() / (p.filename().string() + "_A.txt"), ec);
  if (fs::is_directory(path, ec) || tu_named) {
    PARE_CHECK(opt.split == "random" || opt.split == "all", path, ": split: expected random or ",
               "all for a TU data set (the scaffold split is for MoleculeNet CSVs), got '",
               opt.split, "'");
    d.ds = tu_named ? load_tu_dataset(p.parent_path().string(), p.filename().string())
                    : load_tu_dataset(path);
    d.kind = "tu";
    d.split = opt.split;
    if (opt.split == "random") {
      d.split_seed = opt.split_seed;
      random_split(d.ds, 0.8, 0.1, opt.split_seed);
    } else {
      all_split(d.ds);
    }
  } else {
    const std::string base = fs::path(path).filename().string();
    const std::string kind = base == "HIV.csv"                   ? "molhiv"
                             : base == "delaney-processed.csv" ? "molesol"
                                                               : "";
    PARE_CHECK(!kind.empty() && fs::is_regular_file(path, ec), path,
               ": expected a TU data set folder or a MoleculeNet HIV.csv / "
               "delaney-processed.csv, got ",
               fs::exists(path, ec) ? "another file" : "nothing (no such file or folder)");
    if (!opt.model_task.empty()) {  // before converting 41k molecules for nothing
      GpsConfig g;
      g.task = opt.model_task;
      g.stats_dataset = opt.model_stats_dataset;
      check_task_and_name(g, kind, molecule_task(kind), path, /*check_name=*/true);
    }
    d.ds = load_molecule_dataset(path, kind, molecule_cache_path(path, kind, opt.cache_dir));
    d.kind = kind;
    d.split = "scaffold";
  }
  for (const char* k : {"train", "valid", "test"})
    PARE_CHECK(d.ds.splits.count(k), path, ": the data set has no '", k, "' split");
  if (opt.rwse_steps > 0) compute_rwse(d.ds, opt.rwse_steps);
  if (opt.lappe_k > 0) compute_lappe(d.ds, opt.lappe_k);
  return d;
}

GraphDataOptions graph_data_options(const ArchConfig& c, const std::string& cache_dir) {
  GraphDataOptions o;
  o.cache_dir = cache_dir;
  o.split = c.gps.split == "all" ? "all" : "random";
  o.split_seed = c.gps.split_seed;
  o.rwse_steps = c.gps.rwse_steps;
  o.lappe_k = c.gps.lappe_k;
  o.model_task = c.gps.task;
  o.model_stats_dataset = c.gps.stats_dataset;
  return o;
}

namespace {
const std::string kTrainSplitSuffix = " train split";
}  // namespace

std::string train_split_label(const std::string& dataset) { return dataset + kTrainSplitSuffix; }

std::string trained_on_dataset(const GpsConfig& g) {
  const std::string& suffix = kTrainSplitSuffix;
  const std::string& s = g.stats_dataset;
  if (s.size() <= suffix.size() || s.compare(s.size() - suffix.size(), suffix.size(), suffix) != 0)
    return "";
  return s.substr(0, s.size() - suffix.size());
}

void check_graph_data_fits(const ArchConfig& c, const GraphDataset& ds, const std::string& path) {
  PARE_CHECK(c.is_graph(), path, ": graph data needs a graph model (gps), got family ", c.family);
  const GpsConfig& g = c.gps;
  check_task_and_name(g, ds.name, ds.task, path, /*check_name=*/false);
  if (ds.task == "classification")
    PARE_CHECK(ds.num_classes == c.num_labels, path, ": the data set ", ds.name, " has ",
               ds.num_classes, " classes, the model has ", c.num_labels, " outputs");
  else
    PARE_CHECK(c.num_labels == 1, path, ": the data set ", ds.name, " has one target per graph, ",
               "the model has ", c.num_labels, " outputs");
  auto check_cat = [&](const char* what, const std::string& encoder, int64_t data_cols,
                       const std::vector<int64_t>& data_vocab, const std::vector<int64_t>& vocab) {
    const bool type_dict = encoder.rfind("TypeDict", 0) == 0;
    const int64_t need = type_dict ? 1 : static_cast<int64_t>(vocab.size());
    PARE_CHECK(type_dict ? data_cols >= 1 : data_cols == need, path, ": the model's ", encoder,
               " encoder reads ", need, " categorical ", what, " feature column(s), the data set ",
               ds.name, " has ", data_cols);
    for (int64_t i = 0; i < need; ++i)
      PARE_CHECK(data_vocab[i] <= vocab[i], path, ": ", what, " feature column ", i, " of ",
                 ds.name, " has ", data_vocab[i], " categories, more than the model's ", encoder,
                 " vocabulary of ", vocab[i], " (data ", vocab_str(data_vocab), ", model ",
                 vocab_str(vocab), ")");
  };
  if (g.node_encoder == "LinearNode")
    PARE_CHECK(ds.node_attr_dims == g.node_attr_dims, path, ": the model's LinearNode encoder reads ",
               g.node_attr_dims, " dense node features, the data set ", ds.name, " has ",
               ds.node_attr_dims);
  else
    check_cat("node", g.node_encoder, ds.node_cat_dims, ds.node_vocab, g.node_vocab);
  if (g.edge_encoder != "None")
    check_cat("edge", g.edge_encoder, ds.edge_cat_dims, ds.edge_vocab, g.edge_vocab);
  PARE_CHECK(g.rwse_steps == 0 || ds.rwse_steps == g.rwse_steps, path, ": the model needs RWSE with ",
             g.rwse_steps, " steps, the data has ", ds.rwse_steps);
  PARE_CHECK(g.lappe_k == 0 || ds.lappe_dim == g.lappe_k, path, ": the model needs LapPE with k = ",
             g.lappe_k, ", the data has ", ds.lappe_dim);
  // Last: a shape mismatch above says more about what is wrong than the name does.
  check_task_and_name(g, ds.name, ds.task, path, /*check_name=*/true);
}

std::string graph_metric_label(const std::string& metric) {
  if (metric == "accuracy") return "accuracy %";
  if (metric == "rocauc") return "ROC-AUC %";
  if (metric == "mae") return "MAE";
  throw InputError(concat("graph metric: expected accuracy, rocauc or mae, got '", metric, "'"));
}

std::string graph_metric_name(const std::string& task) {
  if (task == "classification") return "accuracy";
  if (task == "binary") return "rocauc";
  if (task == "regression") return "mae";
  throw InputError(concat("graph task: expected classification, binary or regression, got '",
                          task, "'"));
}

bool metric_higher_is_better(const std::string& metric) { return metric != "mae"; }

torch::Tensor graph_loss(const std::string& task, const torch::Tensor& logits,
                         const torch::Tensor& y) {
  PARE_CHECK(logits.dim() == 2 && logits.size(0) == y.size(0), "graph_loss: logits [",
             logits.sizes(), "] and targets [", y.sizes(), "] disagree");
  if (task == "classification")
    return at::cross_entropy_loss(logits, y.to(torch::kLong));
  const torch::Tensor t = (y.dim() == 1 ? y.unsqueeze(1) : y).to(logits.scalar_type());
  PARE_CHECK(t.sizes() == logits.sizes(), "graph_loss: ", task, " needs one output per target, got ",
             "logits ", logits.sizes(), " for targets ", y.sizes());
  if (task == "binary") return at::binary_cross_entropy_with_logits(logits, t);
  if (task == "regression") return at::l1_loss(logits, t);
  throw InputError(concat("graph_loss: unknown task '", task, "'"));
}

double roc_auc(const std::vector<double>& scores, const std::vector<int>& labels) {
  PARE_CHECK(scores.size() == labels.size(), "roc_auc: ", scores.size(), " scores for ",
             labels.size(), " labels");
  const size_t n = scores.size();
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) {
    order[i] = i;
    PARE_CHECK(labels[i] == 0 || labels[i] == 1, "roc_auc: expected labels 0 or 1, got ",
               labels[i]);
    PARE_CHECK(!std::isnan(scores[i]), "roc_auc: score ", i, " is NaN");
  }
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  // Mann–Whitney U from ranks: tied scores share their average rank (1-based), which counts a
  // tied positive/negative pair as ½.
  double rank_sum_pos = 0;
  int64_t pos = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && scores[order[j]] == scores[order[i]]) ++j;
    const double avg_rank = 0.5 * double(i + 1 + j);  // mean of ranks i+1 .. j
    for (size_t k = i; k < j; ++k)
      if (labels[order[k]] == 1) {
        rank_sum_pos += avg_rank;
        ++pos;
      }
    i = j;
  }
  const int64_t neg = static_cast<int64_t>(n) - pos;
  PARE_CHECK(pos > 0 && neg > 0, "roc_auc: needs both classes, got ", pos, " positive and ", neg,
             " negative labels");
  return (rank_sum_pos - 0.5 * double(pos) * double(pos + 1)) / (double(pos) * double(neg));
}

double ogb_rocauc(const torch::Tensor& y_true, const torch::Tensor& y_pred) {
  const torch::Tensor yt = as_2d_double(y_true), yp = as_2d_double(y_pred);
  PARE_CHECK(yt.sizes() == yp.sizes(), "rocauc: y_true ", y_true.sizes(), " and y_pred ",
             y_pred.sizes(), " disagree");
  auto t = yt.accessor<double, 2>();
  auto p = yp.accessor<double, 2>();
  double sum = 0;
  int64_t tasks = 0;
  for (int64_t task = 0; task < yt.size(1); ++task) {
    std::vector<double> s;
    std::vector<int> l;
    int64_t pos = 0, neg = 0;
    for (int64_t i = 0; i < yt.size(0); ++i) {
      if (std::isnan(t[i][task])) continue;  // unlabeled (OGB: y_true == y_true is false)
      pos += t[i][task] == 1;
      neg += t[i][task] == 0;
      s.push_back(p[i][task]);
      l.push_back(t[i][task] == 1 ? 1 : t[i][task] == 0 ? 0 : -1);
    }
    if (pos == 0 || neg == 0) continue;  // OGB skips a task without both classes
    sum += roc_auc(s, l);
    ++tasks;
  }
  PARE_CHECK(tasks > 0, "rocauc: no task has both positive and negative labels (OGB: No ",
             "positively labeled data available. Cannot compute ROC-AUC.)");
  return sum / double(tasks);
}

double accuracy_of(const torch::Tensor& logits, const torch::Tensor& y) {
  PARE_CHECK(logits.dim() == 2 && logits.size(0) == y.size(0) && logits.size(0) > 0,
             "accuracy: logits ", logits.sizes(), " and labels ", y.sizes(), " disagree");
  return (logits.argmax(1).to(torch::kLong) == y.to(torch::kLong)).sum().item<double>() /
         double(y.size(0));
}

double mae_of(const torch::Tensor& pred, const torch::Tensor& y) {
  const torch::Tensor p = as_2d_double(pred), t = as_2d_double(y);
  PARE_CHECK(p.sizes() == t.sizes() && p.numel() > 0, "mae: predictions ", pred.sizes(),
             " and targets ", y.sizes(), " disagree");
  return (p - t).abs().mean().item<double>();
}

double graph_metric(const std::string& task, const torch::Tensor& logits, const torch::Tensor& y) {
  const std::string metric = graph_metric_name(task);
  if (metric == "accuracy") return accuracy_of(logits, y);
  if (metric == "rocauc") return ogb_rocauc(y, logits);
  return mae_of(logits, y);
}

namespace {

// Runs the model (BatchNorm in eval mode, under InferenceMode) on graphs `idx` in batches of
// `batch_size`, in order; fn(batch, logits [G, out] float32, forward seconds) per batch. The
// collation is not timed; one warm-up forward on the first batch runs untimed first.
template <class F>
void run_batches(const Model& model, const GraphDataset& ds, const std::vector<int64_t>& idx,
                 int64_t batch_size, F fn) {
  PARE_CHECK(!idx.empty(), ds.name, ": no graphs to evaluate (empty split or index list)");
  PARE_CHECK(batch_size > 0, "graph evaluation: batch size must be positive, got ", batch_size);
  Model holder;
  const Model& m = eval_mode(model, holder);
  check_graph_data_fits(m.config, ds, ds.name);
  c10::InferenceMode guard;
  // One untimed warm-up forward on the first batch: the first forward of a process pays one-off
  // costs (allocator growth, page faults, lazy initialisation) that would make whichever model
  // is measured first look slower.
  {
    const size_t end = std::min(idx.size(), static_cast<size_t>(batch_size));
    m.family().forward_graph(m, collate(ds, std::vector<int64_t>(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(end))));
  }
  for (size_t at = 0; at < idx.size(); at += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(idx.size(), at + static_cast<size_t>(batch_size));
    GraphBatch b = collate(ds, std::vector<int64_t>(idx.begin() + static_cast<std::ptrdiff_t>(at),
                                                    idx.begin() + static_cast<std::ptrdiff_t>(end)));
    const auto t0 = std::chrono::steady_clock::now();
    torch::Tensor out = m.family().forward_graph(m, b);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fn(b, out.to(torch::kFloat32), sec);
  }
}

}  // namespace

GraphEvalResult evaluate_graph(const Model& m, const GraphDataset& ds,
                               const std::vector<int64_t>& idx, int64_t batch_size) {
  const std::string task = m.config.gps.task;
  std::vector<torch::Tensor> logits, ys;
  double seconds = 0, loss_sum = 0;
  run_batches(m, ds, idx, batch_size, [&](const GraphBatch& b, const torch::Tensor& out, double s) {
    seconds += s;
    loss_sum += graph_loss(task, out, b.y).item<double>() * double(b.num_graphs);
    logits.push_back(out);
    ys.push_back(b.y);
  });
  GraphEvalResult r;
  r.metric = graph_metric_name(task);
  r.value = graph_metric(task, at::cat(logits, 0), at::cat(ys, 0));
  r.count = static_cast<int64_t>(idx.size());
  r.loss = loss_sum / double(r.count);
  r.forward_seconds = seconds;
  r.graphs_per_second = seconds > 0 ? double(r.count) / seconds : 0;
  return r;
}

torch::Tensor predict_graph_logits(const Model& m, const GraphDataset& ds,
                                   const std::vector<int64_t>& idx, int64_t batch_size) {
  std::vector<torch::Tensor> logits;
  run_batches(m, ds, idx, batch_size,
              [&](const GraphBatch&, const torch::Tensor& out, double) { logits.push_back(out); });
  return at::cat(logits, 0);
}

double mean_graph_flops(const Model& m, const GraphDataset& ds, const std::vector<int64_t>& idx) {
  PARE_CHECK(!idx.empty(), ds.name, ": no graphs to count FLOPs over");
  Model probe = m;  // shares the tensors; only the statistics in its config change
  probe.hooks = Hooks{};
  std::map<std::pair<int64_t, int64_t>, double> per_size;
  double sum = 0;
  for (int64_t i : idx) {
    PARE_CHECK(i >= 0 && i < ds.size(), ds.name, ": graph index ", i, " outside 0..", ds.size() - 1);
    const Graph& g = ds.graphs[static_cast<size_t>(i)];
    const std::pair<int64_t, int64_t> key{g.num_nodes, g.num_edges()};
    auto it = per_size.find(key);
    if (it == per_size.end()) {
      probe.config.gps.mean_nodes = double(key.first);
      probe.config.gps.mean_edges = double(key.second);
      double f = 0;
      for (const auto& row : probe.family().costs(probe)) f += double(row.flops);
      it = per_size.emplace(key, f).first;
    }
    sum += it->second;
  }
  return sum / double(idx.size());
}

const std::vector<int64_t>& split_indices(const GraphData& d, const std::string& split) {
  auto it = d.ds.splits.find(split);
  PARE_CHECK(it != d.ds.splits.end(), d.path, ": split '", split,
             "': expected train, valid or test");
  return it->second;
}

std::vector<int64_t> spaced_subset(const std::vector<int64_t>& idx, int64_t k) {
  const int64_t n = static_cast<int64_t>(idx.size());
  if (k <= 0 || k >= n) return idx;
  std::vector<int64_t> out(k);
  for (int64_t i = 0; i < k; ++i) out[i] = idx[i * n / k];
  return out;
}

}  // namespace pare
