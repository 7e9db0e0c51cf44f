#include "pipeline.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "blas_runtime.h"
#include "checkpoint.h"
#include "error.h"
#include "evaluate.h"
#include "graph_eval.h"
#include "fileio.h"
#include "lm_eval.h"
#include "recipe.h"
#include "version.h"

namespace pare {

std::string CompressRecipe::one_line() const {
  std::string s;
  for (size_t i = 0; i < stages.size(); ++i) {
    s += (i ? " | " : "") + stages[i].pass + "(";
    bool first = true;
    for (auto it = stages[i].options.values.begin(); it != stages[i].options.values.end(); ++it) {
      s += (first ? "" : ",") + it.key() + "=" + it.value().dump();
      first = false;
    }
    s += ")";
  }
  return s;
}

CompressRecipe parse_compress_recipe(const std::string& path, const std::vector<std::string>& sets) {
  nlohmann::json j = load_yaml_or_json(path);
  apply_overrides(j, sets);
  return parse_compress_recipe_json(j, path);
}

CompressRecipe parse_compress_recipe_json(nlohmann::json j, const std::string& source) {
  CompressRecipe r;
  r.path = source;
  r.raw = j;
  std::vector<std::string> problems;
  FieldReader top(j, "", problems);
  for (const char* k : {"pipeline", "budget", "eval", "data", "calibration", "model", "train"})
    top.allow(k);
  top.reject_unknown();
  if (!j.contains("pipeline") || !j["pipeline"].is_array()) {
    problems.push_back("/pipeline: expected a list of passes");
  } else {
    for (size_t i = 0; i < j["pipeline"].size(); ++i) {
      const auto& st = j["pipeline"][i];
      std::string p = "/pipeline/" + std::to_string(i);
      PassOptions o = PassTable::global().resolve(st, p, problems);
      if (st.is_object() && st.contains("pass") && st["pass"].is_string())
        r.stages.push_back({st["pass"].get<std::string>(), o});
    }
  }
  if (j.contains("budget")) {
    FieldReader b(j["budget"], "/budget", problems);
    const nlohmann::json& bj = j["budget"];
    // The general form: {metric: NAME, and one bound of that metric}.
    const std::string metric = b.string("metric", "", {"accuracy", "rocauc", "perplexity", "kl", "top1", "mae"});
    if (!metric.empty()) {
      r.budget.metric = metric;
      const bool pct = metric == "accuracy" || metric == "rocauc" || metric == "top1";
      const double md = b.number("max_drop", -1, 0.0, 100.0), mn = b.number("min", -1, 0.0, pct ? 100.0 : 1e9);
      const double mi = b.number("max_increase_pct", -1, 0.0, 1e6), mx = b.number("max", -1, 0.0, 1e18);
      auto given = [&](const char* k) { return bj.is_object() && bj.contains(k); };
      auto only = [&](std::initializer_list<const char*> ok) {
        for (const char* k : {"max_drop", "min", "max_increase_pct", "max"}) {
          bool allowed = false;
          for (const char* o : ok) allowed = allowed || std::string(o) == k;
          if (given(k) && !allowed) b.problem(k, concat("does not apply to metric ", metric));
        }
      };
      if (metric == "accuracy" || metric == "rocauc") {
        only({"max_drop", "min"});
        if (given("max_drop") && md >= 0) r.budget.max_drop = md;
        if (given("min") && mn >= 0) r.budget.min = mn;
      } else if (metric == "perplexity") {
        only({"max_increase_pct"});
        if (given("max_increase_pct") && mi >= 0) r.budget.max_ppl_increase = mi;
      } else if (metric == "kl" || metric == "mae") {
        only({"max"});
        if (given("max") && mx >= 0) (metric == "kl" ? r.budget.max_kl : r.budget.max_mae) = mx;
      } else {  // top1
        only({"min"});
        if (given("min") && mn >= 0) r.budget.min_top1 = mn;
      }
      if (!given("max_drop") && !given("min") && !given("max_increase_pct") && !given("max"))
        b.problem("metric", concat("needs a bound beside it (", metric == "perplexity" ? "max_increase_pct"
                                   : metric == "kl" || metric == "mae"               ? "max"
                                   : metric == "top1"                                 ? "min"
                                                                                      : "max_drop or min", ")"));
    }
    for (const char* k : {"accuracy", "perplexity", "kl", "top1", "params", "flops", "bytes", "latency"})
      b.allow(k);
    b.reject_unknown();
    // One-key sections: budget.kl.max, budget.top1.min, budget.{params,flops,bytes}.max.
    auto one = [&](const char* section, const char* key, double lo, double hi) -> std::optional<double> {
      if (!bj.is_object() || !bj.contains(section)) return std::nullopt;
      FieldReader f(bj[section], concat("/budget/", section), problems);
      const double v = f.number(key, -1, lo, hi);
      f.reject_unknown();
      if (!bj[section].is_object() || !bj[section].contains(key)) {
        f.problem(key, "expected a number");
        return std::nullopt;
      }
      return v >= lo ? std::optional<double>(v) : std::nullopt;
    };
    // (Assigned only when given: the general form above may have set them already.)
    if (auto v = one("kl", "max", 0.0, 1e9)) r.budget.max_kl = v;
    if (auto v = one("top1", "min", 0.0, 100.0)) r.budget.min_top1 = v;
    if (auto v = one("params", "max", 1.0, 1e15)) r.budget.max_params = static_cast<int64_t>(*v);
    if (auto v = one("flops", "max", 1.0, 1e18)) r.budget.max_flops = static_cast<int64_t>(*v);
    if (auto v = one("bytes", "max", 1.0, 1e15)) r.budget.max_bytes = static_cast<int64_t>(*v);
    if (bj.is_object() && bj.contains("latency")) {
      FieldReader lt(bj["latency"], "/budget/latency", problems);
      const double ms = lt.number("max_ms", -1, 0.0, 1e9);
      r.budget.latency_batch = lt.integer("batch", 1, 1, 1 << 16);
      lt.reject_unknown();
      if (bj["latency"].is_object() && bj["latency"].contains("max_ms") && ms >= 0)
        r.budget.max_latency_ms = ms;
      else
        lt.problem("max_ms", "expected a number of milliseconds");
    }
    if (j["budget"].is_object() && j["budget"].contains("perplexity")) {
      FieldReader pp(j["budget"]["perplexity"], "/budget/perplexity", problems);
      const double mi = pp.number("max_increase", -1, 0.0, 1e6);
      pp.reject_unknown();
      if (mi >= 0) r.budget.max_ppl_increase = mi;
    }
    if (j["budget"].is_object() && j["budget"].contains("accuracy")) {
      FieldReader a(j["budget"]["accuracy"], "/budget/accuracy", problems);
      double md = a.number("max_drop", -1, 0.0, 100.0);
      double mn = a.number("min", -1, 0.0, 100.0);
      a.reject_unknown();
      b.allow("perplexity");
      if (j["budget"]["accuracy"].is_object() && j["budget"]["accuracy"].contains("max_drop") && md >= 0)
        r.budget.max_drop = md;
      if (j["budget"]["accuracy"].is_object() && j["budget"]["accuracy"].contains("min") && mn >= 0)
        r.budget.min = mn;
    }
  }
  {
    FieldReader e(j.value("eval", nlohmann::json::object()), "/eval", problems);
    r.eval.batch_size = e.integer("batch_size", 256, 1, 1 << 16);
    r.eval.latency_batches = e.int_list("latency_batches", {1, 256});
    r.eval.latency_reps = e.integer("latency_reps", 10, 1, 10000);
    r.eval.limit = e.integer("limit", -1, -1);
    r.eval.seq_len = e.integer("seq_len", 0, 0, 1 << 20);
    if (r.eval.limit == 0) e.problem("limit", "expected -1 (all) or a positive integer, got 0");
    e.reject_unknown();
  }
  {
    FieldReader d(j.value("data", nlohmann::json::object()), "/data", problems);
    r.dataset_given = j.contains("data") && j["data"].is_object() && j["data"].contains("dataset");
    r.dataset = d.string("dataset", "fashion-mnist", {"fashion-mnist", "text", "graph"});
    if (r.dataset == "graph") {
      r.graph_path = d.string("path", "");
      if (r.graph_path.empty())
        d.problem("path", "missing: expected a TU data set folder or a MoleculeNet CSV (HIV.csv); "
                          "`pare compress --data` gives it too");
    } else if (r.dataset == "text") {
      r.text_path = d.string("path", "");
      if (r.text_path.empty())
        d.problem("path", "missing: expected the evaluation text file; `pare compress --data` gives "
                          "it too");
    } else {
      r.data_dir = d.string("path", kDefaultFashionMnistDir);
    }
    // Read for every kind, so a recipe without data.dataset may name an LM's tokenizer.
    r.tokenizer_path = d.string("tokenizer", "");
    if (r.dataset_given && r.dataset != "text" && !r.tokenizer_path.empty())
      d.problem("tokenizer", "applies to data.dataset: text only");
    d.reject_unknown();
  }
  {
    FieldReader c(j.value("calibration", nlohmann::json::object()), "/calibration", problems);
    r.calibration_samples = c.integer("samples", r.dataset == "text" ? 128 : 1024, 1, 60000);
    r.calibration_seed = static_cast<uint64_t>(c.integer("seed", 0, 0));
    r.calibration_path = c.string("path", "");
    r.calibration_seq_len = c.integer("seq_len", 0, 0, 1 << 20);
    // Without data.dataset the caller may still take the kind from the model (pare compress does,
    // and parses again with it), so the check waits for a stated kind.
    if (r.dataset_given && r.dataset != "text" && !r.calibration_path.empty())
      c.problem("path", "calibration text applies to data.dataset: text only");
    c.reject_unknown();
  }
  if (!problems.empty()) throw RecipeError(source, problems);
  return r;
}

StageRow measure_stage(const std::string& name, const Model& m, const EvalData& data,
                       const EvalSettings& eval) {
  if (data.images) return measure_stage(name, m, *data.images, eval);
  if (data.graphs) {
    StageRow row;
    row.stage = name;
    std::vector<int64_t> idx = data.graph_idx;
    if (eval.limit > 0 && static_cast<int64_t>(idx.size()) > eval.limit) idx.resize(eval.limit);
    const GraphEvalResult r = evaluate_graph(m, *data.graphs, idx, eval.batch_size);
    row.metric = r.metric;
    row.accuracy = r.metric == "mae" ? r.value : 100.0 * r.value;
    row.graphs_per_second = r.graphs_per_second;
    row.eval_seconds = r.forward_seconds;
    row.samples = static_cast<int64_t>(idx.size());
    row.samples_unit = "graphs";
    row.params = m.num_params();
    row.layers = m.family().costs(m);
    row.flops = static_cast<int64_t>(std::llround(mean_graph_flops(m, *data.graphs, idx)));
    row.bytes = checkpoint_bytes(m);
    return row;
  }
  PARE_ASSERT(data.lm_windows.defined(), "no evaluation data");
  StageRow row;
  row.stage = name;
  row.lm = true;
  LmEvalResult r = evaluate_lm(m, data.lm_windows, std::min<int64_t>(eval.batch_size, 16),
                               data.reference);
  row.perplexity = r.perplexity;
  row.kl = r.kl;
  row.top1 = r.top1;
  row.tokens_per_second = r.tokens_per_second;
  row.eval_seconds = r.seconds;
  row.samples = r.predicted;
  row.samples_unit = "tokens";
  row.params = m.num_params();
  row.layers = m.family().costs(m);
  for (const auto& c : row.layers) row.flops += c.flops;
  row.flops /= m.config.seq_len();  // per token
  row.bytes = checkpoint_bytes(m);
  return row;
}

StageRow measure_stage(const std::string& name, const Model& m, const ImageDataset& test,
                       const EvalSettings& eval) {
  StageRow row;
  row.stage = name;
  auto acc = evaluate_accuracy(m, test, eval.batch_size, eval.limit);
  row.accuracy = 100.0 * acc.accuracy;
  row.eval_seconds = acc.seconds;
  row.samples = acc.total;
  row.samples_unit = "images";
  row.params = m.num_params();
  row.layers = m.family().costs(m);
  for (const auto& c : row.layers) row.flops += c.flops;
  row.bytes = checkpoint_bytes(m);
  for (int64_t b : eval.latency_batches)
    row.latency_ms.emplace_back(
        b, measure_latency(m, b, 3, static_cast<int>(eval.latency_reps)).median_ms);
  return row;
}

PipelineResult run_pipeline(Model& m, const CompressRecipe& r, const ImageDataset& test,
                            const std::function<void(const std::string&)>& log) {
  EvalData d;
  d.images = &test;
  return run_pipeline(m, r, d, log);
}

size_t check_recipe_plan(const ArchConfig& c, const CompressRecipe& r) {
  ArchConfig planned = c;
  for (size_t i = 0; i < r.stages.size(); ++i) {
    const PassInfo* info = PassTable::global().find(r.stages[i].pass);
    if (!info || !info->plan) return i;
    try {
      if (!info->plan(planned, r.stages[i].options)) return i + 1;
    } catch (const InputError& e) {
      throw InputError(concat(r.path, ": /pipeline/", i, " (", r.stages[i].pass, "): ", e.what()));
    }
  }
  return r.stages.size();
}

PipelineResult run_pipeline(Model& m, const CompressRecipe& r, const EvalData& data_in,
                            const std::function<void(const std::string&)>& log,
                            const torch::Tensor& calibration_tokens) {
  PipelineResult res;
  EvalData data = data_in;
  std::unique_ptr<Model> baseline;  // LMs: the dense model, reference for KL / top-1
  if (m.config.is_lm() && !data.reference) {
    baseline = std::make_unique<Model>(m.clone());
    data.reference = baseline.get();
  }
  res.threads = at::get_num_threads();
  // Fail before the (slow) baseline when the first pass can already tell its options do not fit
  // the model, then when a later pass cannot apply to the shapes the earlier ones will produce.
  if (!r.stages.empty()) {
    const PassInfo* info = PassTable::global().find(r.stages[0].pass);
    if (info && info->check) {
      try {
        info->check(m, r.stages[0].options);
      } catch (const InputError& e) {
        throw InputError(concat(r.path, ": /pipeline/0 (", r.stages[0].pass, "): ", e.what()));
      }
    }
  }
  check_recipe_plan(m.config, r);
  // A budget on a metric this model's task does not have fails here too, not after the passes.
  if (!r.budget.metric.empty()) {
    const std::vector<std::string> has =
        m.config.is_lm()      ? std::vector<std::string>{"perplexity", "kl", "top1"}
        : m.config.is_graph() ? std::vector<std::string>{graph_metric_name(m.config.gps.task)}
                              : std::vector<std::string>{"accuracy"};
    std::string list;
    for (const auto& x : has) list += (list.empty() ? "" : ", ") + x;
    PARE_CHECK(std::find(has.begin(), has.end(), r.budget.metric) != has.end(), r.path,
               ": /budget/metric: ", r.budget.metric, " is not a metric of this model's task (",
               m.config.family, " model: ", list, ")");
  }
  if (m.config.is_lm() && (r.budget.max_drop || r.budget.min))
    throw InputError(concat(r.path, ": /budget/accuracy: a language model is budgeted by ",
                            "perplexity: {max_increase: PERCENT}, kl: {max: NATS} or top1: {min: PERCENT}"));
  if (!m.config.is_lm() && r.budget.max_ppl_increase)
    throw InputError(concat(r.path, ": /budget/perplexity applies to language models only"));
  if (!m.config.is_lm() && (r.budget.max_kl || r.budget.min_top1))
    throw InputError(concat(r.path, ": /budget/", r.budget.max_kl ? "kl" : "top1",
                            " (fidelity to the dense model) applies to language models only"));
  if (r.budget.max_latency_ms) {
    PARE_CHECK(!m.config.is_lm() && !m.config.is_graph(), r.path,
               ": /budget/latency applies to image models (the ones whose latency pare measures)");
    const auto& lb = r.eval.latency_batches;
    PARE_CHECK(std::find(lb.begin(), lb.end(), r.budget.latency_batch) != lb.end(), r.path,
               ": /budget/latency/batch: ", r.budget.latency_batch,
               " is not one of eval.latency_batches (add it there)");
  }
  if (m.config.is_graph() && graph_metric_name(m.config.gps.task) == "mae" && r.budget.has_metric() &&
      !r.budget.max_mae)
    throw InputError(concat(r.path, ": /budget/accuracy: a regression model is measured by MAE; ",
                            "an accuracy budget does not apply"));
  log("measuring baseline");
  res.rows.push_back(measure_stage("baseline", m, data, r.eval));
  AnalysisManager am;
  PassContext ctx;
  ctx.data_dir = r.data_dir;
  ctx.calibration_samples = r.calibration_samples;
  ctx.calibration_seed = r.calibration_seed;
  ctx.batch_size = r.eval.batch_size;
  ctx.calibration_tokens = calibration_tokens;
  ctx.calibration_graphs = data.graphs;
  ctx.calibration_graph_idx = data.calibration_graph_idx;
  ctx.log = log;
  for (size_t i = 0; i < r.stages.size(); ++i) {
    const Stage& st = r.stages[i];
    const PassInfo* info = PassTable::global().find(st.pass);
    PARE_ASSERT(info, "pass vanished: ", st.pass);
    nlohmann::json notes = nlohmann::json::object();
    ctx.notes = &notes;
    log(concat("pass ", i + 1, "/", r.stages.size(), ": ", st.pass));
    auto t0 = std::chrono::steady_clock::now();
    PreservedAnalyses pa;
    try {
      pa = info->create(st.options)->run(m, am, ctx);
    } catch (const RecipeError&) {
      throw;
    } catch (const InputError& e) {
      throw InputError(concat(r.path, ": /pipeline/", i, " (", st.pass, "): ", e.what()));
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    am.invalidate(pa);
    m.verify_or_throw(concat("after pass ", st.pass));
    m.config.history.push_back({{"pass", st.pass}, {"options", st.options.values}});
    log(concat("measuring after ", st.pass));
    StageRow row = measure_stage(st.pass, m, data, r.eval);
    row.pass_seconds = secs;
    // Every pass's result against what it was asked: a pass that made the model larger (SliceGPT's
    // shortcut matrices at small slicings) is worth a word, like the differences passes report.
    const StageRow& prev = res.rows.back();
    if (row.params > prev.params)
      notes["warnings"].push_back(concat(st.pass, " made the model larger: ", prev.params, " -> ",
                                         row.params, " params, ", prev.bytes, " -> ", row.bytes, " bytes"));
    if (notes.contains("warnings"))
      for (const auto& w : notes["warnings"]) res.warnings.push_back(w.get<std::string>());
    row.notes = notes;
    res.rows.push_back(row);
  }
  // The verdict: every budget the recipe sets, judged on the final stage (NaN fails).
  std::vector<std::string> met, missed;
  auto judge = [&](bool ok, const std::string& what) { (ok ? met : missed).push_back(what); };
  const StageRow &first = res.rows.front(), &last = res.rows.back();
  const Budget& bu = r.budget;
  if (first.lm) {
    const double b = first.perplexity, f = last.perplexity, inc = 100.0 * (f / b - 1.0);
    if (bu.max_ppl_increase)
      judge(inc <= *bu.max_ppl_increase + 1e-9,
            concat("perplexity ", b, " -> ", f, " (", inc >= 0 ? "+" : "", inc, "%, max_increase ",
                   *bu.max_ppl_increase, "%)"));
    if (bu.max_kl)
      judge(last.kl <= *bu.max_kl, concat("KL vs dense ", last.kl, " nats/token (max ", *bu.max_kl, ")"));
    if (bu.min_top1)
      judge(100.0 * last.top1 >= *bu.min_top1 - 1e-9,
            concat("top-1 agreement with dense ", 100.0 * last.top1, "% (min ", *bu.min_top1, "%)"));
  } else {
    const double base = first.accuracy, fin = last.accuracy;
    const std::string what = first.metric == "rocauc" ? "ROC-AUC" : "accuracy";
    if (bu.max_drop)
      judge(base - fin <= *bu.max_drop + 1e-9, concat(what, " ", base, "% -> ", fin, "% (drop ", base - fin,
                                                       " points, max_drop ", *bu.max_drop, ")"));
    if (bu.min) judge(fin >= *bu.min - 1e-9, concat(what, " ", fin, "% (min ", *bu.min, "%)"));
    if (bu.max_mae) judge(fin <= *bu.max_mae, concat("MAE ", fin, " (max ", *bu.max_mae, ")"));
  }
  if (bu.max_params) judge(last.params <= *bu.max_params, concat("params ", last.params, " (max ", *bu.max_params, ")"));
  if (bu.max_flops) judge(last.flops <= *bu.max_flops, concat("FLOPs ", last.flops, " (max ", *bu.max_flops, ")"));
  if (bu.max_bytes) judge(last.bytes <= *bu.max_bytes, concat("bytes ", last.bytes, " (max ", *bu.max_bytes, ")"));
  if (bu.max_latency_ms) {
    double ms = std::nan("");
    for (const auto& [b, t] : last.latency_ms)
      if (b == bu.latency_batch) ms = t;
    judge(ms <= *bu.max_latency_ms, concat("latency b", bu.latency_batch, " ", ms, " ms (max ",
                                           *bu.max_latency_ms, " ms; ", res.threads, res.threads == 1 ? " thread)" : " threads)"));
  }
  res.budget_ok = missed.empty();
  auto join = [](const std::vector<std::string>& v) {
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : "; ") + x;
    return out;
  };
  if (!missed.empty())
    res.budget_message = join(missed) + (met.empty() ? "" : concat(" (within budget: ", join(met), ")"));
  else if (!met.empty())
    res.budget_message = join(met);
  return res;
}

namespace {
std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}
std::string human(double v) {
  if (v >= 1e9) return fmt("%.3f G", v / 1e9);
  if (v >= 1e6) return fmt("%.3f M", v / 1e6);
  if (v >= 1e3) return fmt("%.1f k", v / 1e3);
  return fmt("%.0f", v);
}
}  // namespace

