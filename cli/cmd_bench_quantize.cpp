// pare bench quantize: weight-only quantization of the shipped ViT, behind results/quantize.md.
//
// Variants: float32 (dense), int8 per channel and int4 with groups of 128 / 32 columns, symmetric
// and asymmetric, by RTN and GPTQ (1,024 calibration images, seed 0), plus one GPTQ act-order
// run; the quantize pass's default selection (the block linears; patch embedding and classifier
// stay float32). Per variant: top-1 accuracy on the 10k test images, checkpoint bytes, bytes of
// the quantized linears' weights (codes + scales + zero points) against their float32 size and
// the bits/32 ideal, quantization seconds, and latency at batch 1 and 256 measured side by side
// with the dense model (alternating forwards, medians, ratio from one run). Then the forward-mode
// comparison of QuantLinear (chunked vs whole-matrix dequantization vs dense).
// With a gps model (--data: its graph data set) the variants are int8 per channel and int4 with
// groups of 64 columns (the largest group dividing every width of the pare-trained GraphGPS
// models, hidden 64), RTN and GPTQ (calibrated on train graphs), and the metric is the model's
// task metric on the test split; latency is measured at 1 graph and at the first 128 test graphs.
// With a decoder LM (--data: evaluation text, --calibration: calibration text): perplexity, KL and
// top-1 against dense at int8 per channel and int4 with the largest group of 128 / 64 / 32 that
// divides every width, RTN and GPTQ; latency at 1 and 16 windows.
// The text after the line "<!-- discussion -->" in an existing output file is kept.
#include <ATen/Parallel.h>

#include <iostream>
#include <map>
#include <sstream>

#include "bench_util.h"
#include "families/checkpoint.h"
#include "base/error.h"
#include "tasks/evaluate.h"
#include "families/family.h"
#include "data/graph_data.h"
#include "tasks/graph_eval.h"
#include "tasks/lm_data.h"
#include "tasks/lm_eval.h"
#include "pipeline/pass.h"
#include "quantize_pass.h"

