#include "families/checkpoint.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "families/family.h"
#include "base/fileio.h"
#include "io/gguf.h"
#include "families/gps.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "io/torch_pickle.h"

namespace fs = std::filesystem;

namespace pare {

namespace {

// Tensors of a Hugging Face folder: model.safetensors, or the shards named by
// model.safetensors.index.json ({"weight_map": {tensor: shard file}}). Each tensor must come from
// the shard the index names, and every shard must exist.
std::map<std::string, torch::Tensor> read_hf_tensors(const std::string& dir, std::string& source) {
  const std::string single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json";
  if (fs::exists(single)) {
    source = single;
    return read_safetensors(single).tensors;
  }
  PARE_CHECK(fs::exists(index), single, ": file not found (nor a sharded model.safetensors.index.json)");
  source = index;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(index));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(concat(index, ": not valid JSON: ", e.what()));
  }
  PARE_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), index,
             ": weight_map: expected an object {tensor: shard file}");
  std::map<std::string, std::vector<std::string>> by_shard;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    PARE_CHECK(it->is_string(), index, ": weight_map.", it.key(), ": expected a file name");
    const std::string shard = it->get<std::string>();
    PARE_CHECK(!shard.empty() && shard.find('/') == std::string::npos, index, ": weight_map.",
               it.key(), ": expected a file name in the same folder, got '", shard, "'");
    by_shard[shard].push_back(it.key());
  }
  std::map<std::string, torch::Tensor> out;
  for (const auto& [shard, names] : by_shard) {
    const std::string path = dir + "/" + shard;
    PARE_CHECK(fs::exists(path), index, ": shard '", shard, "' (holding '", names.front(),
               "') not found in ", dir);
    SafetensorsFile f = read_safetensors(path);
    for (const auto& n : names) {
      auto t = f.tensors.find(n);
      PARE_CHECK(t != f.tensors.end(), path, ": tensor '", n, "' named by ", index, " is missing");
      out[n] = t->second;
      f.tensors.erase(t);
    }
    PARE_CHECK(f.tensors.empty(), path, ": tensor '", f.tensors.begin()->first,
               "' is not in the index ", index);
  }
  return out;
}

}  // namespace

namespace {

bool starts_with_bytes(const std::string& path, const std::string& magic) {
  std::ifstream in(path, std::ios::binary);
  std::string head(magic.size(), '\0');
  in.read(&head[0], static_cast<std::streamsize>(magic.size()));
  return in.gcount() == static_cast<std::streamsize>(magic.size()) && head == magic;
}

Model from_imported(const ImportedLm& lm, const std::string& path) {
  ArchConfig c = config_from_json(lm.config, path);
  Model m = family_by_name(c.family).from_checkpoint(c, lm.tensors, path);
  m.verify_or_throw(path);
  return m;
}

}  // namespace

Model load_model(const std::string& path) {
  PARE_CHECK(fs::exists(path), path, ": model not found");
  if (is_graphgym_checkpoint(path)) return load_graphgym_checkpoint(path);  // GraphGPS .ckpt
  if (!fs::is_directory(path)) {
    // Single-file formats: GGUF, llama2.c .bin, or a torch.save state_dict (needs config.json).
    if (starts_with_bytes(path, "GGUF")) return from_imported(read_gguf(path), path);
    if (starts_with_bytes(path, "PK\x03\x04"))
      throw InputError(concat(path, ": a torch.save archive needs its config.json: pass the folder ",
                              "holding config.json and this file"));
    const std::string ext = fs::path(path).extension().string();
    PARE_CHECK(ext == ".bin", path, ": expected a model folder (config.json + model.safetensors), a ",
               ".gguf file or a llama2.c .bin checkpoint");
    return from_imported(read_llama2c(path), path);
  }
  const std::string cfg_path = path + "/config.json";
  PARE_CHECK(fs::exists(cfg_path), cfg_path, ": file not found");
  ArchConfig c = load_config(cfg_path);
  std::string source;
  std::map<std::string, torch::Tensor> tensors;
  const std::string pt = path + "/pytorch_model.bin";
  if (!fs::exists(path + "/model.safetensors") && !fs::exists(path + "/model.safetensors.index.json") &&
      fs::exists(pt)) {
    source = pt;
    tensors = read_torch_checkpoint(pt).tensors;  // restricted unpickler: runs no code
  } else {
    tensors = read_hf_tensors(path, source);
  }
  Model m = family_by_name(c.family).from_checkpoint(c, std::move(tensors), source);
  m.verify_or_throw(path);
  return m;
}

