#include "tasks/lm_data.h"

#include <filesystem>

#include "base/error.h"
#include "base/fileio.h"
#include "io/gguf.h"

namespace fs = std::filesystem;

namespace pare {

std::unique_ptr<Tokenizer> tokenizer_for_model(const std::string& model_path,
                                               const std::string& explicit_path,
                                               const Model& m, const std::string& how_to_give) {
  std::unique_ptr<Tokenizer> t;
  std::string source = explicit_path;
  if (!explicit_path.empty()) {
    t = load_tokenizer(explicit_path);
  } else if (!fs::is_directory(model_path) && fs::path(model_path).extension() == ".gguf") {
    ImportedLm lm = read_gguf(model_path);
    PARE_CHECK(!lm.vocab.empty(), model_path, ": the GGUF has no tokenizer.ggml.tokens; give one with ", how_to_give);
    t = make_llama2c_tokenizer(lm.vocab, lm.scores, model_path);
    source = model_path;
  } else {
    PARE_CHECK(fs::is_directory(model_path), model_path,
               ": a llama2.c checkpoint carries no tokenizer; give one (e.g. tok512.bin) with ", how_to_give);
    t = load_tokenizer(model_path);
    source = model_path;
  }
  check_tokenizer_vocab(*t, m.config.vocab_size, source, /*allow_smaller=*/true);
  return t;
}

torch::Tensor tokenize_file(const Tokenizer& t, const std::string& path) {
  PARE_CHECK(!std::filesystem::is_directory(path), path, ": expected a text file, got a folder");
  const std::string text = read_file(path);
  PARE_CHECK(!text.empty(), path, ": the text file is empty");
  std::vector<int64_t> ids;
  if (t.bos_id() >= 0) ids.push_back(t.bos_id());
  std::vector<int64_t> body;
  try {
    body = t.encode(text);
  } catch (const InputError& e) {
    throw InputError(concat(path, ": cannot be tokenised: ", e.what()));
  }
  ids.insert(ids.end(), body.begin(), body.end());
  return torch::tensor(ids, torch::kLong);
}

}  // namespace pare
