#include "train/trainer.h"

#include <ATen/Parallel.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

#include "base/error.h"

namespace pare {
namespace {

// AdamW with decoupled weight decay on the linear weights only (biases, norms, embeddings of
// positions/CLS undecayed); extra parameters in a group of their own, undecayed.
std::unique_ptr<torch::optim::AdamW> make_adamw(Model& m, const TrainOptions& opt, const TrainHooks& hooks,
                                                std::vector<double>& lr_scale) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (hooks.train_weights) {
    std::vector<torch::Tensor> decay, no_decay;
    for (auto& [name, t] : m.tensors) no_decay.push_back(t);
    for (auto& [slot, form] : m.linears) {
      auto& d = m.dense(slot);
      decay.push_back(d.weight);
      if (d.bias.defined()) no_decay.push_back(d.bias);
    }
    groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                   torch::optim::AdamWOptions(opt.lr).weight_decay(opt.weight_decay)));
    groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                      torch::optim::AdamWOptions(opt.lr).weight_decay(0.0)));
    lr_scale = {1.0, 1.0};
  }
  if (!hooks.extra_parameters.empty()) {
    const double lr = hooks.extra_lr > 0 ? hooks.extra_lr : opt.lr;
    groups.emplace_back(hooks.extra_parameters, std::make_unique<torch::optim::AdamWOptions>(
                                                    torch::optim::AdamWOptions(lr).weight_decay(0.0)));
    lr_scale.push_back(lr / opt.lr);
  }
  PARE_CHECK(!groups.empty(), "train: nothing to train (train_weights is off and no extra parameters)");
  return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(opt.lr));
}

// Linear warm-up, then cosine decay to zero at `total`; sets every group's lr (times its scale)
// and returns the base lr.
double set_lr(torch::optim::AdamW& optim, const TrainOptions& opt, int64_t warmup, int64_t step,
              int64_t total, const std::vector<double>& scale) {
  double lr = step < warmup ? opt.lr * double(step + 1) / double(warmup)
                            : 0.5 * opt.lr *
                                  (1 + std::cos(M_PI * double(step - warmup) /
                                                double(std::max<int64_t>(1, total - warmup))));
  size_t i = 0;
  for (auto& g : optim.param_groups())
    static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr * scale[i++]);
  return lr;
}