namespace {
std::map<std::string, torch::Tensor> stored(const Model& m, torch::ScalarType dtype) {
  PARE_CHECK(dtype == torch::kFloat32 || dtype == torch::kFloat16 || dtype == torch::kBFloat16,
             "checkpoint dtype must be float32, float16 or bfloat16");
  auto t = m.family().to_checkpoint(m);
  for (auto& [k, v] : t)
    if (v.is_floating_point()) v = v.to(dtype).contiguous();
  return t;
}
std::map<std::string, std::string> meta() { return {{"format", "pt"}, {"producer", "pare"}}; }
}  // namespace

void save_model(const Model& m, const std::string& dir, torch::ScalarType dtype) {
  m.verify_or_throw("save_model");
  fs::create_directories(dir);
  write_safetensors(dir + "/model.safetensors", stored(m, dtype), meta());
  write_file_atomic(dir + "/config.json", config_to_json(m.config).dump(2) + "\n");
}

int64_t checkpoint_bytes(const Model& m, torch::ScalarType dtype) {
  return static_cast<int64_t>(serialize_safetensors(stored(m, dtype), meta()).size() +
                              config_to_json(m.config).dump(2).size() + 1);
}

StagedDir::StagedDir(std::string final_path) : final_(std::move(final_path)) {
  PARE_CHECK(!final_.empty(), "output folder: empty path");
  while (final_.size() > 1 && final_.back() == '/') final_.pop_back();
  fs::path parent = fs::path(final_).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::path first = parent;
    while (!first.parent_path().empty() && !fs::exists(first.parent_path()))
      first = first.parent_path();
    if (!fs::exists(first)) created_parent_ = first.string();
    fs::create_directories(parent, ec);
    PARE_CHECK(!ec, final_, ": cannot create parent folder: ", ec.message());
  }
  PARE_CHECK(!fs::exists(final_) || fs::is_directory(final_), final_,
             ": exists and is not a folder");
  if (fs::is_directory(final_)) {
    // Replace only what pare itself writes: an existing folder holding anything else is refused,
    // so a mistyped --out never deletes a user's files (or the input model inside it).
    static const char* kOurs[] = {"config.json", "model.safetensors", "report.json", "report.md",
                                  "train.json", "tokenizer.json",
                                  "vocab.txt", "tokenizer_config.json"};
    for (const auto& e : fs::directory_iterator(final_)) {
      const std::string n = e.path().filename().string();
      bool ours = e.is_regular_file() &&
                  std::any_of(std::begin(kOurs), std::end(kOurs), [&](const char* k) { return n == k; });
      PARE_CHECK(ours, final_, ": output folder exists and holds '", n,
                 "', which pare did not write; choose a new or empty folder");
    }
  }
  // Staging folders of earlier runs for this output that were killed (Ctrl-C, SIGTERM: no
  // destructor ran): FINAL.partial.PID and FINAL.old.PID whose process no longer exists.
  std::error_code ec;
  const fs::path fin(final_);
  const fs::path dir = fin.parent_path().empty() ? fs::path(".") : fin.parent_path();
  const std::string base = fin.filename().string();
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    for (const std::string tag : {".partial.", ".old."}) {
      const std::string prefix = base + tag;
      if (n.size() <= prefix.size() || n.compare(0, prefix.size(), prefix) != 0) continue;
      const std::string pid = n.substr(prefix.size());
      if (!std::all_of(pid.begin(), pid.end(), [](char ch) { return ch >= '0' && ch <= '9'; }) || pid.size() > 9)
        continue;
      if (::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH) {
        std::error_code ec2;
        fs::remove_all(e.path(), ec2);
      }
    }
  }
  staging_ = final_ + ".partial." + std::to_string(::getpid());
  ec.clear();
  fs::remove_all(staging_, ec);
  fs::create_directories(staging_, ec);
  PARE_CHECK(!ec, staging_, ": cannot create: ", ec.message());
}

StagedDir::~StagedDir() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(staging_, ec);
    if (!created_parent_.empty()) fs::remove_all(created_parent_, ec);
  }
}

void StagedDir::commit() {
  std::error_code ec;
  std::string old;
  if (fs::exists(final_)) {
    old = final_ + ".old." + std::to_string(::getpid());
    fs::rename(final_, old, ec);
    PARE_CHECK(!ec, final_, ": cannot replace: ", ec.message());
  }
  fs::rename(staging_, final_, ec);
  PARE_CHECK(!ec, final_, ": cannot move output into place: ", ec.message());
  committed_ = true;
  if (!old.empty()) fs::remove_all(old, ec);
}

}  // namespace pare
