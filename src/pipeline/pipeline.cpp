#include "pipeline/pipeline.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "base/blas_runtime.h"
#include "base/error.h"
#include "base/fileio.h"
#include "base/recipe.h"
#include "base/version.h"
#include "families/checkpoint.h"

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
  try {
    return parse_compress_recipe_json(j, path);
  } catch (const RecipeError& e) {
    // A problem with a value that a --set put there names the --set, not only the file.
    std::vector<std::string> problems = e.problems;
    for (auto& p : problems)
      for (const auto& set : sets) {
        const std::string key = set.substr(0, set.find('='));
        std::string ptr = "/" + key;
        for (auto& ch : ptr) ch = ch == '.' ? '/' : ch;
        if (p.rfind(ptr + ":", 0) == 0 || p.rfind(ptr + "/", 0) == 0) p += " (from --set " + set + ")";
      }
    throw RecipeError(path, problems);
  }
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
    auto given = [&](const nlohmann::json& o, const char* k) { return o.is_object() && o.contains(k); };
    auto add = [&](const std::string& metric, const std::string& bound, double v, const std::string& key) {
      r.budget.bounds.push_back({metric, bound, v, key});
    };
    // The general form: {metric: NAME, and the bounds of that metric}; NAME and the bounds are
    // checked against the model's task before anything runs (check_budget).
    const std::string metric = b.string("metric", "");
    const std::pair<const char*, std::pair<double, double>> kBounds[] = {
        {"max_drop", {0.0, 100.0}}, {"min", {0.0, 1e18}}, {"max_increase_pct", {0.0, 1e6}}, {"max", {0.0, 1e18}}};
    if (!metric.empty()) {
      bool any = false;
      for (const auto& [k, range] : kBounds) {
        const double v = b.number(k, -1, range.first, range.second);
        if (given(bj, k) && v >= 0) add(metric, k, v, "/budget");
        any = any || given(bj, k);
      }
      if (!any) b.problem("metric", concat("needs a bound beside it (max_drop, min, max_increase_pct or max, ",
                                           "as the metric takes)"));
    } else {
      for (const auto& [k, range] : kBounds)
        if (given(bj, k)) {
          b.allow(k);
          b.problem(k, "applies beside metric: NAME");
        }
    }
    // Metric sections NAME: {BOUND: VALUE, ...} for any metric of the task (checked against it
    // before the run). `accuracy:` means the task's primary metric (old recipes: a graph model's
    // ROC-AUC, in points); `perplexity: {max_increase}` is the old spelling of max_increase_pct.
    const std::vector<std::string> reserved = {"metric", "max_drop", "min", "max_increase_pct", "max",
                                               "params", "flops", "bytes", "latency"};
    if (bj.is_object())
      for (auto it = bj.begin(); it != bj.end(); ++it) {
        if (std::find(reserved.begin(), reserved.end(), it.key()) != reserved.end()) continue;
        b.allow(it.key());
        const std::string sec = "/budget/" + it.key();
        if (!it.value().is_object()) {
          problems.push_back(sec + ": expected a mapping {BOUND: VALUE} (max_drop, min, max_increase_pct, max)");
          continue;
        }
        FieldReader f(it.value(), sec, problems);
        bool any = false;
        for (const auto& [k, range] : kBounds) {
          const double v = f.number(k, -1, range.first, range.second);
          if (given(it.value(), k) && v >= 0) add(it.key() == "accuracy" ? "" : it.key(), k, v, sec);
          any = any || given(it.value(), k);
        }
        if (it.key() == "perplexity") {
          const double v = f.number("max_increase", -1, 0.0, 1e6);
          if (given(it.value(), "max_increase") && v >= 0) add("perplexity", "max_increase_pct", v, sec);
          any = any || given(it.value(), "max_increase");
        }
        f.reject_unknown();
        if (!any) problems.push_back(sec + ": expected a bound: max_drop, min, max_increase_pct or max");
      }
    for (const char* k : {"params", "flops", "bytes", "latency"}) b.allow(k);
    b.reject_unknown();
    // Ceilings: budget.{params,flops,bytes}.max, budget.latency.{max_ms, batch}.
    auto one = [&](const char* section, const char* key, double lo, double hi) -> std::optional<double> {
      if (!given(bj, section)) return std::nullopt;
      FieldReader f(bj[section], concat("/budget/", section), problems);
      const double v = f.number(key, -1, lo, hi);
      f.reject_unknown();
      if (!given(bj[section], key)) {
        f.problem(key, "expected a number");
        return std::nullopt;
      }
      return v >= lo ? std::optional<double>(v) : std::nullopt;
    };
    if (auto v = one("params", "max", 1.0, 1e15)) r.budget.max_params = static_cast<int64_t>(*v);
    if (auto v = one("flops", "max", 1.0, 1e18)) r.budget.max_flops = static_cast<int64_t>(*v);
    if (auto v = one("bytes", "max", 1.0, 1e15)) r.budget.max_bytes = static_cast<int64_t>(*v);
    if (given(bj, "latency")) {
      FieldReader lt(bj["latency"], "/budget/latency", problems);
      const double ms = lt.number("max_ms", -1, 0.0, 1e9);
      r.budget.latency_batch = lt.integer("batch", 1, 1, 1 << 16);
      lt.reject_unknown();
      if (given(bj["latency"], "max_ms") && ms >= 0)
        r.budget.max_latency_ms = ms;
      else
        lt.problem("max_ms", "expected a number of milliseconds");
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
  // The task: data.task or data.dataset names it; its parser reads the data and calibration
  // sections. Without either, bind_task parses them with the model's task.
  {
    std::string named_as;
    const nlohmann::json d = j.value("data", nlohmann::json::object());
    if (const TaskInfo* info = TaskTable::global().from_data(d, named_as, problems))
      r.task = info->parse(d, j.value("calibration", nlohmann::json::object()), false, problems);
  }
  if (!problems.empty()) throw RecipeError(source, problems);
  return r;
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
// "accuracy", "ROC-AUC", "top-1 agreement with dense", ... for verdict lines.
std::string metric_display_name(const MetricSpec& sp) {
  if (sp.name == "top1") return "top-1 agreement with dense";
  if (sp.name == "kl") return "KL vs dense";
  std::string l = sp.label;
  const auto cut = l.find_first_of("%(");
  if (cut != std::string::npos) l = l.substr(0, cut);
  while (!l.empty() && l.back() == ' ') l.pop_back();
  return l;
}
}  // namespace

