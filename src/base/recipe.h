// Recipes: one schema, written as YAML or JSON (JSON is read by the same YAML parser).
//
//   model:        # pare train only: architecture (HF ViT field names)
//     family: vit
//     hidden_size: 128 ...
//   train:        # pare train only: TrainOptions fields, plus out: folder
//     epochs: 8 ...
//   data:         # where the data set lives (default: the Debian package's folder)
//     path: /usr/share/datasets/fashion-mnist
//   calibration:  # images from the train split for passes that need statistics
//     samples: 1024
//     seed: 0
//   pipeline:     # pare compress: passes in order, each {pass: NAME, OPTION: VALUE, ...}
//     - pass: slicegpt
//       slicing: 0.25
//   budget:       # optional; pare compress exits 1 when the final model misses it
//     accuracy: {max_drop: 1.0}   # points of top-1 accuracy (percent), or {min: 85.0}
//   eval: {batch_size: 256, latency_batches: [1, 256], latency_reps: 10, limit: -1}
//
// Every problem is collected with its path ("/pipeline/0/slicing: expected a number in [0, 1),
// got 1.5") and all are reported together (RecipeError) before any weights load.
// `--set KEY=VALUE` overrides use the same paths without the leading slash
// ("pipeline.0.slicing=0.3").
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"

namespace pare {

class RecipeError : public InputError {
 public:
  RecipeError(const std::string& file, std::vector<std::string> problems);
  std::vector<std::string> problems;
};

// Reads a YAML or JSON file into JSON (scalars typed: integers, numbers, booleans, null, strings;
// quoted YAML scalars stay strings). Throws InputError naming the file and line on syntax errors.
nlohmann::json load_yaml_or_json(const std::string& path);

// Applies "a.b.0.c=VALUE" overrides (VALUE parsed as YAML scalar). Throws InputError on a bad spec.
void apply_overrides(nlohmann::json& j, const std::vector<std::string>& sets);

// Collects problems while reading typed fields of a JSON object.
class FieldReader {
 public:
  FieldReader(const nlohmann::json& obj, std::string path, std::vector<std::string>& problems);
  // Each getter records a problem (and returns the default) when the field has the wrong type or
  // is out of range; absent fields give the default.
  double number(const std::string& key, double def, std::optional<double> lo = {},
                std::optional<double> hi = {}, bool hi_inclusive = true);
  int64_t integer(const std::string& key, int64_t def, std::optional<int64_t> lo = {},
                  std::optional<int64_t> hi = {});
  bool boolean(const std::string& key, bool def);
  std::string string(const std::string& key, const std::string& def,
                     const std::vector<std::string>& allowed = {});
  std::vector<int64_t> int_list(const std::string& key, const std::vector<int64_t>& def);
  // A list of numbers in [lo, hi] (integers only when `integers`); a single number reads as a
  // one-element list.
  std::vector<double> number_list(const std::string& key, const std::vector<double>& def,
                                  std::optional<double> lo, std::optional<double> hi,
                                  bool integers);
  // Marks a key as known without reading it (sections read by another FieldReader).
  void allow(const std::string& key) { seen_.push_back(key); }
  // Records a problem for every key not read so far.
  void reject_unknown();
  void problem(const std::string& key, const std::string& what);

 private:
  const nlohmann::json obj_;  // a copy: callers pass temporaries
  std::string path_;
  std::vector<std::string>& problems_;
  std::vector<std::string> seen_;
};

}  // namespace pare
