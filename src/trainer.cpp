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

// AdamW with decoupled weight decay on the linear weights only (biases, norms, embeddings of
// positions/CLS undecayed).
std::unique_ptr<torch::optim::AdamW> make_adamw(Model& m, const TrainOptions& opt) {
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
  return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(opt.lr));
}

// Linear warm-up, then cosine decay to zero at `total`; sets every group's lr and returns it.
double set_lr(torch::optim::AdamW& optim, const TrainOptions& opt, int64_t step, int64_t total) {
  double lr = step < opt.warmup_steps
                  ? opt.lr * double(step + 1) / double(opt.warmup_steps)
                  : 0.5 * opt.lr *
                        (1 + std::cos(M_PI * double(step - opt.warmup_steps) /
                                      double(std::max<int64_t>(1, total - opt.warmup_steps))));
  for (auto& g : optim.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
  return lr;
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
  auto optim_ptr = make_adamw(m, opt);
  torch::optim::AdamW& optim = *optim_ptr;
  auto params = m.parameters();

  TrainResult res;
  auto t0 = std::chrono::steady_clock::now();
  int64_t step = 0;
  double ema = 0;
  for (int epoch = 0; epoch < opt.epochs; ++epoch) {
    torch::Tensor perm = torch::randperm(n, gen, torch::kLong);
    for (int64_t s = 0; s < steps_per_epoch; ++s, ++step) {
      const double lr = set_lr(optim, opt, step, total);
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

TrainResult train_lm(Model& m, const torch::Tensor& train_tokens, const torch::Tensor& val_tokens,
                     const TrainOptions& opt) {
  PARE_CHECK(opt.steps > 0 && opt.batch_size > 0 && opt.lr > 0 && opt.seq_len >= 2,
             "train: steps, batch_size, lr must be positive and seq_len at least 2");
  PARE_CHECK(train_tokens.numel() > opt.seq_len + 1, "train: the training text has ",
             train_tokens.numel(), " tokens, too few for windows of ", opt.seq_len);
  PARE_CHECK(opt.seq_len <= m.config.max_position_embeddings, "train: seq_len ", opt.seq_len,
             " exceeds max_position_embeddings ", m.config.max_position_embeddings);
  torch::manual_seed(opt.seed);
  auto gen = at::detail::createCPUGenerator(opt.seed);
  m.set_requires_grad(true);
  auto optim_ptr = make_adamw(m, opt);
  torch::optim::AdamW& optim = *optim_ptr;
  auto params = m.parameters();
  const int64_t T = opt.seq_len, total = opt.steps;
  torch::Tensor offs = torch::arange(T + 1, torch::kLong).unsqueeze(0);
  TrainResult res;
  auto t0 = std::chrono::steady_clock::now();
  double ema = 0;
  for (int64_t step = 0; step < total; ++step) {
    const double lr = set_lr(optim, opt, step, total);
    // Random windows of T+1 tokens: inputs are the first T, targets the last T.
    torch::Tensor starts = torch::randint(train_tokens.numel() - T, {opt.batch_size}, gen, torch::kLong);
    torch::Tensor w = train_tokens.index({starts.unsqueeze(1) + offs});
    torch::Tensor x = w.narrow(1, 0, T), y = w.narrow(1, 1, T);
    optim.zero_grad();
    torch::Tensor logits = m.forward(x);
    torch::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), y.reshape({-1}));
    loss.backward();
    if (opt.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(params, opt.clip_grad_norm);
    optim.step();
    const double l = loss.item<double>();
    ema = step == 0 ? l : 0.98 * ema + 0.02 * l;
    if (opt.log_every > 0 && (step % opt.log_every == 0 || step == total - 1)) {
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr,
                   "train: step %lld/%lld loss %.4f lr %.2e  %.0f tokens/s  elapsed %.0fs eta %.0fs "
                   "(%d threads)\n",
                   (long long)step + 1, (long long)total, ema, lr,
                   double((step + 1) * opt.batch_size * T) / el, el,
                   el / double(step + 1) * double(total - step - 1), at::get_num_threads());
    }
  }
  m.set_requires_grad(false);
  res.steps = total;
  res.final_loss = ema;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  (void)val_tokens;
  return res;
}

}  // namespace pare
