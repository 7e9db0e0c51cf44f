#include "tasks/task.h"

#include "base/error.h"

namespace pare {

// The built-in tasks, one file each.
TaskInfo image_classification_task_info();
TaskInfo lm_perplexity_task_info();
TaskInfo graph_task_info();
TaskInfo text_classification_task_info();
TaskInfo masked_lm_task_info();

TaskTable& TaskTable::global() {
  static TaskTable* t = [] {
    auto* table = new TaskTable;
    table->add(image_classification_task_info());
    table->add(lm_perplexity_task_info());
    table->add(graph_task_info());
    table->add(text_classification_task_info());
    table->add(masked_lm_task_info());
    return table;
  }();
  return *t;
}

void TaskTable::add(TaskInfo info) {
  PARE_ASSERT(!info.name.empty() && info.parse, "TaskTable::add: a task needs a name and a parser");
  PARE_ASSERT(!find(info.name) && (info.dataset.empty() || !find(info.dataset)),
              "task registered twice: ", info.name);
  tasks_.push_back(std::move(info));
}

const TaskInfo* TaskTable::find(const std::string& name_or_dataset) const {
  for (const auto& t : tasks_)
    if (t.name == name_or_dataset || (!t.dataset.empty() && t.dataset == name_or_dataset)) return &t;
  return nullptr;
}

std::vector<std::string> TaskTable::datasets() const {
  std::vector<std::string> out;
  for (const auto& t : tasks_) out.push_back(t.dataset.empty() ? t.name : t.dataset);
  return out;
}

const TaskInfo* TaskTable::from_data(const nlohmann::json& data, std::string& named_as,
                                     std::vector<std::string>& problems) const {
  if (!data.is_object()) return nullptr;
  auto str = [&](const char* k) {
    return data.contains(k) && data[k].is_string() ? data[k].get<std::string>() : std::string();
  };
  const std::string task = str("task"), dataset = str("dataset");
  std::string known_tasks, known_sets;
  for (const auto& t : tasks_) {
    known_tasks += (known_tasks.empty() ? "" : ", ") + t.name;
    known_sets += (known_sets.empty() ? "" : ", ") + (t.dataset.empty() ? t.name : t.dataset);
  }
  const TaskInfo* by_task = nullptr;
  if (!task.empty()) {
    for (const auto& t : tasks_)
      if (t.name == task) by_task = &t;
    if (!by_task) {
      problems.push_back(concat("/data/task: expected one of ", known_tasks, ", got \"", task, "\""));
      return nullptr;
    }
  }
  const TaskInfo* by_set = nullptr;
  if (!dataset.empty()) {
    by_set = find(dataset);
    if (!by_set) {
      problems.push_back(concat("/data/dataset: expected one of ", known_sets, ", got \"", dataset, "\""));
      return nullptr;
    }
  }
  if (by_task && by_set && by_task != by_set) {
    problems.push_back(concat("/data/dataset: ", dataset, " is data of the ", by_set->name, " task, not of task ",
                              task, " (/data/task)"));
    return nullptr;
  }
  named_as = by_task ? "task" : "dataset";
  return by_task ? by_task : by_set;
}

std::string model_task(const ArchConfig& c) {
  if (!c.task.empty()) return c.task;
  if (c.family == "vit") return "image-classification";
  if (c.family == "gps") return "graph";
  if (c.family == "bert") return "text-classification";
  return "lm-perplexity";  // the decoder LM families
}

std::string task_mismatch(const TaskInfo& named, const std::string& named_as, const ArchConfig& c,
                          bool training) {
  const std::string own = model_task(c);
  if (training ? (!named.fits || named.fits(c)) : named.name == own) return "";
  const TaskInfo* info = TaskTable::global().find(own);
  return concat(named_as, " does not fit a ", c.family, " model (its task is ", own,
                info ? concat("; use dataset: ", info->dataset) : std::string(), ")");
}

std::optional<MetricSpec> find_metric(const Task& t, const std::string& name) {
  for (const auto& m : t.metrics())
    if (m.name == name) return m;
  return std::nullopt;
}

}  // namespace pare
