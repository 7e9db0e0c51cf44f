// Which GEMM kernels pare runs on, and making them the best ones this x86-64 CPU has.
//
// LibTorch's float32 matrix products (nn.Linear, matmul) go to the BLAS pare's executables load:
// Debian's OpenMP build of OpenBLAS 0.3.21 (README "Threads and kernels"). That build carries
// kernels for every x86-64 generation (DYNAMIC_ARCH) and picks one when it loads, from the CPU's
// family and model numbers. CPUs newer than the library (Intel family 6 model 207, for one) are
// not in its table and get its generic Prescott (SSE3) kernels: a GEMM 3-5x slower than the
// AVX-512 kernels the same library has. OpenBLAS reads OPENBLAS_CORETYPE only once, when it
// loads, so the fix must be in place before the process starts: select_blas_kernels(), the first
// call of pare's main(), compares what OpenBLAS chose with what the CPU offers (cpuid + XGETBV)
// and, when OpenBLAS fell back to kernels of a lower instruction set, re-executes the program
// once with OPENBLAS_CORETYPE set to the best core for this CPU.
//
// Policy (environment variable PARE_BLAS_CORE):
//   unset or "auto"  fix a fallback, but honour an OPENBLAS_CORETYPE the user set (one that
//                    OpenBLAS took: an unknown name counts as unset);
//   "best"           always run on the best core for this CPU (overrides OPENBLAS_CORETYPE);
//   "keep"           never change anything (what OpenBLAS or OPENBLAS_CORETYPE chose).
// Values are read in any case; any other value is a usage error (exit 2). A re-executed process carries PARE_BLAS_REEXEC
// (what OpenBLAS had chosen), so it never re-executes again and reports why it runs where it does.
#pragma once

#include <string>

namespace pare {

// What the CPU (and the OS, through XCR0) lets a program use. All false on non-x86-64 builds.
struct CpuFeatures {
  std::string vendor;      // cpuid leaf 0, e.g. "GenuineIntel", "AuthenticAMD"
  std::string model_name;  // cpuid brand string, e.g. "AMD EPYC 9R14 96-Core Processor"
  int family = 0;          // display family (base + extended)
  int model = 0;           // display model (base + extended << 4 where the family calls for it)
  bool sse3 = false, avx = false, avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512cd = false;
  bool avx512_bf16 = false, amx_tile = false;
};
CpuFeatures detect_cpu_features();

// Instruction-set levels that OpenBLAS's x86-64 kernel sets are written for.
enum class IsaLevel { kUnknown = 0, kSse = 1, kAvx = 2, kAvx2 = 3, kAvx512 = 4 };
const char* isa_name(IsaLevel level);  // "SSE", "AVX", "AVX2+FMA", "AVX-512", "unknown"

// The level an OpenBLAS core name (as openblas_get_corename() writes it, any case) is written
// for: Prescott, Core2, Nehalem, Atom, Opteron ... -> kSse; Sandybridge and the Bulldozer line
// -> kAvx; Haswell, Zen -> kAvx2; SkylakeX, Cooperlake, SapphireRapids -> kAvx512; other names
// -> kUnknown.
IsaLevel openblas_core_isa(const std::string& corename);

// The highest level the CPU supports: AVX-512 needs F, BW, VL, DQ and CD with the OS saving the
// ZMM state; AVX2 needs AVX2 and FMA.
IsaLevel cpu_isa(const CpuFeatures& cpu);

// OpenBLAS 0.3.21's best core for the CPU: "Cooperlake" (AVX-512 with BF16: the SkylakeX
// kernels plus bf16 GEMM), "SkylakeX" (AVX-512), "Haswell" (AVX2 + FMA), "Sandybridge" (AVX);
// "" when nothing better than the generic kernels applies.
std::string best_openblas_core(const CpuFeatures& cpu);

// What select_blas_kernels() does, as a pure function of its inputs (tested by table).
struct BlasCoreDecision {
  bool reexec = false;   // re-execute with OPENBLAS_CORETYPE=coretype
  std::string coretype;  // the core to ask for when reexec
  std::string reason;    // one line: why (also when nothing is done)
};
// loaded_core: openblas_get_corename() ("" when the BLAS is not OpenBLAS);
// env_coretype / env_policy / env_reexec: OPENBLAS_CORETYPE / PARE_BLAS_CORE / PARE_BLAS_REEXEC
// (nullptr when unset). Throws InputError for a PARE_BLAS_CORE other than auto, best or keep.
BlasCoreDecision decide_blas_core(const CpuFeatures& cpu, const std::string& loaded_core,
                                  const char* env_coretype, const char* env_policy,
                                  const char* env_reexec);

// The BLAS this process runs on, for `pare --version`, report.json and benchmark headers.
struct BlasInfo {
  std::string library;  // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ... " (openblas_get_config)
                        // or "unknown (not OpenBLAS)"
  std::string path;     // file the sgemm_ symbol comes from, "" when not found
  std::string core;     // openblas_get_corename(), "" when not OpenBLAS
  IsaLevel core_isa = IsaLevel::kUnknown;
  CpuFeatures cpu;  // detect_cpu_features() of this process
  IsaLevel cpu_isa = IsaLevel::kUnknown;
  std::string best_core;  // best_openblas_core() of this CPU
  std::string chosen_by;  // "OpenBLAS", "pare (OpenBLAS had chosen X)", "OPENBLAS_CORETYPE=X"
  // The kernels are of a lower instruction set than this CPU offers (OpenBLAS's fallback, or a
  // user's OPENBLAS_CORETYPE): timings taken now do not show what the hardware gives.
  bool below_cpu() const {
    return core_isa != IsaLevel::kUnknown && cpu_isa != IsaLevel::kUnknown && core_isa < cpu_isa;
  }
  std::string summary() const;  // one line: library, kernel, chosen by, CPU level
};
BlasInfo blas_info();

// First call of main(): may re-execute the program (execv of /proc/self/exe with the same argv)
// and then does not return. Throws InputError for a bad PARE_BLAS_CORE; when the re-execution
// itself fails, it prints one warning on stderr and carries on with the kernels it has.
void select_blas_kernels(char** argv);

}  // namespace pare