double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TrainResult train(Model& m, Task& task, const TrainOptions& opt, const TrainHooks& hooks) {
  PARE_CHECK(opt.batch_size > 0 && opt.lr > 0 && opt.eval_batch_size > 0,
             "train: batch_size, eval_batch_size and lr must be positive");
  torch::manual_seed(opt.seed);
  auto gen = at::detail::createCPUGenerator(opt.seed);
  const TrainPlan plan = task.begin_training(m, opt, gen);
  PARE_CHECK(plan.epochs > 0 && plan.steps_per_epoch > 0, "train: ", task.name(),
             " gives no training steps (epochs ", plan.epochs, ", steps per epoch ", plan.steps_per_epoch, ")");
  const int64_t total = plan.steps_per_epoch * plan.epochs;
  const int64_t warmup = opt.warmup_epochs >= 0 ? opt.warmup_epochs * plan.steps_per_epoch : opt.warmup_steps;
  const bool higher = task.metrics().front().higher_is_better;

  m.set_requires_grad(hooks.train_weights);
  for (const auto& p : hooks.extra_parameters) p.set_requires_grad(true);
  std::vector<double> lr_scale;
  auto optim_ptr = make_adamw(m, opt, hooks, lr_scale);
  torch::optim::AdamW& optim = *optim_ptr;
  std::vector<torch::Tensor> params = hooks.train_weights ? m.parameters() : std::vector<torch::Tensor>{};
  params.insert(params.end(), hooks.extra_parameters.begin(), hooks.extra_parameters.end());

  TrainResult res;
  res.warmup_steps = warmup;
  std::unique_ptr<Model> best;
  const auto t0 = std::chrono::steady_clock::now();
  int64_t step = 0, units = 0;
  double ema = 0;
  std::vector<torch::Tensor> best_extra;
  for (int epoch = 1; epoch <= plan.epochs; ++epoch) {
    const auto te = std::chrono::steady_clock::now();
    if (hooks.on_mode) hooks.on_mode(m, true);
    task.begin_epoch(epoch, gen);
    task.set_training(m, true);
    double loss_sum = 0, lr = 0;
    int64_t samples = 0;
    for (int64_t s = 0; s < plan.steps_per_epoch; ++s, ++step) {
      lr = set_lr(optim, opt, warmup, step, total, lr_scale);
      TaskBatch b = task.train_batch(s, gen);
      optim.zero_grad();
      torch::Tensor logits = task.forward(m, b);
      torch::Tensor loss = task.loss(logits, b);
      StepContext ctx{m, task, b, logits, step, total, epoch};
      if (hooks.extra_loss) {
        torch::Tensor extra = hooks.extra_loss(ctx);
        if (extra.defined()) loss = loss + extra;
      }
      loss.backward();
      if (opt.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(params, opt.clip_grad_norm);
      optim.step();
      if (hooks.on_step) hooks.on_step(ctx);
      const double l = loss.item<double>();
      loss_sum += l * double(b.size);
      samples += b.size;
      units += b.units;
      ema = step == 0 ? l : 0.98 * ema + 0.02 * l;
      if (opt.log_every > 0 && (step % opt.log_every == 0 || step == total - 1)) {
        const double el = since(t0);
        std::fprintf(stderr,
                     "train: epoch %d/%d step %lld/%lld loss %.4f lr %.2e  %.0f %s/s  elapsed %.0fs "
                     "eta %.0fs (%d threads)\n",
                     epoch, plan.epochs, (long long)step + 1, (long long)total, ema, lr,
                     double(units) / el, plan.unit.c_str(), el,
                     el / double(step + 1) * double(total - step - 1), at::get_num_threads());
      }
    }
    task.set_training(m, false);
    nlohmann::json e = {{"epoch", epoch},
                        {"train_loss", loss_sum / double(std::max<int64_t>(1, samples))},
                        {"lr_end", lr},
                        {"train_seconds", since(te)}};
    const auto tv = std::chrono::steady_clock::now();
    m.set_requires_grad(false);
    if (hooks.on_mode) hooks.on_mode(m, false);
    std::optional<EpochEval> ev = task.end_epoch(m, epoch);
    bool better = false;
    if (ev) {
      e.update(ev->figures);
      if (ev->valid && epoch >= hooks.min_best_epoch) {
        better = !best || (higher ? *ev->valid > *res.best_valid : *ev->valid < *res.best_valid);
        if (better) {
          best = std::make_unique<Model>(m.clone());
          best_extra.clear();
          for (const auto& p : hooks.extra_parameters) best_extra.push_back(p.detach().clone());
          res.best_epoch = epoch;
          res.best_valid = ev->valid;
        }
      }
    }
    e["eval_seconds"] = since(tv);
    e["elapsed_seconds"] = since(t0);
    res.epochs.push_back(e);
    m.set_requires_grad(hooks.train_weights);
    if (ev)
      std::fprintf(stderr, "train: epoch %d/%d train loss %.4f | %s | %.0fs train + %.0fs eval%s\n", epoch,
                   plan.epochs, e["train_loss"].get<double>(), ev->line.c_str(),
                   e["train_seconds"].get<double>(), e["eval_seconds"].get<double>(),
                   better ? " (best so far)" : "");
    if (hooks.on_epoch) hooks.on_epoch(m, epoch);
  }
  if (best) {
    Hooks attached = m.hooks;  // clone() does not copy hooks; the caller's stay on its model
    m = std::move(*best);
    m.hooks = attached;
    torch::NoGradGuard ng;
    for (size_t i = 0; i < best_extra.size(); ++i) hooks.extra_parameters[i].copy_(best_extra[i]);
    if (hooks.on_mode) hooks.on_mode(m, false);  // evaluation masks from the restored parameters
  } else {
    res.best_epoch = plan.epochs;
  }
  m.set_requires_grad(false);
  task.set_training(m, false);
  res.steps = step;
  res.final_loss = ema;
  res.seconds = since(t0);
  return res;
}

}  // namespace pare
