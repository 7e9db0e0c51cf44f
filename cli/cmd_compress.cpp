// pare compress --model DIR --recipe R --out OUT: runs a compression recipe and writes
// OUT/{model.safetensors, config.json, report.json, report.md}; prints the Markdown table.
// Exit 1 when the recipe's budget is not met (the outputs are still written, so the failing model
// can be inspected); exit 2 on bad input, with nothing written under OUT.
#include <ATen/Parallel.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <optional>

#include "base/error.h"
#include "base/fileio.h"
#include "commands.h"
#include "families/checkpoint.h"
#include "pipeline/pipeline.h"

namespace pare::cli {

void check_out_not_input(const std::string& out, const std::string& model) {
  std::error_code ec;
  PARE_CHECK(!std::filesystem::exists(out) || !std::filesystem::equivalent(out, model, ec), out,
             ": --out is the input model; inputs are never modified, choose another folder");
  const std::string o = std::filesystem::weakly_canonical(out, ec).string() + "/";
  const std::string mdl = std::filesystem::weakly_canonical(model, ec).string() + "/";
  PARE_CHECK(o.rfind(mdl, 0) != 0 && mdl.rfind(o, 0) != 0, out,
             ": --out must not be inside the input model folder or contain it");
}

Runner add_compress(CLI::App& app, Common&) {
  struct Args {
    std::string model, recipe, out, data;
    std::vector<std::string> sets;
    bool quiet = false;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("compress", "Compress a model with a recipe; write model + report");
  sub->add_option("--model", a->model, "Model folder (config.json + model.safetensors)")->required();
  sub->add_option("--recipe", a->recipe, "Recipe (YAML or JSON)")->required();
  sub->add_option("--out", a->out, "Output folder")->required();
  sub->add_option("--data", a->data,
                  "Evaluation data, overriding the recipe's data.path: what the model's task "
                  "reads (a Fashion-MNIST folder, a text file, a TU folder / MoleculeNet CSV; a "
                  "recipe without data.dataset takes the model's task)");
  sub->add_option("--set", a->sets, "Override a recipe value, e.g. pipeline.0.slicing=0.3");
  sub->add_flag("--quiet", a->quiet, "No progress on stderr");
  return [a]() -> int {
    // Everything about the recipe is checked before any weights load.
    // --data replaces data.path, whatever the kind of data.
    std::vector<std::string> sets = a->sets;
    if (!a->data.empty()) {  // a single-quoted YAML scalar: the path stays a string as given
      std::string q;
      for (char c : a->data) q += c == '\'' ? std::string("''") : std::string(1, c);
      sets.push_back("data.path='" + q + "'");
    }
    CompressRecipe r = parse_compress_recipe(a->recipe, sets);
    check_out_not_input(a->out, a->model);
    Model m = load_model(a->model);
    // The model's task, unless the recipe names one (then it must be the model's).
    bind_task(r, m.config);
    auto log = [a](const std::string& s) {
      if (!a->quiet) std::cerr << "compress: " << s << "\n";
    };
    Task& task = *r.task;
    task.load(m, a->model, r.eval, !r.stages.empty(), log);
    StagedDir out(a->out);
    const bool folder = std::filesystem::is_directory(a->model);
    nlohmann::json inputs = {{"model", a->model},
                             {"model_hash", file_hash(!folder ? a->model
                                                    : std::filesystem::exists(a->model + "/model.safetensors")
                                                        ? a->model + "/model.safetensors"
                                                        : a->model + "/config.json")},
                             {"recipe_hash", file_hash(a->recipe)},
                             {"set", a->sets},  // --set overrides as given (recipe_resolved has the result)
                             {"data", task.data_path()}};
    PipelineResult res = run_pipeline(m, r, log);
    save_model(m, out.staging());
    for (const auto& [name, content] : task.model_files()) write_file_atomic(out.file(name), content);
    write_file_atomic(out.file("report.json"), report_json(res, r, inputs).dump(2) + "\n");
    std::string md = report_markdown(res, r, inputs);
    write_file_atomic(out.file("report.md"), md);
    out.commit();
    for (const auto& w : res.warnings) std::cerr << "pare: warning: " << printable(w, true) << "\n";
    std::cout << stage_table_markdown(res.rows, task);
    std::string files = "model.safetensors, config.json, report.json, report.md";
    for (const auto& f : task.model_files()) files += ", " + f.first;
    std::cout << "\nwrote " << a->out << "/{" << files << "}"
              << " (" << res.threads << (res.threads == 1 ? " thread)\n" : " threads)\n");
    // The verdict on stderr, one line, also with --quiet (stdout keeps the report); report.json
    // has it under "budget".
    if (!res.budget_message.empty())
      std::cerr << "pare: " << (res.budget_ok ? "budget met: " : "BUDGET NOT MET: ")
                << printable(res.budget_message, true) << "\n";
    return res.budget_ok ? 0 : 1;
  };
}

}  // namespace pare::cli
