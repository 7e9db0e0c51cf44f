#include "pipeline/pass.h"

#include "base/error.h"
#include "families/family.h"
#include "base/recipe.h"

namespace pare {

void AnalysisManager::invalidate(const PreservedAnalyses& pa) {
  if (pa.level == PreservedAnalyses::kAll) return;
  for (auto it = cache_.begin(); it != cache_.end();) {
    bool keep = it->second.depends == AnalysisDependsOn::kData ||
                (pa.level == PreservedAnalyses::kShapes &&
                 it->second.depends == AnalysisDependsOn::kShapes);
    it = keep ? std::next(it) : cache_.erase(it);
  }
}

CalibrationSet CalibrationData::run(const Model& m, AnalysisManager&, const PassContext& ctx) {
  PARE_CHECK(ctx.task, ctx.pass, ": needs calibration data, and it runs without a task (give the ",
             "recipe a data section)");
  return ctx.task->calibration(m, ctx.pass);
}

std::vector<CostRow> CostAnalysis::run(const Model& m, AnalysisManager&, const PassContext&) {
  return m.family().costs(m);
}

PassTable& PassTable::global() {
  static PassTable t;
  return t;
}

void PassTable::add(PassInfo info) {
  PARE_ASSERT(!find(info.name), "pass registered twice: ", info.name);
  passes_.push_back(std::move(info));
}

const PassInfo* PassTable::find(const std::string& name) const {
  for (const auto& p : passes_)
    if (p.name == name) return &p;
  return nullptr;
}

PassOptions PassTable::resolve(const nlohmann::json& stage, const std::string& path,
                               std::vector<std::string>& problems) const {
  PassOptions out;
  if (!stage.is_object() || !stage.contains("pass") || !stage["pass"].is_string()) {
    problems.push_back(path + ": expected a mapping {pass: NAME, options...}");
    return out;
  }
  const std::string name = stage["pass"].get<std::string>();
  const PassInfo* info = find(name);
  if (!info) {
    std::string known;
    for (size_t i = 0; i < passes_.size(); ++i) known += (i ? ", " : "") + passes_[i].name;
    problems.push_back(path + "/pass: unknown pass '" + name + "' (known: " + known + ")");
    return out;
  }
  FieldReader r(stage, path, problems);
  r.string("pass", "");
  for (const auto& o : info->options) {
    switch (o.type) {
      case OptionSpec::kNumber:
        out.values[o.name] =
            r.number(o.name, o.default_value.get<double>(), o.min, o.max, o.max_inclusive);
        break;
      case OptionSpec::kInteger: {
        std::optional<int64_t> lo, hi;
        if (o.min) lo = static_cast<int64_t>(*o.min);
        if (o.max) hi = static_cast<int64_t>(*o.max);
        out.values[o.name] = r.integer(o.name, o.default_value.get<int64_t>(), lo, hi);
        break;
      }
      case OptionSpec::kBool:
        out.values[o.name] = r.boolean(o.name, o.default_value.get<bool>());
        break;
      case OptionSpec::kString:
        out.values[o.name] = r.string(o.name, o.default_value.get<std::string>(), o.choices);
        break;
      case OptionSpec::kNumberList:
      case OptionSpec::kIntegerList: {
        const bool ints = o.type == OptionSpec::kIntegerList;
        auto v = r.number_list(o.name, o.default_value.get<std::vector<double>>(), o.min, o.max, ints);
        if (ints) {
          std::vector<int64_t> iv(v.begin(), v.end());
          out.values[o.name] = iv;
        } else {
          out.values[o.name] = v;
        }
        break;
      }
    }
  }
  r.reject_unknown();
  return out;
}

const CalibrationSet& calibration_set(const Model& m, AnalysisManager& am, const PassContext& ctx,
                                      const std::string& pass) {
  PassContext named = ctx;
  named.pass = pass;
  return am.get<CalibrationData>(m, named);
}

torch::Tensor calibration_inputs(const Model& m, AnalysisManager& am, const PassContext& ctx,
                                 const std::string& pass) {
  const CalibrationSet& s = calibration_set(m, am, ctx, pass);
  PARE_CHECK(s.inputs.defined(), pass, ": needs calibration inputs of tensors, and the ",
             ctx.task->name(), " task offers graphs; use a pass that needs no calibration data ",
             "(prune-heads) or one that calibrates on graphs (quantize)");
  return s.inputs;
}

}  // namespace pare
