// pare eval --model DIR: accuracy on the 10k Fashion-MNIST test images, params, FLOPs, bytes,
// latency. pare inspect --model DIR: the per-layer table (heads, widths, params, FLOPs).
#include <ATen/Parallel.h>

#include <iostream>

#include "checkpoint.h"
#include "commands.h"
#include "error.h"
#include "evaluate.h"
#include "family.h"
#include "fileio.h"
#include "pipeline.h"

namespace pare::cli {

Runner add_eval(CLI::App& app, Common&) {
  struct Args {
    std::string model, data = kDefaultFashionMnistDir, json;
    int64_t limit = -1, batch = 256;
    std::vector<int64_t> latency{1, 256};
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("eval", "Evaluate a model: accuracy, params, FLOPs, bytes, latency");
  sub->add_option("--model", a->model, "Model folder")->required();
  sub->add_option("--data", a->data, "Fashion-MNIST folder")->capture_default_str();
  sub->add_option("--limit", a->limit, "Use only the first N test images (-1: all)");
  sub->add_option("--batch-size", a->batch, "Evaluation batch size")->capture_default_str();
  sub->add_option("--latency-batches", a->latency, "Batch sizes to time (empty: skip)")
      ->capture_default_str();
  sub->add_option("--json", a->json, "Also write the figures as JSON to this file");
  return [a]() -> int {
    PARE_CHECK(a->batch > 0, "--batch-size: expected a positive integer, got ", a->batch);
    PARE_CHECK(a->limit == -1 || a->limit > 0, "--limit: expected -1 (all) or a positive integer, got ",
               a->limit);
    for (int64_t b : a->latency)
      PARE_CHECK(b > 0, "--latency-batches: expected positive batch sizes, got ", b);
    ImageDataset test = load_fashion_mnist(a->data, "test");
    Model m = load_model(a->model);
    EvalSettings e;
    e.batch_size = a->batch;
    e.limit = a->limit;
    e.latency_batches = a->latency;
    StageRow row = measure_stage(a->model, m, test, e);
    std::cout << stage_table_markdown({row});
    std::cout << "\naccuracy on " << (a->limit < 0 ? test.size() : std::min(a->limit, test.size()))
              << " test images; FLOPs = 2 x MACs per image; " << at::get_num_threads()
              << " threads\n";
    if (!a->json.empty()) {
      nlohmann::json lat = nlohmann::json::object();
      for (auto& [b, ms] : row.latency_ms) lat[std::to_string(b)] = ms;
      nlohmann::json j = {{"model", a->model},     {"accuracy", row.accuracy},
                          {"params", row.params},  {"flops_per_image", row.flops},
                          {"bytes", row.bytes},    {"latency_ms_median", lat},
                          {"threads", at::get_num_threads()}};
      write_file_atomic(a->json, j.dump(2) + "\n");
    }
    return 0;
  };
}

Runner add_inspect(CLI::App& app, Common&) {
  auto model = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("inspect", "Per-layer table of a model: heads, widths, params, FLOPs");
  sub->add_option("--model", *model, "Model folder")->required();
  return [model]() -> int {
    Model m = load_model(*model);
    const ArchConfig& c = m.config;
    auto rows = m.family().costs(m);
    int64_t flops = 0;
    for (auto& r : rows) flops += r.flops;
    std::cout << *model << ": " << c.family << ", " << c.num_hidden_layers << " layers, hidden size "
              << c.hidden_size << ", " << c.seq_len() << " tokens (" << c.num_patches()
              << " patches + CLS), " << c.num_labels << " labels, norm " << c.norm
              << (c.shortcuts ? ", SliceGPT shortcuts" : "") << "\n";
    std::cout << "params " << m.num_params() << ", FLOPs/image " << flops << ", checkpoint bytes "
              << checkpoint_bytes(m) << "\n\n";
    std::cout << layer_table_markdown(rows);
    for (const auto& st : c.token_pruning)
      std::cout << "token pruning in layer " << st.layer << ": " << st.method << ", keep "
                << st.keep << " of " << c.tokens_in(st.layer) << " tokens"
                << (st.method == "zero-tprune"
                        ? concat(", ", st.iterations, " PageRank iterations, S stage drops ",
                                 st.similar)
                        : std::string())
                << "\n";
    if (!c.quantized.empty()) {
      // One line per format: "quantized (gptq): 24 slots int4 g128 sym (blk.0.attn_q ... )".
      std::map<std::string, std::vector<std::string>> by_format;
      for (const auto& [slot, q] : c.quantized)
        by_format[concat("int", q.bits, " ",
                         q.group_size ? concat("g", q.group_size) : std::string("per-channel"), " ",
                         q.symmetric ? "sym" : "asym")]
            .push_back(slot);
      for (const auto& [fmt, slots] : by_format)
        std::cout << "quantized (" << c.quant_method << "): " << slots.size() << " slots " << fmt
                  << " (" << slots.front() << (slots.size() > 1 ? " ... " + slots.back() : "")
                  << ")\n";
    }
    if (!c.history.empty()) std::cout << "\nhistory: " << c.history.dump() << "\n";
    return 0;
  };
}

Runner add_passes(CLI::App& app, Common&) {
  app.add_subcommand("passes", "List the compression passes and their options");
  return []() -> int {
    for (const auto& p : PassTable::global().all()) {
      std::cout << p.name << " — " << p.summary << "\n  source: " << p.source << "\n";
      for (const auto& o : p.options) {
        std::cout << "  " << o.name << " (";
        switch (o.type) {
          case OptionSpec::kNumber: std::cout << "number"; break;
          case OptionSpec::kInteger: std::cout << "integer"; break;
          case OptionSpec::kBool: std::cout << "bool"; break;
          case OptionSpec::kString: std::cout << "string"; break;
          case OptionSpec::kNumberList: std::cout << "numbers"; break;
          case OptionSpec::kIntegerList: std::cout << "integers"; break;
        }
        std::cout << ", default " << o.default_value.dump();
        if (o.min || o.max)
          std::cout << ", range " << (o.min ? "[" + concat(*o.min) : std::string("(-inf"))
                    << ", " << (o.max ? concat(*o.max) : std::string("inf"))
                    << (o.max && o.max_inclusive ? "]" : ")");
        std::cout << "): " << o.help << "\n";
      }
    }
    return 0;
  };
}

}  // namespace pare::cli
