#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fileio.h"

namespace pare {
namespace {

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  int64_t size;
};

const DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8}, {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},     {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

const DtypeInfo& find_dtype(torch::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d;
  throw InputError(concat("safetensors: unsupported dtype ", c10::toString(t)));
}

// A private, copy-on-write memory map of a whole file: pages are read on first touch and written
// pages become the process's own copies, so the file never changes. Unmapped when the last
// tensor viewing it is freed.
struct FileMap {
  void* data = nullptr;
  size_t size = 0;
  ~FileMap() {
    if (data) munmap(data, size);
  }
};

std::shared_ptr<FileMap> map_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  PARE_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(concat(path, ": not a regular file"));
  }
  auto map = std::make_shared<FileMap>();
  map->size = static_cast<size_t>(st.st_size);
  if (map->size > 0) {
    void* p = mmap(nullptr, map->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw InputError(concat(path, ": cannot memory-map: ", std::strerror(err)));
    }
    map->data = p;
  }
  ::close(fd);
  return map;
}

}  // namespace

std::string safetensors_dtype_name(torch::ScalarType t) { return find_dtype(t).name; }

SafetensorsFile read_safetensors(const std::string& path) {
  const std::shared_ptr<FileMap> map = map_file(path);
  const char* bytes = static_cast<const char*>(map->data);
  const uint64_t file_size = map->size;
  PARE_CHECK(file_size >= 8, path, ": not a safetensors file: ", file_size,
             " bytes, expected at least the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  PARE_CHECK(n <= file_size - 8, path, ": header length ", n, " at offset 0 runs past the end of the ",
             file_size, "-byte file (truncated or not safetensors)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes + 8, bytes + 8 + n);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(concat(path, ": header is not valid JSON: ", e.what()));
  }
  PARE_CHECK(header.is_object(), path, ": header must be a JSON object");
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = file_size - data_start;

  SafetensorsFile out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      PARE_CHECK(it->is_object(), path, ": __metadata__ must be an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        PARE_CHECK(m->is_string(), path, ": __metadata__['", m.key(), "'] must be a string");
        out.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const auto& e = *it;
    PARE_CHECK(e.is_object() && e.contains("dtype") && e.contains("shape") &&
                   e.contains("data_offsets"),
               path, ": tensor '", name, "': expected {dtype, shape, data_offsets}");
    PARE_CHECK(e["dtype"].is_string(), path, ": tensor '", name, "': dtype must be a string");
    const DtypeInfo* dt = find_dtype(e["dtype"].get<std::string>());
    PARE_CHECK(dt, path, ": tensor '", name, "': unsupported dtype '", e["dtype"].get<std::string>(),
               "' (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL)");
    PARE_CHECK(e["shape"].is_array(), path, ": tensor '", name, "': shape must be an array");
    std::vector<int64_t> shape;
    int64_t numel = 1;
    for (const auto& s : e["shape"]) {
      PARE_CHECK(s.is_number_unsigned() || (s.is_number_integer() && s.get<int64_t>() >= 0), path,
                 ": tensor '", name, "': shape entries must be non-negative integers");
      shape.push_back(s.get<int64_t>());
      PARE_CHECK(shape.back() < (int64_t(1) << 40), path, ": tensor '", name, "': shape too large");
      numel *= shape.back();
      PARE_CHECK(numel < (int64_t(1) << 42), path, ": tensor '", name, "': shape too large");
    }
    const auto& off = e["data_offsets"];
    PARE_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                   off[1].is_number_unsigned(),
               path, ": tensor '", name, "': data_offsets must be [begin, end]");
    uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    PARE_CHECK(b <= en && en <= data_size, path, ": tensor '", name, "': data_offsets [", b, ", ",
               en, "] lie outside the ", data_size, "-byte data buffer (file truncated?)");
    PARE_CHECK(en - b == static_cast<uint64_t>(numel * dt->size), path, ": tensor '", name,
               "': data_offsets span ", en - b, " bytes but dtype ", dt->name, " shape ",
               e["shape"].dump(), " needs ", numel * dt->size);
    ranges.emplace_back(b, en);
    const auto opts = torch::TensorOptions().dtype(dt->type);
    torch::Tensor t;
    if (numel > 0 && (data_start + b) % dt->size == 0) {
      // A view of the map (zero copy); the deleter keeps the map alive.
      // When the tensor dies, the whole pages inside its range are dropped from memory
      // (MADV_DONTNEED: private pages vanish, file pages reload if touched again), so a pass
      // that replaces weights layer by layer keeps only the live ones resident.
      char* p = static_cast<char*>(map->data) + data_start + b;
      const size_t len = en - b;
      t = torch::from_blob(p, shape, [map, p, len](void*) {
            const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
            const uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
            const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + len) / page * page;
            if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
          }, opts);
    } else {
      t = torch::empty(shape, opts);  // empty, or misaligned for its dtype: copied
      if (numel > 0) std::memcpy(t.data_ptr(), bytes + data_start + b, en - b);
    }
    out.tensors.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t max_end = 0;
  for (const auto& [b, e] : ranges) {
    if (b == e) continue;  // empty tensors occupy no bytes
    PARE_CHECK(b >= max_end, path, ": tensors overlap at data offset ", b);
    max_end = e;
  }
  return out;
}

std::string serialize_safetensors(const std::map<std::string, torch::Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t offset = 0;
  std::vector<torch::Tensor> ordered;
  for (const auto& [name, t0] : tensors) {
    torch::Tensor t = t0.detach().to(torch::kCPU).contiguous();
    const DtypeInfo& dt = find_dtype(t.scalar_type());
    uint64_t nbytes = static_cast<uint64_t>(t.numel() * dt.size);
    header[name] = {{"dtype", dt.name},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    ordered.push_back(t);
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8 != 0) h.push_back(' ');
  std::string out;
  out.reserve(8 + h.size() + offset);
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += h;
  for (const auto& t : ordered)
    out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  return out;
}

void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, serialize_safetensors(tensors, metadata));
}

}  // namespace pare
