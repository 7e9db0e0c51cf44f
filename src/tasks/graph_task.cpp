// Task graph: graph-level prediction on a TU data set folder or a MoleculeNet CSV (tasks/graph_eval.h)
// with the metric of the model's gps.task, as OGB / GraphGPS report it: accuracy
// (classification), ROC-AUC (binary, molhiv) or MAE (regression). The split is the one the model
// records (gps.split, split_seed; molecules: OGB's scaffold split), so `pare eval`, `pare
// compress` and `pare train` measure the same test graphs.
//
// Recipe: data: {dataset: graph, path: TU FOLDER | HIV.csv | delaney-processed.csv, eval_split:
// test, cache: FOLDER | none}, calibration: {samples: 1024} (train graphs, evenly spaced: no seed).
// eval.limit N measures N graphs evenly spaced over the split (its files group graphs by class).
// Training (pare train): data: {path, split: random | all, split_seed, cache}; the model section is
// completed from the data (task, output width, encoders and their vocabularies, split, graph
// statistics); epochs over a seeded permutation (limit_train: a seeded subset, kept in index
// order), the last batch partial, BatchNorm in training mode, loss by task (cross-entropy / BCE
// with logits / L1); after each epoch the valid and test metric; the loop keeps the epoch with the
// best validation metric (as GraphGPS reports test at best validation).
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "base/error.h"
#include "base/recipe.h"
#include "data/graph_data.h"
#include "families/family.h"
#include "tasks/graph_eval.h"
#include "tasks/task.h"

namespace pare {
namespace {

int64_t json_int(const nlohmann::json& o, const char* key, int64_t def) {
  return o.is_object() && o.contains(key) && o[key].is_number_integer() ? o[key].get<int64_t>() : def;
}
std::string json_str(const nlohmann::json& o, const char* key, const std::string& def) {
  return o.is_object() && o.contains(key) && o[key].is_string() ? o[key].get<std::string>() : def;
}

class GraphTask : public Task {
 public:
  struct Spec {
    std::string path, eval_split = "test", cache, split = "random";
    uint64_t split_seed = 0;
    int64_t calib_samples = 1024;
  };
  explicit GraphTask(Spec s) : s_(std::move(s)) {}

  std::string name() const override { return "graph"; }
  std::vector<MetricSpec> metrics() const override {
    PARE_ASSERT(!metric_.empty(), "graph task: metrics() before load or prepare_training");
    if (metric_ == "mae") return {{"mae", "MAE", "target unit", false, false, "absolute", {"max"}, false, 4}};
    return {{metric_, graph_metric_label(metric_), "fraction", true, true, "points", {"max_drop", "min"}, false, 2}};
  }
  std::string flops_unit() const override { return "graph"; }
  std::string flops_counted() const override {
    return "2 x MACs per graph, averaged over the evaluated graphs at each graph's own node "
           "and edge counts: node-wise linears (encoders, local MPNN, Q/K/V/O, FFN) per node, "
           "GatedGCN edge linear per edge, attention QK^T and AV per node pair of a graph, "
           "head once; embeddings, norms, softmax, activations, sums excluded";
  }
  std::string data_path() const override { return s_.path; }

