// Text data for decoder LMs: the tokenizer that belongs to a model, and text files read and
// tokenised once.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>

#include "model.h"
#include "tokenizer.h"

namespace pare {

// The tokenizer for `model_path`: `explicit_path` when given (a tokenizer file or folder,
// tokenizer.h load_tokenizer); else the vocabulary embedded in a .gguf; else the model folder's
// own tokenizer (tokenizer.json, tokenizer.model, vocab.json + merges.txt, tokenizer.bin).
// InputError when none is found (a llama2.c .bin needs --tokenizer) or when its vocabulary does
// not match the model's vocab_size (a tokenizer may be smaller than the embedding table).
std::unique_ptr<Tokenizer> tokenizer_for_model(const std::string& model_path,
                                               const std::string& explicit_path,
                                               const Model& m);

// Reads and tokenises a whole text file (BOS in front when the tokenizer has one, as SliceGPT's
// HF tokenizers add it). InputError when the file is missing or empty. [n] int64.
torch::Tensor tokenize_file(const Tokenizer& t, const std::string& path);

}  // namespace pare
