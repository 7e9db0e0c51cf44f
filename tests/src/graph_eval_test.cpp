// graph_eval: ROC-AUC against hand-computed cases with ties (sklearn's documented example) and
// against a brute-force count of positive/negative pairs written here; OGB's multi-task rule
// (NaN = unlabeled, tasks without both classes skipped); accuracy, MAE and the three losses by
// hand; BatchNorm in training mode against torch.nn.functional.batch_norm's definition written
// out (batch mean, biased variance for the output, running stats with momentum 0.1 and the
// unbiased variance); data by path (TU random split recorded in the config, bad paths, data that
// does not fit a model); evaluate_graph against an argmax / cross-entropy computed here, and
// FLOPs per graph averaged at each graph's own size against the hand formula.
#include "tasks/graph_eval.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "families/family.h"
#include "families/gps.h"
#include "test_util.h"

namespace {

using namespace pare;
using namespace pare_test;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string shared(const std::string& rel) {
  const char* e = std::getenv("PARE_SHARED_DATA");
  if (!e || !*e) return "";
  const std::string p = std::string(e) + "/" + rel;
  return std::filesystem::exists(p) ? p : "";
}

#define SHARED_OR_SKIP(var, rel)                                           \
  const std::string var = shared(rel);                                     \
  if (var.empty()) GTEST_SKIP() << "shared data " << rel << " not found (PARE_SHARED_DATA)"

// AUC as the fraction of (positive, negative) pairs ranked correctly, ties ½: the definition,
// O(n²), independent of roc_auc's rank formula.
double brute_auc(const std::vector<double>& s, const std::vector<int>& y) {
  double good = 0, pairs = 0;
  for (size_t i = 0; i < s.size(); ++i)
    for (size_t j = 0; j < s.size(); ++j)
      if (y[i] == 1 && y[j] == 0) {
        pairs += 1;
        good += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
      }
  return good / pairs;
}

TEST(GraphEvalMetrics, RocAucByHandWithTies) {
  // sklearn.metrics.roc_auc_score documentation example: 0.75.
  EXPECT_DOUBLE_EQ(roc_auc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}), 0.75);
  // Positives 0.35, 0.8, 0.4; negatives 0.1, 0.4. Pairs: (0.35,0.1)=1 (0.35,0.4)=0 (0.8,0.1)=1
  // (0.8,0.4)=1 (0.4,0.1)=1 (0.4,0.4)=½ → 4.5 / 6.
  EXPECT_DOUBLE_EQ(roc_auc({0.1, 0.4, 0.35, 0.8, 0.4}, {0, 0, 1, 1, 1}), 0.75);
  // Every score equal: ½. Perfect and reversed rankings: 1 and 0.
  EXPECT_DOUBLE_EQ(roc_auc({2, 2, 2, 2}, {0, 1, 0, 1}), 0.5);
  EXPECT_DOUBLE_EQ(roc_auc({-3, -1, 0.5, 7}, {0, 0, 1, 1}), 1.0);
  EXPECT_DOUBLE_EQ(roc_auc({-3, -1, 0.5, 7}, {1, 1, 0, 0}), 0.0);
  // Three tied groups: scores 1,1 | 2,2,2 | 3 with labels 0,1 | 0,1,1 | 0. Positives: 1, 2, 2;
  // negatives: 1, 2, 3. Positive 1: ½ + 0 + 0; each positive 2: 1 + ½ + 0 → (0.5 + 3) / 9.
  EXPECT_DOUBLE_EQ(roc_auc({1, 1, 2, 2, 2, 3}, {0, 1, 0, 1, 1, 0}), 3.5 / 9.0);
}

TEST(GraphEvalMetrics, RocAucMatchesBruteForcePairCount) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    const int n = 50 + 37 * trial;
    std::vector<double> s(n);
    std::vector<int> y(n);
    for (int i = 0; i < n; ++i) {
      // Coarse scores (many ties), labels skewed like molhiv (~ 1 in 8 positive) and correlated.
      y[i] = (rng() % 8 == 0) ? 1 : 0;
      s[i] = std::round((double(rng() % 1000) / 1000.0 + 0.3 * y[i]) * 10.0) / 10.0;
    }
    if (std::count(y.begin(), y.end(), 1) == 0) y[0] = 1;
    EXPECT_NEAR(roc_auc(s, y), brute_auc(s, y), 1e-12) << "trial " << trial;
  }
}

TEST(GraphEvalMetrics, RocAucNeedsBothClasses) {
  EXPECT_INPUT_ERROR(roc_auc({0.1, 0.2}, {1, 1}), HasSubstr("needs both classes"));
  EXPECT_INPUT_ERROR(roc_auc({0.1, 0.2}, {0, 2}), HasSubstr("expected labels 0 or 1"));
}

