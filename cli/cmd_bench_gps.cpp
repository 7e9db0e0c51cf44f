// pare bench gps-speed: evaluation throughput (graphs/s) of a gps model's forward on one batch of
// real graphs, as JSON on stdout; scripts/gps_speed.py sets it beside the same GraphGPS layer
// stack in PyTorch eager (the batch and pare's logits are dumped for it with --dump, so both sides
// run the same graphs and the script checks that they compute the same logits).
#include <ATen/Parallel.h>

#include <algorithm>
#include <iostream>

#include "bench_util.h"
#include "families/checkpoint.h"
#include "base/error.h"
#include "families/family.h"
#include "tasks/graph_eval.h"
#include "io/safetensors.h"

namespace pare::cli {

BenchCommand bench_gps_speed(CLI::App* bench) {
  struct Args {
    std::string model, data, split = "test", dump;
    int64_t batch = 128, reps = 10, warmup = 3;
  };
  auto a = std::make_shared<Args>();
  auto* sub = bench->add_subcommand(
      "gps-speed", "Forward throughput of a gps model on a batch of real graphs (graphs/s), JSON on "
                   "stdout (scripts/gps_speed.py sets it beside PyTorch eager)");
  sub->add_option("--model", a->model, "gps model folder")->required();
  sub->add_option("--data", a->data, "TU data set folder or MoleculeNet CSV")->required();
  sub->add_option("--split", a->split, "Split whose first graphs form the batch")->capture_default_str();
  sub->add_option("--batch-size", a->batch, "Graphs per batch")->capture_default_str();
  sub->add_option("--reps", a->reps, "Timed forward passes")->capture_default_str();
  sub->add_option("--dump", a->dump, "Write the batch and pare's logits to this safetensors file");
  return {sub, [a]() -> int {
    PARE_CHECK(a->batch > 0 && a->reps > 0, "--batch-size and --reps must be positive");
    Model m = load_model(a->model);
    PARE_CHECK(m.config.is_graph(), a->model, ": gps-speed needs a gps model, got family ",
               m.config.family);
    GraphData d = load_graph_data(a->data, graph_data_options(m.config));
    check_graph_data_fits(m.config, d.ds, a->data);
    std::vector<int64_t> idx = split_indices(d, a->split);
    if (static_cast<int64_t>(idx.size()) > a->batch) idx.resize(a->batch);
    const GraphBatch b = collate(d.ds, idx);
    c10::InferenceMode guard;  // as the eager side's torch.inference_mode()
    torch::Tensor logits;
    for (int64_t i = 0; i < a->warmup; ++i) logits = m.family().forward_graph(m, b);
    std::vector<double> ms;
    for (int64_t i = 0; i < a->reps; ++i) {
      const double t0 = now_ms();
      logits = m.family().forward_graph(m, b);
      ms.push_back(now_ms() - t0);
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    if (!a->dump.empty()) {
      std::map<std::string, torch::Tensor> t{{"logits", logits.contiguous()},
                                             {"edge_index", b.edge_index},
                                             {"batch", b.batch},
                                             {"ptr", b.ptr}};
      for (auto [name, v] : {std::pair{"node_cat", b.node_cat}, {"node_attr", b.node_attr},
                             {"edge_cat", b.edge_cat}, {"rwse", b.rwse}, {"lap_vec", b.lap_vec},
                             {"lap_val", b.lap_val}})
        if (v.defined()) t[name] = v.contiguous();
      write_safetensors(a->dump, t);
    }
    nlohmann::json out = {{"model", a->model},
                          {"data", d.describe()},
                          {"split", a->split},
                          {"graphs", b.num_graphs},
                          {"nodes", b.num_nodes()},
                          {"edges", b.edge_index.size(1)},
                          {"threads", at::get_num_threads()},
                          {"median_ms", med},
                          {"graphs_per_second", 1000.0 * double(b.num_graphs) / med}};
    std::cout << out.dump(2) << "\n";
    return 0;
  }};
}

}  // namespace pare::cli
