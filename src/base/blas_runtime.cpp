#include "base/blas_runtime.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "base/error.h"

namespace pare {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

#if defined(__x86_64__) || defined(__i386__)
uint64_t xcr0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}
#endif

const char* env_or_null(const char* name) { return std::getenv(name); }

}  // namespace

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  const unsigned max_leaf = a;
  char vendor[13] = {};
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  f.vendor = vendor;
  __get_cpuid(1, &a, &b, &c, &d);
  const int base_family = (a >> 8) & 0xF, base_model = (a >> 4) & 0xF;
  f.family = base_family == 0xF ? base_family + static_cast<int>((a >> 20) & 0xFF) : base_family;
  f.model = (base_family == 6 || base_family == 0xF)
                ? base_model + static_cast<int>(((a >> 16) & 0xF) << 4)
                : base_model;
  f.sse3 = c & 1u;
  const bool osxsave = c & (1u << 27);
  const uint64_t xcr = osxsave ? xcr0() : 0;
  const bool os_avx = (xcr & 0x6) == 0x6;            // XMM and YMM state
  const bool os_avx512 = os_avx && (xcr & 0xE0) == 0xE0;  // opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_amx = (xcr & 0x60000) == 0x60000;    // XTILECFG, XTILEDATA
  f.avx = os_avx && (c & (1u << 28));
  f.fma = os_avx && (c & (1u << 12));
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = os_avx && (b & (1u << 5));
    f.avx512f = os_avx512 && (b & (1u << 16));
    f.avx512dq = os_avx512 && (b & (1u << 17));
    f.avx512cd = os_avx512 && (b & (1u << 28));
    f.avx512bw = os_avx512 && (b & (1u << 30));
    f.avx512vl = os_avx512 && (b & (1u << 31));
    f.amx_tile = os_amx && (d & (1u << 24));
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512_bf16 = f.avx512f && (a & (1u << 5));
  }
  __get_cpuid(0x80000000, &a, &b, &c, &d);
  if (a >= 0x80000004) {
    char brand[49] = {};
    for (unsigned leaf = 0; leaf < 3; ++leaf) {
      __get_cpuid(0x80000002 + leaf, &a, &b, &c, &d);
      std::memcpy(brand + 16 * leaf, &a, 4);
      std::memcpy(brand + 16 * leaf + 4, &b, 4);
      std::memcpy(brand + 16 * leaf + 8, &c, 4);
      std::memcpy(brand + 16 * leaf + 12, &d, 4);
    }
    f.model_name = trim(brand);
  }
#endif
  return f;
}

const char* isa_name(IsaLevel level) {
  switch (level) {
    case IsaLevel::kSse: return "SSE";
    case IsaLevel::kAvx: return "AVX";
    case IsaLevel::kAvx2: return "AVX2+FMA";
    case IsaLevel::kAvx512: return "AVX-512";
    default: return "unknown";
  }
}

IsaLevel openblas_core_isa(const std::string& corename) {
  // OpenBLAS 0.3.21 driver/others/dynamic.c, corename[]: the x86-64 kernel sets.
  static const char* kSse[] = {"katmai",  "coppermine", "northwood",    "prescott", "banias",
                               "atom",    "core2",      "penryn",       "dunnington", "nehalem",
                               "athlon",  "opteron",    "opteron_sse3", "barcelona", "nano",
                               "bobcat"};
  static const char* kAvx[] = {"sandybridge", "bulldozer", "piledriver", "steamroller",
                               "excavator"};
  static const char* kAvx2[] = {"haswell", "zen"};
  static const char* kAvx512[] = {"skylakex", "cooperlake", "sapphirerapids"};
  const std::string n = lower(corename);
  auto in = [&](const auto& list) { return std::find(std::begin(list), std::end(list), n) != std::end(list); };
  if (in(kAvx512)) return IsaLevel::kAvx512;
  if (in(kAvx2)) return IsaLevel::kAvx2;
  if (in(kAvx)) return IsaLevel::kAvx;
  if (in(kSse)) return IsaLevel::kSse;
  return IsaLevel::kUnknown;
}

IsaLevel cpu_isa(const CpuFeatures& cpu) {
  if (cpu.avx512f && cpu.avx512bw && cpu.avx512vl && cpu.avx512dq && cpu.avx512cd)
    return IsaLevel::kAvx512;
  if (cpu.avx2 && cpu.fma) return IsaLevel::kAvx2;
  if (cpu.avx) return IsaLevel::kAvx;
  if (cpu.sse3) return IsaLevel::kSse;
  return IsaLevel::kUnknown;
}

std::string best_openblas_core(const CpuFeatures& cpu) {
  switch (cpu_isa(cpu)) {
    case IsaLevel::kAvx512: return cpu.avx512_bf16 ? "Cooperlake" : "SkylakeX";
    case IsaLevel::kAvx2: return "Haswell";
    case IsaLevel::kAvx: return "Sandybridge";
    default: return "";
  }
}

