// Tokenised sentences and padded id batches for the text tasks (text-classification, masked-lm).
#pragma once

#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

#include "base/recipe.h"
#include "data/text_data.h"
#include "data/wordpiece.h"

namespace pare {

// Sentences as [CLS] … [SEP] ids, with their labels and file lines.
struct Encoded {
  std::vector<std::vector<int64_t>> ids;
  std::vector<int64_t> labels, lines;
  int64_t truncated = 0;  // sentences cut to the model's positions
  int64_t pad = 0;        // the vocabulary's [PAD] id
  int64_t tokens() const;
  double mean_length() const;
};

// Encodes `sents` (the first `limit`; -1: all) for a model of `max_positions` positions (longer
// sentences are cut, keeping [CLS] and [SEP], and counted in `truncated`). `file` names the data in
// messages.
Encoded encode_sentences(const WordPiece& tok, const std::vector<LabelledSentence>& sents,
                         int64_t max_positions, int64_t limit, const std::string& file);

// Rows `idx` of `seqs` padded with `pad` to the longest: int64 [idx.size(), T].
torch::Tensor pad_batch(const std::vector<std::vector<int64_t>>& seqs, const std::vector<int64_t>& idx,
                        int64_t pad);

// The tokenizer files written beside a bert model pare trains: vocab.txt and a Hugging Face
// tokenizer_config.json (BertTokenizer, do_lower_case).
std::vector<std::pair<std::string, std::string>> wordpiece_model_files(const WordPiece& tok);

// do_lower_case of the Hugging Face tokenizer_config.json in folder `model_dir`; `fallback` when
// there is no such file (or `model_dir` is not a folder). InputError naming the file when it is
// not JSON or do_lower_case is not a boolean.
bool tokenizer_lowercase(const std::string& model_dir, bool fallback);

// The recipe list data[key] of strings (a single string reads as a one-element list); a problem
// "expected a list of WHAT" is recorded through `d` otherwise. Marks the key as read.
std::vector<std::string> read_string_list(const nlohmann::json& data, const std::string& key, FieldReader& d,
                                          const std::string& what);

// A CPU generator seeded with `seed` (data splits and draws that must not depend on the run's).
torch::Generator make_generator(uint64_t seed);

// `v` with `digits` decimals.
std::string fmt_fixed(double v, int digits);

}  // namespace pare
