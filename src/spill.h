// Spilling tensors to a memory-mapped scratch file, so a layer-by-layer pass holds only the layer
// it works on in memory (SliceGPT on models larger than RAM; its reference code keeps finished
// layers on disk or on another device for the same reason).
//
// The scratch file is created in `dir` and unlinked at once: it has no name, and the kernel frees
// it when the last tensor viewing it dies. Each spilled tensor is written at a page-aligned offset
// and mapped back (MAP_SHARED, read-write): its pages are file-backed, so the kernel can write them
// back and evict them instead of holding them as anonymous memory. `dir` must be on a disk file
// system: on tmpfs the pages stay in RAM.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>

namespace pare {

class SpillFile {
 public:
  // Throws InputError naming `dir` when no scratch file can be created there.
  explicit SpillFile(const std::string& dir);
  // A tensor equal to `t` (same dtype and shape, contiguous) viewing the scratch file.
  torch::Tensor spill(const torch::Tensor& t);
  int64_t bytes_written() const { return offset_; }

 private:
  struct Fd;
  std::shared_ptr<Fd> fd_;
  std::string dir_;
  int64_t offset_ = 0;
};

}  // namespace pare
