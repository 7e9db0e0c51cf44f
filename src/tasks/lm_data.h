// Text data for decoder LMs: the tokenizer that belongs to a model, and text files read and
// tokenised once.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>

#include "families/model.h"
#include "data/tokenizer.h"

namespace pare {

// The tokenizer for `model_path`: `explicit_path` when given (a tokenizer file or folder,
// tokenizer.h load_tokenizer); else the vocabulary embedded in a .gguf; else the model folder's
// own tokenizer (tokenizer.json, tokenizer.model, vocab.json + merges.txt, tokenizer.bin).
// InputError when none is found (a llama2.c .bin needs one given) or when its vocabulary does
// not match the model's vocab_size (a tokenizer may be smaller than the embedding table).
// how_to_give: how the caller's user gives a tokenizer, for that error ("--tokenizer" for eval
// and the benches; compress reads it from the recipe's data.tokenizer).
std::unique_ptr<Tokenizer> tokenizer_for_model(const std::string& model_path,
                                               const std::string& explicit_path, const Model& m,
                                               const std::string& how_to_give = "--tokenizer");

// Reads and tokenises a whole text file (BOS in front when the tokenizer has one, as SliceGPT's
// HF tokenizers add it). InputError when the file is missing or empty. [n] int64.
torch::Tensor tokenize_file(const Tokenizer& t, const std::string& path);

}  // namespace pare
