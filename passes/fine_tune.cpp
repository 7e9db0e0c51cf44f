// fine-tune — trains every weight of the model on the recipe's task through the one training loop.
//
// No paper: the standard step after a post-training pass (e.g. Michel et al., NeurIPS 2019, §4
// fine-tune after head pruning) and the equal-steps dense comparison for training-time methods.
// Invariant: shapes never change; only weights do (PreservedAnalyses::shapes).
#include "fine_tune.h"

#include <ATen/ATen.h>

#include "base/error.h"
#include "tasks/task.h"

namespace pare {

std::vector<OptionSpec> fine_tune_option_specs(const FineTuneOptions& d) {
  return {
      {"epochs", OptionSpec::kInteger, d.epochs, 0.0, 1000.0, true, {}, "fine-tuning epochs"},
      {"batch_size", OptionSpec::kInteger, d.batch_size, 1.0, 65536.0, true, {}, "fine-tuning batch size"},
      {"lr", OptionSpec::kNumber, d.lr, 0.0, 1.0, true, {}, "peak learning rate (AdamW, warm-up then cosine)"},
      {"warmup_steps", OptionSpec::kInteger, d.warmup_steps, 0.0, 1e9, true, {}, "learning-rate warm-up steps"},
      {"limit_train", OptionSpec::kInteger, d.limit_train, -1.0, 1e9, true, {},
       "fine-tune on this many training samples (-1: all)"},
      {"seed", OptionSpec::kInteger, int64_t(d.seed), 0.0, 4294967295.0, true, {},
       "seed of the shuffles, augmentation and any gate noise"},
  };
}

FineTuneOptions fine_tune_options_of(const PassOptions& p) {
  FineTuneOptions o;
  o.epochs = p.integer("epochs");
  o.batch_size = p.integer("batch_size");
  o.lr = p.number("lr");
  o.warmup_steps = p.integer("warmup_steps");
  o.limit_train = p.integer("limit_train");
  o.seed = static_cast<uint64_t>(p.integer("seed"));
  return o;
}

TrainOptions to_train_options(const FineTuneOptions& o, int64_t eval_batch_size) {
  TrainOptions to;
  to.epochs = static_cast<int>(o.epochs);
  to.batch_size = o.batch_size;
  to.lr = o.lr;
  to.warmup_steps = o.warmup_steps;
  to.seed = o.seed;
  to.limit_train = o.limit_train;
  to.eval_batch_size = eval_batch_size;
  to.log_every = 50;
  return to;
}

nlohmann::json run_fine_tuning(Model& m, PassContext& ctx, const FineTuneOptions& o, const TrainHooks& hooks,
                               const std::string& who) {
  PARE_CHECK(ctx.fine_tuning_task, who, " fine-tunes the model, so it runs inside a recipe with the model's data ",
             "(data: path)");
  std::unique_ptr<Task> task = ctx.fine_tuning_task();
  task->prepare_fine_tuning(m, ctx.log);
  const TrainResult tr = train(m, *task, to_train_options(o, ctx.batch_size), hooks);
  return {{"epochs", o.epochs},       {"steps", tr.steps},           {"seconds", tr.seconds},
          {"best_epoch", tr.best_epoch}, {"epochs_log", tr.epochs}};
}

namespace {

class FineTunePass : public Pass {
 public:
  explicit FineTunePass(const FineTuneOptions& o) : o_(o) {}
  PreservedAnalyses run(Model& m, AnalysisManager&, PassContext& ctx) override {
    nlohmann::json notes;
    if (o_.epochs > 0) notes["fine_tuning"] = run_fine_tuning(m, ctx, o_, {}, "fine-tune");
    if (ctx.notes) *ctx.notes = notes;
    return PreservedAnalyses::shapes();
  }

 private:
  FineTuneOptions o_;
};

}  // namespace

void register_fine_tune(PassTable& t) {
  PassInfo p;
  p.name = "fine-tune";
  p.summary = "fine-tune every weight on the recipe's task (after pruning; the equal-steps dense baseline)";
  p.source = "standard practice; e.g. Michel et al., Are Sixteen Heads Really Better than One?, NeurIPS 2019, section 4";
  p.options = fine_tune_option_specs({});
  p.create = [](const PassOptions& o) { return std::make_unique<FineTunePass>(fine_tune_options_of(o)); };
  p.plan = [](ArchConfig&, const PassOptions&) { return true; };
  t.add(std::move(p));
}

}  // namespace pare
