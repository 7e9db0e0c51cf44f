// Model checkpoints: a folder with config.json (HF field names + "pare" section) and
// model.safetensors (HF tensor names; pare-only tensors prefixed "pare.").
//
// Loading validates the config, every tensor's dtype and shape against it, and lists missing and
// unexpected tensors (InputError naming the file and key). Saving writes into the folder
// atomically per file; save_model_dir stages a whole folder and renames it into place so a
// failure leaves no partial output.
#pragma once

#include <string>

#include "families/model.h"

namespace pare {

// `path`: a folder holding config.json and model.safetensors (or sharded safetensors with
// model.safetensors.index.json, or a torch.save pytorch_model.bin read by the restricted
// unpickler, torch_pickle.h); or a single file: a GGUF (gguf.h) or a llama2.c .bin (llama2c.h),
// both converted to the HF Llama layout.
Model load_model(const std::string& path);

// Writes config.json and model.safetensors into `dir` (created if needed). dtype: float32,
// float16 or bfloat16 for the stored floating tensors.
void save_model(const Model& m, const std::string& dir,
                torch::ScalarType dtype = torch::kFloat32);

// Serialised checkpoint size in bytes (config.json + model.safetensors) without writing it.
int64_t checkpoint_bytes(const Model& m, torch::ScalarType dtype = torch::kFloat32);

// Output folder staging: files are written into staging(), commit() renames it to the final path
// (replacing an existing folder), and the destructor removes an uncommitted staging folder.
class StagedDir {
 public:
  explicit StagedDir(std::string final_path);
  ~StagedDir();
  const std::string& staging() const { return staging_; }
  std::string file(const std::string& name) const { return staging_ + "/" + name; }
  void commit();

 private:
  std::string final_, staging_;
  std::string created_parent_;  // first parent folder this object created (removed on failure)
  bool committed_ = false;
};

}  // namespace pare
