// pare compress --model DIR --recipe R --out OUT: runs a compression recipe and writes
// OUT/{model.safetensors, config.json, report.json, report.md}; prints the Markdown table.
// Exit 1 when the recipe's budget is not met (the outputs are still written, so the failing model
// can be inspected); exit 2 on bad input, with nothing written under OUT.
#include <ATen/Parallel.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <optional>

#include "checkpoint.h"
#include "commands.h"
#include "error.h"
#include "evaluate.h"
#include "fileio.h"
#include "graph_eval.h"
#include "lm_data.h"
#include "lm_eval.h"
#include "pipeline.h"

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
                  "Evaluation data, overriding the recipe's data.path: a Fashion-MNIST folder, "
                  "an LM's text file, or a gps model's TU folder / MoleculeNet CSV (a recipe "
                  "without data.dataset takes the kind from the model's family)");
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
    if (!r.dataset_given) {
      // A recipe without data.dataset (e.g. recipes/zero-tprune.yaml): the model's family names the
      // kind of data; parsed again with it, so the kind's defaults and checks apply.
      const std::string kind = m.config.is_lm() ? "text" : m.config.is_graph() ? "graph" : "fashion-mnist";
      const nlohmann::json& d = r.raw.contains("data") ? r.raw["data"] : nlohmann::json::object();
      PARE_CHECK(kind == "fashion-mnist" || (d.is_object() && d.contains("path")), "--data: a ",
                 m.config.family, " model needs ",
                 m.config.is_lm() ? "an evaluation text" : "its data set (a TU folder or MoleculeNet CSV)",
                 " (", a->recipe, " has no data.path)");
      sets.push_back("data.dataset=" + kind);
      r = parse_compress_recipe(a->recipe, sets);
    }
    auto log = [a](const std::string& s) {
      if (!a->quiet) std::cerr << "compress: " << s << "\n";
    };
    const bool text = r.dataset == "text", graphs = r.dataset == "graph";
    std::optional<ImageDataset> test;
    if (!text && !graphs) {
      if (!r.stages.empty()) require_fashion_mnist(r.data_dir, "train");  // calibration images
      test = load_fashion_mnist(r.data_dir, "test");
    }
    PARE_CHECK(text == m.config.is_lm() && graphs == m.config.is_graph(), a->recipe,
               ": /data/dataset: ", r.dataset, " does not fit a ", m.config.family, " model (",
               m.config.is_lm()      ? "language models use dataset: text"
               : m.config.is_graph() ? "graph transformers use dataset: graph"
                                     : "use fashion-mnist",
               ")");
    if (test) check_images_fit_model(*test, m.config, r.data_dir);
    EvalData data;
    std::optional<GraphData> gdata;
    if (graphs) {
      gdata = load_graph_data(r.graph_path, graph_data_options(m.config));
      check_graph_data_fits(m.config, gdata->ds, r.graph_path);
      data.graphs = &gdata->ds;
      data.graph_idx = split_indices(*gdata, "test");
      data.calibration_graph_idx = spaced_subset(split_indices(*gdata, "train"), r.calibration_samples);
      const auto have = static_cast<int64_t>(data.calibration_graph_idx.size());
      // More than the train split asked for: all of it, and the report states what was used.
      r.calibration_samples = std::min(r.calibration_samples, have);
      log(concat(data.graph_idx.size(), " test graphs of ", gdata->describe()));
    }
    torch::Tensor calibration;
    std::unique_ptr<Tokenizer> tok;
    if (text) {
      tok = tokenizer_for_model(a->model, r.tokenizer_path, m,
                                "data.tokenizer in the recipe (or --set data.tokenizer=PATH)");
      const int64_t T = r.eval.seq_len > 0 ? r.eval.seq_len : m.config.context_length;
      const int64_t maxT = m.config.max_position_embeddings;
      PARE_CHECK(T <= maxT, a->recipe, ": /eval/seq_len: ", T,
                 " exceeds the model's max_position_embeddings (", maxT, ")");
      PARE_CHECK(r.calibration_seq_len <= maxT, a->recipe, ": /calibration/seq_len: ",
                 r.calibration_seq_len, " exceeds the model's max_position_embeddings (", maxT, ")");
      data.lm_windows = token_windows(tokenize_file(*tok, r.text_path), T, r.eval.limit, r.text_path);
      // Only passes that calibrate (slicegpt, GPTQ) need calibration.path; they refuse without it
      // (calibration_inputs), before anything is written.
      if (!r.stages.empty() && !r.calibration_path.empty()) {
        const int64_t cT = r.calibration_seq_len > 0 ? r.calibration_seq_len : T;
        calibration = calibration_windows(tokenize_file(*tok, r.calibration_path),
                                          r.calibration_samples, cT, r.calibration_seed,
                                          r.calibration_path);
      }
      log(concat(data.lm_windows.size(0), " evaluation windows of ", T, " tokens from ",
                 r.text_path));
    } else if (!graphs) {
      data.images = &*test;
    }
    StagedDir out(a->out);
    const bool folder = std::filesystem::is_directory(a->model);
    nlohmann::json inputs = {{"model", a->model},
                             {"model_hash", file_hash(!folder ? a->model
                                                    : std::filesystem::exists(a->model + "/model.safetensors")
                                                        ? a->model + "/model.safetensors"
                                                        : a->model + "/config.json")},
                             {"recipe_hash", file_hash(a->recipe)},
                             {"set", a->sets},  // --set overrides as given (recipe_resolved has the result)
                             {"data", text ? r.text_path : graphs ? r.graph_path : r.data_dir}};
    PipelineResult res = run_pipeline(m, r, data, log, calibration);
    save_model(m, out.staging());
    if (tok && folder && std::filesystem::exists(a->model + "/tokenizer.json"))
      write_file_atomic(out.file("tokenizer.json"), read_file(a->model + "/tokenizer.json"));
    write_file_atomic(out.file("report.json"), report_json(res, r, inputs).dump(2) + "\n");
    std::string md = report_markdown(res, r, inputs);
    write_file_atomic(out.file("report.md"), md);
    out.commit();
    for (const auto& w : res.warnings) std::cerr << "pare: warning: " << printable(w, true) << "\n";
    std::cout << stage_table_markdown(res.rows);
    std::cout << "\nwrote " << a->out << "/{model.safetensors, config.json, report.json, report.md}"
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
