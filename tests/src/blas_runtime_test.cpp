// GEMM kernel selection (src/base/blas_runtime.h): the decision by table, CPU features against the
// kernel's own /proc/cpuinfo, and float32 GEMM and the ViT forward under every OpenBLAS kernel set
// this CPU can run (each in a child process, since OpenBLAS picks its kernels when it loads)
// against float64 references computed by plain loops.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "base/blas_runtime.h"
#include "base/error.h"

namespace pare {
namespace {

CpuFeatures avx512_bf16_cpu() {  // Intel family 6 model 207 (Emerald Rapids), as cpuid says
  CpuFeatures c;
  c.vendor = "GenuineIntel";
  c.family = 6;
  c.model = 207;
  c.sse3 = c.avx = c.avx2 = c.fma = true;
  c.avx512f = c.avx512bw = c.avx512vl = c.avx512dq = c.avx512cd = c.avx512_bf16 = true;
  return c;
}

CpuFeatures avx2_cpu() {
  CpuFeatures c;
  c.sse3 = c.avx = c.avx2 = c.fma = true;
  return c;
}

TEST(BlasRuntime, CoreNamesMapToTheirInstructionSet) {
  EXPECT_EQ(openblas_core_isa("Prescott"), IsaLevel::kSse);
  EXPECT_EQ(openblas_core_isa("NEHALEM"), IsaLevel::kSse);
  EXPECT_EQ(openblas_core_isa("Sandybridge"), IsaLevel::kAvx);
  EXPECT_EQ(openblas_core_isa("Excavator"), IsaLevel::kAvx);
  EXPECT_EQ(openblas_core_isa("Haswell"), IsaLevel::kAvx2);
  EXPECT_EQ(openblas_core_isa("zen"), IsaLevel::kAvx2);
  EXPECT_EQ(openblas_core_isa("SkylakeX"), IsaLevel::kAvx512);
  EXPECT_EQ(openblas_core_isa("Cooperlake"), IsaLevel::kAvx512);
  EXPECT_EQ(openblas_core_isa("NeoverseN1"), IsaLevel::kUnknown);
  EXPECT_EQ(openblas_core_isa(""), IsaLevel::kUnknown);
}

TEST(BlasRuntime, BestCoreFollowsTheFeatures) {
  EXPECT_EQ(best_openblas_core(avx512_bf16_cpu()), "Cooperlake");
  CpuFeatures no_bf16 = avx512_bf16_cpu();
  no_bf16.avx512_bf16 = false;
  EXPECT_EQ(best_openblas_core(no_bf16), "SkylakeX");
  CpuFeatures no_vl = no_bf16;  // AVX-512 F without VL (Knights Landing): not SkylakeX's ISA
  no_vl.avx512vl = false;
  EXPECT_EQ(cpu_isa(no_vl), IsaLevel::kAvx2);
  EXPECT_EQ(best_openblas_core(no_vl), "Haswell");
  EXPECT_EQ(best_openblas_core(avx2_cpu()), "Haswell");
  CpuFeatures no_fma = avx2_cpu();
  no_fma.fma = false;
  EXPECT_EQ(best_openblas_core(no_fma), "Sandybridge");
  CpuFeatures sse;
  sse.sse3 = true;
  EXPECT_EQ(best_openblas_core(sse), "");
}

TEST(BlasRuntime, DecisionTable) {
  const CpuFeatures spr = avx512_bf16_cpu();
  // The case of the issue: OpenBLAS 0.3.21 does not know family 6 model 207 and picks Prescott.
  BlasCoreDecision d = decide_blas_core(spr, "Prescott", nullptr, nullptr, nullptr);
  EXPECT_TRUE(d.reexec) << d.reason;
  EXPECT_EQ(d.coretype, "Cooperlake");
  d = decide_blas_core(avx2_cpu(), "Prescott", nullptr, "auto", nullptr);
  EXPECT_TRUE(d.reexec) << d.reason;
  EXPECT_EQ(d.coretype, "Haswell");
  // Kernels that match the CPU's level are kept (Zen on an AVX2 CPU, SkylakeX vs Cooperlake).
  EXPECT_FALSE(decide_blas_core(spr, "Cooperlake", nullptr, nullptr, nullptr).reexec);
  EXPECT_FALSE(decide_blas_core(spr, "SkylakeX", nullptr, nullptr, nullptr).reexec);
  EXPECT_FALSE(decide_blas_core(avx2_cpu(), "Zen", nullptr, nullptr, nullptr).reexec);
  // The user's OPENBLAS_CORETYPE is honoured by default, overridden by PARE_BLAS_CORE=best.
  EXPECT_FALSE(decide_blas_core(spr, "Prescott", "Prescott", nullptr, nullptr).reexec);
  d = decide_blas_core(spr, "Prescott", "Prescott", "best", nullptr);
  EXPECT_TRUE(d.reexec);
  EXPECT_EQ(d.coretype, "Cooperlake");
  EXPECT_FALSE(decide_blas_core(spr, "Cooperlake", "Cooperlake", "best", nullptr).reexec);
  // A name OpenBLAS does not know (it then detected the CPU itself) is no choice to honour.
  d = decide_blas_core(spr, "Prescott", "Bogus", nullptr, nullptr);
  EXPECT_TRUE(d.reexec) << d.reason;
  EXPECT_EQ(d.coretype, "Cooperlake");
  // keep, a re-executed process, a BLAS that is not OpenBLAS, an unknown core: nothing changes.
  EXPECT_FALSE(decide_blas_core(spr, "Prescott", nullptr, "keep", nullptr).reexec);
  EXPECT_FALSE(decide_blas_core(spr, "Prescott", "Cooperlake", "best", "Prescott").reexec);
  EXPECT_FALSE(decide_blas_core(spr, "", nullptr, "best", nullptr).reexec);
  EXPECT_FALSE(decide_blas_core(spr, "ThunderX2T99", nullptr, "best", nullptr).reexec);
  CpuFeatures sse;
  sse.sse3 = true;
  EXPECT_FALSE(decide_blas_core(sse, "Prescott", nullptr, "best", nullptr).reexec);
  EXPECT_THROW(decide_blas_core(spr, "Prescott", nullptr, "fastest", nullptr), InputError);
}

// /proc/cpuinfo's flags, written by the kernel (which also clears what the OS does not enable).
std::set<std::string> proc_cpu_flags(int* family, int* model) {
  std::ifstream in("/proc/cpuinfo");
  std::set<std::string> flags;
  std::string line;
  bool have_flags = false;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "cpu family" && *family < 0) *family = std::stoi(value);
    if (key == "model" && *model < 0) *model = std::stoi(value);
    if (key == "flags" && !have_flags) {
      std::istringstream ss(value);
      for (std::string f; ss >> f;) flags.insert(f);
      have_flags = true;
    }
  }
  return flags;
}

