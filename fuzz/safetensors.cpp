// Fuzzes the safetensors reader: header length, JSON header, dtypes, shapes, data_offsets; every
// tensor it returns is read in full (the reader maps the file, so an offset outside it would fault).
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& p = pare_fuzz::write_input(data, size, ".safetensors");
  return pare_fuzz::only_input_errors([&] {
    pare::SafetensorsFile f = pare::read_safetensors(p);
    for (const auto& [name, t] : f.tensors) (void)t.to(torch::kFloat64).sum().item<double>();
  });
}