namespace pare::cli {
namespace {

struct Variant {
  std::string method;
  QuantSlot format;
  bool act_order = false;
  std::string name() const {
    std::string n = concat("int", format.bits, " ",
                           format.group_size == 0 ? std::string("per-channel")
                                                  : concat("g", format.group_size),
                           format.symmetric ? " sym " : " asym ", method);
    return act_order ? n + " act-order" : n;
  }
};

// Bytes of the quantized slots' stored weights (codes, scales, zero points; bias excluded), their
// float32 size, and the bits/32 share of that float32 size.
struct LinearBytes {
  int64_t stored = 0, float32 = 0, ideal_codes = 0;
};
LinearBytes linear_bytes(const Model& m) {
  LinearBytes b;
  for (const auto& [slot, q] : m.config.quantized) {
    const LinearForm& f = m.linear(slot);
    for (const auto& [part, t] : f.tensors())
      if (part != "bias") b.stored += t.numel() * static_cast<int64_t>(t.element_size());
    b.float32 += 4 * f.in_features() * f.out_features();
    b.ideal_codes += f.in_features() * f.out_features() * q.bits / 8;
  }
  return b;
}

void set_mode(Model& m, QuantLinear::Mode mode) {
  for (auto& [slot, form] : m.linears)
    if (auto q = std::dynamic_pointer_cast<QuantLinear>(form)) q->mode = mode;
}

struct QuantArgs : BenchPaths {
  QuantArgs() { out = "results/quantize.md"; }
  int64_t samples = 1024;
  int reps_b1 = 30, reps_b256 = 8;
  // Decoder LMs: calibration text, tokenizer, evaluation windows.
  std::string calibration, tokenizer;
  int64_t windows = 400, seq_len = 128;
};

// The columns every model's row shares: bytes, linear bytes against float32 and the bits/32
// ideal, quantization seconds, and two side-by-side latencies (small input, batch) with ratios;
// bytes0 = the dense checkpoint's bytes, big_fmt = the printf format of the batch latencies.
std::string common_columns(int64_t bytes0, const Model& m, double secs,
                           std::pair<double, double> small, std::pair<double, double> big,
                           const char* big_fmt = "%.2f") {
  const int64_t bytes = checkpoint_bytes(m);
  const LinearBytes lb = linear_bytes(m);
  return concat(bytes, " | ", f("%.3f", double(bytes) / bytes0), " | ", lb.stored, " | ", lb.float32,
                " | ", f("%.4f", double(lb.stored) / lb.float32), " | ",
                f("%.4f", double(lb.ideal_codes) / lb.float32), " | ", f("%.2f", secs), " | ",
                f("%.3f", small.first), " / ", f("%.3f", small.second), " | ", f(big_fmt, big.first),
                " / ", f(big_fmt, big.second), " | ", f("%.3f", small.first / small.second), " | ",
                f("%.3f", big.first / big.second), " |");
}
const char* const kCommonHeader =
    "bytes | bytes vs dense | linear bytes | float32 linear bytes | linear / float32 | bits/32 | "
    "quantization s";

// The largest group size of 128, 64, 32 that divides every quantized width of m (0: none does).
int64_t largest_group(const Model& m) {
  for (int64_t g : {128, 64, 32}) {
    QuantizeOptions o;
    o.format = {4, g, true};
    try {
      quantize_slots(m, o);
      return g;
    } catch (const InputError&) {
    }
  }
  return 0;
}

// Decoder LM: perplexity on --data windows, KL / top-1 against dense on them, GPTQ calibrated on
// --calibration windows, latency at one window and at 16.
int lm_quantize(const QuantArgs& a) {
  Model dense = load_model(a.model);
  PARE_CHECK(a.data != kDefaultFashionMnistDir, "bench quantize: ", a.model,
             " is a language model: --data must name an evaluation text");
  PARE_CHECK(!a.calibration.empty(), "bench quantize: a language model needs --calibration TEXT");
  PARE_CHECK(a.windows != 0 && a.seq_len > 1, "bench quantize: --windows must be positive (or -1: "
             "all) and --seq-len at least 2, got ", a.windows, " and ", a.seq_len);
  auto tok = tokenizer_for_model(a.model, a.tokenizer, dense);
  const torch::Tensor win = token_windows(tokenize_file(*tok, a.data), a.seq_len, a.windows, a.data);
  const torch::Tensor calib = calibration_windows(tokenize_file(*tok, a.calibration), a.samples,
                                                  a.seq_len, 0, a.calibration);
  const LmEvalResult base = evaluate_lm(dense, win, 16);
  const int64_t bytes0 = checkpoint_bytes(dense);
  const int64_t g = largest_group(dense);
  std::vector<Variant> variants;
  for (const char* method : {"rtn", "gptq"}) variants.push_back({method, {8, 0, true}});
  for (const char* method : {"rtn", "gptq"}) variants.push_back({method, {4, g, true}});
  const torch::Tensor one = win.narrow(0, 0, 1), batch = win.narrow(0, 0, std::min<int64_t>(16, win.size(0)));
  const int threads = at::get_num_threads();
  std::ostringstream md;
  md << "# Weight-only quantization of a decoder LM (" << a.model << ")\n\n"
     << "Produced by `scripts/bench` (`pare --threads " << threads << " bench quantize --model "
     << a.model << "`). LibTorch intra-op threads: " << threads << ". Perplexity on "
     << win.size(0) << " windows of " << a.seq_len << " tokens of " << a.data
     << "; KL (nats/token) and top-1 agreement against the float32 model on the same tokens. "
        "Quantized: the block linears (the quantize pass's default `include: blk\\..*`); "
        "embeddings and the output head stay float32. int4 groups: "
     << (g ? concat(g, " input columns, the largest of 128 / 64 / 32 dividing every quantized width")
           : std::string("per channel (no group of 128 / 64 / 32 divides every width)"))
     << ". GPTQ: 1% damping, " << calib.size(0) << " calibration windows of " << a.calibration
     << " (seed 0). Latency: median of alternating dense/quantized forwards after 3 warm-ups ("
     << a.reps_b1 << " runs of 1 window, " << a.reps_b256 << " of " << batch.size(0)
     << " windows); ratio = dense / quantized.\n\n"
     << "Dense float32: perplexity " << f("%.3f", base.perplexity) << ", "
     << bytes0 << " bytes.\n\n"
     << "| variant | perplexity | Δ ppl % | KL | top-1 agree % | " << kCommonHeader
     << " | latency 1 window dense/quant (ms) | latency " << batch.size(0)
     << " windows dense/quant (ms) | ratio 1 | ratio " << batch.size(0) << " |\n"
     << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (auto v : variants) {
    if (v.format.bits == 4 && g == 0) v.format.group_size = 0;
    Model m = dense.clone();
    QuantizeOptions o;
    o.method = v.method;
    o.format = v.format;
    const double t0 = now_ms();
    quantize_model(m, v.method == "gptq" ? calib : torch::Tensor(), o, 16, [](const std::string&) {});
    const double secs = (now_ms() - t0) / 1000.0;
    m.verify_or_throw("bench");
    const LmEvalResult r = evaluate_lm(m, win, 16, &dense);
    auto run = [](const torch::Tensor& x) { return [&x](const Model& y) { return y.forward(x); }; };
    const auto small = side_by_side(dense, m, a.reps_b1, run(one));
    const auto big = side_by_side(dense, m, a.reps_b256, run(batch));
    std::cerr << "bench: " << v.name() << ": perplexity " << r.perplexity << "\n";
    md << "| " << v.name() << " | " << f("%.3f", r.perplexity) << " | "
       << f("%+.2f", 100.0 * (r.perplexity / base.perplexity - 1)) << " | " << f("%.5f", r.kl)
       << " | " << f("%.2f", 100.0 * r.top1) << " | " << common_columns(bytes0, m, secs, small, big)
       << "\n";
  }
  write_results(a.out, md.str());
  std::cout << md.str();
  return 0;
}

// gps: one row per variant, metric on the test split, logits against dense, bytes, side-by-side
// latency on one graph and on a batch of the first 128 test graphs.
int graph_quantize(const QuantArgs& a) {
  PARE_CHECK(a.data != kDefaultFashionMnistDir, "bench quantize: ", a.model,
             " is a graph transformer: --data must name its graph data set (TU folder or "
             "MoleculeNet CSV)");
  const int64_t samples = a.samples;
  const int reps_small = a.reps_b1, reps_batch = a.reps_b256;
  Model dense = load_model(a.model);
  GraphData d = load_graph_data(a.data, graph_data_options(dense.config));
  check_graph_data_fits(dense.config, d.ds, a.data);
  std::vector<int64_t> test = split_indices(d, "test");
  if (a.limit > 0 && static_cast<int64_t>(test.size()) > a.limit) test.resize(a.limit);
  const std::vector<int64_t> calib = spaced_subset(split_indices(d, "train"), samples);
  const std::string metric = graph_metric_name(dense.config.gps.task);
  auto score = [&](const Model& m) {
    const double v = evaluate_graph(m, d.ds, test, 128).value;
    return metric == "mae" ? v : 100.0 * v;
  };
  const double v0 = score(dense);
  const torch::Tensor logits0 = predict_graph_logits(dense, d.ds, test, 128);
  const int64_t bytes0 = checkpoint_bytes(dense);
  const GraphBatch one = collate(d.ds, {test[0]});
  const GraphBatch batch = collate(
      d.ds, std::vector<int64_t>(test.begin(), test.begin() + std::min<size_t>(128, test.size())));
  auto fwd = [](const GraphBatch& b) {
    return [&b](const Model& x) { return x.family().forward_graph(x, b); };
  };
  std::vector<Variant> variants;
  for (int64_t g : {int64_t(0), int64_t(64)})
    for (const char* method : {"rtn", "gptq"}) variants.push_back({method, {g == 0 ? 8 : 4, g, true}});
  const int threads = at::get_num_threads();
  const std::string unit = graph_metric_label(metric);
  std::ostringstream md;
  md << "# Weight-only quantization of a graph transformer (" << a.model << ")\n\n"
     << "Produced by `scripts/bench` (`pare --threads " << threads << " bench quantize --model "
     << a.model << "`). LibTorch intra-op threads: " << threads << ". Data: " << d.describe()
     << ", test split (" << test.size() << " graphs). Quantized: every linear of the blocks "
        "(local message passing, Q/K/V/O, FFN: the quantize pass's default `include: blk\\..*`); "
        "encoders and the prediction head stay float32. int4 uses groups of 64 input columns: "
        "128 does not divide the 64-wide inputs (hidden 64), and pare refuses a group that does "
        "not divide a width. GPTQ: 1% damping, "
     << calib.size() << " train graphs (evenly spaced over the train split), batches of 128. "
        "Logit error = ‖z − z_dense‖ / ‖z_dense‖ over the test graphs' outputs. Bytes = "
        "config.json + model.safetensors; linear bytes = codes + scales of the quantized linears "
        "(bias excluded) against 4 × out × in. Latency: median of alternating dense/quantized "
        "forwards after 3 warm-ups ("
     << reps_small << " runs on one graph, " << reps_batch
     << " on the first " << batch.num_graphs << " test graphs as one batch); ratio = dense / quantized.\n\n"
     << "Dense float32: " << unit << " " << f("%.2f", v0) << ", " << bytes0 << " bytes.\n\n"
     << "| variant | " << unit << " | Δ | logit error | " << kCommonHeader << " | latency 1 graph "
        "dense/quant (ms) | latency " << batch.num_graphs << " graphs dense/quant (ms) | ratio 1 | ratio " << batch.num_graphs << " |\n"
     << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& v : variants) {
    Model m = dense.clone();
    QuantizeOptions o;
    o.method = v.method;
    o.format = v.format;
    const double t0 = now_ms();
    if (v.method == "gptq")
      quantize_model(m, d.ds, calib, o, 128, [](const std::string&) {});
    else
      quantize_model(m, torch::Tensor(), o, 128, [](const std::string&) {});
    const double secs = (now_ms() - t0) / 1000.0;
    m.verify_or_throw("bench");
    const double v1 = score(m);
    const torch::Tensor logits = predict_graph_logits(m, d.ds, test, 128);
    const double lerr = ((logits - logits0).norm() / logits0.norm()).item<double>();
    const auto small = side_by_side(dense, m, reps_small, fwd(one));
    const auto big = side_by_side(dense, m, reps_batch, fwd(batch));
    std::cerr << "bench: " << v.name() << ": " << metric << " " << v1 << "\n";
    md << "| " << v.name() << " | " << f("%.2f", v1) << " | " << f("%+.2f", v1 - v0) << " | "
       << f("%.4f", lerr) << " | " << common_columns(bytes0, m, secs, small, big) << "\n";
  }
  write_results(a.out, md.str());
  std::cout << md.str();
  return 0;
}

}  // namespace

