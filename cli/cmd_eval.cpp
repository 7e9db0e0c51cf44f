// pare eval --model M [--data PATH] [--task NAME]: measures a model on its task's evaluation data
// (tasks/task.h): the task's metrics (accuracy; perplexity and, with --reference, KL / top-1
// agreement; a graph model's accuracy / ROC-AUC / MAE), params, FLOPs per sample, checkpoint
// bytes, throughput and, for tasks that time it, latency at batch sizes. The task is the one the
// model's config records; --task must name the same. Flags that belong to one task's data
// (--tokenizer, --split, --cache) become its data keys; a task without such a key refuses them.
#include <ATen/Parallel.h>

#include <filesystem>
#include <iostream>

#include "base/error.h"
#include "base/fileio.h"
#include "base/recipe.h"
#include "base/version.h"
#include "commands.h"
#include "families/checkpoint.h"
#include "pipeline/pipeline.h"

namespace pare::cli {

Runner add_eval(CLI::App& app, Common&) {
  struct Args {
    std::string model, data, json, task, tokenizer, reference, split, cache;
    int64_t limit = -1, batch = 256, seq_len = 0;
    std::vector<int64_t> latency{1, 256};
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("eval", "Evaluate a model on its task: metrics, params, FLOPs, bytes, speed");
  sub->add_option("--model", a->model, "Model folder (or a file pare reads)")->required();
  sub->add_option("--data", a->data,
                  "Evaluation data of the model's task: a Fashion-MNIST folder (default: the "
                  "Debian package's), a text file, a TU folder / MoleculeNet CSV");
  sub->add_option("--task", a->task, "The model's task (default: the one its config records): "
                                     "image-classification, lm-perplexity, graph");
  CLI::Option* tok_opt = sub->add_option(
      "--tokenizer", a->tokenizer, "Text tasks: tokenizer file or folder (default: the model's own; needed for a .bin checkpoint without one)");
  sub->add_option("--seq-len", a->seq_len,
                  "Text tasks: tokens per non-overlapping window (default: the model's context_length)");
  sub->add_option("--reference", a->reference,
                  "Reference model for the metrics measured against one (text: KL divergence, top-1 agreement)");
  sub->add_option("--limit", a->limit, "Use only the first N test samples (images, text windows, graphs; -1: all)");
  CLI::Option* batch_opt =
      sub->add_option("--batch-size", a->batch, "Evaluation batch size (default: the task's, 256; graphs 32)")
          ->capture_default_str();
  sub->add_option("--latency-batches", a->latency, "Batch sizes to time (positive; one or more)")
      ->capture_default_str();
  sub->add_option("--json", a->json, "Also write the figures as JSON to this file");
  CLI::Option* split_opt = sub->add_option("--split", a->split, "The split measured: graph tasks train, valid or test (default test); text-classification dev or test (default dev)");
  CLI::Option* cache_opt = sub->add_option(
      "--cache", a->cache,
      "Graph tasks: cache folder for converted molecules (default $XDG_CACHE_HOME/pare or ~/.cache/pare; none: off)");
  return [a, batch_opt, tok_opt, split_opt, cache_opt]() -> int {
    PARE_CHECK(a->batch > 0, "--batch-size: expected a positive integer, got ", a->batch);
    PARE_CHECK(a->limit == -1 || a->limit > 0, "--limit: expected -1 (all) or a positive integer, got ",
               a->limit);
    PARE_CHECK(a->seq_len >= 0, "--seq-len: expected a positive number of tokens (0: the model's ",
               "context_length), got ", a->seq_len);
    for (int64_t b : a->latency)
      PARE_CHECK(b > 0, "--latency-batches: expected positive batch sizes, got ", b);
    if (!a->json.empty()) {  // fail before measuring, not after printing the table
      const std::filesystem::path dir = std::filesystem::path(a->json).parent_path();
      PARE_CHECK(dir.empty() || std::filesystem::is_directory(dir), a->json,
                 ": --json: the folder does not exist");
    }
    Model m = load_model(a->model);
    const std::string own = model_task(m.config);
    const std::string name = a->task.empty() ? own : a->task;
    const TaskInfo* info = TaskTable::global().find(name);
    std::string known;
    for (const auto& t : TaskTable::global().all()) known += (known.empty() ? "" : ", ") + t.name;
    PARE_CHECK(info, "--task: expected one of ", known, ", got '", name, "'");
    PARE_CHECK(info->name == own, a->model, ": task ", info->name, " does not apply to a ", m.config.family,
               " model (its task is ", own, ")");
    // The flags as the task's data keys (only those given, so a task refuses what it lacks).
    nlohmann::json data = nlohmann::json::object();
    const std::pair<const char*, const char*> flag_keys[] = {
        {"--data", "path"}, {"--tokenizer", "tokenizer"}, {"--split", "eval_split"}, {"--cache", "cache"}};
    if (!a->data.empty()) data["path"] = a->data;
    if (tok_opt->count()) data["tokenizer"] = a->tokenizer;
    if (split_opt->count()) data["eval_split"] = a->split;
    if (cache_opt->count()) data["cache"] = a->cache;
    std::vector<std::string> problems;
    std::unique_ptr<Task> task = info->parse(data, nlohmann::json::object(), false, problems);
    if (!problems.empty()) {
      // In the flags' words: "--split: unknown key" rather than "/data/eval_split: ...".
      std::string text;
      for (std::string p : problems) {
        for (const auto& [flag, key] : flag_keys)
          if (p.rfind(concat("/data/", key, ":"), 0) == 0) p = flag + p.substr(6 + std::string(key).size());
        if (p.find("unknown key") != std::string::npos)
          p = p.substr(0, p.find("unknown key")) + concat("not a flag of the ", info->name, " task");
        text += (text.empty() ? "" : "; ") + p;
      }
      throw InputError(concat("pare eval: ", text));
    }
    for (const auto& [flag, key] : flag_keys) task->flags[key] = flag;
    EvalSettings e;
    e.batch_size = batch_opt->count() ? a->batch : task->default_eval_batch_size();
    e.limit = a->limit;
    e.latency_batches = a->latency;
    e.seq_len = a->seq_len;
    task->load(m, a->model, e, false, [](const std::string&) {});
    std::unique_ptr<Model> ref;
    bool uses_reference = false;
    for (const auto& sp : task->metrics()) uses_reference = uses_reference || sp.needs_reference;
    if (!a->reference.empty() && !uses_reference)
      std::cerr << "pare: warning: --reference: the " << task->name()
                << " task measures nothing against a reference model; ignored\n";
    if (!a->reference.empty() && uses_reference) {
      ref = std::make_unique<Model>(load_model(a->reference));
      PARE_CHECK(ref->config.vocab_size == m.config.vocab_size && ref->config.num_labels == m.config.num_labels,
                 a->reference, ": its outputs (vocab_size ", ref->config.vocab_size, ", num_labels ",
                 ref->config.num_labels, ") differ from the model's (", m.config.vocab_size, ", ",
                 m.config.num_labels, ")");
    }
    const StageRow row = measure_stage(a->model, m, *task, e, ref.get());
    std::cout << stage_table_markdown({row}, *task);
    std::cout << "\n" << task->describe_markdown() << "- measured on " << row.m.samples << " "
              << row.m.samples_unit << "; FLOPs = 2 x MACs per " << task->flops_unit() << " ("
              << task->flops_counted() << "); " << at::get_num_threads()
              << (at::get_num_threads() == 1 ? " thread\n" : " threads\n");
    if (!a->json.empty()) {
      nlohmann::json j = stage_json(row);
      j.erase("stage");
      j.erase("pass_seconds");
      j.erase("notes");
      j.update({{"schema_version", kReportSchemaVersion},
                {"model", a->model},
                {"task", task_json(*task)},
                {"batch_size", e.batch_size},
                {"threads", at::get_num_threads()},
                {"runtime", runtime_json()}});
      if (ref) j["reference"] = a->reference;
      write_file_atomic(a->json, j.dump(2) + "\n");
    }
    return 0;
  };
}

}  // namespace pare::cli