void bind_task(CompressRecipe& r, const ArchConfig& c) {
  const std::string own = model_task(c);
  if (!r.task) {
    const TaskInfo* info = TaskTable::global().find(own);
    PARE_CHECK(info, r.path, ": the model's task '", own, "' is not a known task");
    std::vector<std::string> problems;
    r.task = info->parse(r.raw.value("data", nlohmann::json::object()),
                         r.raw.value("calibration", nlohmann::json::object()), false, problems);
    if (!problems.empty()) throw RecipeError(r.path, problems);
    return;
  }
  std::string named;
  std::vector<std::string> problems;
  const TaskInfo* info = TaskTable::global().from_data(r.raw["data"], named, problems);
  PARE_ASSERT(info, "bind_task: the recipe's task vanished: ", r.task->name());
  const std::string why = task_mismatch(*info, r.raw["data"][named].get<std::string>(), c, false);
  PARE_CHECK(why.empty(), r.path, ": /data/", named, ": ", why);
}

double StageRow::metric(const std::string& name) const {
  auto it = m.metrics.find(name);
  return it == m.metrics.end() ? std::nan("") : it->second;
}

StageRow measure_stage(const std::string& name, const Model& m, const Task& task,
                       const EvalSettings& eval, const Model* reference) {
  StageRow row;
  row.stage = name;
  row.m = task.measure(m, eval, reference);
  row.params = m.num_params();
  row.layers = m.family().costs(m);
  row.flops = static_cast<int64_t>(std::llround(row.m.flops));
  row.bytes = checkpoint_bytes(m);
  return row;
}

