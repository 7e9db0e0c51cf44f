// pare bench zero-tprune: the token-pruning sweep behind results/zero-tprune.md.
//
// For each row — the layers with a step and one keep rate for all of them (--layers × --rates, or
// --schedule LAYERS@RATE per row) — and each method (zero-tprune, random,
// cls-attention): top-1 accuracy, FLOPs per image with each layer's actual token count, and
// images/s at batch 256 measured side by side with the dense model in the same run (alternating
// forwards, medians), so the speedup is a ratio from one run. The random baseline's accuracy is
// the mean over --random-seeds seeds. --split train-tail evaluates on the last 10,000 train images
// instead of the test set (for choosing settings without looking at the test set).
//
// With a gps model (--data: its graph data set) the sweep prunes nodes from the global attention
// instead (methods zero-tprune, attention, random; --split train-tail means the valid split).
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "bench_util.h"
#include "families/checkpoint.h"
#include "base/error.h"
#include "tasks/evaluate.h"
#include "families/family.h"
#include "data/graph_data.h"
#include "tasks/graph_eval.h"
#include "zero_tprune.h"

namespace pare::cli {

namespace {

struct TPruneArgs : BenchPaths {
  TPruneArgs() { out = "results/zero-tprune.md"; }
  std::string split = "test";
  std::vector<int64_t> layers{0, 1, 2};
  std::vector<double> rates{0.9, 0.8, 0.7, 0.6, 0.5, 0.4};
  std::vector<std::string> schedule;  // "LAYERS@RATE" per row, replacing layers × rates
  std::vector<int64_t> iterations;
  double similar = 0.0;
  int64_t random_seeds = 3;
  int reps = 10;
  int64_t graphs = 128;  // gps: graphs in the timed batch
  bool timing = true;
};

// gps: nodes leave the global attention only (src/families/gps.cpp). Rows per keep rate and method
// (zero-tprune with the given settings, attention = mean attention received, random); the
// task metric on the split, FLOPs per graph averaged at each graph's own size, graphs/s of the
// first --graphs graphs of the split as one batch, dense and pruned alternating.
int graph_sweep(const TPruneArgs& a) {
  Model dense = load_model(a.model);
  PARE_CHECK(dense.config.token_pruning.empty(), a.model, ": already has node pruning");
  GraphData d = load_graph_data(a.data, graph_data_options(dense.config));
  check_graph_data_fits(dense.config, d.ds, a.data);
  std::vector<int64_t> idx = split_indices(d, a.split == "train-tail" ? "valid" : a.split);
  if (a.limit > 0 && static_cast<int64_t>(idx.size()) > a.limit) idx.resize(a.limit);
  std::vector<int64_t> batch_idx = idx;
  if (static_cast<int64_t>(batch_idx.size()) > a.graphs) batch_idx.resize(a.graphs);
  const GraphBatch batch = collate(d.ds, batch_idx);
  const std::string metric = graph_metric_name(dense.config.gps.task);
  PARE_CHECK(metric != "mae", a.model, ": the sweep reports accuracy or ROC-AUC; ", metric,
             " models are not supported here");
  auto score = [&](const Model& m) { return 100.0 * evaluate_graph(m, d.ds, idx, 128).value; };
  const double v0 = score(dense);
  const double flops0 = mean_graph_flops(dense, d.ds, idx);
  auto log = [](const std::string& s) { std::cerr << "bench: " << s << "\n"; };
  const std::string unit = graph_metric_label(metric);
  std::ostringstream md;
  md << "# Zero-TPrune node pruning on a graph transformer (" << a.model << ")\n\n"
     << "Produced by `scripts/bench` (`pare --threads " << at::get_num_threads()
     << " bench zero-tprune --model " << a.model << "`). LibTorch intra-op threads: "
     << at::get_num_threads() << ". Data: " << d.describe() << ", split "
     << (a.split == "train-tail" ? "valid" : a.split) << " (" << idx.size()
     << " graphs). Nodes leave the global attention only: the local message passing, the FFN "
        "and the pooling keep the whole graph; a dropped node's attention output is 0, so its "
        "attention branch is Norm(h). Steps after the global attention of layers "
     << CLI::detail::join(a.layers) << "; at each step every graph keeps round(rate × n) of its n "
        "attending nodes (at least 1; counts cascade). PageRank starts uniform (graphs have no "
        "CLS); iterations: "
     << (a.iterations.empty() ? std::string("by depth (30 first third, 5 middle, 1 last third)")
                              : CLI::detail::join(a.iterations))
     << "; S stage share of the dropped nodes: " << a.similar
     << ". FLOPs = 2 × MACs per graph at each graph's own node and edge counts, averaged over "
        "the split, with each layer's actual attending nodes and the selection's PageRank and "
        "similarity products; embedding lookups, message sums, norms, softmax, activations "
        "excluded. "
     << (a.timing ? concat("Throughput: graphs/s on the first ", batch.num_graphs,
                           " graphs of the split as one batch, median of ", a.reps,
                           " alternating dense/pruned forwards after 3 warm-ups; s = dense "
                           "latency / pruned latency; ")
                  : std::string("Throughput: not measured (--no-timing); "))
     << "p = FLOPs_dense / FLOPs_pruned; target s − 1 ≥ 0.8 (p − 1). Rows: zero-tprune "
        "= I′ → S → I with the settings above; attention = mean attention a node receives over "
        "heads and queries (no PageRank); random = uniform drop (mean over "
     << a.random_seeds << " seeds).\n\n"
     << "Dense: " << unit << " " << f("%.2f", v0) << ", " << f("%.4f", flops0 / 1e6)
     << " MFLOPs/graph.\n\n"
     << "| keep rate | method | MFLOPs/graph | FLOPs cut | " << unit << " | Δ "
     << "| graphs/s dense | graphs/s pruned | s | p | s−1 ≥ 0.8(p−1) |\n"
     << "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  for (double rate : a.rates)
    for (const std::string method : {"zero-tprune", "attention", "random"}) {
      Model m = dense.clone();
      ZeroTPruneOptions o;
      o.method = method;
      o.layers = a.layers;
      o.keep_rate = {rate};
      o.iterations = a.iterations;
      o.similar = a.similar;
      m.config.token_pruning = zero_tprune_schedule(m.config, o);
      m.config.finalize("bench");
      const int64_t seeds = method == "random" ? a.random_seeds : 1;
      double v = 0;
      for (int64_t sd = 0; sd < seeds; ++sd) {
        for (auto& st : m.config.token_pruning) st.seed = static_cast<uint64_t>(sd);
        v += score(m) / double(seeds);
      }
      const double fl = mean_graph_flops(m, d.ds, idx), p = flops0 / fl;
      std::string timing = "| – | – | – | " + f("%.3f", p) + " | – |";
      if (a.timing) {
        auto [td, tq] = side_by_side(dense, m, a.reps, [&](const Model& x) {
          return x.family().forward_graph(x, batch);
        });
        const double s = td / tq;
        const double g = 1000.0 * double(batch.num_graphs);
        timing = concat("| ", f("%.0f", g / td), " | ", f("%.0f", g / tq), " | ", f("%.3f", s),
                        " | ", f("%.3f", p), " | ", s - 1 >= 0.8 * (p - 1) ? "yes" : "**no**", " |");
      }
      log(concat("rate ", rate, " ", method, ": ", metric, " ", v, " flops cut ",
                 100.0 * (1 - fl / flops0), "%"));
      md << "| " << f("%.2f", rate) << " | " << method << " | " << f("%.4f", fl / 1e6) << " | "
         << f("%.1f%%", 100.0 * (1 - fl / flops0)) << " | " << f("%.2f", v) << " | "
         << f("%+.2f", v - v0) << " " << timing << "\n";
    }
  write_results(a.out, md.str());
  std::cout << md.str();
  return 0;
}

}  // namespace

BenchCommand bench_zero_tprune(CLI::App* bench) {
  auto a = std::make_shared<TPruneArgs>();
  auto* sub = bench->add_subcommand("zero-tprune",
                                    "Token pruning sweep: accuracy, FLOPs, images/s per method");
  add_bench_paths(sub, *a);
  sub->add_option("--split", a->split, "test, or train-tail (ViT: the last 10,000 train images; gps: the valid split)")
      ->check(CLI::IsMember({"test", "train-tail"}))
      ->capture_default_str();
  sub->add_option("--layers", a->layers, "Layers with a pruning step")->capture_default_str();
  sub->add_option("--rates", a->rates, "Keep rates (one per row, used at every layer)")
      ->capture_default_str();
  sub->add_option("--schedule", a->schedule,
                  "ViT rows as LAYERS@RATE, e.g. 0@0.86 0,1,2@0.9 (replaces --layers and --rates)");
  sub->add_option("--iterations", a->iterations, "PageRank iterations per step (default by depth)");
  sub->add_option("--similar", a->similar, "Share of dropped tokens chosen by the S stage")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  sub->add_option("--random-seeds", a->random_seeds, "Seeds averaged for random drop")
      ->capture_default_str();
  sub->add_option("--reps", a->reps, "Timed runs at batch 256")->capture_default_str();
  sub->add_flag("!--no-timing", a->timing, "Skip the throughput measurement");
  sub->add_option("--graphs", a->graphs, "gps models: graphs in the timed batch")
      ->capture_default_str();
  return {sub, [a, sub]() -> int {
    const ArchConfig config = load_model(a->model).config;
    PARE_CHECK(config.family == "vit" || config.is_graph(), "bench zero-tprune: ", a->model,
               " is a ", config.family, " model; the sweep takes ViT models (Fashion-MNIST) and ",
               "gps models (--data: their graph data set)");
    PARE_CHECK(!(sub->count("--schedule") && (sub->count("--layers") || sub->count("--rates"))),
               "--schedule: give either --schedule or --layers / --rates, not both");
    if (config.is_graph()) {
      PARE_CHECK(a->schedule.empty(), "--schedule: per-row layers apply to ViT models; gps ",
                 "models take --layers and --rates");
      PARE_CHECK(a->data != kDefaultFashionMnistDir, "bench zero-tprune: ", a->model,
                 " is a graph transformer: --data must name its graph data set (TU folder or "
                 "MoleculeNet CSV)");
      return graph_sweep(*a);
    }
    // The rows: (layers with a step, keep rate at each), from --schedule or --layers × --rates.
    std::vector<std::pair<std::vector<int64_t>, double>> plan;
    for (const std::string& spec : a->schedule) {
      const size_t at = spec.find('@');
      auto bad = [&](const std::string& why) {
        return InputError(concat("--schedule: '", spec, "': ", why));
      };
      if (at == std::string::npos || spec.find('@', at + 1) != std::string::npos)
        throw bad("expected LAYERS@RATE (layers as 0-based integers joined by commas), e.g. 0,1,2@0.9");
      std::vector<int64_t> layers;
      const std::string ls = spec.substr(0, at) + ",";
      for (size_t from = 0, comma; (comma = ls.find(',', from)) != std::string::npos; from = comma + 1) {
        const std::string t = ls.substr(from, comma - from);
        if (t.empty() || t.size() > 6 || t.find_first_not_of("0123456789") != std::string::npos)
          throw bad("layer '" + t + "' is not a 0-based layer number");
        layers.push_back(std::stol(t));
      }
      const std::string rs = spec.substr(at + 1);
      char* end = nullptr;
      const double rate = std::strtod(rs.c_str(), &end);
      if (rs.empty() || *end != 0 || !std::isfinite(rate))
        throw bad("keep rate '" + rs + "' is not a number");
      if (!(rate > 0 && rate <= 1)) throw bad("keep rate " + rs + " is not in (0, 1]");
      plan.emplace_back(layers, rate);
    }
    if (plan.empty())
      for (double rate : a->rates) plan.emplace_back(a->layers, rate);
    // The options of a row's method. zero-tprune: the settings given (--iterations, --similar);
    // zero-tprune-paper: the paper's iteration schedule by depth and the I stage alone.
    auto options = [&](const std::vector<int64_t>& layers, double rate, const std::string& method,
                       bool paper) {
      ZeroTPruneOptions o;
      o.method = method;
      o.layers = layers;
      o.keep_rate = {rate};
      o.iterations = paper ? std::vector<int64_t>{} : a->iterations;
      o.similar = paper ? 0.0 : a->similar;
      return o;
    };
    // Every row's schedule is checked before the first evaluation; errors name the option.
    for (size_t i = 0; i < plan.size(); ++i) {
      const ZeroTPruneOptions o = options(plan[i].first, plan[i].second, "zero-tprune", false);
      try {
        ArchConfig c = config;
        c.token_pruning = zero_tprune_schedule(c, o);
        c.finalize("bench");
      } catch (const InputError& e) {
        throw InputError(concat(a->schedule.empty() ? std::string("--layers / --rates / --iterations")
                                                    : "--schedule '" + a->schedule[i] + "'",
                                ": ", e.what()));
      }
    }
    ImageDataset data;
    if (a->split == "test") {
      data = load_fashion_mnist(a->data, "test");
    } else {
      ImageDataset train = load_fashion_mnist(a->data, "train");
      const int64_t n = 10000, s = train.size() - n;
      data = {train.images.narrow(0, s, n), train.labels.narrow(0, s, n)};
    }
    Model dense = load_model(a->model);
    PARE_CHECK(dense.config.token_pruning.empty(), a->model, ": already has token pruning");
    check_images_fit_model(data, dense.config, a->data);
    auto acc_of = [&](const Model& m) {
      return 100.0 * evaluate_accuracy(m, data, 256, a->limit).accuracy;
    };
    const double acc0 = acc_of(dense);
    const int64_t flops0 = model_flops(dense);
    auto log = [](const std::string& s) { std::cerr << "bench: " << s << "\n"; };
    auto join_layers = [](const std::vector<int64_t>& v) { return CLI::detail::join(v, ", "); };

    std::ostringstream md;
    const bool paper_rows = !(a->iterations.empty() && a->similar == 0.0);  // else = zero-tprune
    md << "# Zero-TPrune token pruning on a ViT (" << a->model << ")\n\n"
       << "Produced by `scripts/bench` (`pare --threads " << at::get_num_threads()
       << " bench zero-tprune --model " << a->model << "`). LibTorch intra-op threads: "
       << at::get_num_threads() << ". "
       << (a->schedule.empty() ? "Pruning steps in layers " + join_layers(a->layers)
                               : std::string("Pruning steps in the layers of each row's first column"))
       << " (0-based; each step runs after the layer's attention, before its output projection), "
          "the same keep rate at every step of a row (share of the non-CLS tokens entering the "
          "step that are kept; counts cascade). PageRank iterations: "
       << (a->iterations.empty() ? std::string("by depth (30 first third, 5 middle, 1 last third)")
                                 : concat(CLI::detail::join(a->iterations)))
       << "; S stage share of the dropped tokens: " << a->similar
       << ". Accuracy: top-1 on " << (a->limit < 0 ? data.size() : a->limit) << " "
       << (a->split == "test" ? "Fashion-MNIST test images" : "train images 50,000-59,999")
       << "; random drop: mean over " << a->random_seeds
       << " seeds. FLOPs = 2 × MACs of all matmuls per image with each layer's actual token "
          "count, including the PageRank and similarity products of the selection; norms, "
          "softmax, GELU, adds excluded. "
       << (a->timing ? concat("Throughput: images/s at batch 256, median of ", a->reps,
                              " alternating dense/pruned forwards on one random batch after 3 "
                              "warm-ups; s = dense latency / pruned latency from the same run; ")
                     : std::string("Throughput: not measured (--no-timing); "))
       << "p = FLOPs_dense / FLOPs_pruned; target s − 1 ≥ 0.8 (p − 1). Rows: zero-tprune = the "
          "settings above; "
       << (paper_rows ? "zero-tprune-paper = the paper's iteration schedule by depth with the I "
                        "stage alone; "
                      : "")
       << "cls-attention = mean CLS-row attention over heads; random = uniform drop.\n\n"
       << "Dense: accuracy " << f("%.2f", acc0) << "%, " << f("%.3f", flops0 / 1e6)
       << " MFLOPs/image, " << dense.config.seq_len() << " tokens.\n\n"
       << "| steps at layers | keep rate | tokens per layer | method | MFLOPs/image | FLOPs cut | accuracy % | Δ acc "
          "| images/s dense | images/s pruned | s | p | s−1 ≥ 0.8(p−1) |\n"
       << "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
    // Phase 1: accuracy and FLOPs of every row; phase 2: throughput of every row, after all
    // evaluations, so the timed runs are back to back.
    struct Row {
      std::vector<int64_t> layers;
      double rate = 0, acc = 0;
      std::string name, tokens;
      int64_t flops = 0;
      Model m;
    };
    std::vector<Row> rows;
    for (const auto& [layers, rate] : plan) {
      for (const std::string name : {"zero-tprune", "zero-tprune-paper", "cls-attention", "random"}) {
        const bool paper = name == "zero-tprune-paper";
        if (paper && !paper_rows) continue;
        const std::string method = paper ? "zero-tprune" : name;
        Row r{layers, rate, 0, name, "", 0, dense.clone()};
        Model& m = r.m;
        m.config.token_pruning = zero_tprune_schedule(m.config, options(layers, rate, method, paper));
        m.config.finalize("bench");
        const int64_t seeds = method == "random" ? a->random_seeds : 1;
        for (int64_t sd = 0; sd < seeds; ++sd) {
          for (auto& st : m.config.token_pruning) st.seed = static_cast<uint64_t>(sd);
          r.acc += acc_of(m) / double(seeds);
        }
        r.flops = model_flops(m);
        for (int64_t l = 0; l < m.config.num_hidden_layers; ++l)
          r.tokens += (l ? ", " : "") + (m.config.tokens_in(l) == m.config.tokens_out(l)
                                             ? concat(m.config.tokens_in(l))
                                             : concat(m.config.tokens_in(l), "→", m.config.tokens_out(l)));
        log(concat("layers ", join_layers(layers), " rate ", rate, " ", name, ": acc ", r.acc, " flops cut ",
                   100.0 * (1 - double(r.flops) / double(flops0)), "%"));
        rows.push_back(std::move(r));
      }
    }
    for (const Row& r : rows) {
      const double p = double(flops0) / double(r.flops);
      std::string timing = "| – | – | – | " + f("%.3f", p) + " | – |";
      if (a->timing) {
        auto [d, q] = side_by_side(dense, r.m, 256, a->reps);
        const double s = d / q;
        timing = concat("| ", f("%.0f", 256000.0 / d), " | ", f("%.0f", 256000.0 / q), " | ",
                        f("%.3f", s), " | ", f("%.3f", p), " | ",
                        s - 1 >= 0.8 * (p - 1) ? "yes" : "**no**", " |");
        log(concat("layers ", join_layers(r.layers), " rate ", r.rate, " ", r.name, ": speedup ", s, " promise ", p));
      }
      md << "| " << join_layers(r.layers) << " | " << f("%.2f", r.rate) << " | " << r.tokens << " | " << r.name << " | "
         << f("%.3f", r.flops / 1e6) << " | " << f("%.1f%%", 100.0 * (1 - double(r.flops) / flops0))
         << " | " << f("%.2f", r.acc) << " | " << f("%+.2f", r.acc - acc0) << " " << timing << "\n";
    }
    write_results(a->out, md.str());
    std::cout << md.str();
    return 0;
  }};
}

}  // namespace pare::cli