  void load(const Model& m, const std::string&, const EvalSettings& eval, bool,
            const std::function<void(const std::string&)>& log) override {
    PARE_CHECK(!s_.path.empty(), "/data/path: a graph model needs its data set (a TU folder, HIV.csv "
               "or delaney-processed.csv)");
    data_ = load_graph_data(s_.path, graph_data_options(m.config, s_.cache));
    check_graph_data_fits(m.config, data_.ds, s_.path);
    metric_ = graph_metric_name(m.config.gps.task);
    idx_ = split_indices(data_, s_.eval_split);
    // eval.limit: an evenly spaced subset, not the first N (a split lists its graphs in file
    // order, and TU files group them by class: NCI1's first 165 test graphs are all class 0).
    if (eval.limit > 0 && static_cast<int64_t>(idx_.size()) > eval.limit) idx_ = spaced_subset(idx_, eval.limit);
    calib_idx_ = spaced_subset(split_indices(data_, "train"), s_.calib_samples);
    log(concat(idx_.size(), " ", s_.eval_split, " graphs of ", data_.describe()));
  }
  std::string describe_markdown() const override {
    return concat("- graphs: ", s_.path, ": ", data_.describe(), "; measured on the ", s_.eval_split,
                  " split (", idx_.size(), " graphs, the split recorded in the model's config)\n",
                  "- calibration (passes that need it): ", calib_idx_.size(),
                  " train graphs, evenly spaced over the train split (no seed)\n");
  }
  nlohmann::json describe() const override {
    nlohmann::json splits = nlohmann::json::object();
    for (const char* k : {"train", "valid", "test"})
      if (data_.ds.splits.count(k)) splits[k] = {{"size", data_.ds.splits.at(k).size()}};
    return {{"name", name()},
            {"data", s_.path},
            {"data_description", data_.describe()},
            {"split", data_.split},
            {"split_seed", data_.split_seed},
            {"splits", splits},
            {"measured_split", s_.eval_split},
            {"measured_graphs", idx_.size()},
            {"calibration", {{"samples", calib_idx_.size()}, {"drawn", "evenly spaced over the train split"}}}};
  }

  Measurement measure(const Model& m, const EvalSettings& eval, const Model*) const override {
    const GraphEvalResult r = evaluate_graph(m, data_.ds, idx_, eval.batch_size);
    Measurement out;
    out.metrics[metric_] = r.value;
    out.extra["loss"] = r.loss;
    out.samples = static_cast<int64_t>(idx_.size());
    out.samples_unit = "graphs";
    out.throughput = r.graphs_per_second;
    out.throughput_unit = "graphs/s";
    out.eval_seconds = r.forward_seconds;
    out.flops = static_cast<double>(std::llround(mean_graph_flops(m, data_.ds, idx_)));
    return out;
  }

  // Graphs are padded to the largest of each batch for attention: GraphGPS's batch of 32 keeps
  // that padding small.
  int64_t default_eval_batch_size() const override { return 32; }

  CalibrationSet calibration(const Model&, const std::string& pass) const override {
    PARE_CHECK(!calib_idx_.empty(), pass, ": no calibration graphs (the train split is empty)");
    CalibrationSet s;
    s.graphs = &data_.ds;
    s.graph_idx = calib_idx_;
    return s;
  }

  void prepare_training(nlohmann::json& mj, const TrainOptions&, std::vector<std::string>& problems,
                        const std::function<void(const std::string&)>& log) override {
    if (!mj.contains("gps")) mj["gps"] = nlohmann::json::object();
    nlohmann::json& gj = mj["gps"];
    if (!gj.is_object()) problems.push_back("/model/gps: expected a mapping");
    if (s_.path.empty())
      problems.push_back("/data/path: expected the data set: a TU folder, HIV.csv or delaney-processed.csv");
    if (!problems.empty()) return;
    GraphDataOptions go;
    go.split = s_.split;
    go.split_seed = s_.split_seed;
    go.cache_dir = s_.cache;
    go.rwse_steps = std::max<int64_t>(0, json_int(gj, "rwse_steps", 0));
    go.lappe_k = std::max<int64_t>(0, json_int(gj, "lappe_k", 0));
    const auto t_data = std::chrono::steady_clock::now();
    data_ = load_graph_data(s_.path, go);
    data_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_data).count();
    const GraphDataset& ds = data_.ds;
    // Complete the model section from the data.
    const bool molecules = data_.kind != "tu";
    const std::string local = json_str(gj, "local_model", "GINE");
    if (!gj.contains("task")) gj["task"] = ds.task;
    if (!mj.contains("num_labels")) mj["num_labels"] = ds.task == "classification" ? ds.num_classes : 1;
    if (!gj.contains("node_encoder"))
      gj["node_encoder"] = molecules ? "Atom" : ds.node_cat_dims > 0 ? "TypeDictNode" : "LinearNode";
    const std::string node_enc = json_str(gj, "node_encoder", "");
    if (node_enc == "LinearNode" && !gj.contains("node_attr_dims")) gj["node_attr_dims"] = ds.node_attr_dims;
    if (node_enc == "TypeDictNode" && !gj.contains("node_vocab") && ds.node_cat_dims > 0)
      gj["node_vocab"] = std::vector<int64_t>{ds.node_vocab[0]};
    if (node_enc == "Atom" && !gj.contains("node_vocab")) gj["node_vocab"] = ds.node_vocab;
    const bool reads_edges = local == "GINE" || local == "CustomGatedGCN";
    if (!gj.contains("edge_encoder"))
      gj["edge_encoder"] = !reads_edges || ds.edge_cat_dims == 0 ? "None" : molecules ? "Bond" : "TypeDictEdge";
    const std::string edge_enc = json_str(gj, "edge_encoder", "");
    if (edge_enc == "TypeDictEdge" && !gj.contains("edge_vocab") && ds.edge_cat_dims > 0)
      gj["edge_vocab"] = std::vector<int64_t>{ds.edge_vocab[0]};
    if (edge_enc == "Bond" && !gj.contains("edge_vocab")) gj["edge_vocab"] = ds.edge_vocab;
    const GraphStats st = graph_stats(ds, ds.splits.at("train"));
    gj["stats_dataset"] = train_split_label(ds.name);
    gj["mean_nodes"] = st.mean_nodes;
    gj["mean_edges"] = st.mean_edges;
    gj["max_nodes"] = st.max_nodes;
    gj["max_edges"] = st.max_edges;
    gj["split"] = data_.split;
    gj["split_seed"] = data_.split_seed;
    metric_ = graph_metric_name(json_str(gj, "task", ds.task));
    log(concat(data_.describe(), "; read in ", data_seconds_, " s"));
  }

