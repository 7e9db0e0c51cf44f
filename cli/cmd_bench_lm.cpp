// pare bench slicegpt-lm: the SliceGPT curve of one decoder LM, written as one section of
// results/slicegpt-lm.md (other models' sections and the discussion are kept).
//
// For each slicing ratio: perplexity on the evaluation text (non-overlapping windows), KL
// divergence and top-1 agreement against the dense model on the same tokens (or on --kl-data
// when given, e.g. WikiText-2 test for stories260K whose in-domain text is a short sample),
// params, FLOPs per token, checkpoint bytes, and forward throughput in tokens/s measured while
// evaluating (dense and sliced forwards over the same windows), plus the relative perplexity
// increase at slicing 0.25 beside SliceGPT's published figures.
#include <ATen/Parallel.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "bench_util.h"
#include "families/checkpoint.h"
#include "base/error.h"
#include "families/family.h"
#include "base/fileio.h"
#include "tasks/lm_data.h"
#include "tasks/lm_eval.h"
#include "base/memstat.h"
#include "slicegpt.h"

namespace pare::cli {

namespace {

// Replaces the "## NAME" section of a Markdown file (up to the next "## " heading or the
// discussion marker), or inserts it before the discussion marker.
std::string replace_section(const std::string& old, const std::string& name, const std::string& body,
                            const std::string& header) {
  const std::string head = "## " + name + "\n", marker = "<!-- discussion -->";
  std::string doc = old.empty() ? header : old;
  size_t disc = doc.find(marker);
  if (disc == std::string::npos) disc = doc.size();
  size_t at = doc.find(head);
  if (at != std::string::npos && at < disc) {
    size_t end = doc.find("\n## ", at + head.size());
    if (end == std::string::npos || end > disc) end = disc;
    else end += 1;
    return doc.substr(0, at) + head + body + doc.substr(end);
  }
  return doc.substr(0, disc) + head + body + "\n" + doc.substr(disc);
}

}  // namespace

BenchCommand bench_slicegpt_lm(CLI::App* bench) {
  struct Args {
    std::string model, name, tokenizer, data, calibration, kl_data, out = "results/slicegpt-lm.md";
    std::vector<double> slicing{0.0, 0.1, 0.2, 0.25, 0.3};
    int64_t samples = 128, seq_len = 128, windows = -1, kl_windows = 200, round_to = 8;
    uint64_t seed = 0;
    double data_from = 0.0, calibration_to = 1.0;
  };
  auto a = std::make_shared<Args>();
  auto* sub = bench->add_subcommand("slicegpt-lm", "SliceGPT curve of a decoder LM: perplexity, KL, size, FLOPs, tokens/s");
  sub->add_option("--model", a->model, "Model folder, .gguf or llama2.c .bin")->required();
  sub->add_option("--name", a->name, "Section title in the results file")->required();
  sub->add_option("--tokenizer", a->tokenizer, "Tokenizer (default: the model's own)");
  sub->add_option("--data", a->data, "Evaluation text")->required();
  sub->add_option("--calibration", a->calibration, "Calibration text")->required();
  sub->add_option("--kl-data", a->kl_data, "Text for KL / top-1 against dense (default: --data)");
  sub->add_option("--slicing", a->slicing, "Slicing ratios")->capture_default_str();
  sub->add_option("--data-from", a->data_from,
                  "Evaluate on the tokens of --data from this fraction on (a test split at the end "
                  "of a text, e.g. 0.9)")->capture_default_str();
  sub->add_option("--calibration-to", a->calibration_to,
                  "Draw calibration windows from the tokens of --calibration before this fraction "
                  "(its training part, e.g. 0.9)")->capture_default_str();
  sub->add_option("--round-to", a->round_to, "Round the kept width down to a multiple of this")
      ->capture_default_str();
  sub->add_option("--calibration-samples", a->samples, "Calibration windows")->capture_default_str();
  sub->add_option("--seq-len", a->seq_len, "Tokens per window")->capture_default_str();
  sub->add_option("--windows", a->windows, "Evaluation windows (-1: all)")->capture_default_str();
  sub->add_option("--kl-windows", a->kl_windows, "Windows of --kl-data (-1: all)")->capture_default_str();
  sub->add_option("--out", a->out, "Results file")->capture_default_str();
  return {sub, [a]() -> int {
    for (double s : a->slicing)
      PARE_CHECK(s >= 0 && s < 1, "--slicing: expected values in [0, 1), got ", s);
    Model dense = load_model(a->model);
    PARE_CHECK(dense.config.is_lm(), a->model, ": slicegpt-lm needs a decoder LM");
    auto tok = tokenizer_for_model(a->model, a->tokenizer, dense);
    PARE_CHECK(a->data_from >= 0 && a->data_from < 1 && a->calibration_to > 0 && a->calibration_to <= 1,
               "--data-from must be in [0, 1) and --calibration-to in (0, 1]");
    auto part = [](const torch::Tensor& t, double from, double to) {
      const int64_t a0 = static_cast<int64_t>(from * double(t.numel()));
      const int64_t a1 = static_cast<int64_t>(to * double(t.numel()));
      return t.narrow(0, a0, a1 - a0);
    };
    torch::Tensor eval_tokens = part(tokenize_file(*tok, a->data), a->data_from, 1.0);
    torch::Tensor win = token_windows(eval_tokens, a->seq_len, a->windows, a->data);
    torch::Tensor kl_win = a->kl_data.empty() ? win
                                              : token_windows(tokenize_file(*tok, a->kl_data), a->seq_len,
                                                              a->kl_windows, a->kl_data);
    torch::Tensor calib = calibration_windows(part(tokenize_file(*tok, a->calibration), 0.0, a->calibration_to),
                                              a->samples, a->seq_len, a->seed, a->calibration);
    auto flops_per_token = [](const Model& m) {
      int64_t f = 0;
      for (const auto& r : m.family().costs(m)) f += r.flops;
      return f / m.config.seq_len();
    };
    std::ostringstream t;
    t << "| slicing | hidden kept | perplexity | Δ ppl % | KL vs dense (nats/token) | top-1 agree % | "
         "params | FLOPs/token | bytes | tokens/s | slicing time (s) |\n"
         "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    const LmEvalResult base = evaluate_lm(dense, win, 16);
    double ppl25 = -1;
    auto row = [&](const std::string& label, const Model& m, double secs) {
      LmEvalResult r = evaluate_lm(m, win, 16);
      LmEvalResult k = evaluate_lm(m, kl_win, 16, &dense);
      t << "| " << label << " | " << m.config.layers[0].attn_in << " | " << f("%.3f", r.perplexity)
        << " | " << f("%+.1f", 100.0 * (r.perplexity / base.perplexity - 1)) << " | "
        << f("%.4f", k.kl) << " | " << f("%.2f", 100.0 * k.top1) << " | " << m.num_params() << " | "
        << flops_per_token(m) << " | " << checkpoint_bytes(m) << " | "
        << f("%.0f", r.tokens_per_second) << " | " << (secs < 0 ? std::string("-") : f("%.2f", secs))
        << " |\n";
      return r.perplexity;
    };
    row("dense", dense, -1);
    for (double s : a->slicing) {
      Model m = dense.clone();
      SliceGptOptions o;
      o.slicing = s;
      o.round_to = a->round_to;
      const double t0 = now_ms();
      slice_gpt(m, calib, o, 16, [](const std::string&) {});
      const double secs = (now_ms() - t0) / 1000.0;
      std::cerr << "bench: slicing " << s << " done in " << secs << " s\n";
      const double p = row(f("%.2f", s), m, secs);
      if (std::abs(s - 0.25) < 1e-9) ppl25 = p;
    }
    std::ostringstream body;
    const auto& c = dense.config;
    body << "`" << a->model << "`: " << c.family << ", " << c.num_hidden_layers << " layers, hidden size "
         << c.hidden_size << ", " << c.layers[0].heads << " heads / " << c.layers[0].kv_heads
         << " kv-heads, vocab " << c.vocab_size << ", " << dense.num_params() << " params; "
         << tok->kind() << " tokenizer. Perplexity on `" << a->data << "`"
         << (a->data_from > 0 ? " from " + f("%.0f", 100 * a->data_from) + "% of its tokens on" : std::string())
         << " (" << eval_tokens.numel()
         << " tokens, " << win.size(0) << " non-overlapping windows of " << a->seq_len
         << "); KL / top-1 against the dense model on "
         << (a->kl_data.empty() ? "the same windows" : "`" + a->kl_data + "` (" + std::to_string(kl_win.size(0)) + " windows of " + std::to_string(a->seq_len) + ")")
         << "; calibration: " << a->samples << " windows of " << a->seq_len << " tokens from `"
         << a->calibration << "`"
         << (a->calibration_to < 1 ? " (its first " + f("%.0f", 100 * a->calibration_to) + "% of tokens)" : std::string())
         << ", seed " << a->seed << "; kept width rounded down to a multiple of "
         << a->round_to << "; head unsliced; " << at::get_num_threads()
         << " thread(s). FLOPs/token = 2 x MACs of a " << c.seq_len()
         << "-token sequence / its tokens; tokens/s = evaluation forward passes (batch 16).\n\n"
         << t.str();
    if (ppl25 > 0)
      body << "\nAt slicing 0.25: perplexity " << f("%+.1f", 100.0 * (ppl25 / base.perplexity - 1))
           << "% vs dense; SliceGPT's published figures at 25% (WikiText-2, their Table 1): "
              "OPT-125M +36.5%, Llama-2-7B +32%.\n";
    const std::string header =
        "# SliceGPT on decoder language models\n\nWritten by `pare bench slicegpt-lm` (see "
        "scripts/bench); one section per model.\n\n";
    std::string old = file_exists(a->out) ? read_file(a->out) : "";
    write_file_atomic(a->out, replace_section(old, a->name, body.str(), header));
    std::cout << body.str();
    return 0;
  }};
}

BenchCommand bench_lm_speed(CLI::App* bench) {
  struct Args {
    std::string model;
    std::vector<int64_t> batches{1, 16};
    int64_t seq_len = 256, reps = 10, warmup = 3;
  };
  auto a = std::make_shared<Args>();
  auto* sub = bench->add_subcommand(
      "lm-speed", "Dense forward throughput of a decoder LM (tokens/s), as JSON on stdout "
                  "(scripts/lm_speed.py sets it beside PyTorch eager)");
  sub->add_option("--model", a->model, "Model folder, .gguf or llama2.c .bin")->required();
  sub->add_option("--batches", a->batches, "Batch sizes")->capture_default_str();
  sub->add_option("--seq-len", a->seq_len, "Tokens per sequence")->capture_default_str();
  sub->add_option("--reps", a->reps, "Timed forward passes per batch size")->capture_default_str();
  return {sub, [a]() -> int {
    PARE_CHECK(a->reps > 0 && a->seq_len > 0, "--reps and --seq-len must be positive");
    Model m = load_model(a->model);
    PARE_CHECK(m.config.is_lm(), a->model, ": lm-speed needs a decoder LM");
    c10::InferenceMode guard;  // as the eager side's torch.inference_mode()
    torch::manual_seed(0);
    nlohmann::json out = {{"model", a->model}, {"seq_len", a->seq_len},
                          {"threads", at::get_num_threads()}, {"batches", nlohmann::json::object()}};
    for (int64_t b : a->batches) {
      PARE_CHECK(b > 0, "--batches: expected positive sizes, got ", b);
      torch::Tensor ids = torch::randint(m.config.vocab_size, {b, a->seq_len}, torch::kLong);
      for (int64_t i = 0; i < a->warmup; ++i) m.forward(ids);
      std::vector<double> ms;
      for (int64_t i = 0; i < a->reps; ++i) {
        const double t0 = now_ms();
        m.forward(ids);
        ms.push_back(now_ms() - t0);
      }
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      out["batches"][std::to_string(b)] = {{"median_ms", med},
                                           {"tokens_per_second", 1000.0 * double(b * a->seq_len) / med}};
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }};
}

BenchCommand bench_slicegpt_memory(CLI::App* bench) {
  struct Args {
    std::string model, name, tokenizer, calibration, out = "results/slicegpt-memory.md";
    double slicing = 0.25;
    int64_t samples = 16, seq_len = 128, batch = 16;
    std::string precision = "float64";
    uint64_t seed = 0;
  };
  auto a = std::make_shared<Args>();
  auto* sub = bench->add_subcommand(
      "slicegpt-memory", "Peak RSS of SliceGPT on a decoder LM against one layer's weights + the "
                         "calibration activations + the mapped checkpoint's resident part");
  sub->add_option("--model", a->model, "Model folder with model.safetensors (memory-mapped)")->required();
  sub->add_option("--name", a->name, "Section title in the results file")->required();
  sub->add_option("--tokenizer", a->tokenizer, "Tokenizer (default: the model's own)");
  sub->add_option("--calibration", a->calibration, "Calibration text")->required();
  sub->add_option("--slicing", a->slicing, "Slicing ratio")->capture_default_str();
  sub->add_option("--calibration-samples", a->samples, "Calibration windows")->capture_default_str();
  sub->add_option("--seq-len", a->seq_len, "Tokens per window")->capture_default_str();
  sub->add_option("--calibration-batch", a->batch, "Calibration windows per forward batch")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  sub->add_option("--precision", a->precision, "slicegpt precision: float64 or float32")
      ->check(CLI::IsMember({"float64", "float32"}))
      ->capture_default_str();
  sub->add_option("--out", a->out, "Results file")->capture_default_str();
  return {sub, [a]() -> int {
    namespace fs = std::filesystem;
    PARE_CHECK(a->slicing >= 0 && a->slicing < 1, "--slicing: expected [0, 1), got ", a->slicing);
    PARE_CHECK(fs::is_directory(a->model), a->model,
               ": expected a model folder (its safetensors are memory-mapped)");
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(a->model))
      if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
    PARE_CHECK(!files.empty(), a->model, ": no .safetensors file to memory-map");
    const int64_t rss_process = current_rss_bytes();  // LibTorch and pare loaded, no model yet
    Model m = load_model(a->model);
    PARE_CHECK(m.config.is_lm(), a->model, ": slicegpt-memory needs a decoder LM");
    const int64_t rss_loaded = current_rss_bytes();
    auto tok = tokenizer_for_model(a->model, a->tokenizer, m);
    torch::Tensor calib = calibration_windows(tokenize_file(*tok, a->calibration), a->samples,
                                              a->seq_len, a->seed, a->calibration);
    int64_t file_bytes = 0;
    for (const auto& f : files) file_bytes += static_cast<int64_t>(fs::file_size(f));
    const int64_t params = m.num_params();
    SliceGptOptions o;
    o.slicing = a->slicing;
    const double t0 = now_ms();
    o.spill_dir = fs::temp_directory_path().string();
    o.precision = a->precision;
    // Mapped files' resident pages (checkpoint + scratch file) above the level before loading,
    // read after every layer; the largest reading enters the budget.
    int64_t mapped = 0;
    std::vector<std::string> needles = files;
    needles.push_back("/pare-spill-");
    nlohmann::json notes = slice_gpt(m, calib, o, a->batch, [&](const std::string& s) {
      const int64_t now = mapped_resident_bytes(needles);
      mapped = std::max(mapped, now);
      std::cerr << s << " (RSS " << current_rss_bytes() / (1 << 20) << " MiB, peak "
                << peak_rss_bytes() / (1 << 20) << " MiB, mapped files "
                << now / (1 << 20) << " MiB)\n";
    });
    const double secs = (now_ms() - t0) / 1000.0;
    const auto& mem = notes.at("memory");
    const int64_t peak = mem.at("peak_rss_bytes"), layer = mem.at("largest_layer_bytes"),
                  acts = mem.at("calibration_activation_bytes"), rss_start = mem.at("rss_start_bytes");
    PARE_CHECK(peak > 0, "slicegpt-memory: this kernel does not report a resettable peak RSS ",
               "(/proc/self/status VmHWM, /proc/self/clear_refs)");
    const int64_t budget = 2 * (layer + acts + mapped);
    auto mib = [](int64_t b) { return f("%.1f", double(b) / double(1 << 20)); };
    std::ostringstream body;
    const auto& c = m.config;
    body << "`" << a->model << "`: " << c.family << ", " << c.num_hidden_layers << " layers, hidden size "
         << c.hidden_size << ", vocab " << c.vocab_size << ", " << params << " params, "
         << mib(file_bytes) << " MiB of safetensors (memory-mapped, copy-on-write; finished layers "
            "spilled to a scratch file in " << o.spill_dir << "). Slicing " << a->slicing
         << " with " << a->samples << " calibration windows of " << a->seq_len << " tokens from `"
         << a->calibration << "`, " << a->batch << " window(s) per forward batch, precision "
         << a->precision << "; "
         << at::get_num_threads() << " thread(s); slicing took "
         << f("%.1f", secs) << " s.\n\n"
         << "| figure | MiB |\n|---|---:|\n"
         << "| process RSS before loading (LibTorch, pare, libraries) | " << mib(rss_process) << " |\n"
         << "| RSS after load_model (mapped, nothing read yet) | " << mib(rss_loaded) << " |\n"
         << "| RSS when slicing starts (calibration text tokenised) | " << mib(rss_start) << " |\n"
         << "| largest layer's weights as loaded (one block, or the embedding / head) | " << mib(layer) << " |\n"
         << "| calibration activations of one site (" << a->precision << ") | " << mib(acts) << " |\n"
         << "| mapped files resident (checkpoint + scratch file of finished layers), largest "
            "reading after a layer | " << mib(mapped) << " |\n"
         << "| **budget** = 2 x (layer + activations + mapped resident) | " << mib(budget) << " |\n"
         << "| **peak RSS while slicing** (VmHWM, reset when slicing starts) | " << mib(peak) << " |\n"
         << "| peak RSS above the RSS when slicing starts | " << mib(peak - rss_start) << " |\n\n"
         << "Peak / budget: " << f("%.2f", double(peak) / double(budget)) << " ("
         << (peak < budget ? "below" : "ABOVE") << " the target); counting only what slicing "
         << "added to the process: " << f("%.2f", double(peak - rss_start) / double(budget)) << ".\n";
    const std::string header =
        "# SliceGPT memory: peak RSS while slicing\n\nWritten by `pare bench slicegpt-memory` "
        "(see scripts/bench); one section per model. Target (decoder-LM issue): peak RSS below "
        "2 x (one layer's weights + that layer's calibration activations + the mapped file's "
        "resident part).\n\n";
    std::string old = file_exists(a->out) ? read_file(a->out) : "";
    write_file_atomic(a->out, replace_section(old, a->name, body.str(), header));
    std::cout << body.str();
    return 0;
  }};
}

}  // namespace pare::cli
