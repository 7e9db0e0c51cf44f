// pare bench slicegpt: the SliceGPT sweep behind results/quickstart.md.
//
// For each slicing ratio, with and without head slicing: slicing time, top-1 accuracy on the 10k
// test images, params, FLOPs/image, checkpoint bytes, and latency at batch 1 and 256 measured
// side by side with the dense model in the same run (dense and sliced forwards alternate, medians
// compared), so the speedup s = latency_dense / latency_sliced is a ratio from one run. Also times
// one evaluation pass (forward only) over the calibration images, the yardstick for slicing time.
// The text after the line "<!-- discussion -->" in an existing output file is kept.
// `pare bench` dispatches to one benchmark per subcommand (bench_util.h).
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "bench_util.h"
#include "builtin.h"
#include "families/checkpoint.h"
#include "commands.h"
#include "base/error.h"
#include "tasks/evaluate.h"
#include "base/fileio.h"
#include "pipeline/pass.h"
#include "slicegpt.h"

namespace pare::cli {

BenchCommand bench_vit_speed(CLI::App* bench);   // cmd_bench_vit.cpp
BenchCommand bench_bert_speed(CLI::App* bench);  // cmd_bench_bert.cpp

namespace {

BenchCommand bench_slicegpt(CLI::App* bench) {
  struct Args : BenchPaths {
    Args() { out = "results/quickstart.md"; }
    std::vector<double> slicing{0.0, 0.1, 0.2, 0.25, 0.3, 0.4};
    int64_t samples = 1024;
    int reps_b1 = 50, reps_b256 = 10;
  };
  auto a = std::make_shared<Args>();
  auto* sub = bench->add_subcommand("slicegpt", "SliceGPT sweep: accuracy, size, FLOPs, latency");
  add_bench_paths(sub, *a);
  sub->add_option("--slicing", a->slicing, "Slicing ratios")->capture_default_str();
  sub->add_option("--calibration-samples", a->samples, "Calibration images")->capture_default_str();
  sub->add_option("--reps-b1", a->reps_b1, "Timed runs at batch 1")->capture_default_str();
  sub->add_option("--reps-b256", a->reps_b256, "Timed runs at batch 256")->capture_default_str();
  return {sub, [a]() -> int {
    for (double s : a->slicing)
      PARE_CHECK(s >= 0 && s < 1, "--slicing: expected values in [0, 1), got ", s);
    ImageDataset test = load_fashion_mnist(a->data, "test");
    Model dense = load_model(a->model);
    check_images_fit_model(test, dense.config, a->data);
    const torch::Tensor calib =
        draw_calibration_images(a->data, a->samples, 0, dense.config.image_mean, dense.config.image_std);
    auto log = [](const std::string& s) { std::cerr << "bench: " << s << "\n"; };

    // Yardstick: one evaluation pass (forward, batch 256) over the calibration images.
    double t_eval = 0;
    {
      torch::NoGradGuard ng;
      double t0 = now_ms();
      for (int64_t i = 0; i < calib.size(0); i += 256)
        dense.forward(calib.narrow(0, i, std::min<int64_t>(256, calib.size(0) - i)));
      t_eval = (now_ms() - t0) / 1000.0;
    }
    const double acc0 = 100.0 * evaluate_accuracy(dense, test, 256, a->limit).accuracy;
    const int64_t flops0 = model_flops(dense), params0 = dense.num_params(),
                  bytes0 = checkpoint_bytes(dense);

    std::ostringstream md;
    md << "# SliceGPT on the shipped ViT (models/vit-fmnist)\n\n"
       << "Produced by `scripts/bench` (`pare --threads " << at::get_num_threads()
       << " bench slicegpt`). LibTorch intra-op threads: " << at::get_num_threads()
       << ". Calibration: " << a->samples << " train images, seed 0. Accuracy: top-1 on "
       << (a->limit < 0 ? test.size() : a->limit)
       << " Fashion-MNIST test images. FLOPs = 2 × MACs of all matmuls per image (patch "
          "projection, Q/K/V/O, MLP, shortcut matrices, attention QKᵀ and AV, classifier); norms, "
          "softmax, GELU and adds excluded. Bytes = config.json + model.safetensors (float32). "
          "Latency: median of alternating dense/sliced forwards on the same random batch after 3 "
          "warm-up runs ("
       << a->reps_b1 << " runs at batch 1, " << a->reps_b256
       << " at batch 256); speedup s = dense / sliced from the same run. FLOPs promise "
          "p = FLOPs_dense / FLOPs_sliced; target s − 1 ≥ 0.7 (p − 1). Slicing-time yardstick: "
          "one evaluation pass over the calibration images took "
       << f("%.2f", t_eval) << " s; target slicing time ≤ 3× that = " << f("%.2f", 3 * t_eval)
       << " s.\n\n"
       << "Dense: accuracy " << f("%.2f", acc0) << "%, " << params0 << " params, "
       << f("%.3f", flops0 / 1e6) << " MFLOPs/image, " << bytes0 << " bytes.\n\n"
       << "| slicing | head sliced | width | accuracy % | Δ acc | params | FLOPs/image (M) | "
          "bytes | latency b1 dense/sliced (ms) | latency b256 dense/sliced (ms) | speedup b1 | "
          "speedup b256 | FLOPs promise p | s−1 ≥ 0.7(p−1) at b256 | slicing time (s) | ≤ 3× eval |\n"
       << "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|\n";
    for (double s : a->slicing) {
      for (bool head : {false, true}) {
        if (s == 0.0 && head) continue;  // identical to the unsliced head at slicing 0
        Model m = dense.clone();
        SliceGptOptions o;
        o.slicing = s;
        o.slice_head = head;
        double t0 = now_ms();
        auto notes = slice_gpt(m, calib, o, 256, [](const std::string&) {});
        double t_slice = (now_ms() - t0) / 1000.0;
        m.verify_or_throw("bench");
        double acc = 100.0 * evaluate_accuracy(m, test, 256, a->limit).accuracy;
        int64_t flops = model_flops(m);
        auto [d1, s1] = side_by_side(dense, m, 1, a->reps_b1);
        auto [d256, s256] = side_by_side(dense, m, 256, a->reps_b256);
        double p = double(flops0) / double(flops), sp = d256 / s256;
        bool ok_speed = sp - 1 >= 0.7 * (p - 1);
        log(concat("slicing ", s, " head ", head, ": acc ", acc, " speedup b256 ", sp, " promise ", p));
        md << "| " << f("%.2f", s) << " | " << (head ? "yes" : "no") << " | "
           << notes["sliced_width"].get<int64_t>() << " | " << f("%.2f", acc) << " | "
           << f("%+.2f", acc - acc0) << " | " << m.num_params() << " | " << f("%.3f", flops / 1e6)
           << " | " << checkpoint_bytes(m) << " | " << f("%.3f", d1) << " / " << f("%.3f", s1)
           << " | " << f("%.1f", d256) << " / " << f("%.1f", s256) << " | " << f("%.3f", d1 / s1)
           << " | " << f("%.3f", sp) << " | " << f("%.3f", p) << " | "
           << (ok_speed ? "yes" : "**no**") << " | " << f("%.2f", t_slice) << " | "
           << (t_slice <= 3 * t_eval ? "yes" : "**no**") << " |\n";
      }
    }
    write_results(a->out, md.str());
    std::cout << md.str();
    return 0;
  }};
}

}  // namespace

Runner add_bench(CLI::App& app, Common&) {
  auto* bench = app.add_subcommand("bench", "Benchmarks that write results/*.md");
  bench->require_subcommand(1);
  auto cmds = std::make_shared<std::vector<BenchCommand>>(
      std::vector<BenchCommand>{bench_slicegpt(bench), bench_zero_tprune(bench),
                                bench_quantize(bench), bench_slicegpt_lm(bench),
                                bench_lm_speed(bench), bench_slicegpt_memory(bench),
                                bench_gps_speed(bench), bench_vit_speed(bench),
                                bench_bert_speed(bench)});
  return [cmds]() -> int {
    for (const auto& c : *cmds) {
      if (!c.sub->parsed()) continue;
      // Before the expensive part: a benchmark on kernels below what the CPU offers would time
      // the wrong thing (README "Threads and kernels"). A run without timing is not refused.
      const CLI::Option* no_timing = c.sub->get_option_no_throw("--no-timing");
      if (!no_timing || no_timing->count() == 0) refuse_generic_blas();
      return c.run();
    }
    return 2;
  };
}

}  // namespace pare::cli
