// Fuzzes pare's restricted unpickler on torch.save files (zip archive, data.pkl, storages) and on
// bare pickles: only tensors, storages and plain containers may come out; anything else must be
// refused by name.
#include "fuzz_util.h"
#include "io/torch_pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& p = pare_fuzz::write_input(data, size, ".bin");
  return pare_fuzz::only_input_errors([&] { (void)pare::read_torch_checkpoint(p); });
}
