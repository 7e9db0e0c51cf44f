// Fuzzes the GGUF reader (v2/v3 header, metadata of every type, tensor infos, data offsets).
#include "fuzz_util.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& p = pare_fuzz::write_input(data, size, ".gguf");
  return pare_fuzz::only_input_errors([&] {
    (void)pare::read_gguf_metadata(p);
    pare::ImportedLm lm = pare::read_gguf(p);
    for (const auto& [name, t] : lm.tensors) (void)t.sum().item<double>();
  });
}
