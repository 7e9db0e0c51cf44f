// Restricted reader for PyTorch checkpoints written by Python's torch.save (state_dicts and the
// nested dicts training scripts save around them). LibTorch 1.13's torch::pickle_load fails on
// ordinary Python state_dicts, so pare unpickles them itself, and never imports or runs anything.
//
// Format: torch.save's zip container (the default since torch 1.6), read with LibTorch's
// caffe2::serialize::PyTorchStreamReader: ARCHIVE/data.pkl (a pickle, protocol 2 by default,
// 2-5 accepted), ARCHIVE/data/KEY (the raw little-endian bytes of each storage), ARCHIVE/version,
// ARCHIVE/byteorder (optional; "big" is refused). Tensors are persistent ids
// ('storage', torch.<T>Storage, KEY, location, numel) rebuilt by
// torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
// with as_strided semantics; the location (cpu, cuda:0, ...) is ignored, everything loads on CPU.
//
// Allowed globals, and nothing else: collections.OrderedDict, torch._utils._rebuild_tensor_v2,
// torch._utils._rebuild_parameter, torch._utils._rebuild_parameter_with_state, torch.Size and
// the storage classes torch.{Double,Float,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage.
// Values may be dicts (str or int keys), OrderedDicts (BUILD state such as _metadata is
// ignored), lists, tuples, sets, int (64-bit), float, bool, None and str. Empty containers leave
// no entry; two paths reaching the same pickled tensor share one torch::Tensor. A storage's bytes
// are read once and dropped after its last tensor is copied out (peak memory about one copy).
//
// Errors: InputError("FILE: ...") for a missing file, a legacy (torch < 1.6) pickle file ("re-save
// it with torch >= 1.6"), a TorchScript archive, a file that is not a readable zip archive
// (truncated, or a corrupt zip structure: LibTorch skips CRC checks, so a flipped byte inside a
// record goes unnoticed unless it breaks the pickle), any global outside the list above
// ("refusing global 'MODULE.NAME'"), an unsupported or unknown opcode (byte and offset), a read
// past the end of data.pkl (offset), a malformed stack or memo (opcode and offset), a storage
// record whose size disagrees with its numel × element size, a bool storage byte other than 0/1, a
// tensor whose offset + extent lies outside its storage or that repeats (stride 0) more than 2^24
// elements beyond it (names the tensor's path and the storage record), dict keys other than
// str / int, two values with one path, and nesting deeper than 256.
#pragma once

#include <torch/types.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace pare {

struct TorchCheckpoint {
  // Every tensor reachable from the root object, keyed by its path: dict keys joined with '.',
  // list/tuple/set indices as numbers (e.g. "model_state.model.layers.0.norm1_local.weight"); a
  // root that is itself a tensor has the path "". Contiguous CPU tensors in their stored dtype,
  // owning their memory (copied from the archive).
  std::map<std::string, torch::Tensor> tensors;
  // Non-tensor leaves (int, float, bool, None, str) by the same path convention, as JSON.
  nlohmann::json scalars = nlohmann::json::object();
};

// Reads the torch.save file at `path`. Throws InputError (see above); nothing in it is executed.
TorchCheckpoint read_torch_checkpoint(const std::string& path);

}  // namespace pare
