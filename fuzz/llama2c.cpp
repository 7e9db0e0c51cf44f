// Fuzzes the llama2.c .bin reader (seven int32 dims, then the weights they imply).
#include "fuzz_util.h"
#include "io/llama2c.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& p = pare_fuzz::write_input(data, size, ".bin");
  return pare_fuzz::only_input_errors([&] {
    pare::ImportedLm lm = pare::read_llama2c(p);
    for (const auto& [name, t] : lm.tensors) (void)t.sum().item<double>();
  });
}