  void prepare_fine_tuning(const Model& m, const std::function<void(const std::string&)>& log) override {
    PARE_CHECK(!s_.path.empty(), "/data/path: fine-tuning a graph model needs its data set");
    PARE_CHECK(m.config.gps.split == "random" || m.config.gps.split == "scaffold", s_.path,
               ": the model records no training split (config.json gps.split '", m.config.gps.split,
               "'), so its test graphs cannot be kept out of fine-tuning");
    const auto t_data = std::chrono::steady_clock::now();
    data_ = load_graph_data(s_.path, graph_data_options(m.config, s_.cache));
    data_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_data).count();
    check_graph_data_fits(m.config, data_.ds, s_.path);
    metric_ = graph_metric_name(m.config.gps.task);
    log(concat("fine-tuning data: ", data_.describe()));
  }

  TrainPlan begin_training(const Model& m, const TrainOptions& o, torch::Generator& gen) override {
    const GraphDataset& ds = data_.ds;
    check_graph_data_fits(m.config, ds, s_.path);
    for (const char* k : {"train", "valid", "test"})
      PARE_CHECK(ds.splits.count(k) && !ds.splits.at(k).empty(), ds.name, ": the '", k,
                 "' split is missing or empty");
    opt_ = o;
    task_ = m.config.gps.task;
    metric_ = graph_metric_name(task_);
    train_ = ds.splits.at("train");
    if (o.limit_train >= 0 && o.limit_train < static_cast<int64_t>(train_.size())) {
      // A seeded subset of the training split (the same for a seed), kept in index order.
      torch::Tensor perm = torch::randperm(static_cast<int64_t>(train_.size()), gen, torch::kLong);
      std::vector<int64_t> sub;
      for (int64_t i = 0; i < o.limit_train; ++i) sub.push_back(train_[perm[i].item<int64_t>()]);
      std::sort(sub.begin(), sub.end());
      train_ = std::move(sub);
    }
    n_ = static_cast<int64_t>(train_.size());
    PARE_CHECK(n_ > 0, ds.name, ": no training graphs");
    return {o.epochs, (n_ + o.batch_size - 1) / o.batch_size, "graphs"};
  }
  void begin_epoch(int, torch::Generator& gen) override { perm_ = torch::randperm(n_, gen, torch::kLong); }
  TaskBatch train_batch(int64_t s, torch::Generator&) override {
    const int64_t* pp = perm_.data_ptr<int64_t>();
    const int64_t lo = s * opt_.batch_size, hi = std::min(n_, lo + opt_.batch_size);
    std::vector<int64_t> idx;
    idx.reserve(static_cast<size_t>(hi - lo));
    for (int64_t i = lo; i < hi; ++i) idx.push_back(train_[static_cast<size_t>(pp[i])]);
    TaskBatch b;
    b.graphs = std::make_shared<GraphBatch>(collate(data_.ds, idx));
    b.targets = b.graphs->y;
    b.size = b.units = hi - lo;
    return b;
  }
  torch::Tensor forward(const Model& m, const TaskBatch& b) const override {
    return m.family().forward_graph(m, *b.graphs);
  }
  torch::Tensor loss(const torch::Tensor& logits, const TaskBatch& b) const override {
    return graph_loss(task_, logits, b.targets);
  }
  void set_training(Model& m, bool on) const override { m.config.gps.training = on; }
  std::optional<EpochEval> end_epoch(const Model& m, int) const override {
    GraphEvalResult v = evaluate_graph(m, data_.ds, data_.ds.splits.at("valid"), opt_.eval_batch_size);
    GraphEvalResult t = evaluate_graph(m, data_.ds, data_.ds.splits.at("test"), opt_.eval_batch_size);
    EpochEval e;
    e.valid = v.value;
    e.figures = {{"valid_" + metric_, v.value}, {"valid_loss", v.loss}, {"test_" + metric_, t.value},
                 {"test_loss", t.loss}};
    char line[200];
    std::snprintf(line, sizeof line, "valid %s %.4f loss %.4f | test %s %.4f loss %.4f", metric_.c_str(),
                  v.value, v.loss, metric_.c_str(), t.value, t.loss);
    e.line = line;
    return e;
  }
  nlohmann::json final_figures(const Model& m) const override {
    // The kept (best validation) weights, measured again as `pare eval` will.
    GraphEvalResult valid = evaluate_graph(m, data_.ds, data_.ds.splits.at("valid"), opt_.eval_batch_size);
    GraphEvalResult test = evaluate_graph(m, data_.ds, data_.ds.splits.at("test"), opt_.eval_batch_size);
    int64_t flops = 0;
    for (const auto& row : m.family().costs(m)) flops += row.flops;
    return {{"data", s_.path},
            {"data_description", data_.describe()},
            {"data_seconds", data_seconds_},
            {"train_graphs", n_},
            {"metric", metric_},
            {"valid_" + metric_, valid.value},
            {"valid_loss", valid.loss},
            {"test_" + metric_, test.value},
            {"test_loss", test.loss},
            {"flops_per_graph_at_mean", flops}};
  }

