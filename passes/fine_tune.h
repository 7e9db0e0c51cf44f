// fine-tune: trains every weight of the model on the recipe's task through the one training loop
// (train/trainer.h): the step after a post-training pass (prune-heads, slicegpt, ...), and the
// "dense model fine-tuned for the same steps" that every training-time method is compared with,
// so that what extra fine-tuning gives is not credited to pruning.
// Also the fine-tuning options and the run that shrp (and later methods) share.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "pipeline/pass.h"
#include "train/trainer.h"

namespace pare {

struct FineTuneOptions {
  int64_t epochs = 2;
  int64_t batch_size = 32;
  double lr = 3e-4;           // peak learning rate (AdamW, warm-up then cosine)
  int64_t warmup_steps = 50;
  int64_t limit_train = -1;   // fine-tune on N training samples (-1: all)
  uint64_t seed = 0;
};

// The option specs of FineTuneOptions (epochs, batch_size, lr, warmup_steps, limit_train, seed),
// with these defaults, for a pass's table; and their values from resolved options.
std::vector<OptionSpec> fine_tune_option_specs(const FineTuneOptions& defaults);
FineTuneOptions fine_tune_options_of(const PassOptions& p);

// The training loop's options for these (log every 50 steps; eval_batch_size: the recipe's).
TrainOptions to_train_options(const FineTuneOptions& o, int64_t eval_batch_size);

// Runs the one training loop on the recipe's task (PassContext::fine_tuning_task, prepared for
// fine-tuning) for o.epochs epochs; the best validation epoch is kept when the task has a
// validation split. Returns the run's summary for report.json: epochs, steps, seconds,
// best_epoch, epochs_log. InputError when the recipe has no data to fine-tune on.
nlohmann::json run_fine_tuning(Model& m, PassContext& ctx, const FineTuneOptions& o, const TrainHooks& hooks,
                               const std::string& who);

void register_fine_tune(PassTable& t);

}  // namespace pare
