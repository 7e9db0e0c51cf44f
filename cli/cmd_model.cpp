// pare inspect --model DIR: the per-layer table (heads, widths, params, FLOPs) and what the config
// says of the model. pare generate --model M: greedy continuation of a prompt (decoder LMs).
// pare convert: any model pare reads as a Hugging Face folder. pare passes: the pass table.
// These are model-level commands: they describe a family's own fields (the task-level commands
// are eval, compress and train).
#include <ATen/Parallel.h>

#include <filesystem>
#include <iomanip>
#include <iostream>

#include "families/checkpoint.h"
#include "commands.h"
#include "base/error.h"
#include "families/family.h"
#include "base/fileio.h"
#include "tasks/lm_data.h"
#include "tasks/lm_eval.h"
#include "pipeline/pipeline.h"

namespace pare::cli {

namespace {

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
    } else if (c.is_text_encoder()) {
      int64_t encoder = 0;
      for (const auto& r : rows)
        if (r.name.rfind("blk.", 0) == 0) encoder += r.params;
      std::cout << *model << ": " << c.family << ", " << c.num_hidden_layers << " layers, hidden size "
                << c.hidden_size << ", vocab " << c.vocab_size << ", max positions " << c.max_position_embeddings
                << ", " << c.num_labels << " labels, post-LN" << (c.mlm_head ? ", masked-LM head" : "") << "\n";
      std::cout << "params " << m.num_params() << " (encoder layers " << encoder << "), FLOPs/sentence " << flops
                << " (2 x MACs of one " << c.seq_len() << "-token sentence: the training sentences' mean length"
                << " with [CLS]/[SEP], no padding), checkpoint bytes " << checkpoint_bytes(m) << "\n\n";
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
