#include "tasks/evaluate.h"

#include <ATen/Parallel.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "base/error.h"
#include "families/family.h"

namespace pare {

torch::Tensor predict_logits(const Model& m, const torch::Tensor& images_u8, int64_t batch_size) {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < images_u8.size(0); i += batch_size) {
    int64_t n = std::min(batch_size, images_u8.size(0) - i);
    torch::Tensor x =
        normalize_images(images_u8.narrow(0, i, n), m.config.image_mean, m.config.image_std);
    out.push_back(m.forward(x).to(torch::kFloat32));
  }
  return torch::cat(out, 0);
}

void check_images_fit_model(const ImageDataset& data, const ArchConfig& c,
                            const std::string& data_path) {
  const auto& x = data.images;
  PARE_CHECK(x.dim() == 4 && x.size(1) == c.num_channels && x.size(2) == c.image_size &&
                 x.size(3) == c.image_size,
             data_path, ": images of shape ", x.sizes(), ", the model takes [N, ", c.num_channels, ", ",
             c.image_size, ", ", c.image_size, "]");
  if (data.size() == 0) return;
  const int64_t classes = data.labels.max().item<int64_t>() + 1;
  PARE_CHECK(classes == c.num_labels, data_path, ": ", classes, " classes (labels 0..", classes - 1,
             "), the model has num_labels = ", c.num_labels, " outputs");
}

AccuracyResult evaluate_accuracy(const Model& m, const ImageDataset& data, int64_t batch_size,
                                 int64_t limit) {
  auto t0 = std::chrono::steady_clock::now();
  int64_t n = limit < 0 ? data.size() : std::min(limit, data.size());
  torch::Tensor logits = predict_logits(m, data.images.narrow(0, 0, n), batch_size);
  AccuracyResult r;
  r.total = n;
  r.correct = logits.argmax(1).eq(data.labels.narrow(0, 0, n)).sum().item<int64_t>();
  r.accuracy = n ? double(r.correct) / double(n) : 0.0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

LatencyResult measure_latency(const Model& m, int64_t batch, int warmup, int reps) {
  torch::NoGradGuard ng;
  const ArchConfig& c = m.config;
  torch::manual_seed(1234);
  torch::Tensor x = torch::randn({batch, c.num_channels, c.image_size, c.image_size});
  for (int i = 0; i < warmup; ++i) m.forward(x);
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    torch::Tensor y = m.forward(x);
    (void)y.sum().item<float>();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  LatencyResult r;
  r.batch = batch;
  r.reps = reps;
  r.median_ms = ms[ms.size() / 2];
  r.min_ms = ms.front();
  r.threads = at::get_num_threads();
  return r;
}

torch::Tensor draw_calibration_images(const std::string& dir, int64_t samples, uint64_t seed,
                                      const std::vector<double>& mean, const std::vector<double>& std) {
  ImageDataset train = load_fashion_mnist(dir, "train");
  PARE_CHECK(samples > 0 && samples <= train.size(), "calibration.samples: expected 1..", train.size(),
             ", got ", samples);
  auto gen = at::detail::createCPUGenerator(seed);
  torch::Tensor idx = torch::randperm(train.size(), gen, torch::kLong).narrow(0, 0, samples);
  return normalize_images(train.images.index_select(0, idx), mean, std);
}

int64_t model_flops(const Model& m) {
  int64_t f = 0;
  for (const auto& r : m.family().costs(m)) f += r.flops;
  return f;
}

double mcnemar_exact_p(int64_t b, int64_t c) {
  PARE_ASSERT(b >= 0 && c >= 0, "mcnemar_exact_p: counts must be >= 0, got ", b, " and ", c);
  const int64_t n = b + c, k = std::min(b, c);
  if (b == c) return 1.0;
  // Σ_{i ≤ k} C(n, i) 2⁻ⁿ in log space (n may be thousands).
  const double log_norm = std::lgamma(double(n + 1)) - double(n) * std::log(2.0);  // log(n! / 2ⁿ)
  double tail = 0;
  for (int64_t i = 0; i <= k; ++i)
    tail += std::exp(log_norm - std::lgamma(double(i + 1)) - std::lgamma(double(n - i + 1)));
  return std::min(1.0, 2.0 * tail);
}

}  // namespace pare