TEST(GraphEvalMetrics, OgbRocAucSkipsUnlabeledAndOneClassTasks) {
  const double nan = std::nan("");
  // Task 0: labels 0,1,1,NaN,0 with scores .2,.9,.1,.5,.3: the NaN row is dropped; positives
  // .9, .1, negatives .2, .3 → (1 + 1 + 0 + 0) / 4 = 0.5. Task 1: all 1 (no negative): skipped.
  // Task 2: labels 1,0,NaN,0,1, scores .7,.1,.0,.7,.8 → positives .7, .8, negatives .1, .7 →
  // (1 + ½ + 1 + 1) / 4 = 0.875. Mean over tasks 0 and 2: 0.6875.
  auto col = [](std::vector<double> v) { return torch::tensor(v, torch::kFloat64); };
  torch::Tensor yt = torch::stack({col({0, 1, 1, nan, 0}), col({1, 1, 1, 1, 1}),
                                   col({1, 0, nan, 0, 1})}, 1);
  torch::Tensor yp = torch::stack({col({.2, .9, .1, .5, .3}), col({.1, .2, .3, .4, .5}),
                                   col({.7, .1, .0, .7, .8})}, 1);
  EXPECT_DOUBLE_EQ(ogb_rocauc(yt, yp), 0.6875);
  // One task as a vector (molhiv).
  EXPECT_DOUBLE_EQ(ogb_rocauc(torch::tensor({0.f, 0.f, 1.f, 1.f}), torch::tensor({.1f, .4f, .35f, .8f})),
                   0.75);
  EXPECT_INPUT_ERROR(ogb_rocauc(torch::tensor({1.f, 1.f}), torch::tensor({.1f, .4f})),
                     HasSubstr("No positively labeled data"));
}

TEST(GraphEvalMetrics, AccuracyMaeAndLossesByHand) {
  torch::Tensor logits = torch::tensor({2.0f, 1.0f, 0.0f, 0.5f, 3.0f, 0.0f}).view({3, 2});
  torch::Tensor y = torch::tensor({0, 1, 1}, torch::kLong);
  EXPECT_DOUBLE_EQ(accuracy_of(logits, y), 2.0 / 3.0);  // argmax 0, 1, 0
  EXPECT_DOUBLE_EQ(graph_metric("classification", logits, y), 2.0 / 3.0);
  // Cross-entropy: mean of log(1 + e^(other − own)): rows (2, 1) class 0, (0, 0.5) class 1,
  // (3, 0) class 1.
  const double ce = (std::log1p(std::exp(-1.0)) + std::log1p(std::exp(-0.5)) +
                     std::log1p(std::exp(3.0))) / 3.0;
  EXPECT_NEAR(graph_loss("classification", logits, y).item<double>(), ce, 1e-6);
  // BCE with logits: −[t log σ(z) + (1 − t) log(1 − σ(z))].
  torch::Tensor z = torch::tensor({0.3f, -1.2f}).view({2, 1});
  torch::Tensor t = torch::tensor({1.0f, 0.0f});
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  const double bce = -(std::log(sig(0.3)) + std::log(1 - sig(-1.2))) / 2.0;
  EXPECT_NEAR(graph_loss("binary", z, t).item<double>(), bce, 1e-6);
  // L1 and MAE: |1.5 − 1| + |−2 − 0.5| → 1.5.
  torch::Tensor p = torch::tensor({1.5f, -2.0f}).view({2, 1});
  torch::Tensor r = torch::tensor({1.0f, 0.5f});
  EXPECT_NEAR(graph_loss("regression", p, r).item<double>(), 1.5, 1e-7);
  EXPECT_NEAR(mae_of(p, r), 1.5, 1e-7);
  EXPECT_EQ(graph_metric_name("binary"), "rocauc");
  // One heading per metric in every table (eval, compress's report, the benches).
  EXPECT_EQ(graph_metric_label("accuracy"), "accuracy %");
  EXPECT_EQ(graph_metric_label("rocauc"), "ROC-AUC %");
  EXPECT_EQ(graph_metric_label("mae"), "MAE");
  EXPECT_INPUT_ERROR(graph_metric_label("auc"), HasSubstr("'auc'"));
  EXPECT_FALSE(metric_higher_is_better("mae"));
}

