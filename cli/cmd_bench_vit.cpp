// pare bench vit-speed: the dense forward latency of a vit model on real test images and this
// process's float32 GEMM peak, as JSON lines on stdout; scripts/vs_onnxruntime.py sets it beside
// ONNX Runtime running the same model (the batch and pare's logits are dumped for it with --dump,
// so both sides run the same images and the script checks that they compute the same logits).
//
// One JSON object a line: {"what":"model",...}, then {"what":"gemm","n":N,"median_ms":..,
// "gflops":..} per matrix size (torch::mm of two N × N float32 matrices, GFLOP/s = 2N³ / t), then
// {"what":"forward","batch":B,"median_ms":..,"flops_per_image":..,"images_per_second":..} per
// batch. Timing as measure_latency (src/tasks/evaluate.h): no autograd, warm-up runs, then the median
// of the timed runs, each ending with a read of the result.
#include <ATen/Parallel.h>

#include <algorithm>
#include <iostream>

#include "bench_util.h"
#include "families/checkpoint.h"
#include "base/error.h"
#include "tasks/evaluate.h"
#include "io/safetensors.h"

namespace pare::cli {

namespace {

// Median wall time (ms) of `reps` calls of `run` after `warmup` untimed ones.
double median_ms(int64_t warmup, int64_t reps, const std::function<torch::Tensor()>& run) {
  for (int64_t i = 0; i < warmup; ++i) (void)run().sum().item<float>();
  std::vector<double> ms;
  for (int64_t i = 0; i < reps; ++i) {
    const double t0 = now_ms();
    (void)run().sum().item<float>();
    ms.push_back(now_ms() - t0);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

BenchCommand bench_vit_speed(CLI::App* bench) {
  struct Args {
    std::string model = "models/vit-fmnist", data = kDefaultFashionMnistDir, dump;
    std::vector<int64_t> batches{1, 256}, gemm{1024, 2048};
    int64_t reps = 20, warmup = 3;
    bool timing = true;
  };
  auto a = std::make_shared<Args>();
  auto* sub = bench->add_subcommand(
      "vit-speed", "Dense forward latency of a vit model on test images and the float32 GEMM "
                   "peak, JSON lines on stdout (scripts/vs_onnxruntime.py sets it beside ONNX "
                   "Runtime)");
  sub->add_option("--model", a->model, "vit model folder")->capture_default_str();
  sub->add_option("--data", a->data, "Fashion-MNIST folder (idx files)")->capture_default_str();
  sub->add_option("--batches", a->batches, "Batch sizes (the first test images)")
      ->capture_default_str();
  sub->add_option("--gemm", a->gemm, "Sizes N of the N × N GEMMs")->capture_default_str();
  sub->add_option("--reps", a->reps, "Timed runs per measurement")->capture_default_str();
  sub->add_option("--warmup", a->warmup, "Untimed runs first")->capture_default_str();
  sub->add_option("--dump", a->dump,
                  "Write the largest batch's input (\"images\", normalised, as fed to the model) "
                  "and pare's \"logits\" to this safetensors file");
  sub->add_flag("!--no-timing", a->timing,
                "Skip the GEMM and forward timing (with --dump: only the correctness data)");
  return {sub, [a]() -> int {
    PARE_CHECK(a->reps > 0 && a->warmup >= 0, "--reps must be positive and --warmup >= 0");
    PARE_CHECK(!a->batches.empty(), "--batches: expected at least one batch size");
    for (int64_t b : a->batches) PARE_CHECK(b > 0, "--batches: expected positive sizes, got ", b);
    for (int64_t n : a->gemm) PARE_CHECK(n > 0, "--gemm: expected positive sizes, got ", n);
    require_fashion_mnist(a->data, "test");
    Model m = load_model(a->model);
    PARE_CHECK(m.config.family == "vit", a->model, ": vit-speed needs a vit model, got family ",
               m.config.family);
    const ImageDataset test = load_fashion_mnist(a->data, "test");
    const int64_t largest = *std::max_element(a->batches.begin(), a->batches.end());
    PARE_CHECK(largest <= test.size(), "--batches: ", largest, " is more than the ", test.size(),
               " test images");
    const torch::Tensor x = normalize_images(test.images.narrow(0, 0, largest),
                                             m.config.image_mean, m.config.image_std)
                                .contiguous();
    torch::NoGradGuard ng;
    const int threads = at::get_num_threads();
    const int64_t flops = model_flops(m);
    auto line = [](const nlohmann::json& j) { std::cout << j.dump() << "\n" << std::flush; };
    line({{"what", "model"}, {"model", a->model}, {"threads", threads},
          {"flops_per_image", flops}, {"params", m.num_params()}, {"images", largest},
          {"reps", a->reps}, {"warmup", a->warmup}});

    for (int64_t n : a->timing ? a->gemm : std::vector<int64_t>{}) {
      torch::manual_seed(0);
      const torch::Tensor p = torch::randn({n, n}), q = torch::randn({n, n});
      torch::Tensor c = torch::empty({n, n});
      const double ms = median_ms(a->warmup, a->reps, [&] { return torch::mm_out(c, p, q); });
      line({{"what", "gemm"}, {"n", n}, {"threads", threads}, {"median_ms", ms},
            {"gflops", 2.0 * double(n) * double(n) * double(n) / (ms * 1e6)}});
    }

    for (int64_t b : a->timing ? a->batches : std::vector<int64_t>{}) {
      const torch::Tensor xb = x.narrow(0, 0, b);
      const double ms = median_ms(a->warmup, a->reps, [&] { return m.forward(xb); });
      line({{"what", "forward"}, {"batch", b}, {"threads", threads}, {"median_ms", ms},
            {"flops_per_image", flops}, {"images_per_second", 1000.0 * double(b) / ms}});
    }

    if (!a->dump.empty())
      write_safetensors(a->dump, {{"images", x}, {"logits", m.forward(x).to(torch::kFloat32)}});
    return 0;
  }};
}

}  // namespace pare::cli
