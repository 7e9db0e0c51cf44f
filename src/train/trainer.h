// The one training loop: every model pare trains or fine-tunes goes through train(), whatever its
// task (tasks/task.h gives the batches, the forward, the loss and the per-epoch evaluation).
//
// AdamW (decoupled weight decay on linear weights only; biases, norms, embeddings, CLS and
// positions undecayed), linear warm-up then cosine decay to zero at the last step, gradient
// clipping by global L2 norm, seeded (torch::manual_seed(seed) and one CPU generator seeded with
// `seed`, handed to the task for its shuffles, augmentation and window offsets, in a fixed order),
// progress on stderr every log_every steps. When the task reports a validation metric after each
// epoch, the weights of the best epoch (first on ties, by the primary metric's direction) are kept.
//
// Later methods plug in through TrainHooks without copying the loop: extra trainable parameters
// that are not model weights (mask logits, routers), extra loss terms (sparsity or FLOPs
// penalties, distillation against a teacher), and callbacks at step and epoch boundaries
// (temperature annealing, schedules).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "families/model.h"
#include "tasks/task.h"

namespace pare {

// What a hook sees at a step: the model, the batch, its logits (with autograd), the step (0-based,
// over the whole run) and the total number of steps, the epoch (1-based).
struct StepContext {
  const Model& model;
  const Task& task;
  const TaskBatch& batch;
  const torch::Tensor& logits;
  int64_t step = 0, total_steps = 0;
  int epoch = 1;
};

struct TrainHooks {
  // Trainable tensors beside the model's weights (requires_grad is set on them); AdamW without
  // weight decay, at `extra_lr` (0: the run's lr) under the same warm-up + cosine schedule.
  std::vector<torch::Tensor> extra_parameters;
  double extra_lr = 0;
  // false: the model's weights stay fixed and only extra_parameters train.
  bool train_weights = true;
  // Added to the task's loss at every step; may return an undefined tensor for "nothing".
  std::function<torch::Tensor(const StepContext&)> extra_loss;
  // After every optimizer step, and after every epoch (with its evaluation, if any).
  std::function<void(const StepContext&)> on_step;
  std::function<void(Model&, int epoch)> on_epoch;
  // Called with true before each epoch's training, with false before its evaluation and once more
  // after the best epoch's parameters are restored: gates switch to their deterministic masks for
  // evaluation (never noise at evaluation).
  std::function<void(Model&, bool training)> on_mode;
  // The best validation epoch is chosen among epochs >= this one (a pruning schedule that is
  // still removing units before it: earlier epochs do not have the final shapes).
  int min_best_epoch = 1;
};

struct TrainResult {
  double seconds = 0;
  double final_loss = 0;  // exponential moving average (0.98) of the training loss
  int64_t steps = 0;
  int64_t warmup_steps = 0;
  // One object per epoch: epoch, train_loss (mean over its samples), lr_end, train_seconds,
  // eval_seconds, elapsed_seconds, and the task's figures (EpochEval::figures).
  nlohmann::json epochs = nlohmann::json::array();
  int best_epoch = 0;  // the epoch whose weights were kept (the last one without validation)
  std::optional<double> best_valid;
};

// Trains `m` in place on `task` (prepared: Task::prepare_training). When the task reports a
// validation figure, the best epoch's weights and extra parameters are restored at the end (the
// model keeps the hooks attached to it). InputError for options that cannot apply (non-positive
// epochs / batch size / lr, data too small for a batch).
TrainResult train(Model& m, Task& task, const TrainOptions& opt, const TrainHooks& hooks = {});

}  // namespace pare