// GIN + Transformer, hidden 8, one layer of 2 heads, FFN 16, TypeDictNode over 3 node types, no
// edge features, 2 classes, RWSE with K = dim = `rwse` (0: none).
ArchConfig tiny_gin_config(int64_t rwse) {
  ArchConfig c = gps_default_config();
  c.hidden_size = 8;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_labels = 2;
  c.gps.local_model = "GIN";
  c.gps.edge_encoder = "None";
  c.gps.node_vocab = {3};
  c.gps.rwse_steps = c.gps.rwse_dim = rwse;
  c.finalize("test");
  return c;
}

// The tiny model with RWSE 3 whose RWSE linear is the identity, so the RWSE BatchNorm's output
// shows in the residual stream (columns d − K .. d − 1 of site 0).
Model rwse_probe_model() {
  Model m = gps_family().init(tiny_gin_config(3), 3);
  m.dense("rwse_lin").weight.copy_(torch::eye(3));
  m.dense("rwse_lin").bias.zero_();
  m.at("rwse_norm.weight").copy_(torch::tensor({1.5f, 0.5f, 2.0f}));
  m.at("rwse_norm.bias").copy_(torch::tensor({0.1f, -0.2f, 0.3f}));
  m.at("rwse_norm.running_mean").copy_(torch::tensor({0.2f, 0.1f, 0.0f}));
  m.at("rwse_norm.running_var").copy_(torch::tensor({1.0f, 2.0f, 0.5f}));
  return m;
}

GraphBatch two_graph_batch(const torch::Tensor& rwse) {
  GraphBatch b;
  b.num_graphs = 2;
  b.node_cat = torch::tensor({0, 1, 2, 1, 0}, torch::kLong).view({5, 1});
  b.edge_index = torch::tensor({0, 1, 3, 4, 1, 0, 4, 3}, torch::kLong).view({2, 4});
  b.batch = torch::tensor({0, 0, 0, 1, 1}, torch::kLong);
  b.ptr = torch::tensor({0, 3, 5}, torch::kLong);
  b.y = torch::tensor({0, 1}, torch::kLong);
  b.rwse = rwse;
  return b;
}

TEST(GraphEvalBatchNorm, TrainingStepMatchesTorchBatchNormDefinition) {
  Model m = rwse_probe_model();
  const std::vector<std::vector<double>> r = {
      {0.0, 0.5, 0.25}, {1.0, 0.0, 0.5}, {0.5, 0.5, 0.0}, {0.0, 1.0, 1.0}, {0.25, 0.0, 0.75}};
  torch::Tensor rw = torch::empty({5, 3});
  for (int i = 0; i < 5; ++i)
    for (int k = 0; k < 3; ++k) rw[i][k] = r[i][k];
  GraphBatch b = two_graph_batch(rw);
  torch::Tensor site0;
  m.hooks.observers.push_back([&](HookPoint p, int64_t i, torch::Tensor& x) {
    if (p == HookPoint::kResidual && i == 0) site0 = x.detach().clone();
  });
  const double gamma[3] = {1.5, 0.5, 2.0}, beta[3] = {0.1, -0.2, 0.3}, rm0[3] = {0.2, 0.1, 0.0},
               rv0[3] = {1.0, 2.0, 0.5}, eps = 1e-5;
  // Eval mode: running statistics, unchanged afterwards.
  m.family().forward_graph(m, b);
  for (int i = 0; i < 5; ++i)
    for (int k = 0; k < 3; ++k)
      EXPECT_NEAR(site0[i][5 + k].item<double>(),
                  (r[i][k] - rm0[k]) / std::sqrt(rv0[k] + eps) * gamma[k] + beta[k], 1e-5);
  EXPECT_NEAR(m.at("rwse_norm.running_mean")[0].item<double>(), 0.2, 1e-7);
  // Training mode: batch mean and biased variance normalise; running mean ← 0.9·old + 0.1·mean,
  // running var ← 0.9·old + 0.1·unbiased var (n − 1 = 4).
  m.config.gps.training = true;
  m.family().forward_graph(m, b);
  for (int k = 0; k < 3; ++k) {
    double mean = 0, ss = 0;
    for (int i = 0; i < 5; ++i) mean += r[i][k] / 5.0;
    for (int i = 0; i < 5; ++i) ss += (r[i][k] - mean) * (r[i][k] - mean);
    for (int i = 0; i < 5; ++i)
      EXPECT_NEAR(site0[i][5 + k].item<double>(),
                  (r[i][k] - mean) / std::sqrt(ss / 5.0 + eps) * gamma[k] + beta[k], 1e-5);
    EXPECT_NEAR(m.at("rwse_norm.running_mean")[k].item<double>(), 0.9 * rm0[k] + 0.1 * mean, 1e-6);
    EXPECT_NEAR(m.at("rwse_norm.running_var")[k].item<double>(), 0.9 * rv0[k] + 0.1 * ss / 4.0,
                1e-6);
  }
  // Gradients flow through the batch statistics into γ.
  m.set_requires_grad(true);
  torch::Tensor out = m.family().forward_graph(m, b);
  out.sum().backward();
  EXPECT_TRUE(m.at("rwse_norm.weight").grad().defined());
  EXPECT_FALSE(m.at("rwse_norm.running_mean").requires_grad());
  // evaluate / predict force eval mode on a model left in training mode.
  m.set_requires_grad(false);
}