BlasCoreDecision decide_blas_core(const CpuFeatures& cpu, const std::string& loaded_core,
                                  const char* env_coretype, const char* env_policy,
                                  const char* env_reexec) {
  const std::string policy = env_policy ? lower(env_policy) : "auto";
  if (policy != "auto" && policy != "best" && policy != "keep")
    throw InputError(concat("environment variable PARE_BLAS_CORE: expected auto, best or keep, got '",
                            env_policy, "'"));
  BlasCoreDecision d;
  if (loaded_core.empty()) {
    d.reason = "the BLAS is not OpenBLAS: its kernels are its own choice";
    return d;
  }
  if (env_reexec) {
    d.reason = concat("already re-executed (OpenBLAS had chosen ", env_reexec, ")");
    return d;
  }
  if (policy == "keep") {
    d.reason = "PARE_BLAS_CORE=keep";
    return d;
  }
  const std::string best = best_openblas_core(cpu);
  const IsaLevel have = openblas_core_isa(loaded_core), can = cpu_isa(cpu);
  if (best.empty() || have == IsaLevel::kUnknown) {
    d.reason = concat("OpenBLAS core ", loaded_core, " (", isa_name(have), ") kept: no better core known for this CPU (",
                      isa_name(can), ")");
    return d;
  }
  // An OPENBLAS_CORETYPE that OpenBLAS did not take (a name it does not know: it then detects the
  // CPU itself) is no user choice to honour.
  const bool user_core = env_coretype && lower(env_coretype) == lower(loaded_core);
  if (user_core && policy == "auto") {
    d.reason = concat("OPENBLAS_CORETYPE=", env_coretype, " set by the environment is honoured");
    return d;
  }
  if (have >= can) {
    d.reason = concat("OpenBLAS core ", loaded_core, " matches the CPU (", isa_name(can), ")");
    return d;
  }
  d.reexec = true;
  d.coretype = best;
  d.reason = concat("OpenBLAS chose ", loaded_core, " (", isa_name(have), ") on a CPU with ", isa_name(can),
                    ": re-executing with OPENBLAS_CORETYPE=", best);
  return d;
}

namespace {
std::string openblas_corename() {
  using Fn = char* (*)();
  auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return fn ? trim(fn()) : std::string();
}
}  // namespace

BlasInfo blas_info() {
  BlasInfo info;
  using Fn = char* (*)();
  auto config = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  info.library = config ? trim(config()) : "unknown (not OpenBLAS)";
  if (void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_")) {
    Dl_info dl{};
    if (dladdr(sgemm, &dl) && dl.dli_fname) info.path = dl.dli_fname;
  }
  info.core = openblas_corename();
  info.core_isa = openblas_core_isa(info.core);
  info.cpu = detect_cpu_features();
  info.cpu_isa = cpu_isa(info.cpu);
  info.best_core = best_openblas_core(info.cpu);
  const char* reexec = env_or_null("PARE_BLAS_REEXEC");
  const char* coretype = env_or_null("OPENBLAS_CORETYPE");
  if (info.core.empty())
    info.chosen_by = "the BLAS itself";
  else if (reexec)
    info.chosen_by = concat("pare (OpenBLAS had chosen ", reexec, ")");
  else if (coretype && lower(coretype) == lower(info.core))
    info.chosen_by = concat("OPENBLAS_CORETYPE=", coretype, " from the environment");
  else if (coretype)
    info.chosen_by = concat("OpenBLAS (OPENBLAS_CORETYPE='", coretype, "' is not a core it knows)");
  else
    info.chosen_by = "OpenBLAS";
  return info;
}

std::string BlasInfo::summary() const {
  if (core.empty()) return concat(library, " (", path.empty() ? "?" : path, ")");
  return concat(library.substr(0, library.find(' ', library.find(' ') + 1)), ", kernel ", core, " (",
                isa_name(core_isa), ", chosen by ", chosen_by, "; CPU: ", isa_name(cpu_isa),
                below_cpu() ? concat(", best core ", best_core, ": BELOW THE CPU") : std::string(), ")");
}

void select_blas_kernels(char** argv) {
  const std::string had = openblas_corename();
  const BlasCoreDecision d =
      decide_blas_core(detect_cpu_features(), had, env_or_null("OPENBLAS_CORETYPE"),
                       env_or_null("PARE_BLAS_CORE"), env_or_null("PARE_BLAS_REEXEC"));
  if (!d.reexec) return;
  const char* user = env_or_null("OPENBLAS_CORETYPE");
  const std::string previous = user ? user : "";
  setenv("OPENBLAS_CORETYPE", d.coretype.c_str(), 1);
  setenv("PARE_BLAS_REEXEC", had.c_str(), 1);
  execv("/proc/self/exe", argv);
  // Only reached when execv failed: carry on with what OpenBLAS chose, and say so.
  const int err = errno;
  unsetenv("PARE_BLAS_REEXEC");
  if (user) setenv("OPENBLAS_CORETYPE", previous.c_str(), 1);
  else unsetenv("OPENBLAS_CORETYPE");
  std::cerr << "pare: warning: could not re-execute with OPENBLAS_CORETYPE=" << d.coretype << " ("
            << std::strerror(err) << "); running on OpenBLAS's " << had << " kernels\n";
}

}  // namespace pare