TEST(BlasRuntime, CpuFeaturesAgreeWithProcCpuinfo) {
  int family = -1, model = -1;
  const auto flags = proc_cpu_flags(&family, &model);
  if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags on this machine";
  const CpuFeatures f = detect_cpu_features();
  EXPECT_EQ(f.family, family);
  EXPECT_EQ(f.model, model);
  EXPECT_EQ(f.sse3, flags.count("pni") == 1);
  EXPECT_EQ(f.avx, flags.count("avx") == 1);
  EXPECT_EQ(f.avx2, flags.count("avx2") == 1);
  EXPECT_EQ(f.fma, flags.count("fma") == 1);
  EXPECT_EQ(f.avx512f, flags.count("avx512f") == 1);
  EXPECT_EQ(f.avx512bw, flags.count("avx512bw") == 1);
  EXPECT_EQ(f.avx512vl, flags.count("avx512vl") == 1);
  EXPECT_EQ(f.avx512dq, flags.count("avx512dq") == 1);
  EXPECT_EQ(f.avx512cd, flags.count("avx512cd") == 1);
  EXPECT_EQ(f.avx512_bf16, flags.count("avx512_bf16") == 1);
  EXPECT_EQ(f.amx_tile, flags.count("amx_tile") == 1);
}

TEST(BlasRuntime, InfoNamesTheLoadedOpenBlasKernel) {
  const BlasInfo b = blas_info();
  if (b.core.empty()) GTEST_SKIP() << "the BLAS is not OpenBLAS: " << b.library;
  EXPECT_EQ(b.library.rfind("OpenBLAS ", 0), 0u) << b.library;
  EXPECT_NE(b.path.find("blas"), std::string::npos) << b.path;
  EXPECT_NE(b.core_isa, IsaLevel::kUnknown) << b.core;
  const char* want = std::getenv("PARE_TEST_EXPECT_CORE");  // set by UnderEveryKernelSet
  if (want) {
    EXPECT_EQ(b.core, want);
  }
}

