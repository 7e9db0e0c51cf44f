#include "tasks/text_batches.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fileio.h"

namespace pare {

int64_t Encoded::tokens() const {
  int64_t n = 0;
  for (const auto& x : ids) n += static_cast<int64_t>(x.size());
  return n;
}

double Encoded::mean_length() const {
  return ids.empty() ? 0.0 : static_cast<double>(tokens()) / static_cast<double>(ids.size());
}

Encoded encode_sentences(const WordPiece& tok, const std::vector<LabelledSentence>& sents,
                         int64_t max_positions, int64_t limit, const std::string& file) {
  Encoded e;
  e.pad = tok.pad_id();
  const size_t n = limit < 0 ? sents.size() : std::min(sents.size(), static_cast<size_t>(limit));
  PARE_CHECK(n > 0, file, ": no sentences to use");
  for (size_t i = 0; i < n; ++i) {
    bool cut = false;
    e.ids.push_back(tok.encode_for_classification(sents[i].text, max_positions, &cut));
    e.truncated += cut;
    e.labels.push_back(sents[i].label);
    e.lines.push_back(sents[i].line);
  }
  return e;
}

torch::Tensor pad_batch(const std::vector<std::vector<int64_t>>& seqs, const std::vector<int64_t>& idx,
                        int64_t pad) {
  size_t T = 1;
  for (int64_t i : idx) T = std::max(T, seqs[i].size());
  torch::Tensor out = torch::full({static_cast<int64_t>(idx.size()), static_cast<int64_t>(T)}, pad, torch::kLong);
  int64_t* p = out.data_ptr<int64_t>();
  for (size_t r = 0; r < idx.size(); ++r) std::copy(seqs[idx[r]].begin(), seqs[idx[r]].end(), p + r * T);
  return out;
}

std::vector<std::pair<std::string, std::string>> wordpiece_model_files(const WordPiece& tok) {
  std::string vocab;
  for (int64_t i = 0; i < tok.vocab_size(); ++i) vocab += tok.token(i) + "\n";
  const nlohmann::json cfg = {{"tokenizer_class", "BertTokenizer"}, {"do_lower_case", tok.lowercase()}};
  return {{"vocab.txt", vocab}, {"tokenizer_config.json", cfg.dump(2) + "\n"}};
}

bool tokenizer_lowercase(const std::string& model_dir, bool fallback) {
  const std::string path = model_dir + "/tokenizer_config.json";
  if (!std::filesystem::is_directory(model_dir) || !file_exists(path)) return fallback;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(concat(path, ": not JSON (", e.what(), ")"));
  }
  PARE_CHECK(j.is_object(), path, ": expected a JSON object");
  if (!j.contains("do_lower_case")) return fallback;
  PARE_CHECK(j["do_lower_case"].is_boolean(), path, ": do_lower_case: expected true or false, got ",
             j["do_lower_case"].dump());
  return j["do_lower_case"].get<bool>();
}

std::vector<std::string> read_string_list(const nlohmann::json& data, const std::string& key, FieldReader& d,
                                          const std::string& what) {
  std::vector<std::string> out;
  if (!data.contains(key)) return out;
  d.allow(key);
  const nlohmann::json& v = data[key];
  if (v.is_string()) return {v.get<std::string>()};
  bool ok = v.is_array();
  if (ok)
    for (const auto& e : v) {
      ok = ok && e.is_string();
      if (e.is_string()) out.push_back(e.get<std::string>());
    }
  if (!ok) d.problem(key, "expected a list of " + what);
  return out;
}

torch::Generator make_generator(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

std::string fmt_fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace pare