TEST(GraphEvalData, TuRandomSplitRecordedAndBadPaths) {
  SHARED_OR_SKIP(dir, "tudatasets/MUTAG");
  GraphDataOptions o;
  o.split_seed = 3;
  o.rwse_steps = 4;
  GraphData d = load_graph_data(dir, o);
  EXPECT_EQ(d.kind, "tu");
  EXPECT_EQ(d.split, "random");
  // 188 graphs: round(150.4) = 150 train, round(18.8) = 19 valid, 19 test.
  EXPECT_EQ(split_indices(d, "train").size(), 150u);
  EXPECT_EQ(split_indices(d, "valid").size(), 19u);
  EXPECT_EQ(split_indices(d, "test").size(), 19u);
  EXPECT_EQ(d.ds.rwse_steps, 4);
  EXPECT_THAT(d.describe(), AllOf(HasSubstr("MUTAG"), HasSubstr("seed 3")));
  GraphDataset again = load_tu_dataset(dir);
  random_split(again, 0.8, 0.1, 3);
  EXPECT_EQ(split_indices(d, "test"), again.splits.at("test"));
  // A model's options reproduce its split.
  ArchConfig c = rwse_probe_model().config;
  c.gps.split = "random";
  c.gps.split_seed = 3;
  GraphDataOptions mo = graph_data_options(c);
  EXPECT_EQ(mo.split_seed, 3u);
  EXPECT_EQ(mo.rwse_steps, 3);
  EXPECT_EQ(load_graph_data(dir, mo).ds.splits.at("test"), again.splits.at("test"));
  o.split = "all";
  EXPECT_EQ(split_indices(load_graph_data(dir, o), "test").size(), 188u);
  EXPECT_INPUT_ERROR(split_indices(d, "dev"), HasSubstr("expected train, valid or test"));
  // Bad paths: missing, a CSV of another name, a wrong split kind for TU data.
  EXPECT_INPUT_ERROR(load_graph_data("/nonexistent/NCI1"),
                     AllOf(HasSubstr("/nonexistent/NCI1"), HasSubstr("no such file or folder")));
  TempDir tmp;
  write_bytes(tmp.file("other.csv"), "smiles,y\nCC,1\n");
  EXPECT_INPUT_ERROR(load_graph_data(tmp.file("other.csv")),
                     HasSubstr("HIV.csv / delaney-processed.csv, got another file"));
  o.split = "scaffold";
  EXPECT_INPUT_ERROR(load_graph_data(dir, o), HasSubstr("scaffold split is for MoleculeNet"));
}

TEST(GraphEvalData, EsolScaffoldSplitThroughTheCache) {
  SHARED_OR_SKIP(csv, "moleculenet/delaney-processed.csv");
  TempDir tmp;
  GraphDataOptions o;
  o.cache_dir = tmp.path();
  GraphData d = load_graph_data(csv, o);
  EXPECT_EQ(d.kind, "molesol");
  EXPECT_EQ(d.split, "scaffold");
  EXPECT_EQ(d.ds.task, "regression");
  EXPECT_EQ(split_indices(d, "train").size(), 902u);  // molecules.h: 902 / 113 / 113
  EXPECT_EQ(split_indices(d, "test").size(), 113u);
  int caches = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path()))
    caches += e.path().filename().string().rfind("molesol-", 0) == 0;
  EXPECT_EQ(caches, 1);
  GraphData again = load_graph_data(csv, o);  // from the cache
  EXPECT_EQ(again.ds.splits, d.ds.splits);
}

