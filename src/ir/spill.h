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
#include <vector>

namespace pare {

class SpillFile {
 public:
  // Throws InputError naming `dir` when no scratch file can be created there.
  explicit SpillFile(const std::string& dir);
  // A tensor equal to `t` (same dtype and shape, contiguous) viewing the scratch file.
  torch::Tensor spill(const torch::Tensor& t);
  // An uninitialised contiguous tensor viewing new space in the scratch file (zero-filled by the
  // kernel): a pass can write a large result straight to the file, chunk by chunk, with
  // page_out() behind it, instead of building it in memory first.
  torch::Tensor allocate(const std::vector<int64_t>& shape, torch::ScalarType dtype);
  // Unmaps the whole pages of `t` (contiguous, from allocate() or spill()) from this process
  // (MADV_DONTNEED on the shared mapping: the data stays in the file and its page cache, touching
  // it again maps it back), so written scratch space stops counting in RSS.
  static void release(const torch::Tensor& t);
  // Whether `t` is a whole tensor this file handed out (allocate() or spill()) and still maps.
  bool owns(const torch::Tensor& t) const;
  int64_t bytes_written() const { return offset_; }

 private:
  torch::Tensor map(int64_t at, int64_t n, const std::vector<int64_t>& shape, torch::ScalarType dtype);
  struct Fd;
  std::shared_ptr<Fd> fd_;
  std::string dir_;
  int64_t offset_ = 0;
};

// Asks the kernel to reclaim the whole pages of a contiguous tensor's memory now
// (madvise MADV_PAGEOUT, Linux 5.4+): clean file-backed pages (a memory-mapped checkpoint, the
// scratch file after write-back) simply leave RSS; dirty shared file pages are written back first;
// anonymous pages go to swap if there is any, else stay. Never loses data, so it is safe on any
// tensor; a no-op where unsupported.
void page_out(const torch::Tensor& t);

// Returns freed heap memory to the kernel (glibc malloc_trim; a no-op elsewhere). pare's main()
// keeps large freed blocks in the heap for the forward's speed (cli/main.cpp), so a pass that
// streams through large temporaries calls this to keep them from adding up in RSS.
void trim_heap();

}  // namespace pare
