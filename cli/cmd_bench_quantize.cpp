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
// The text after the line "<!-- discussion -->" in an existing output file is kept.
#include <ATen/Parallel.h>

#include <iostream>
#include <map>
#include <sstream>

#include "bench_util.h"
#include "checkpoint.h"
#include "error.h"
#include "evaluate.h"
#include "pass.h"
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

}  // namespace

BenchCommand bench_quantize(CLI::App* bench) {
  struct Args : BenchPaths {
    Args() { out = "results/quantize.md"; }
    int64_t samples = 1024;
    int reps_b1 = 30, reps_b256 = 8;
  };
  auto a = std::make_shared<Args>();
  auto* sub = bench->add_subcommand("quantize", "RTN / GPTQ weight quantization: accuracy, bytes, latency");
  add_bench_paths(sub, *a);
  sub->add_option("--calibration-samples", a->samples, "Calibration images")->capture_default_str();
  sub->add_option("--reps-b1", a->reps_b1, "Timed runs at batch 1")->capture_default_str();
  sub->add_option("--reps-b256", a->reps_b256, "Timed runs at batch 256")->capture_default_str();
  return {sub, [a]() -> int {
    ImageDataset test = load_fashion_mnist(a->data, "test");
    Model dense = load_model(a->model);
    PassContext ctx;
    ctx.data_dir = a->data;
    ctx.calibration_samples = a->samples;
    AnalysisManager am;
    const torch::Tensor calib = am.get<CalibrationImages>(dense, ctx);
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
      const int64_t bytes = checkpoint_bytes(m);
      const LinearBytes lb = linear_bytes(m);
      auto [d1, q1] = side_by_side(dense, m, 1, a->reps_b1);
      auto [d256, q256] = side_by_side(dense, m, 256, a->reps_b256);
      log(concat(v.name(), ": acc ", acc, " bytes ", bytes, " ", secs, " s"));
      md << "| " << v.name() << " | " << f("%.2f", acc) << " | " << f("%+.2f", acc - acc0) << " | "
         << f("%.4f", lerr) << " | " << f("%.2f", agree) << " | " << bytes << " | " << f("%.3f", double(bytes) / bytes0) << " | " << lb.stored << " | "
         << lb.float32 << " | " << f("%.4f", double(lb.stored) / lb.float32) << " | "
         << f("%.4f", double(lb.ideal_codes) / lb.float32) << " | " << f("%.2f", secs) << " | "
         << f("%.3f", d1) << " / " << f("%.3f", q1) << " | " << f("%.1f", d256) << " / "
         << f("%.1f", q256) << " | " << f("%.3f", d1 / q1) << " | " << f("%.3f", d256 / q256)
         << " |\n";
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
        md << r.name().substr(0, r.name().size() - 4) << ": accuracy " << f("%.2f", g) << " vs "
           << f("%.2f", rt) << (g > rt ? " (better)" : g == rt ? " (tie)" : " (**worse**)")
           << ", logit error " << f("%.4f", lg) << " vs " << f("%.4f", lr)
           << (lg < lr ? " (better); " : " (**worse**); ");
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
