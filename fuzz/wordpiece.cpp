// Fuzzes BERT's vocab.txt loader and, when it loads, tokenises a fixed sentence and the input
// itself (the BasicTokenizer's Unicode handling meets arbitrary bytes).
#include "data/wordpiece.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& p = pare_fuzz::write_input(data, size, ".txt");
  return pare_fuzz::only_input_errors([&] {
    const pare::WordPiece w = pare::WordPiece::load(p, true);
    (void)w.encode("The movie's ending, oddly, was un-be-lievable!");
    (void)w.encode(std::string(reinterpret_cast<const char*>(data), size));
  });
}
