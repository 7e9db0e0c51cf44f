#include "base/version.h"

#include <torch/version.h>

#include <algorithm>
#include <thread>

#include "base/blas_runtime.h"
#include "base/error.h"

#ifndef PARE_VERSION
#error "PARE_VERSION is set by src/CMakeLists.txt"
#endif

namespace pare {

const char* pare_version() { return PARE_VERSION; }

std::string version_text() {
  const BlasInfo blas = blas_info();
  const CpuFeatures& cpu = blas.cpu;
  std::string s = concat("pare ", pare_version(), "\nLibTorch ", TORCH_VERSION,
                         " (intra-op threads: --threads, default all ",
                         std::max(1u, std::thread::hardware_concurrency()), " cores)\nCPU: ",
                         cpu.model_name.empty() ? std::string("unknown") : cpu.model_name, " (",
                         cpu.vendor, " family ", cpu.family, " model ", cpu.model, "; ",
                         isa_name(blas.cpu_isa), cpu.avx512_bf16 ? ", AVX512-BF16" : "",
                         cpu.amx_tile ? ", AMX" : "", ")\nBLAS: ", blas.library, "\nBLAS file: ",
                         blas.path.empty() ? std::string("not found") : blas.path);
  if (!blas.core.empty())
    s += concat("\nGEMM kernel: ", blas.core, " (", isa_name(blas.core_isa), "), chosen by ",
                blas.chosen_by,
                blas.below_cpu() ? concat("; BELOW this CPU's ", isa_name(blas.cpu_isa),
                                          ": unset OPENBLAS_CORETYPE or set PARE_BLAS_CORE=best")
                                 : std::string());
  return s;
}

nlohmann::json runtime_json() {
  const BlasInfo blas = blas_info();
  const CpuFeatures& cpu = blas.cpu;
  return {{"pare_version", pare_version()},
          {"libtorch_version", TORCH_VERSION},
          {"cpu",
           {{"model_name", cpu.model_name},
            {"vendor", cpu.vendor},
            {"family", cpu.family},
            {"model", cpu.model},
            {"isa", isa_name(blas.cpu_isa)}}},
          {"blas",
           {{"library", blas.library},
            {"path", blas.path},
            {"kernel", blas.core},
            {"kernel_isa", isa_name(blas.core_isa)},
            {"chosen_by", blas.chosen_by},
            {"below_cpu", blas.below_cpu()}}}};
}

}  // namespace pare