 private:
  Spec s_;
  GraphData data_;
  std::string metric_, task_;
  std::vector<int64_t> idx_, calib_idx_, train_;
  double data_seconds_ = 0;
  TrainOptions opt_;
  int64_t n_ = 0;
  torch::Tensor perm_;
};

}  // namespace

TaskInfo graph_task_info() {
  TaskInfo t;
  t.name = "graph";
  t.dataset = "graph";
  t.fits = [](const ArchConfig& c) { return c.is_graph(); };
  t.parse = [](const nlohmann::json& data, const nlohmann::json& calib, bool training,
               std::vector<std::string>& problems) {
    GraphTask::Spec s;
    FieldReader d(data, "/data", problems);
    d.string("dataset", "");
    d.string("task", "");
    s.path = d.string("path", "");
    s.cache = d.string("cache", "");
    s.eval_split = d.string("eval_split", "test", {"train", "valid", "test"});
    s.split = d.string("split", "random", {"random", "all"});
    s.split_seed = static_cast<uint64_t>(d.integer("split_seed", 0, 0));
    d.reject_unknown();
    if (!training && s.path.empty())
      d.problem("path", "missing: a graph model needs its data set, a TU data set folder or a "
                        "MoleculeNet CSV (HIV.csv, delaney-processed.csv); --data gives it too");
    FieldReader c(calib, "/calibration", problems);
    s.calib_samples = c.integer("samples", 1024, 1, 1 << 24);
    c.reject_unknown();
    return std::unique_ptr<Task>(new GraphTask(std::move(s)));
  };
  return t;
}

}  // namespace pare