BenchCommand bench_quantize(CLI::App* bench) {
  auto a = std::make_shared<QuantArgs>();
  auto* sub = bench->add_subcommand("quantize", "RTN / GPTQ weight quantization: accuracy, bytes, latency");
  add_bench_paths(sub, *a);
  sub->add_option("--calibration-samples", a->samples, "Calibration images")->capture_default_str();
  sub->add_option("--reps-b1", a->reps_b1, "Timed runs at batch 1")->capture_default_str();
  sub->add_option("--reps-b256", a->reps_b256, "Timed runs at batch 256")->capture_default_str();
  sub->add_option("--calibration", a->calibration, "Language models: calibration text");
  sub->add_option("--tokenizer", a->tokenizer, "Language models: tokenizer (default: the model's own)");
  sub->add_option("--windows", a->windows, "Language models: evaluation windows of --data")
      ->capture_default_str();
  sub->add_option("--seq-len", a->seq_len, "Language models: tokens per window")->capture_default_str();
  return {sub, [a]() -> int {
    const ArchConfig c = load_model(a->model).config;
    if (c.is_graph()) return graph_quantize(*a);
    if (c.is_lm()) return lm_quantize(*a);
    ImageDataset test = load_fashion_mnist(a->data, "test");
    Model dense = load_model(a->model);
    check_images_fit_model(test, dense.config, a->data);
    const torch::Tensor calib =
        draw_calibration_images(a->data, a->samples, 0, dense.config.image_mean, dense.config.image_std);
    auto log = [](const std::string& s) { std::cerr << "bench: " << s << "\n"; };
    const int threads = at::get_num_threads();
    // Logits on the test images: accuracy, and how far each variant's logits move from dense (a
    // finer signal than accuracy, whose differences here are a few images).
    const int64_t n_test = a->limit < 0 ? test.size() : std::min(a->limit, test.size());
    const torch::Tensor images = test.images.narrow(0, 0, n_test),
                        labels = test.labels.narrow(0, 0, n_test);
    auto accuracy = [&](const torch::Tensor& z) {
      return 100.0 * z.argmax(1).eq(labels).sum().item<double>() / double(n_test);
    };
    const torch::Tensor logits0 = predict_logits(dense, images, 256);
    const double acc0 = accuracy(logits0);
    const int64_t bytes0 = checkpoint_bytes(dense);

    std::vector<Variant> variants;
    for (const char* method : {"rtn", "gptq"}) variants.push_back({method, {8, 0, true}});
    for (const char* method : {"rtn", "gptq"}) variants.push_back({method, {4, 0, true}});
    for (int64_t g : {128, 32})
      for (bool sym : {true, false})
        for (const char* method : {"rtn", "gptq"}) variants.push_back({method, {4, g, sym}});
    variants.push_back({"gptq", {4, 128, true}, true});

    std::ostringstream md;
    md << "# Weight-only quantization of the shipped ViT (models/vit-fmnist)\n\n"
       << "Produced by `scripts/bench` (`pare --threads " << threads
       << " bench quantize`). LibTorch intra-op threads: " << threads
       << ". Quantized: the 24 block linears (Q/K/V/O, MLP up/down of 4 layers; the quantize "
          "pass's default `include: blk\\..*`), patch embedding and classifier stay float32. "
          "GPTQ: 1% damping, blocks of 128 columns, "
       << a->samples << " calibration train images (seed 0), batch 256. Accuracy: top-1 on "
       << n_test
       << " Fashion-MNIST test images; logit error = ‖z − z_dense‖ / ‖z_dense‖ over all their "
          "logits, agreement = share of images whose top-1 class equals the dense model's. Bytes = config.json + model.safetensors. Linear bytes = "
          "codes + scales (+ zero points) of the quantized linears, bias excluded; float32 = "
          "4 × out × in of the same linears; bits/32 share = the codes alone. FLOPs are "
          "unchanged (a quantized linear does the dense multiply-accumulates; dequantization "
          "is not counted). Latency: median of alternating dense/quantized forwards on the same "
          "random batch after 3 warm-up runs ("
       << a->reps_b1 << " runs at batch 1, " << a->reps_b256
       << " at batch 256); ratio = dense / quantized from the same run (> 1: quantized faster). "
          "Forward mode: the QuantLinear default (see the forward-mode table).\n\n"
       << "Dense float32: accuracy " << f("%.2f", acc0) << "%, " << bytes0 << " bytes.\n\n"
       << "| variant | accuracy % | Δ acc | logit error | agreement % | bytes | bytes vs dense | linear bytes | float32 "
          "linear bytes | linear / float32 | bits/32 | quantization s | latency b1 dense/quant "
          "(ms) | latency b256 dense/quant (ms) | ratio b1 | ratio b256 |\n"
       << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    std::map<std::string, double> acc_of, lerr_of;
    std::map<std::string, torch::Tensor> right_of;  // per test image: top-1 correct
    std::map<std::string, Model> keep;  // for the forward-mode comparison
    for (const auto& v : variants) {
      Model m = dense.clone();
      QuantizeOptions o;
      o.method = v.method;
      o.format = v.format;
      o.gptq.act_order = v.act_order;
      double t0 = now_ms();
      quantize_model(m, v.method == "gptq" ? calib : torch::Tensor(), o, 256,
                     [](const std::string&) {});
      const double secs = (now_ms() - t0) / 1000.0;
      m.verify_or_throw("bench");
      const torch::Tensor logits = predict_logits(m, images, 256);
      const double acc = accuracy(logits);
      const double lerr = ((logits - logits0).norm() / logits0.norm()).item<double>();
      const double agree = 100.0 * logits.argmax(1).eq(logits0.argmax(1)).sum().item<double>() /
                           double(n_test);
      acc_of[v.name()] = acc;
      lerr_of[v.name()] = lerr;
      right_of[v.name()] = logits.argmax(1).eq(labels);
      const auto b1 = side_by_side(dense, m, 1, a->reps_b1);
      const auto b256 = side_by_side(dense, m, 256, a->reps_b256);
      log(concat(v.name(), ": acc ", acc, " ", secs, " s"));
      md << "| " << v.name() << " | " << f("%.2f", acc) << " | " << f("%+.2f", acc - acc0) << " | "
         << f("%.4f", lerr) << " | " << f("%.2f", agree) << " | "
         << common_columns(bytes0, m, secs, b1, b256, "%.1f") << "\n";
      if (v.method == "gptq" && !v.act_order &&
          ((v.format.bits == 8) || (v.format.group_size == 128 && v.format.symmetric)))
        keep.emplace(v.name(), std::move(m));
    }

    // Targets.
    md << "\nTargets: int8 loses ≤ 0.5 points — ";
    for (const auto& v : variants)
      if (v.format.bits == 8)
        md << v.name() << " " << f("%+.2f", acc_of[v.name()] - acc0)
           << (acc0 - acc_of[v.name()] <= 0.5 ? " (met); " : " (**missed**); ");
    md << "GPTQ int4 beats RTN int4 — ";
    for (const auto& v : variants)
      if (v.format.bits == 4 && v.method == "gptq" && !v.act_order) {
        Variant r = v;
        r.method = "rtn";
        const double g = acc_of[v.name()], rt = acc_of[r.name()];
        const double lg = lerr_of[v.name()], lr = lerr_of[r.name()];
        // Paired: images only GPTQ gets right (b) and only RTN gets right (c); exact two-sided
        // McNemar p = P(|B − n/2| ≥ |b − n/2|) for B ~ Binomial(b + c, 1/2).
        const torch::Tensor gr = right_of[v.name()], rr = right_of[r.name()];
        const int64_t b = gr.logical_and(rr.logical_not()).sum().item<int64_t>();
        const int64_t c = rr.logical_and(gr.logical_not()).sum().item<int64_t>();
        md << r.name().substr(0, r.name().size() - 4) << ": accuracy " << f("%.2f", g) << " vs "
           << f("%.2f", rt) << (g > rt ? " (better)" : g == rt ? " (tie)" : " (**worse**)")
           << ", only GPTQ right " << b << " / only RTN right " << c << " images (McNemar exact p "
           << f("%.2f", mcnemar_exact_p(b, c)) << "), logit error " << f("%.4f", lg) << " vs "
           << f("%.4f", lr) << (lg < lr ? " (better); " : " (**worse**); ");
      }
    md << "\n";

    // Forward modes: chunked vs whole-matrix dequantization vs dense, pairwise side by side.
    md << "\n## Forward modes of the quantized linear\n\n"
       << "Chunked: dequantize " << QuantLinear::kChunkElems
       << " weights (a block of output rows) at a time and multiply into the matching output "
          "columns (bounded transient memory); whole: dequantize the whole matrix, then one GEMM. "
          "Each pair timed side by side (medians, ms); ratio = first / second.\n\n"
       << "| variant | pair | batch 1 (ms) | ratio b1 | batch 256 (ms) | ratio b256 |\n"
       << "|---|---|---:|---:|---:|---:|\n";
    for (auto& [name, m] : keep) {
      Model chunked = m.clone(), whole = m.clone();
      set_mode(chunked, QuantLinear::Mode::kChunked);
      set_mode(whole, QuantLinear::Mode::kWhole);
      const std::pair<const char*, std::pair<const Model*, const Model*>> pairs[] = {
          {"chunked / whole", {&chunked, &whole}},
          {"dense / chunked", {&dense, &chunked}},
          {"dense / whole", {&dense, &whole}}};
      for (const auto& [label, p] : pairs) {
        auto [x1, y1] = side_by_side(*p.first, *p.second, 1, a->reps_b1);
        auto [x256, y256] = side_by_side(*p.first, *p.second, 256, a->reps_b256);
        md << "| " << name << " | " << label << " | " << f("%.3f", x1) << " / " << f("%.3f", y1)
           << " | " << f("%.3f", x1 / y1) << " | " << f("%.1f", x256) << " / " << f("%.1f", y256)
           << " | " << f("%.3f", x256 / y256) << " |\n";
      }
    }
    write_results(a->out, md.str());
    std::cout << md.str();
    return 0;
  }};
}

}  // namespace pare::cli