std::string stage_table_markdown(const std::vector<StageRow>& rows) {
  if (!rows.empty() && rows.front().lm) {
    std::string s =
        "| stage | perplexity | Δ ppl % | KL vs baseline (nats/token) | top-1 agree % | params | "
        "FLOPs/token | bytes | tokens/s | pass time (s) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& r : rows)
      s += "| " + r.stage + " | " + fmt("%.3f", r.perplexity) + " | " +
           fmt("%+.2f", 100.0 * (r.perplexity / rows.front().perplexity - 1.0)) + " | " +
           fmt("%.5f", r.kl) + " | " + fmt("%.2f", 100.0 * r.top1) + " | " +
           std::to_string(r.params) + " | " + human(double(r.flops)) + " | " +
           std::to_string(r.bytes) + " | " + fmt("%.0f", r.tokens_per_second) + " | " +
           (r.pass_seconds <= 0 ? std::string("-") : fmt("%.2f", r.pass_seconds)) + " |\n";
    return s;
  }
  if (!rows.empty() && !rows.front().metric.empty()) {
    const std::string& mt = rows.front().metric;
    const bool mae = mt == "mae";
    std::string s = concat("| stage | ", graph_metric_label(mt),
                           " | Δ ", mae ? "MAE" : "(points)",
                           " | params | FLOPs/graph | bytes | graphs/s | pass time (s) |\n",
                           "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const auto& r : rows)
      s += "| " + r.stage + " | " + fmt(mae ? "%.4f" : "%.2f", r.accuracy) + " | " +
           fmt(mae ? "%+.4f" : "%+.2f", r.accuracy - rows.front().accuracy) + " | " +
           std::to_string(r.params) + " | " + human(double(r.flops)) + " | " +
           std::to_string(r.bytes) + " | " + fmt("%.0f", r.graphs_per_second) + " | " +
           (r.pass_seconds <= 0 ? std::string("-") : fmt("%.2f", r.pass_seconds)) + " |\n";
    return s;
  }
  std::string s = "| stage | accuracy % | Δ acc (points) | params | FLOPs/image | bytes |";
  std::string sep = "|---|---:|---:|---:|---:|---:|";
  if (!rows.empty())
    for (const auto& [b, ms] : rows.front().latency_ms) {
      s += concat(" latency b", b, " (ms) |");
      sep += "---:|";
    }
  s += " pass time (s) |\n" + sep + "---:|\n";
  for (const auto& r : rows) {
    s += "| " + r.stage + " | " + fmt("%.2f", r.accuracy) + " | " +
         fmt("%+.2f", r.accuracy - rows.front().accuracy) + " | " + std::to_string(r.params) +
         " | " + human(double(r.flops)) + " | " + std::to_string(r.bytes) + " |";
    for (const auto& [b, ms] : r.latency_ms) s += " " + fmt("%.2f", ms) + " |";
    s += " " + (r.pass_seconds <= 0 ? std::string("-") : fmt("%.2f", r.pass_seconds)) + " |\n";
  }
  return s;
}

std::string layer_table_markdown(const std::vector<CostRow>& rows) {
  std::string s =
      "| layer | heads | head_dim | intermediate | attn in | mlp in | tokens | params | FLOPs |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : rows)
    s += concat("| ", r.name, " | ", r.heads, " | ", r.head_dim, " | ", r.intermediate_size, " | ",
                r.attn_in, " | ", r.mlp_in, " | ",
                r.tokens == r.tokens_out ? concat(r.tokens) : concat(r.tokens, "→", r.tokens_out),
                " | ", r.params, " | ",
                human(double(r.flops)), " |\n");
  return s;
}

nlohmann::json report_json(const PipelineResult& res, const CompressRecipe& r,
                           const nlohmann::json& inputs) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : res.rows) {
    nlohmann::json lat = nlohmann::json::object(), layers = nlohmann::json::array();
    for (const auto& [b, ms] : row.latency_ms) lat[std::to_string(b)] = ms;
    for (const auto& c : row.layers)
      layers.push_back({{"name", c.name},
                        {"heads", c.heads},
                        {"head_dim", c.head_dim},
                        {"intermediate_size", c.intermediate_size},
                        {"attn_in", c.attn_in},
                        {"mlp_in", c.mlp_in},
                        {"tokens", c.tokens},
                        {"tokens_out", c.tokens_out},
                        {"params", c.params},
                        {"flops", c.flops}});
    if (row.lm) {
      rows.push_back({{"stage", row.stage},
                      {"perplexity", row.perplexity},
                      {"ppl_increase_percent", 100.0 * (row.perplexity / res.rows.front().perplexity - 1.0)},
                      {"kl_vs_baseline", row.kl},
                      {"top1_agreement", row.top1},
                      {"params", row.params},
                      {"flops_per_token", row.flops},
                      {"bytes", row.bytes},
                      {"tokens_per_second", row.tokens_per_second},
                      {"pass_seconds", row.pass_seconds},
                      {"eval_seconds", row.eval_seconds},
                      {"notes", row.notes},
                      {"layers", layers}});
      continue;
    }
    if (!row.metric.empty()) {
      const bool mae = row.metric == "mae";
      rows.push_back({{"stage", row.stage},
                      {"metric", row.metric},
                      {"value", mae ? row.accuracy : row.accuracy / 100.0},
                      {"delta", (row.accuracy - res.rows.front().accuracy) / (mae ? 1.0 : 100.0)},
                      {"params", row.params},
                      {"flops_per_graph", row.flops},
                      {"bytes", row.bytes},
                      {"graphs_per_second", row.graphs_per_second},
                      {"pass_seconds", row.pass_seconds},
                      {"eval_seconds", row.eval_seconds},
                      {"notes", row.notes},
                      {"layers", layers}});
      continue;
    }
    rows.push_back({{"stage", row.stage},
                    {"accuracy", row.accuracy},
                    {"delta_accuracy", row.accuracy - res.rows.front().accuracy},
                    {"params", row.params},
                    {"flops_per_image", row.flops},
                    {"bytes", row.bytes},
                    {"latency_ms_median", lat},
                    {"pass_seconds", row.pass_seconds},
                    {"eval_seconds", row.eval_seconds},
                    {"notes", row.notes},
                    {"layers", layers}});
  }
  for (size_t i = 0; i < rows.size() && i < res.rows.size(); ++i) {
    rows[i]["samples"] = res.rows[i].samples;  // what the metric was measured on, after eval.limit
    rows[i]["samples_unit"] = res.rows[i].samples_unit;
  }
  return {{"schema_version", kReportSchemaVersion},
          {"warnings", res.warnings},
          {"pipeline", r.one_line()},
          {"recipe", r.path},
          {"recipe_resolved", r.raw},
          {"inputs", inputs},
          {"calibration", {{"samples", r.calibration_samples}, {"seed", r.calibration_seed}}},
          {"threads", res.threads},
          {"runtime", runtime_json()},
          {"flops_counted",
           r.dataset == "graph"
               ? "2 x MACs per graph, averaged over the evaluated graphs at each graph's own node "
                 "and edge counts: node-wise linears (encoders, local MPNN, Q/K/V/O, FFN) per node, "
                 "GatedGCN edge linear per edge, attention QK^T and AV per node pair of a graph, "
                 "head once; embeddings, norms, softmax, activations, sums excluded"
               : r.dataset == "text"
               ? "2 x MACs of matmuls of one context_length sequence divided by its tokens: Q/K/V/O, "
                 "MLP, shortcut matrices, full QK^T and AV, lm_head on every token; norms, softmax, "
                 "activations, adds excluded"
               : "2 x MACs of matmuls per image: patch projection, Q/K/V/O, MLP, shortcut matrices, "
           "attention QK^T and AV, classifier on CLS, each at the tokens it runs on, plus token "
           "selection (PageRank, Key similarity) under token pruning; norms, softmax, GELU, "
           "bias/residual adds excluded"},
          {"latency", "median of repeated forward passes after 3 warm-up runs, random inputs"},
          {"budget", {{"ok", res.budget_ok}, {"message", res.budget_message}}},
          {"stages", rows}};
}

