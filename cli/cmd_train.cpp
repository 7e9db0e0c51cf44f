// pare train --recipe R [--out DIR] [--data PATH] [--set k=v]: trains a model from a recipe's
// `model:`, `data:` and `train:` sections through the one training loop (train/trainer.h) and saves
// it (config.json + model.safetensors + train.json, and what the task writes beside a model, e.g.
// an LM's tokenizer.json). The data section names the task (data.dataset or data.task; without
// either, the model family's own task); the task reads its data, completes the model section where
// the data decides (tasks/task.h prepare_training) and gives the batches and the loss.
#include <ATen/Parallel.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "base/fileio.h"
#include "base/recipe.h"
#include "commands.h"
#include "families/checkpoint.h"
#include "families/family.h"
#include "ir/config.h"
#include "tasks/task.h"
#include "train/trainer.h"

namespace pare::cli {

namespace {

// The task a training recipe names (data.task or data.dataset), else the model family's own; a
// task whose inputs the model_type cannot take is refused (RECIPE: /data/dataset: ...).
const TaskInfo& training_task(const nlohmann::json& r, const std::string& recipe, std::string& named_as) {
  ArchConfig probe;
  if (r["model"].contains("model_type") && r["model"]["model_type"].is_string())
    probe.family = r["model"]["model_type"].get<std::string>();
  std::vector<std::string> problems;
  const nlohmann::json d = r.value("data", nlohmann::json::object());
  const TaskInfo* info = TaskTable::global().from_data(d, named_as, problems);
  if (!problems.empty()) throw RecipeError(recipe, problems);
  if (!info) {
    info = TaskTable::global().find(model_task(probe));
    PARE_CHECK(info, recipe, ": /model/model_type: ", probe.family, " has no task pare knows");
    return *info;
  }
  const std::string why = task_mismatch(*info, d[named_as].get<std::string>(), probe, true);
  PARE_CHECK(why.empty(), recipe, ": /data/", named_as, ": ", why);
  return *info;
}

}  // namespace

Runner add_train(CLI::App& app, Common&) {
  struct Args {
    std::string recipe, out, data;
    std::vector<std::string> sets;
    bool force = false;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("train", "Train a model from a recipe (model:, data:, train: sections)");
  sub->add_option("--recipe", a->recipe, "Recipe file (YAML or JSON)")->required();
  sub->add_option("--out", a->out, "Output model folder (default: train.out in the recipe)");
  sub->add_option("--data", a->data, "Data path, overriding the recipe's data.path");
  sub->add_option("--set", a->sets, "Override a recipe value, e.g. train.epochs=2");
  sub->add_flag("--force", a->force, "Replace an existing model in the output folder");
  return [a]() -> int {
    nlohmann::json r = load_yaml_or_json(a->recipe);
    apply_overrides(r, a->sets);
    std::vector<std::string> problems;
    for (auto it = r.begin(); it != r.end(); ++it)
      if (it.key() != "model" && it.key() != "train" && it.key() != "data")
        problems.push_back("/" + it.key() + ": unknown key for pare train (known: model, train, data)");
    PARE_CHECK(r.contains("model") && r["model"].is_object(), a->recipe,
               ": /model: expected a mapping with the architecture");
    std::string named_as;
    const TaskInfo& info = training_task(r, a->recipe, named_as);
    // --data replaces the task's training data (data.path; an LM's data.text).
    if (!a->data.empty()) r["data"][info.train_data_key] = a->data;
    std::unique_ptr<Task> task =
        info.parse(r.value("data", nlohmann::json::object()), nlohmann::json::object(), true, problems);
    TrainOptions o;
    std::string out, init_from;
    {
      FieldReader t(r.value("train", nlohmann::json::object()), "/train", problems);
      o.epochs = static_cast<int>(t.integer("epochs", 1, 1, 10000));
      o.steps = t.integer("steps", 0, 0);
      o.batch_size = t.integer("batch_size", 128, 1, 1 << 20);
      o.lr = t.number("lr", 1e-3, 0.0, 10.0);
      o.weight_decay = t.number("weight_decay", 0.05, 0.0, 10.0);
      o.warmup_steps = t.integer("warmup_steps", 100, 0);
      o.warmup_epochs = t.integer("warmup_epochs", -1, 0, 10000);
      o.clip_grad_norm = t.number("clip_grad_norm", 1.0, 0.0);
      o.label_smoothing = t.number("label_smoothing", 0.0, 0.0, 1.0, false);
      o.hflip = t.boolean("hflip", false);
      o.translate = t.integer("translate", 0, 0, 16);
      o.seed = static_cast<uint64_t>(t.integer("seed", 0, 0));
      o.limit_train = t.integer("limit_train", -1, -1);
      o.seq_len = t.integer("seq_len", 128, 2, 1 << 16);
      o.log_every = t.integer("log_every", 50, 0);
      o.eval_batch_size = t.integer("eval_batch_size", 256, 1, 1 << 20);
      out = t.string("out", "");
      init_from = t.string("init_from", "");
      t.reject_unknown();
    }
    if (!a->out.empty()) out = a->out;
    if (out.empty()) problems.push_back("/train/out: no output folder (set it or pass --out)");
    if (r.contains("train") && r["train"].is_object()) r["train"]["out"] = out;  // train.json: where it went
    if (!problems.empty()) throw RecipeError(a->recipe, problems);
    // A zoo recipe's train.out is the shipped model's folder: a trial run must not replace it.
    PARE_CHECK(a->force || !std::filesystem::exists(std::filesystem::path(out) / "config.json"), out,
               ": holds a model already (train.out of ", a->recipe, "); pass --out elsewhere, or --force to replace it");
    auto log = [](const std::string& s) { std::cerr << "train: " << s << "\n"; };
    // The task reads its data and completes the model section where the data decides.
    nlohmann::json model_section = r["model"];
    task->prepare_training(model_section, o, problems, log);
    if (!problems.empty()) throw RecipeError(a->recipe, problems);
    ArchConfig cfg = config_from_json(model_section, a->recipe + ": /model");
    if (model_task(cfg) != info.name) cfg.task = info.name;
    r["model"] = model_section;  // train.json records the completed section
    Model m = family_by_name(cfg.family).init(cfg, o.seed);
    if (!init_from.empty()) {
      // Continue training a saved model (a second stage with its own schedule); its config must
      // match the recipe's model: section.
      Model start = load_model(init_from);
      PARE_CHECK(start.config.family == m.config.family && start.config.layers == m.config.layers &&
                     start.config.norm == m.config.norm && start.config.num_labels == m.config.num_labels,
                 a->recipe, ": /train/init_from: ", init_from, " does not have the architecture of /model");
      // A bert pre-trained with the masked-LM head (masked-lm) fine-tuned without it: the head's
      // tensors are dropped; the task and the costs' context length are the recipe's.
      if (start.config.mlm_head && !m.config.mlm_head) {
        for (const char* n : {"mlm_dense.weight", "mlm_dense.bias", "mlm_norm.weight", "mlm_norm.bias", "mlm_bias"})
          start.tensors.erase(n);
        start.config.mlm_head = false;
      }
      start.config.task = m.config.task;
      start.config.context_length = m.config.context_length;
      start.config.id2label = m.config.id2label;
      m = std::move(start);
      m.verify_or_throw(init_from);
    }
    std::cerr << "train: " << cfg.family << " with " << m.num_params() << " params on task " << task->name()
              << ", " << at::get_num_threads() << " threads\n";
    TrainResult res = train(m, *task, o);
    const auto t_final = std::chrono::steady_clock::now();
    nlohmann::json fin = task->final_figures(m);
    const double final_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_final).count();
    nlohmann::json hist = {{"step", "train"}, {"recipe", a->recipe}, {"task", task->name()},
                           {"seed", o.seed}, {"seconds", res.seconds}, {"threads", at::get_num_threads()},
                           {"best_epoch", res.best_epoch}};
    if (!init_from.empty()) hist["init_from"] = init_from;
    for (auto it = fin.begin(); it != fin.end(); ++it)
      if (it.key().rfind("test_", 0) == 0 || it.key().rfind("valid_", 0) == 0) hist[it.key()] = it.value();
    m.config.history.push_back(hist);
    StagedDir dir(out);
    save_model(m, dir.staging());
    for (const auto& [name, content] : task->model_files()) write_file_atomic(dir.file(name), content);
    nlohmann::json log_json = {{"recipe", r},
                               {"task", task->name()},
                               {"seconds", res.seconds},  // the training loop (its per-epoch evaluations included)
                               {"final_eval_seconds", final_seconds},
                               {"threads", at::get_num_threads()},
                               {"steps", res.steps},
                               {"warmup_steps", res.warmup_steps},
                               {"final_loss", res.final_loss},
                               {"epochs", res.epochs},
                               {"best_epoch", res.best_epoch},
                               {"params", m.num_params()}};
    log_json.update(fin);
    write_file_atomic(dir.file("train.json"), log_json.dump(2) + "\n");
    dir.commit();
    std::string figures;
    for (auto it = fin.begin(); it != fin.end(); ++it)
      if ((it.key().rfind("test_", 0) == 0 || it.key().rfind("valid_", 0) == 0) && it.value().is_number_float())
        figures += (figures.empty() ? "" : ", ") + it.key() + " " + concat(it.value().get<double>());
    std::cout << "trained " << out << ": " << figures << " (epoch " << res.best_epoch << " of "
              << res.epochs.size() << " kept), " << res.seconds << " s on " << at::get_num_threads()
              << " threads\n";
    return 0;
  };
}

}  // namespace pare::cli
