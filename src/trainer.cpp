#include "trainer.h"

#include <ATen/Parallel.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "error.h"
#include "evaluate.h"

namespace pare {
namespace {

torch::Tensor augment(const torch::Tensor& u8, const TrainOptions& opt, torch::Generator& gen) {
  torch::Tensor x = u8;
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  if (opt.hflip) {
    torch::Tensor flip = torch::rand({B}, gen) < 0.5;
    x = torch::where(flip.view({B, 1, 1, 1}), x.flip({3}), x);
  }
  if (opt.translate > 0) {
    const int64_t t = opt.translate;
    torch::Tensor padded = torch::constant_pad_nd(x, {t, t, t, t}, 0);
    torch::Tensor off = torch::randint(0, 2 * t + 1, {B, 2}, gen, torch::kLong);
    auto acc = off.accessor<int64_t, 2>();
    std::vector<torch::Tensor> rows;
    rows.reserve(B);
    for (int64_t i = 0; i < B; ++i)
      rows.push_back(padded[i].narrow(1, acc[i][0], H).narrow(2, acc[i][1], W));
    x = torch::stack(rows);
  }
  return x;
}

}  // namespace

TrainResult train_classifier(Model& m, const ImageDataset& train, const ImageDataset* test,
                             const TrainOptions& opt) {
  PARE_CHECK(opt.epochs > 0 && opt.batch_size > 0 && opt.lr > 0, "train: epochs, batch_size and ",
             "lr must be positive");
  torch::manual_seed(opt.seed);
  auto gen = at::detail::createCPUGenerator(opt.seed);
  const int64_t n = opt.limit_train < 0 ? train.size() : std::min(opt.limit_train, train.size());
  const int64_t steps_per_epoch = n / opt.batch_size;
  PARE_CHECK(steps_per_epoch > 0, "train: fewer training images (", n, ") than batch_size (",
             opt.batch_size, ")");
  const int64_t total = steps_per_epoch * opt.epochs;

  m.set_requires_grad(true);
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& [name, t] : m.tensors) no_decay.push_back(t);
  for (auto& [slot, form] : m.linears) {
    auto& d = m.dense(slot);
    decay.push_back(d.weight);
    if (d.bias.defined()) no_decay.push_back(d.bias);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(opt.lr).weight_decay(opt.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(opt.lr).weight_decay(0.0)));
  torch::optim::AdamW optim(groups, torch::optim::AdamWOptions(opt.lr));
  auto params = m.parameters();

  TrainResult res;
  auto t0 = std::chrono::steady_clock::now();
  int64_t step = 0;
  double ema = 0;
  for (int epoch = 0; epoch < opt.epochs; ++epoch) {
    torch::Tensor perm = torch::randperm(n, gen, torch::kLong);
    for (int64_t s = 0; s < steps_per_epoch; ++s, ++step) {
      double lr = step < opt.warmup_steps
                      ? opt.lr * double(step + 1) / double(opt.warmup_steps)
                      : 0.5 * opt.lr *
                            (1 + std::cos(M_PI * double(step - opt.warmup_steps) /
                                          double(std::max<int64_t>(1, total - opt.warmup_steps))));
      for (auto& g : optim.param_groups())
        static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
      torch::Tensor idx = perm.narrow(0, s * opt.batch_size, opt.batch_size);
      torch::Tensor u8 = augment(train.images.index_select(0, idx), opt, gen);
      torch::Tensor x = normalize_images(u8, m.config.image_mean, m.config.image_std);
      torch::Tensor y = train.labels.index_select(0, idx);
      optim.zero_grad();
      torch::Tensor logits = m.forward(x);
      torch::Tensor loss = at::cross_entropy_loss(logits, y, {}, at::Reduction::Mean, -100,
                                                  opt.label_smoothing);
      loss.backward();
      if (opt.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(params, opt.clip_grad_norm);
      optim.step();
      double l = loss.item<double>();
      ema = step == 0 ? l : 0.98 * ema + 0.02 * l;
      if (opt.log_every > 0 && (step % opt.log_every == 0 || step == total - 1)) {
        double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        double eta = el / double(step + 1) * double(total - step - 1);
        std::fprintf(stderr,
                     "train: epoch %d/%d step %lld/%lld loss %.4f lr %.2e  %.0f img/s  "
                     "elapsed %.0fs eta %.0fs (%d threads)\n",
                     epoch + 1, opt.epochs, (long long)step + 1, (long long)total, ema, lr,
                     double((step + 1) * opt.batch_size) / el, el, eta, at::get_num_threads());
      }
    }
    if (test) {
      m.set_requires_grad(false);
      auto acc = evaluate_accuracy(m, *test, 500);
      m.set_requires_grad(true);
      res.test_accuracy.push_back(acc.accuracy);
      std::fprintf(stderr, "train: epoch %d/%d test accuracy %.4f (%lld images)\n", epoch + 1,
                   opt.epochs, acc.accuracy, (long long)acc.total);
    }
  }
  m.set_requires_grad(false);
  res.steps = step;
  res.final_loss = ema;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace pare
