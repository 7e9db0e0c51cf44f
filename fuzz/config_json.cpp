// Fuzzes config.json: JSON text → ArchConfig for every family it names (HF fields and the pare
// section: per-layer shapes, token pruning, quantized slots, gps fields).
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "ir/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  return pare_fuzz::only_input_errors([&] { (void)pare::config_from_json(j, "fuzz/config.json"); });
}
