#include "tasks/task.h"

#include "base/error.h"

namespace pare {

// The built-in tasks, one file each.
TaskInfo image_classification_task_info();
TaskInfo lm_perplexity_task_info();
TaskInfo graph_task_info();

TaskTable& TaskTable::global() {
  static TaskTable* t = [] {
    auto* table = new TaskTable;
    table->add(image_classification_task_info());
    table->add(lm_perplexity_task_info());
    table->add(graph_task_info());
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

std::string model_task(const ArchConfig& c) {
  if (!c.task.empty()) return c.task;
  if (c.family == "vit") return "image-classification";
  if (c.family == "gps") return "graph";
  return "lm-perplexity";  // the decoder LM families
}

std::optional<MetricSpec> find_metric(const Task& t, const std::string& name) {
  for (const auto& m : t.metrics())
    if (m.name == name) return m;
  return std::nullopt;
}

}  // namespace pare