std::string report_markdown(const PipelineResult& res, const CompressRecipe& r,
                            const nlohmann::json& inputs) {
  std::string s = "# pare compression report\n\n";
  s += "- pipeline: `" + r.one_line() + "`\n";
  s += "- recipe: " + r.path + "\n";
  if (inputs.contains("model")) s += "- model: " + inputs["model"].get<std::string>() + "\n";
  if (r.dataset == "graph") {
    s += concat("- graphs: ", r.graph_path, " (the test split recorded in the model's config)\n");
    s += concat("- calibration (passes that need it): ", r.calibration_samples,
                " train graphs, evenly spaced over the train split (no seed)\n");
  } else if (r.dataset == "text") {
    s += concat("- evaluation text: ", r.text_path, "; perplexity over non-overlapping windows, ",
                "KL / top-1 against the baseline on the same tokens\n");
    s += concat("- calibration (passes that need it): ", r.calibration_samples, " windows of ", r.calibration_path, ", seed ",
                r.calibration_seed, "\n");
  } else {
    s += concat("- calibration (passes that need it): ", r.calibration_samples, " train images, seed ", r.calibration_seed,
                "\n");
  }
  s += concat("- threads: ", res.threads, " (LibTorch intra-op); latency = median of ",
              r.eval.latency_reps, " runs after 3 warm-up runs\n");
  s += concat("- BLAS: ", blas_info().summary(), "\n");
  s += r.dataset == "graph"
           ? "- FLOPs/graph = 2 × MACs per graph, mean over the test graphs at their own node and "
             "edge counts (attention per node pair; norms, softmax, activations excluded)\n\n"
           : r.dataset == "text"
           ? "- FLOPs/token = 2 × MACs of all matmuls of one context_length sequence / its tokens "
             "(full QKᵀ and AV, lm_head on every token; norms, softmax, activations, adds excluded)\n\n"
           : "- FLOPs = 2 × MACs of all matmuls per image (attention QKᵀ and AV included; norms, "
             "softmax, GELU, adds excluded)\n\n";
  s += stage_table_markdown(res.rows);
  if (!res.budget_message.empty())
    s += std::string("\nBudget: ") + (res.budget_ok ? "met — " : "NOT met — ") +
         res.budget_message + "\n";
  for (const auto& row : res.rows) {
    if (row.notes.empty()) continue;
    s += "\n## " + row.stage + " decisions\n\n```json\n" + row.notes.dump(2) + "\n```\n";
  }
  s += "\n## Per-layer shapes: baseline\n\n" + layer_table_markdown(res.rows.front().layers);
  if (res.rows.size() > 1)
    s += "\n## Per-layer shapes: final\n\n" + layer_table_markdown(res.rows.back().layers);
  return s;
}

std::string file_hash(const std::string& path) {
  std::string b = read_file(path);
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : b) h = (h ^ c) * 1099511628211ULL;
  char buf[32];
  std::snprintf(buf, sizeof buf, "fnv1a64:%016llx", (unsigned long long)h);
  return buf;
}

}  // namespace pare