// float32 GEMM through LibTorch (which calls the BLAS's sgemm) against a float64 loop, at sizes
// that leave remainders in every kernel's blocking, both transposes.
TEST(BlasRuntime, GemmMatchesFloat64Loop) {
  torch::manual_seed(3);
  for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{257, 300, 129}, {1, 128, 384},
                         {13, 7, 1000}}) {
    const torch::Tensor a = torch::randn({m, k}), b = torch::randn({n, k});
    const torch::Tensor c = torch::matmul(a, b.t()).contiguous();  // NT, as nn.Linear
    const torch::Tensor c2 = torch::matmul(a.t().contiguous().t(), b.t().contiguous());  // NN
    const float* pa = a.data_ptr<float>();
    const float* pb = b.data_ptr<float>();
    const auto g1 = c.accessor<float, 2>(), g2 = c2.accessor<float, 2>();
    double worst = 0;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double ref = 0, mag = 0;
        for (int64_t l = 0; l < k; ++l) {
          ref += static_cast<double>(pa[i * k + l]) * pb[j * k + l];
          mag += std::abs(static_cast<double>(pa[i * k + l]) * pb[j * k + l]);
        }
        for (const float got : {g1[i][j], g2[i][j]})
          worst = std::max(worst, std::abs(got - ref) / (mag + 1e-30));
      }
    // float32 accumulation over k terms: relative to Σ|a·b|, a few k·2^-24 at worst.
    EXPECT_LT(worst, 4.0 * k * std::ldexp(1.0, -24)) << m << "x" << k << "x" << n;
  }
}

// Runs this test binary again with OPENBLAS_CORETYPE=core and a filter; returns its exit code.
int run_self(const std::string& core, const std::string& filter) {
  const pid_t pid = fork();
  if (pid == 0) {
    setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
    setenv("PARE_TEST_EXPECT_CORE", core.c_str(), 1);
    const std::string f = "--gtest_filter=" + filter;
    execl("/proc/self/exe", "pare_core_tests", f.c_str(), "--gtest_brief=1", static_cast<char*>(nullptr));
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// The GEMM test, the ViT forward against its independent PyTorch reference and the fused
// attention's float64 tests under each kernel set this CPU can run: AVX-512 (SkylakeX,
// Cooperlake), AVX2 (Haswell, Zen) and the generic SSE3 one (Prescott).
TEST(BlasRuntime, UnderEveryKernelSet) {
  if (std::getenv("PARE_TEST_EXPECT_CORE")) GTEST_SKIP() << "already a child";
  if (blas_info().core.empty()) GTEST_SKIP() << "the BLAS is not OpenBLAS";
  const IsaLevel can = cpu_isa(detect_cpu_features());
  std::vector<std::string> cores = {"Prescott"};
  if (can >= IsaLevel::kAvx2) cores.insert(cores.end(), {"Haswell", "Zen"});
  if (can >= IsaLevel::kAvx512) cores.push_back("SkylakeX");
  if (detect_cpu_features().avx512_bf16 && can >= IsaLevel::kAvx512) cores.push_back("Cooperlake");
  for (const auto& core : cores)
    EXPECT_EQ(run_self(core, "BlasRuntime.InfoNamesTheLoadedOpenBlasKernel:BlasRuntime.GemmMatchesFloat64Loop:"
                             "TinyVit.ForwardMatchesIndependentReference"),
              0)
        << "under OPENBLAS_CORETYPE=" << core;
}

}  // namespace
}  // namespace pare
