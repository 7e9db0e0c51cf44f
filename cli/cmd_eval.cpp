// pare eval --model DIR: accuracy on the 10k Fashion-MNIST test images, params, FLOPs, bytes,
// latency; for a decoder LM (--task lm-perplexity, the default for LMs): perplexity on a text file,
// KL / top-1 agreement against a reference model, FLOPs per token, tokens/s.
// pare eval --model M --data PATH for a graph transformer (gps): the metric of the model's task
// (accuracy / ROC-AUC / MAE) and loss on a split of a graph data set (the model's recorded
// split), params, FLOPs per graph, bytes, graphs/s.
// pare inspect --model DIR: the per-layer table (heads, widths, params, FLOPs).
// pare generate --model M: greedy continuation of a prompt (decoder LMs).
#include <ATen/Parallel.h>

#include <filesystem>
#include <iomanip>
#include <iostream>

#include "checkpoint.h"
#include "commands.h"
#include "error.h"
#include "evaluate.h"
#include "family.h"
#include "fileio.h"
#include "graph_eval.h"
#include "lm_data.h"
#include "lm_eval.h"
#include "pipeline.h"
#include "version.h"

namespace pare::cli {

namespace {

// Per-token cost row of an LM: FLOPs of one context_length sequence divided by its tokens.
int64_t lm_flops_per_token(const Model& m) {
  int64_t flops = 0;
  for (const auto& r : m.family().costs(m)) flops += r.flops;
  return flops / m.config.seq_len();
}

// Sum of a model's per-layer FLOPs at graph statistics (n nodes, E directed edges) per graph.
int64_t gps_flops_at(const Model& m, double n, double E) {
  Model probe = m;  // tensors shared; only the statistics change
  probe.config.gps.mean_nodes = n;
  probe.config.gps.mean_edges = E;
  int64_t f = 0;
  for (const auto& r : probe.family().costs(probe)) f += r.flops;
  return f;
}

std::string fixed(double v, int digits) { return concat(std::fixed, std::setprecision(digits), v); }

}  // namespace

Runner add_eval(CLI::App& app, Common&) {
  struct Args {
    std::string model, data, json, task, tokenizer, reference, split = "test", cache;
    int64_t limit = -1, batch = 256, seq_len = 0;
    std::vector<int64_t> latency{1, 256};
  };

  auto run_lm_eval = [](const Args& a, const Model& m) -> int {
    PARE_CHECK(!a.data.empty(), "--data: lm-perplexity needs a text file (e.g. wiki.test.raw)");
    PARE_CHECK(a.seq_len >= 0, "--seq-len: expected a positive number of tokens (0: the model's ",
               "context_length), got ", a.seq_len);
    auto tok = tokenizer_for_model(a.model, a.tokenizer, m);
    const int64_t T = a.seq_len > 0 ? a.seq_len : m.config.context_length;
    PARE_CHECK(m.config.max_position_embeddings <= 0 || T <= m.config.max_position_embeddings,
               "--seq-len: ", T, " exceeds the model's max_position_embeddings (",
               m.config.max_position_embeddings, ")");
    torch::Tensor tokens = tokenize_file(*tok, a.data);
    torch::Tensor windows = token_windows(tokens, T, a.limit, a.data);
    std::unique_ptr<Model> ref;
    if (!a.reference.empty()) {
      ref = std::make_unique<Model>(load_model(a.reference));
      PARE_CHECK(ref->config.vocab_size == m.config.vocab_size, a.reference, ": vocab_size ",
                 ref->config.vocab_size, " differs from the model's ", m.config.vocab_size);
    }
    LmEvalResult r = evaluate_lm(m, windows, a.batch, ref.get());
    const int64_t fpt = lm_flops_per_token(m), bytes = checkpoint_bytes(m);
    std::cout << "| model | perplexity | " << (ref ? "KL (nats/token) | top-1 agree | " : "")
              << "params | FLOPs/token | bytes | tokens/s |\n|---|---|"
              << (ref ? "---|---|" : "") << "---|---|---|---|\n";
    std::cout << "| " << a.model << " | " << concat(std::fixed, std::setprecision(3), r.perplexity)
              << " | ";
    if (ref)
      std::cout << concat(std::setprecision(5), r.kl) << " | "
                << concat(std::fixed, std::setprecision(2), 100.0 * r.top1) << "% | ";
    std::cout << m.num_params() << " | " << fpt << " | " << bytes << " | "
              << concat(std::fixed, std::setprecision(0), r.tokens_per_second) << " |\n";
    std::cout << "\n" << a.data << ": " << tokens.numel() << " tokens (" << tok->kind()
              << " tokenizer), " << r.windows << " windows of " << T << " tokens, " << r.predicted
              << " predicted tokens; FLOPs = 2 x MACs per token at " << m.config.seq_len()
              << " tokens of context; " << at::get_num_threads() << " threads\n";
    if (!a.json.empty()) {
      nlohmann::json j = {{"model", a.model}, {"data", a.data}, {"tokens", tokens.numel()},
                          {"seq_len", T}, {"windows", r.windows}, {"predicted_tokens", r.predicted},
                          {"perplexity", r.perplexity}, {"nll", r.nll}, {"params", m.num_params()},
                          {"flops_per_token", fpt}, {"bytes", bytes},
                          {"tokens_per_second", r.tokens_per_second},
                          {"threads", at::get_num_threads()},
                          {"runtime", runtime_json()}};
      if (ref) {
        j["reference"] = a.reference;
        j["kl"] = r.kl;
        j["top1_agreement"] = r.top1;
      }
      write_file_atomic(a.json, j.dump(2) + "\n");
    }
    return 0;
  };
  auto run_graph_eval = [](const Args& a, const Model& m) -> int {
    PARE_CHECK(!a.data.empty(), "--data: a graph model needs its data set (a TU folder, HIV.csv ",
               "or delaney-processed.csv)");
    GraphData d = load_graph_data(a.data, graph_data_options(m.config, a.cache));
    check_graph_data_fits(m.config, d.ds, a.data);
    std::vector<int64_t> idx = split_indices(d, a.split);
    if (a.limit > 0 && a.limit < static_cast<int64_t>(idx.size())) idx.resize(a.limit);
    GraphEvalResult r = evaluate_graph(m, d.ds, idx, a.batch);
    const double flops = mean_graph_flops(m, d.ds, idx);
    const GpsConfig& g = m.config.gps;
    const int64_t at_stats = gps_flops_at(m, g.mean_nodes, g.mean_edges),
                  bytes = checkpoint_bytes(m);
    // Percent for accuracy and ROC-AUC, as compress's report prints them; --json keeps 0..1.
    const bool pct = r.metric != "mae";
    const std::string label = graph_metric_label(r.metric);
    std::cout << "| model | split | " << label
              << " | loss | graphs | params | FLOPs/graph | bytes | graphs/s |\n"
              << "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    std::cout << "| " << a.model << " | " << a.split << " | "
              << (pct ? fixed(100 * r.value, 2) : fixed(r.value, 4)) << " | " << fixed(r.loss, 4)
              << " | " << r.count << " | " << m.num_params() << " | " << std::llround(flops)
              << " | " << bytes << " | " << fixed(r.graphs_per_second, 0) << " |\n";
    std::cout << "\n" << d.describe() << "; " << label.substr(0, label.find(" %")) << " on " << r.count << " " << a.split
              << " graphs; FLOPs = 2 x MACs per graph, mean over these graphs at each one's own "
              << "size (" << at_stats << " at the model's stated "
              << (g.stats_dataset.empty() ? std::string("statistics") : g.stats_dataset)
              << " mean of " << fixed(g.mean_nodes, 1) << " nodes / " << fixed(g.mean_edges, 1)
              << " edges); graphs/s: forward passes only, batch " << a.batch << "; "
              << at::get_num_threads() << " threads\n";
    if (!a.json.empty()) {
      nlohmann::json j = {{"model", a.model},
                          {"data", a.data},
                          {"data_description", d.describe()},
                          {"split", a.split},
                          {"metric", r.metric},
                          {"value", r.value},
                          {"loss", r.loss},
                          {"graphs", r.count},
                          {"params", m.num_params()},
                          {"flops_per_graph", flops},
                          {"flops_per_graph_at_stats", at_stats},
                          {"bytes", bytes},
                          {"graphs_per_second", r.graphs_per_second},
                          {"forward_seconds", r.forward_seconds},
                          {"batch_size", a.batch},
                          {"threads", at::get_num_threads()},
                          {"runtime", runtime_json()}};
      write_file_atomic(a.json, j.dump(2) + "\n");
    }
    return 0;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("eval", "Evaluate a model: accuracy, params, FLOPs, bytes, latency");
  sub->add_option("--model", a->model, "Model folder")->required();
  sub->add_option("--data", a->data,
                  "Fashion-MNIST folder (default " + std::string(kDefaultFashionMnistDir) +
                      "), the text file for lm-perplexity, or a gps model's TU folder / "
                      "MoleculeNet CSV");
  sub->add_option("--task", a->task,
                  "image-classification or lm-perplexity (default: by the model's family)");
  sub->add_option("--tokenizer", a->tokenizer,
                  "LMs: tokenizer file or folder (default: the model's own; needed for llama2.c .bin)");
  sub->add_option("--seq-len", a->seq_len,
                  "LMs: tokens per non-overlapping window (default: the model's context_length)");
  sub->add_option("--reference", a->reference,
                  "LMs: reference model for KL divergence and top-1 agreement on the same tokens");
  sub->add_option("--limit", a->limit, "Use only the first N test images / LM windows (-1: all)");
  CLI::Option* batch_opt =
      sub->add_option("--batch-size", a->batch, "Evaluation batch size (graph models: default 32)")
          ->capture_default_str();
  sub->add_option("--latency-batches", a->latency, "Batch sizes to time (positive; one or more)")
      ->capture_default_str();
  sub->add_option("--json", a->json, "Also write the figures as JSON to this file");
  sub->add_option("--split", a->split, "Graph models: train, valid or test")->capture_default_str();
  sub->add_option("--cache", a->cache,
                  "Graph models: cache folder for converted molecules (default "
                  "$XDG_CACHE_HOME/pare or ~/.cache/pare; none: off)");
  return [a, run_lm_eval, run_graph_eval, batch_opt]() -> int {
    PARE_CHECK(a->batch > 0, "--batch-size: expected a positive integer, got ", a->batch);
    PARE_CHECK(a->limit == -1 || a->limit > 0, "--limit: expected -1 (all) or a positive integer, got ",
               a->limit);
    for (int64_t b : a->latency)
      PARE_CHECK(b > 0, "--latency-batches: expected positive batch sizes, got ", b);
    Model m = load_model(a->model);
    PARE_CHECK(a->split == "train" || a->split == "valid" || a->split == "test",
               "--split: expected train, valid or test, got '", a->split, "'");
    if (m.config.is_graph()) {
      PARE_CHECK(a->task.empty() || a->task == "graph", "--task: a gps model takes graph ",
                 "inputs (task graph), got '", a->task, "'");
      // Graphs are padded to the largest of each batch for attention: GraphGPS's batch of 32
      // keeps that padding small.
      if (batch_opt->count() == 0) a->batch = 32;
      return run_graph_eval(*a, m);
    }
    const std::string task = a->task.empty() ? (m.config.is_lm() ? "lm-perplexity" : "image-classification") : a->task;
    PARE_CHECK(task == "image-classification" || task == "lm-perplexity",
               "--task: expected image-classification or lm-perplexity, got '", task, "'");
    PARE_CHECK((task == "lm-perplexity") == m.config.is_lm(), a->model, ": task ", task,
               " does not apply to a ", m.config.family, " model");
    if (task == "lm-perplexity") return run_lm_eval(*a, m);
    const std::string data_dir = a->data.empty() ? kDefaultFashionMnistDir : a->data;
    ImageDataset test = load_fashion_mnist(data_dir, "test");
    check_images_fit_model(test, m.config, data_dir);
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
                          {"threads", at::get_num_threads()},
                          {"runtime", runtime_json()}};
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
    if (c.is_graph()) {
      const GpsConfig& g = c.gps;
      auto vocab = [](const std::vector<int64_t>& v) {
        std::string s;
        for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
        return " [" + s + "]";
      };
      std::cout << *model << ": gps (GraphGPS), " << c.num_hidden_layers << " layers, hidden size "
                << c.hidden_size << ", " << c.layers[0].heads << " heads (layer 0), local "
                << g.local_model << ", global " << g.global_model << ", FFN "
                << c.layers[0].intermediate_size << ", norm " << c.norm << "\n"
                << "encoders: node " << g.node_encoder
                << (g.node_encoder == "LinearNode" ? concat(" (", g.node_attr_dims, " features)")
                                                   : vocab(g.node_vocab))
                << ", edge " << g.edge_encoder
                << (g.edge_encoder == "None" ? std::string() : vocab(g.edge_vocab)) << "; PE "
                << (g.rwse_steps > 0 ? concat("RWSE K=", g.rwse_steps, " -> ", g.rwse_dim)
                                     : std::string("no RWSE"))
                << ", "
                << (g.lappe_k > 0 ? concat("LapPE k=", g.lappe_k, " -> ", g.lappe_dim, " (DeepSet ",
                                           g.lappe_layers, " layers)")
                                  : std::string("no LapPE"))
                << "; pooling " << g.pooling << ", head " << g.head_layers << " layers; task "
                << g.task << " (" << c.num_labels << " outputs)"
                << (g.split.empty() ? std::string()
                                    : concat("; split ", g.split,
                                             g.split == "random" ? concat(" seed ", g.split_seed)
                                                                 : std::string()))
                << "\n";
      std::cout << "params " << m.num_params() << ", checkpoint bytes " << checkpoint_bytes(m)
                << ", FLOPs/graph " << flops << " at the mean of "
                << (g.stats_dataset.empty() ? std::string("(no data set stated)") : g.stats_dataset)
                << " (" << fixed(g.mean_nodes, 2) << " nodes, " << fixed(g.mean_edges, 2)
                << " directed edges), " << gps_flops_at(m, double(g.max_nodes), double(g.max_edges))
                << " at its maximum (" << g.max_nodes << " nodes, " << g.max_edges
                << " edges)\n\n";
      std::cout << layer_table_markdown(rows);
      std::cout << "\ntokens = nodes per graph at the mean; FLOPs = 2 x MACs per graph "
                   "(local part per node/edge, attention per node pair, FFN per node)\n";
      if (!c.history.empty()) std::cout << "\nhistory: " << c.history.dump() << "\n";
      return 0;
    }
    if (c.is_lm()) {
      const auto& d0 = c.layers[0];
      std::cout << *model << ": " << c.family << ", " << c.num_hidden_layers
                << " layers, hidden size " << c.hidden_size << ", " << d0.heads << " heads / "
                << d0.kv_heads << " kv-heads of head_dim " << d0.head_dim << " (layer 0), vocab "
                << c.vocab_size << ", max positions " << c.max_position_embeddings << ", norm "
                << c.norm << (c.tie_word_embeddings ? ", tied embeddings" : ", untied head")
                << (c.shortcuts ? ", SliceGPT shortcuts" : "") << "\n";
      std::cout << "params " << m.num_params() << ", FLOPs/token " << flops / c.seq_len()
                << " (2 x MACs of a " << c.seq_len() << "-token sequence / " << c.seq_len()
                << "), checkpoint bytes " << checkpoint_bytes(m) << "\n\n";
    } else {
      std::cout << *model << ": " << c.family << ", " << c.num_hidden_layers
                << " layers, hidden size " << c.hidden_size << ", " << c.seq_len() << " tokens ("
                << c.num_patches() << " patches + CLS), " << c.num_labels << " labels, norm "
                << c.norm << (c.shortcuts ? ", SliceGPT shortcuts" : "") << "\n";
      std::cout << "params " << m.num_params() << ", FLOPs/image " << flops
                << ", checkpoint bytes " << checkpoint_bytes(m) << "\n\n";
    }
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

Runner add_generate(CLI::App& app, Common&) {
  struct Args {
    std::string model, tokenizer, prompt;
    int64_t max_new = 64;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("generate", "Greedy continuation of a prompt (decoder LMs)");
  sub->add_option("--model", a->model, "Model folder, .gguf or llama2.c .bin")->required();
  sub->add_option("--tokenizer", a->tokenizer, "Tokenizer file or folder (default: the model's own)");
  sub->add_option("--prompt", a->prompt, "Text to continue (default: BOS only)");
  sub->add_option("--max-new", a->max_new, "Tokens to generate")->capture_default_str();
  return [a]() -> int {
    PARE_CHECK(a->max_new > 0, "--max-new: expected a positive integer, got ", a->max_new);
    Model m = load_model(a->model);
    PARE_CHECK(m.config.is_lm(), a->model, ": generate needs a decoder LM, got ", m.config.family);
    auto tok = tokenizer_for_model(a->model, a->tokenizer, m);
    std::vector<int64_t> ids;
    if (tok->bos_id() >= 0) ids.push_back(tok->bos_id());
    for (int64_t id : tok->encode(a->prompt)) ids.push_back(id);
    PARE_CHECK(!ids.empty(), "--prompt: the ", tok->kind(),
               " tokenizer has no BOS token, so generation needs a prompt");
    PARE_CHECK(static_cast<int64_t>(ids.size()) < m.config.max_position_embeddings, "--prompt: ",
               ids.size(), " tokens leave no room within max_position_embeddings (",
               m.config.max_position_embeddings, ")");
    const size_t prompt_len = ids.size();
    ids = greedy_generate(m, ids, a->max_new, tok->eos_id());
    std::cout << tok->decode(ids) << "\n";
    std::cerr << "generate: " << ids.size() - prompt_len << " tokens after " << prompt_len
              << " prompt tokens, greedy\n";
    return 0;
  };
}

Runner add_convert(CLI::App& app, Common&) {
  struct Args {
    std::string model, out, tokenizer;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand(
      "convert", "Write any model pare reads (.gguf, llama2.c .bin, pytorch_model.bin folder) as a "
                 "Hugging Face folder: config.json + model.safetensors");
  sub->add_option("--model", a->model, "Model file or folder")->required();
  sub->add_option("--out", a->out, "Output folder")->required();
  sub->add_option("--tokenizer", a->tokenizer,
                  "tokenizer.json to copy beside the weights (default: the model folder's own)");
  return [a]() -> int {
    check_out_not_input(a->out, a->model);
    Model m = load_model(a->model);
    std::string tok = a->tokenizer;
    if (tok.empty() && std::filesystem::is_directory(a->model) &&
        std::filesystem::exists(a->model + "/tokenizer.json"))
      tok = a->model + "/tokenizer.json";
    PARE_CHECK(tok.empty() || (tok.size() >= 5 && tok.compare(tok.size() - 5, 5, ".json") == 0),
               "--tokenizer: convert copies a tokenizer.json; other tokenizers (", tok,
               ") are passed to later commands with --tokenizer");
    StagedDir out(a->out);
    save_model(m, out.staging());
    if (!tok.empty()) write_file_atomic(out.file("tokenizer.json"), read_file(tok));
    out.commit();
    std::cout << "wrote " << a->out << "/{config.json, model.safetensors}: " << m.config.family
              << ", " << m.num_params() << " params\n";
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
