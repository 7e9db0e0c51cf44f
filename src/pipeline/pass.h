// Passes, their options, the pass table and the AnalysisManager (DESIGN.md "Passes").
//
// A pass edits a Model in place and returns which analyses it preserved. Options are declared in
// the pass table (name, type, default, range, help) and parsed from the recipe with every problem
// collected before any weights load. Analyses are computed lazily and cached by the
// AnalysisManager; a pass's PreservedAnalyses decides what is dropped afterwards.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <typeindex>
#include <vector>

#include "families/model.h"
#include "tasks/task.h"

namespace pare {

// ---- options ------------------------------------------------------------------------------------

struct OptionSpec {
  enum Type { kNumber, kInteger, kBool, kString, kNumberList, kIntegerList };
  std::string name;
  Type type = kNumber;
  nlohmann::json default_value;
  std::optional<double> min, max;  // numbers/integers
  bool max_inclusive = true;
  std::vector<std::string> choices;  // strings
  std::string help;
};

// Resolved option values of one pass (defaults < recipe < --set).
class PassOptions {
 public:
  nlohmann::json values = nlohmann::json::object();
  double number(const std::string& k) const { return values.at(k).get<double>(); }
  int64_t integer(const std::string& k) const { return values.at(k).get<int64_t>(); }
  bool boolean(const std::string& k) const { return values.at(k).get<bool>(); }
  std::string string(const std::string& k) const { return values.at(k).get<std::string>(); }
  std::vector<double> numbers(const std::string& k) const {
    return values.at(k).get<std::vector<double>>();
  }
  std::vector<int64_t> integers(const std::string& k) const {
    return values.at(k).get<std::vector<int64_t>>();
  }
};

// ---- analyses -----------------------------------------------------------------------------------

// What a pass kept valid. kAll: nothing changed. kShapes: weights changed, shapes did not.
// kNone: shapes changed. Analyses that depend only on the input data always survive.
struct PreservedAnalyses {
  enum Level { kNone, kShapes, kAll };
  Level level = kNone;
  int64_t first_changed_layer = 0;  // informational: layers before it kept their statistics
  static PreservedAnalyses all() { return {kAll, 0}; }
  static PreservedAnalyses shapes() { return {kShapes, 0}; }
  static PreservedAnalyses none(int64_t first_layer = 0) { return {kNone, first_layer}; }
};

enum class AnalysisDependsOn { kData, kShapes, kValues };

struct PassContext;
class AnalysisManager;

// An analysis is a type with:
//   using Result = ...;  static constexpr const char* kName;  static constexpr AnalysisDependsOn kDepends;
//   static Result run(const Model&, AnalysisManager&, const PassContext&);
class AnalysisManager {
 public:
  template <class A>
  const typename A::Result& get(const Model& m, const PassContext& ctx) {
    auto key = std::type_index(typeid(A));
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      ++runs_[A::kName];
      auto r = std::make_shared<typename A::Result>(A::run(m, *this, ctx));
      it = cache_.emplace(key, Entry{r, A::kDepends}).first;
    }
    return *static_cast<const typename A::Result*>(it->second.result.get());
  }
  template <class A>
  bool cached() const {
    return cache_.count(std::type_index(typeid(A))) > 0;
  }
  void invalidate(const PreservedAnalyses& pa);
  // How many times an analysis was computed (tests check caching and invalidation).
  int runs(const std::string& name) const {
    auto it = runs_.find(name);
    return it == runs_.end() ? 0 : it->second;
  }

 private:
  struct Entry {
    std::shared_ptr<void> result;
    AnalysisDependsOn depends;
  };
  std::map<std::type_index, Entry> cache_;
  std::map<std::string, int> runs_;
};

// Where passes find data and settings.
struct PassContext {
  // The task the model is measured on: calibration data comes from it (Task::calibration). Null
  // when a pass runs outside a recipe (then a pass that calibrates refuses).
  const Task* task = nullptr;
  std::string pass;  // the pass running (set by the pipeline; named in calibration errors)
  int64_t batch_size = 256;
  std::function<void(const std::string&)> log = [](const std::string&) {};
  // Decisions and figures a pass wants in the report (JSON object per pass).
  nlohmann::json* notes = nullptr;
  // A fresh task of the recipe's data for a pass that fine-tunes (Task::prepare_fine_tuning,
  // then train/trainer.h), apart from `task`, which keeps measuring; null outside a recipe.
  std::function<std::unique_ptr<Task>()> fine_tuning_task;
};

// The task's calibration data (Task::calibration): computed once per run (it depends on the data
// only), for the pass named in ctx.pass.
struct CalibrationData {
  using Result = CalibrationSet;
  static constexpr const char* kName = "calibration";
  static constexpr AnalysisDependsOn kDepends = AnalysisDependsOn::kData;
  static Result run(const Model& m, AnalysisManager&, const PassContext& ctx);
};

// The calibration inputs of a pass that runs on tensors [n, ...] (normalised images, token
// windows): InputError naming `pass` when there is no task, when the task offers none (an LM
// recipe without calibration.path), or when it offers graphs instead.
torch::Tensor calibration_inputs(const Model& m, AnalysisManager& am, const PassContext& ctx,
                                 const std::string& pass);
// The whole calibration set (graphs for graph tasks); InputError naming `pass` without a task.
const CalibrationSet& calibration_set(const Model& m, AnalysisManager& am, const PassContext& ctx,
                                      const std::string& pass);

// Per-layer cost table (Family::costs).
struct CostAnalysis {
  using Result = std::vector<struct CostRow>;
  static constexpr const char* kName = "costs";
  static constexpr AnalysisDependsOn kDepends = AnalysisDependsOn::kShapes;
  static Result run(const Model& m, AnalysisManager&, const PassContext& ctx);
};

// ---- passes -------------------------------------------------------------------------------------

class Pass {
 public:
  virtual ~Pass() = default;
  virtual PreservedAnalyses run(Model& m, AnalysisManager& am, PassContext& ctx) = 0;
};

struct PassInfo {
  std::string name;     // kebab-case
  std::string summary;  // one line
  std::string source;   // paper and section
  std::vector<OptionSpec> options;
  std::function<std::unique_ptr<Pass>(const PassOptions&)> create;
  // Optional: throws InputError when the options cannot apply to the model (run before any
  // measurement, so a bad schedule fails in a second, not after the baseline).
  std::function<void(const Model&, const PassOptions&)> check;
  // Optional: the shapes the pass will produce, from its options alone. Applies them to `planned`
  // (the config as the earlier stages of the recipe will leave it) and throws InputError when the
  // pass cannot apply to that config. The pipeline runs every stage's plan in order before the
  // baseline is measured (check_recipe_plan), so a quantize group size that does not divide the
  // width a slicegpt stage will produce, or two passes in an order that cannot work, fail at once.
  // Returns false when the shapes depend on data (e.g. heads ranked across the whole model): the
  // planning ends there, as it does at a pass without a plan (what follows is checked when it runs).
  std::function<bool(ArchConfig& planned, const PassOptions&)> plan;
};

class PassTable {
 public:
  static PassTable& global();
  void add(PassInfo info);
  const PassInfo* find(const std::string& name) const;
  const std::vector<PassInfo>& all() const { return passes_; }
  // Validates a recipe stage {pass: NAME, ...}: unknown pass, unknown key, wrong type, range.
  // Problems are appended with `path`; returns resolved options (defaults filled in).
  PassOptions resolve(const nlohmann::json& stage, const std::string& path,
                      std::vector<std::string>& problems) const;

 private:
  std::vector<PassInfo> passes_;
};

}  // namespace pare
