// Fuzzes recipe files: the same bytes as YAML and as JSON through load_yaml_or_json (the first
// step of every `pare compress` / `pare train`).
#include "base/recipe.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pare_fuzz::only_input_errors([&] { (void)pare::load_yaml_or_json(pare_fuzz::write_input(data, size, ".yaml")); });
  return pare_fuzz::only_input_errors(
      [&] { (void)pare::load_yaml_or_json(pare_fuzz::write_input(data, size, ".json")); });
}
