// safetensors read and write (https://huggingface.co/docs/safetensors, format v1).
//
// Layout: u64 little-endian header length N, N bytes of JSON
// {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data buffer. Supported dtypes: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL.
// The reader validates everything (header length inside the file, JSON, dtype names, shapes,
// offsets inside the buffer and matching numel × element size, no overlaps) and throws
// InputError("FILE: ...") naming the tensor or byte offset. The writer is deterministic
// (tensors sorted by name, header padded with spaces to 8 bytes) and atomic.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>

namespace pare {

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;  // contiguous CPU tensors in their stored dtype,
                                                 // viewing the file's map (see read_safetensors)
  std::map<std::string, std::string> metadata;   // "__metadata__"
};

// Reads and validates `path`. The file is memory-mapped privately (copy-on-write): tensors view
// the map without copying (a tensor whose offset is misaligned for its dtype is copied), pages are
// read on first touch, writes to a tensor never reach the file, and the map lives as long as any
// tensor from it. The file must not be truncated in place while its tensors live (pare's own
// writers replace files by rename, which is safe).
SafetensorsFile read_safetensors(const std::string& path);

// Serialises to the exact bytes that write_safetensors writes.
std::string serialize_safetensors(const std::map<std::string, torch::Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// Writes atomically (temp file + rename).
void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Name of a dtype in safetensors ("F32"), and bytes per element.
std::string safetensors_dtype_name(torch::ScalarType t);

}  // namespace pare
