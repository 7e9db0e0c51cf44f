// Measurements of a model: top-1 accuracy, parameters, FLOPs, checkpoint bytes, latency.
//
// FLOPs per image = 2 × multiply-accumulates of every matmul (patch projection, Q/K/V/O, MLP,
// SliceGPT shortcut matrices, attention QKᵀ and AV, classifier on the CLS token), analytic from the
// shapes (Family::costs). Not counted: norms, softmax, GELU, bias and residual adds, position add.
// Latency: median wall time of `reps` forward passes of one batch after `warmup` untimed ones,
// no autograd, with the LibTorch intra-op thread count stated in the result.
#pragma once

#include <string>
#include <vector>

#include "data/images.h"
#include "families/model.h"

namespace pare {

struct AccuracyResult {
  double accuracy = 0;  // fraction in [0, 1]
  int64_t correct = 0, total = 0;
  double seconds = 0;
};

// Refuses (InputError naming `data_path`) image data a classifier does not fit, before anything
// runs: images of another channel count or size than the model's [C, image_size, image_size], or
// a class count (largest label + 1) other than the model's num_labels. Without it a 1-output model
// is "scored" on 10-class data (its accuracy is the share of class 0) and meets its budget.
void check_images_fit_model(const ImageDataset& data, const ArchConfig& c, const std::string& data_path);

// Calibration images: `samples` images drawn without replacement from the train split of `dir`
// with a generator seeded `seed`, normalised with (mean, std). [samples, C, H, W] float32.
// InputError when samples is not in 1..train size.
torch::Tensor draw_calibration_images(const std::string& dir, int64_t samples, uint64_t seed,
                                      const std::vector<double>& mean, const std::vector<double>& std);

// Top-1 accuracy over the first `limit` images (all when limit < 0).
AccuracyResult evaluate_accuracy(const Model& m, const ImageDataset& data, int64_t batch_size = 256,
                                 int64_t limit = -1);

struct LatencyResult {
  int64_t batch = 0;
  double median_ms = 0, min_ms = 0;
  int reps = 0, threads = 0;
};

// Random normalised inputs of the model's image shape.
LatencyResult measure_latency(const Model& m, int64_t batch, int warmup = 3, int reps = 10);

int64_t model_flops(const Model& m);  // per sample: the sum of Family::costs() rows (see above)

// Runs the model on uint8 images in batches and concatenates the logits [N, labels].
torch::Tensor predict_logits(const Model& m, const torch::Tensor& images_u8, int64_t batch_size);

// Exact two-sided McNemar test for two classifiers scored on the same examples (McNemar,
// Psychometrika 1947; the binomial form): b = examples only the first gets right, c = only the
// second. Returns P(|B − n/2| ≥ |b − n/2|) for B ~ Binomial(n = b + c, 1/2), i.e.
// min(1, 2 Σ_{i ≤ min(b, c)} C(n, i) / 2ⁿ); 1 when b = c. Throws InternalError when b or c < 0.
double mcnemar_exact_p(int64_t b, int64_t c);

}  // namespace pare
