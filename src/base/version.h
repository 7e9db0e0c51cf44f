// pare's version and what it runs on, for `pare --version` and report.json.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace pare {

// pare's version ("MAJOR.MINOR.PATCH", CMake's project version).
const char* pare_version();

// Several lines: pare's version, LibTorch's version and intra-op threads, the CPU and its
// instruction-set level, the BLAS library, its file and GEMM kernel, and who chose that kernel.
std::string version_text();

// The same as JSON, for report.json's "runtime" field: {"pare_version", "libtorch_version",
// "cpu": {"model_name", "vendor", "family", "model", "isa"}, "blas": {"library", "path", "kernel",
// "kernel_isa", "chosen_by", "below_cpu"}}.
nlohmann::json runtime_json();

}  // namespace pare
