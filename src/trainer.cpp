#include "trainer.h"

#include <ATen/Parallel.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cmath>
#include <algorithm>
#include <cstdio>
#include <memory>

#include "error.h"
#include "evaluate.h"
#include "family.h"
#include "graph_eval.h"

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

GraphTrainResult train_graph(Model& m, const GraphDataset& ds, const TrainOptions& opt) {
  PARE_CHECK(opt.epochs > 0 && opt.batch_size > 0 && opt.lr > 0 && opt.eval_batch_size > 0,
             "train: epochs, batch_size, eval_batch_size and lr must be positive");
  PARE_CHECK(m.config.is_graph(), "train: train_graph needs a graph model (gps), got ",
             m.config.family);
  check_graph_data_fits(m.config, ds, ds.name);
  for (const char* k : {"train", "valid", "test"})
    PARE_CHECK(ds.splits.count(k) && !ds.splits.at(k).empty(), ds.name, ": the '", k,
               "' split is missing or empty");
  torch::manual_seed(opt.seed);
  auto gen = at::detail::createCPUGenerator(opt.seed);
  std::vector<int64_t> train = ds.splits.at("train");
  if (opt.limit_train >= 0 && opt.limit_train < static_cast<int64_t>(train.size())) {
    // A seeded subset of the training split (the same for a seed), kept in index order.
    torch::Tensor perm = torch::randperm(static_cast<int64_t>(train.size()), gen, torch::kLong);
    std::vector<int64_t> sub;
    for (int64_t i = 0; i < opt.limit_train; ++i) sub.push_back(train[perm[i].item<int64_t>()]);
    std::sort(sub.begin(), sub.end());
    train = std::move(sub);
  }
  const int64_t n = static_cast<int64_t>(train.size());
  PARE_CHECK(n > 0, ds.name, ": no training graphs");
  const int64_t steps_per_epoch = (n + opt.batch_size - 1) / opt.batch_size;
  const int64_t total = steps_per_epoch * opt.epochs;
  const std::string task = m.config.gps.task;
  const Family& fam = m.family();

  m.set_requires_grad(true);
  auto optim_ptr = make_adamw(m, opt);
  torch::optim::AdamW& optim = *optim_ptr;
  auto params = m.parameters();

  GraphTrainResult res;
  res.metric = graph_metric_name(task);
  res.train_graphs = n;
  const bool higher = metric_higher_is_better(res.metric);
  std::unique_ptr<Model> best;
  auto t0 = std::chrono::steady_clock::now();
  auto since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  int64_t step = 0;
  double ema = 0;
  for (int epoch = 0; epoch < opt.epochs; ++epoch) {
    const auto te = std::chrono::steady_clock::now();
    torch::Tensor perm = torch::randperm(n, gen, torch::kLong);
    const int64_t* pp = perm.data_ptr<int64_t>();
    double loss_sum = 0, lr = 0;
    m.config.gps.training = true;
    for (int64_t s = 0; s < steps_per_epoch; ++s, ++step) {
      lr = set_lr(optim, opt, step, total);
      const int64_t lo = s * opt.batch_size, hi = std::min(n, lo + opt.batch_size);
      std::vector<int64_t> idx;
      idx.reserve(static_cast<size_t>(hi - lo));
      for (int64_t i = lo; i < hi; ++i) idx.push_back(train[static_cast<size_t>(pp[i])]);
      GraphBatch b = collate(ds, idx);
      optim.zero_grad();
      torch::Tensor loss = graph_loss(task, fam.forward_graph(m, b), b.y);
      loss.backward();
      if (opt.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(params, opt.clip_grad_norm);
      optim.step();
      const double l = loss.item<double>();
      loss_sum += l * double(hi - lo);
      ema = step == 0 ? l : 0.98 * ema + 0.02 * l;
      if (opt.log_every > 0 && (step % opt.log_every == 0 || step == total - 1)) {
        const double el = since(t0);
        std::fprintf(stderr,
                     "train: epoch %d/%d step %lld/%lld loss %.4f lr %.2e  %.0f graphs/s  "
                     "elapsed %.0fs eta %.0fs (%d threads)\n",
                     epoch + 1, opt.epochs, (long long)step + 1, (long long)total, ema, lr,
                     double(epoch * n + hi) / el, el,
                     el / double(step + 1) * double(total - step - 1), at::get_num_threads());
      }
    }
    m.config.gps.training = false;
    GraphEpoch e;
    e.epoch = epoch + 1;
    e.train_loss = loss_sum / double(n);
    e.lr = lr;
    e.train_seconds = since(te);
    const auto tv = std::chrono::steady_clock::now();
    m.set_requires_grad(false);
    GraphEvalResult v = evaluate_graph(m, ds, ds.splits.at("valid"), opt.eval_batch_size);
    GraphEvalResult t = evaluate_graph(m, ds, ds.splits.at("test"), opt.eval_batch_size);
    e.valid = v.value;
    e.valid_loss = v.loss;
    e.test = t.value;
    e.test_loss = t.loss;
    e.eval_seconds = since(tv);
    e.elapsed = since(t0);
    res.epochs.push_back(e);
    const bool better = !best || (higher ? e.valid > res.best_valid : e.valid < res.best_valid);
    if (better) {
      best = std::make_unique<Model>(m.clone());
      res.best_epoch = e.epoch;
      res.best_valid = e.valid;
      res.best_test = e.test;
    }
    m.set_requires_grad(true);
    std::fprintf(stderr,
                 "train: epoch %d/%d train loss %.4f | valid %s %.4f loss %.4f | test %s %.4f "
                 "loss %.4f | %.0fs train + %.0fs eval%s\n",
                 e.epoch, opt.epochs, e.train_loss, res.metric.c_str(), e.valid, e.valid_loss,
                 res.metric.c_str(), e.test, e.test_loss, e.train_seconds, e.eval_seconds,
                 better ? " (best so far)" : "");
  }
  m = std::move(*best);
  m.set_requires_grad(false);
  m.config.gps.training = false;
  res.run.steps = step;
  res.run.final_loss = ema;
  res.run.seconds = since(t0);
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
