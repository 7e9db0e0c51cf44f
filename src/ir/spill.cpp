#include "ir/spill.h"

#include <fcntl.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <set>

#include "base/error.h"

namespace pare {

struct SpillFile::Fd {
  int fd = -1;
  std::mutex mu;
  std::set<const void*> live;  // base addresses of the mappings handed out and not yet unmapped
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

torch::Tensor SpillFile::map(int64_t at, int64_t n, const std::vector<int64_t>& shape,
                             torch::ScalarType dtype) {
  void* p = ::mmap(nullptr, static_cast<size_t>(n), PROT_READ | PROT_WRITE, MAP_SHARED, fd_->fd, at);
  PARE_CHECK(p != MAP_FAILED, dir_, ": mapping scratch space failed: ", std::strerror(errno));
  std::shared_ptr<Fd> keep = fd_;
  {
    std::lock_guard<std::mutex> g(fd_->mu);
    fd_->live.insert(p);
  }
  return torch::from_blob(
      p, shape,
      [keep, n](void* q) {
        {
          std::lock_guard<std::mutex> g(keep->mu);
          keep->live.erase(q);
        }
        ::munmap(q, static_cast<size_t>(n));
      },
      torch::TensorOptions().dtype(dtype));
}

bool SpillFile::owns(const torch::Tensor& t) const {
  if (!t.defined() || !t.has_storage()) return false;
  std::lock_guard<std::mutex> g(fd_->mu);
  return t.data_ptr() == t.storage().data() && fd_->live.count(t.data_ptr()) > 0;
}

SpillFile::SpillFile(const std::string& dir) : fd_(std::make_shared<Fd>()), dir_(dir) {
  std::string path = dir + "/pare-spill-XXXXXX";
  fd_->fd = ::mkstemp(path.data());
  PARE_CHECK(fd_->fd >= 0, dir, ": cannot create a scratch file for spilled layers: ",
             std::strerror(errno), " (set TMPDIR to a writable folder on disk)");
  ::unlink(path.c_str());
}

torch::Tensor SpillFile::spill(const torch::Tensor& t0) {
  const torch::Tensor t = t0.detach().contiguous();
  const int64_t n = t.numel() * static_cast<int64_t>(t.element_size());
  if (n == 0) return t.clone();
  const int64_t page = ::sysconf(_SC_PAGESIZE);
  const int64_t at = (offset_ + page - 1) / page * page;
  const char* src = static_cast<const char*>(t.data_ptr());
  for (int64_t done = 0; done < n;) {
    const ssize_t w = ::pwrite(fd_->fd, src + done, static_cast<size_t>(n - done), at + done);
    PARE_CHECK(w > 0, dir_, ": writing a spilled layer failed: ", std::strerror(errno));
    done += w;
  }
  offset_ = at + n;
  return map(at, n, t.sizes().vec(), t.scalar_type());
}

torch::Tensor SpillFile::allocate(const std::vector<int64_t>& shape, torch::ScalarType dtype) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const int64_t n = numel * static_cast<int64_t>(torch::elementSize(dtype));
  if (n == 0) return torch::empty(shape, torch::TensorOptions().dtype(dtype));
  const int64_t page = ::sysconf(_SC_PAGESIZE);
  const int64_t at = (offset_ + page - 1) / page * page;
  PARE_CHECK(::ftruncate(fd_->fd, at + n) == 0, dir_, ": growing the scratch file failed: ",
             std::strerror(errno));
  offset_ = at + n;
  return map(at, n, shape, dtype);
}

namespace {
// madvise on the whole pages inside a contiguous tensor's bytes.
void advise(const torch::Tensor& t, int advice) {
  if (!t.defined() || !t.is_contiguous() || t.numel() == 0) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t a = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t b = a + static_cast<uintptr_t>(t.numel()) * t.element_size();
  const uintptr_t lo = (a + page - 1) / page * page, hi = b / page * page;
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, advice);
}
}  // namespace

void trim_heap() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

void SpillFile::release(const torch::Tensor& t) { advise(t, MADV_DONTNEED); }

void page_out(const torch::Tensor& t) {
#ifdef MADV_PAGEOUT
  advise(t, MADV_PAGEOUT);
#else
  (void)t;
#endif
}

}  // namespace pare