void check_budget(const Budget& b, const Task& task, const EvalSettings& eval, const std::string& recipe) {
  const std::vector<MetricSpec> specs = task.metrics();
  auto list = [&] {
    std::string out;
    for (const auto& sp : specs) {
      std::string bounds;
      for (const auto& x : sp.bounds) bounds += (bounds.empty() ? "" : ", ") + x;
      out += (out.empty() ? "" : "; ") + sp.name + " {" + bounds + "}";
    }
    return out;
  };
  for (const MetricBound& mb : b.bounds) {
    const std::string name = mb.metric.empty() ? specs.front().name : mb.metric;
    auto sp = find_metric(task, name);
    PARE_CHECK(sp, recipe, ": ", mb.key == "/budget" ? "/budget/metric" : mb.key, ": ", name,
               " is not a metric of the ", task.name(),
               " task (its metrics and their bounds: ", list(), ")");
    PARE_CHECK(std::find(sp->bounds.begin(), sp->bounds.end(), mb.bound) != sp->bounds.end(), recipe, ": ",
               mb.key, "/", mb.bound, ": does not apply to ", name,
               mb.metric.empty() ? concat(" (the primary metric of the ", task.name(), " task)") : std::string(),
               "; the task's metrics and their bounds: ", list());
    PARE_CHECK(mb.bound != "min" || !sp->percent || mb.value <= 100.0, recipe, ": ", mb.key,
               "/min: ", mb.value, " is above 100 (", name, " is a percentage)");
  }
  if (b.max_latency_ms) {
    PARE_CHECK(task.has_latency(), recipe, ": /budget/latency: the ", task.name(),
               " task does not measure latency");
    const auto& lb = eval.latency_batches;
    PARE_CHECK(std::find(lb.begin(), lb.end(), b.latency_batch) != lb.end(), recipe,
               ": /budget/latency/batch: ", b.latency_batch, " is not one of eval.latency_batches (add it there)");
  }
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

PipelineResult run_pipeline(Model& m, const CompressRecipe& r,
                            const std::function<void(const std::string&)>& log) {
  PARE_ASSERT(r.task, "run_pipeline: the recipe has no task (bind_task)");
  const Task& task = *r.task;
  PipelineResult res;
  res.threads = at::get_num_threads();
  // Fail before the (slow) baseline when the first pass can already tell its options do not fit
  // the model, then when a later pass cannot apply to the shapes the earlier ones will produce,
  // then when the budget names what the task does not measure.
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
  check_budget(r.budget, task, r.eval, r.path);
  for (const MetricBound& mb : r.budget.bounds) {
    const auto sp = find_metric(task, mb.metric.empty() ? task.metrics().front().name : mb.metric);
    if (sp && sp->percent && mb.bound == "min" && mb.value < 1.0)
      res.warnings.push_back(concat(r.path, ": ", mb.key, ": min ", mb.value, " is in percent (", mb.value, "% ",
                                    sp->name, "); report.json holds ", sp->name,
                                    " as a fraction, but budgets are written in percent"));
  }
  // The dense model, reference of the metrics measured against it (KL, top-1 agreement).
  std::unique_ptr<Model> baseline;
  for (const auto& sp : task.metrics())
    if (sp.needs_reference && !baseline) baseline = std::make_unique<Model>(m.clone());
  log("measuring baseline");
  res.rows.push_back(measure_stage("baseline", m, task, r.eval, baseline.get()));
  AnalysisManager am;
  PassContext ctx;
  ctx.task = &task;
  ctx.batch_size = r.eval.batch_size;
  ctx.log = log;
  ctx.fine_tuning_task = [&r, &task]() {
    const TaskInfo* info = TaskTable::global().find(task.name());
    PARE_ASSERT(info, "fine_tuning_task: unknown task ", task.name());
    std::vector<std::string> problems;
    std::unique_ptr<Task> t = info->parse(r.raw.value("data", nlohmann::json::object()),
                                          r.raw.value("calibration", nlohmann::json::object()), false, problems);
    if (!problems.empty()) throw RecipeError(r.path, problems);
    t->adopt(task);
    return t;
  };
  for (size_t i = 0; i < r.stages.size(); ++i) {
    const Stage& st = r.stages[i];
    const PassInfo* info = PassTable::global().find(st.pass);
    PARE_ASSERT(info, "pass vanished: ", st.pass);
    nlohmann::json notes = nlohmann::json::object();
    ctx.notes = &notes;
    ctx.pass = st.pass;
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
    StageRow row = measure_stage(st.pass, m, task, r.eval, baseline.get());
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
  auto num = [](double v, int digits) { return fmt(concat("%.", digits, "f").c_str(), v); };
  // In the task's metric order (the primary metric first), whatever order the recipe wrote them in.
  const std::vector<MetricSpec> specs = task.metrics();
  std::vector<MetricBound> ordered = bu.bounds;
  auto rank = [&](const MetricBound& b) {
    for (size_t i = 0; i < specs.size(); ++i)
      if (specs[i].name == (b.metric.empty() ? specs.front().name : b.metric)) return i;
    return specs.size();
  };
  std::stable_sort(ordered.begin(), ordered.end(),
                   [&](const MetricBound& x, const MetricBound& y) { return rank(x) < rank(y); });
  for (const MetricBound& mb : ordered) {
    const MetricSpec sp = *find_metric(task, mb.metric.empty() ? specs.front().name : mb.metric);
    const double base = first.metric(sp.name), fin = last.metric(sp.name);
    const double k = sp.percent ? 100.0 : 1.0;
    const std::string pct = sp.percent ? "%" : "";
    const std::string what = metric_display_name(sp);
    const int dg = sp.digits;
    if (mb.bound == "max_drop") {
      const double drop = (base - fin) * k;
      judge(drop <= mb.value + 1e-9, concat(what, " ", num(k * base, dg), pct, " -> ", num(k * fin, dg), pct,
                                            drop >= 0 ? " (drop " : " (gain ", num(std::abs(drop), dg),
                                            " points, max_drop ", mb.value, ")"));
    } else if (mb.bound == "min") {
      judge(k * fin >= mb.value - 1e-9, concat(what, " ", num(k * fin, dg), pct, " (min ", mb.value, pct, ")"));
    } else if (mb.bound == "max_increase_pct") {
      const double inc = 100.0 * (fin / base - 1.0);
      judge(inc <= mb.value + 1e-9, concat(what, " ", num(base, dg), " -> ", num(fin, dg), " (",
                                           inc >= 0 ? "+" : "", num(inc, 2), "%, max_increase ", mb.value, "%)"));
    } else {  // max
      judge(fin <= mb.value, concat(what, " ", num(fin, dg), " ", sp.unit == "target unit" ? "" : sp.unit,
                                    sp.unit == "target unit" ? "" : " ", "(max ", mb.value, ")"));
    }
  }
  if (bu.max_params) judge(last.params <= *bu.max_params, concat("params ", last.params, " (max ", *bu.max_params, ")"));
  if (bu.max_flops) judge(last.flops <= *bu.max_flops, concat("FLOPs ", last.flops, " (max ", *bu.max_flops, ")"));
  if (bu.max_bytes) judge(last.bytes <= *bu.max_bytes, concat("bytes ", last.bytes, " (max ", *bu.max_bytes, ")"));
  if (bu.max_latency_ms) {
    double ms = std::nan("");
    for (const auto& [b, t] : last.m.latency_ms)
      if (b == bu.latency_batch) ms = t;
    judge(ms <= *bu.max_latency_ms, concat("latency b", bu.latency_batch, " ", num(ms, 2), " ms (max ",
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

std::string stage_table_markdown(const std::vector<StageRow>& rows, const Task& task) {
  const std::vector<MetricSpec> specs = task.metrics();
  std::vector<MetricSpec> shown;  // the metrics the baseline row has
  for (const auto& sp : specs)
    if (rows.empty() || rows.front().m.metrics.count(sp.name)) shown.push_back(sp);
  // One row (pare eval): no change from a baseline, no pass time.
  const bool stages = rows.size() > 1 || (!rows.empty() && rows.front().stage == "baseline");
  std::string s = "| stage |", sep = "|---|";
  for (size_t i = 0; i < shown.size(); ++i) {
    s += " " + shown[i].label + " |";
    sep += "---:|";
    if (i == 0 && !shown[i].delta.empty() && stages) {
      s += shown[i].delta == "points" ? " Δ (points) |" : shown[i].delta == "percent" ? " Δ % |" : " Δ |";
      sep += "---:|";
    }
  }
  s += " params | FLOPs/" + task.flops_unit() + " | bytes |";
  sep += "---:|---:|---:|";
  const bool thr = !rows.empty() && !rows.front().m.throughput_unit.empty();
  if (thr) {
    s += " " + rows.front().m.throughput_unit + " |";
    sep += "---:|";
  }
  if (!rows.empty())
    for (const auto& [b, ms] : rows.front().m.latency_ms) {
      s += concat(" latency b", b, " (ms) |");
      sep += "---:|";
    }
  s += stages ? " pass time (s) |\n" + sep + "---:|\n" : "\n" + sep + "\n";
  for (const auto& r : rows) {
    s += "| " + r.stage + " |";
    for (size_t i = 0; i < shown.size(); ++i) {
      const MetricSpec& sp = shown[i];
      const double k = sp.percent ? 100.0 : 1.0, v = r.metric(sp.name), b = rows.front().metric(sp.name);
      s += " " + fmt(concat("%.", sp.digits, "f").c_str(), k * v) + " |";
      if (i == 0 && !sp.delta.empty() && stages) {
        const double d = sp.delta == "percent" ? 100.0 * (v / b - 1.0) : k * (v - b);
        s += " " + fmt(concat("%+.", sp.delta == "percent" ? 2 : sp.digits, "f").c_str(), d) + " |";
      }
    }
    s += " " + std::to_string(r.params) + " | " + human(double(r.flops)) + " | " + std::to_string(r.bytes) + " |";
    if (thr) s += " " + fmt("%.0f", r.m.throughput) + " |";
    for (const auto& [b, ms] : r.m.latency_ms) s += " " + fmt("%.2f", ms) + " |";
    if (stages) s += " " + (r.pass_seconds <= 0 ? std::string("-") : fmt("%.2f", r.pass_seconds)) + " |";
    s += "\n";
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

nlohmann::json stage_json(const StageRow& row) {
  nlohmann::json lat = nlohmann::json::object(), layers = nlohmann::json::array();
  for (const auto& [b, ms] : row.m.latency_ms) lat[std::to_string(b)] = ms;
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
  return {{"stage", row.stage},
          {"metrics", row.m.metrics},
          {"extra", row.m.extra},
          {"params", row.params},
          {"flops", row.flops},
          {"bytes", row.bytes},
          {"throughput", row.m.throughput_unit.empty()
                             ? nlohmann::json(nullptr)
                             : nlohmann::json{{"value", row.m.throughput}, {"unit", row.m.throughput_unit}}},
          {"latency_ms_median", lat},
          {"samples", row.m.samples},  // what the metrics were measured on, after eval.limit
          {"samples_unit", row.m.samples_unit},
          {"pass_seconds", row.pass_seconds},
          {"eval_seconds", row.m.eval_seconds},
          {"notes", row.notes},
          {"layers", layers}};
}

nlohmann::json task_json(const Task& task) {
  nlohmann::json metrics = nlohmann::json::array();
  for (const auto& sp : task.metrics())
    metrics.push_back({{"name", sp.name}, {"label", sp.label}, {"unit", sp.unit},
                       {"higher_is_better", sp.higher_is_better}, {"budget_bounds", sp.bounds},
                       {"against_baseline", sp.needs_reference}});
  nlohmann::json t = task.describe();
  t["metrics"] = metrics;
  t["flops_unit"] = task.flops_unit();
  return t;
}

nlohmann::json report_json(const PipelineResult& res, const CompressRecipe& r,
                           const nlohmann::json& inputs) {
  const Task& task = *r.task;
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : res.rows) rows.push_back(stage_json(row));
  const nlohmann::json t = task_json(task);
  nlohmann::json bounds = nlohmann::json::array();
  for (const auto& b : r.budget.bounds)
    bounds.push_back({{"metric", b.metric.empty() ? task.metrics().front().name : b.metric},
                      {"bound", b.bound}, {"value", b.value}});
  const Budget& bu = r.budget;
  if (bu.max_params) bounds.push_back({{"metric", "params"}, {"bound", "max"}, {"value", *bu.max_params}});
  if (bu.max_flops) bounds.push_back({{"metric", "flops"}, {"bound", "max"}, {"value", *bu.max_flops}});
  if (bu.max_bytes) bounds.push_back({{"metric", "bytes"}, {"bound", "max"}, {"value", *bu.max_bytes}});
  if (bu.max_latency_ms)
    bounds.push_back({{"metric", "latency_ms"}, {"bound", "max"}, {"value", *bu.max_latency_ms},
                      {"batch", bu.latency_batch}});
  return {{"schema_version", kReportSchemaVersion},
          {"pare_version", pare_version()},
          {"warnings", res.warnings},
          {"pipeline", r.one_line()},
          {"recipe", r.path},
          {"recipe_resolved", r.raw},
          {"inputs", inputs},
          {"task", t},
          {"threads", res.threads},
          {"runtime", runtime_json()},
          {"flops_counted", task.flops_counted()},
          {"latency", "median of repeated forward passes after 3 warm-up runs, random inputs"},
          {"budget", {{"ok", res.budget_ok}, {"message", res.budget_message}, {"bounds", bounds}}},
          {"stages", rows}};
}

std::string report_markdown(const PipelineResult& res, const CompressRecipe& r,
                            const nlohmann::json& inputs) {
  const Task& task = *r.task;
  std::string s = "# pare compression report\n\n";
  s += "- pipeline: `" + r.one_line() + "`\n";
  s += "- recipe: " + r.path + "\n";
  if (inputs.contains("model")) s += "- model: " + inputs["model"].get<std::string>() + "\n";
  s += "- task: " + task.name() + "\n";
  s += task.describe_markdown();
  s += concat("- threads: ", res.threads, " (LibTorch intra-op)");
  if (task.has_latency())
    s += concat("; latency = median of ", r.eval.latency_reps, " runs after 3 warm-up runs");
  s += "\n";
  s += concat("- BLAS: ", blas_info().summary(), "\n");
  s += "- FLOPs/" + task.flops_unit() + ": " + task.flops_counted() + "\n\n";
  s += stage_table_markdown(res.rows, task);
  if (!res.budget_message.empty())
    s += std::string("\nBudget: ") + (res.budget_ok ? "met — " : "NOT met — ") + res.budget_message + "\n";
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