TEST(GraphEvalData, DataThatDoesNotFitTheModel) {
  SHARED_OR_SKIP(mutag, "tudatasets/MUTAG");  // 7 node labels, 4 edge labels, 2 classes
  SHARED_OR_SKIP(enzymes, "tudatasets/ENZYMES");  // 3 node labels, 6 classes
  SHARED_OR_SKIP(zinc_dir, "zinc/subset_tu");  // ZINC_test: regression
  const std::string zinc = zinc_dir + "/ZINC_test";
  ArchConfig c = rwse_probe_model().config;       // TypeDictNode vocab 3, 2 classes, RWSE 3
  GraphDataOptions o;
  o.rwse_steps = 3;
  EXPECT_INPUT_ERROR(check_graph_data_fits(c, load_graph_data(mutag, o).ds, mutag),
                     AllOf(HasSubstr(mutag), HasSubstr("7 categories, more than the model's "
                                                       "TypeDictNode vocabulary of 3")));
  EXPECT_INPUT_ERROR(check_graph_data_fits(c, load_graph_data(enzymes, o).ds, enzymes),
                     HasSubstr("has 6 classes, the model has 2 outputs"));
  o.split = "all";
  EXPECT_INPUT_ERROR(check_graph_data_fits(c, load_graph_data(zinc, o).ds, zinc),
                     HasSubstr("is a regression task, the model was made for classification"));
  o.split = "random";
  o.rwse_steps = 0;
  c.gps.node_vocab = {7};
  EXPECT_INPUT_ERROR(check_graph_data_fits(c, load_graph_data(mutag, o).ds, mutag),
                     HasSubstr("needs RWSE with 3 steps, the data has 0"));
}

TEST(GraphEvalRun, EvaluateMatchesArgmaxAndCrossEntropyComputedHere) {
  SHARED_OR_SKIP(dir, "tudatasets/MUTAG");
  ArchConfig c = rwse_probe_model().config;
  c.gps.node_vocab = {7};
  c.finalize("test");
  Model m = gps_family().init(c, 5);
  GraphDataOptions o;
  o.rwse_steps = 3;
  GraphData d = load_graph_data(dir, o);
  const auto& idx = split_indices(d, "test");
  GraphEvalResult r = evaluate_graph(m, d.ds, idx, 4);
  EXPECT_EQ(r.metric, "accuracy");
  EXPECT_EQ(r.count, 19);
  EXPECT_GT(r.graphs_per_second, 0);
  // Each graph alone through the family's forward; argmax and −log softmax by hand.
  int correct = 0;
  double nll = 0;
  for (int64_t i : idx) {
    torch::NoGradGuard ng;
    torch::Tensor z = m.family().forward_graph(m, collate(d.ds, {i}))[0].to(torch::kFloat64);
    const int64_t y = static_cast<int64_t>(d.ds.graphs[i].y);
    const double z0 = z[0].item<double>(), z1 = z[1].item<double>();
    correct += (z1 > z0 ? 1 : 0) == y;
    const double mx = std::max(z0, z1);
    nll += -(z[y].item<double>() - mx - std::log(std::exp(z0 - mx) + std::exp(z1 - mx)));
  }
  EXPECT_DOUBLE_EQ(r.value, correct / 19.0);
  EXPECT_NEAR(r.loss, nll / 19.0, 1e-5);
  // Batch size does not change the figures; a model left in training mode is evaluated in eval
  // mode (running statistics untouched).
  m.config.gps.training = true;
  torch::Tensor rm = m.at("rwse_norm.running_mean").clone();
  GraphEvalResult r1 = evaluate_graph(m, d.ds, idx, 1);
  EXPECT_DOUBLE_EQ(r1.value, r.value);
  EXPECT_NEAR(r1.loss, r.loss, 1e-5);
  EXPECT_TRUE(at::equal(rm, m.at("rwse_norm.running_mean")));
  EXPECT_INPUT_ERROR(evaluate_graph(m, d.ds, {}, 4), HasSubstr("no graphs to evaluate"));
}

TEST(GraphEvalRun, MeanFlopsAtEachGraphsOwnSize) {
  // GIN + Transformer, d = 8, 2 heads of 4, FFN 16, no RWSE, TypeDict nodes, head 8 → 4 → 2 → 2:
  // per graph of n nodes 2·[n·(2·64) + n·4·64 + 2·2·n²·4 + n·2·128] + 2·(32 + 8 + 4) MACs.
  Model m = gps_family().init(tiny_gin_config(0), 1);
  auto f = [](double n) { return 2 * (n * 128 + n * 256 + 16 * n * n + n * 256) + 2 * 44.0; };
  GraphDataset ds;
  ds.name = "sizes";
  for (int64_t n : {1, 3, 3, 10}) {
    Graph g;
    g.num_nodes = n;
    ds.graphs.push_back(g);
  }
  EXPECT_DOUBLE_EQ(mean_graph_flops(m, ds, {0, 1, 2, 3}), (f(1) + 2 * f(3) + f(10)) / 4.0);
  EXPECT_DOUBLE_EQ(mean_graph_flops(m, ds, {3}), f(10));
}

}  // namespace
