// The GEMM kernel choice seen from the command line (src/base/blas_runtime.h, README "Threads and
// kernels"): `pare --version` names the kernel and who chose it, pare re-executes itself onto the
// best kernels when asked to, a bad PARE_BLAS_CORE is a usage error, and a benchmark that times
// refuses kernels below the CPU's instruction set before it starts.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "base/blas_runtime.h"

namespace fs = std::filesystem;

namespace {

struct KernelRun {
  std::string cmd, out, err;
  int code = -1;
};

// `env -u ... VAR=VALUE ... pare ARGS` with the kernel-related variables cleared first, so the
// test's own environment does not decide the outcome. Output through files in a temp folder.
KernelRun pare_with_env(const std::string& env, const std::string& args) {
  static int n = 0;
  const fs::path dir = fs::temp_directory_path() / ("pare_blas_cli." + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path out = dir / (std::to_string(n) + ".out"), err = dir / (std::to_string(n) + ".err");
  ++n;
  KernelRun r;
  r.cmd = "env -u OPENBLAS_CORETYPE -u PARE_BLAS_CORE -u PARE_BLAS_REEXEC " + env + " '" +
          std::string(PARE_BIN) + "' " + args;
  const int st = std::system((r.cmd + " >'" + out.string() + "' 2>'" + err.string() + "' </dev/null").c_str());
  r.code = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  r.out = slurp(out);
  r.err = slurp(err);
  fs::remove_all(dir);
  return r;
}

std::string show(const KernelRun& r) {
  return r.cmd + "\nexit " + std::to_string(r.code) + "\n--- stdout\n" + r.out + "--- stderr\n" + r.err;
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

class BlasCli : public ::testing::Test {
 protected:
  void SetUp() override {
    // This process runs on the same BLAS as the pare binary (both link pare_core's LibTorch).
    if (pare::blas_info().core.empty()) GTEST_SKIP() << "the BLAS is not OpenBLAS";
    best_ = pare::best_openblas_core(pare::detect_cpu_features());
  }
  std::string best_;
};

TEST_F(BlasCli, VersionNamesPareLibTorchCpuAndKernel) {
  const KernelRun r = pare_with_env("", "--version");
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_EQ(r.out.rfind("pare ", 0), 0u) << show(r);
  EXPECT_TRUE(has(r.out, "\nLibTorch 1.") || has(r.out, "\nLibTorch 2.")) << show(r);
  EXPECT_TRUE(has(r.out, "\nBLAS: OpenBLAS ")) << show(r);
  EXPECT_TRUE(has(r.out, "\nGEMM kernel: ")) << show(r);
  // Without any variable set, the kernel is never below what the CPU offers.
  EXPECT_FALSE(has(r.out, "BELOW")) << show(r);
}

TEST_F(BlasCli, BestReExecutesOntoTheBestKernels) {
  if (best_.empty()) GTEST_SKIP() << "no OpenBLAS core better than the generic one for this CPU";
  const KernelRun r = pare_with_env("OPENBLAS_CORETYPE=Prescott PARE_BLAS_CORE=best", "--version");
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_TRUE(has(r.out, "GEMM kernel: " + best_ + " (")) << show(r);
  EXPECT_TRUE(has(r.out, "chosen by pare (OpenBLAS had chosen Prescott)")) << show(r);
  EXPECT_EQ(r.err, "") << show(r);
}

TEST_F(BlasCli, UsersCoreTypeIsHonouredAndFlagged) {
  const KernelRun r = pare_with_env("OPENBLAS_CORETYPE=Prescott", "--version");
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_TRUE(has(r.out, "GEMM kernel: Prescott (SSE), chosen by OPENBLAS_CORETYPE=Prescott")) << show(r);
  EXPECT_EQ(has(r.out, "BELOW"), !best_.empty()) << show(r);
  const KernelRun keep = pare_with_env("OPENBLAS_CORETYPE=Prescott PARE_BLAS_CORE=keep", "--version");
  EXPECT_TRUE(has(keep.out, "GEMM kernel: Prescott (SSE)")) << show(keep);
}

TEST_F(BlasCli, UnknownCoreTypeIsNotCreditedToTheEnvironment) {
  const KernelRun r = pare_with_env("OPENBLAS_CORETYPE=Bogus", "--version");
  ASSERT_EQ(r.code, 0) << show(r);
  EXPECT_TRUE(has(r.out, "chosen by OpenBLAS (OPENBLAS_CORETYPE='Bogus' is not a core it knows)")) << show(r);
  EXPECT_FALSE(has(r.out, "BELOW")) << show(r);
}

TEST_F(BlasCli, BadPolicyIsAUsageError) {
  const KernelRun r = pare_with_env("PARE_BLAS_CORE=fastest", "--version");
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_EQ(r.out, "") << show(r);
  EXPECT_EQ(r.err,
            "pare: error: environment variable PARE_BLAS_CORE: expected auto, best or keep, got "
            "'fastest'\n")
      << show(r);
}

TEST_F(BlasCli, TimingBenchRefusesGenericKernelsBeforeItStarts) {
  if (best_.empty()) GTEST_SKIP() << "no OpenBLAS core better than the generic one for this CPU";
  const fs::path dir = fs::temp_directory_path() / ("pare_blas_bench." + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string out = (dir / "sub" / "r.md").string();
  // The model does not exist: the refusal must come first (before anything is loaded).
  const std::string args = "--threads 2 bench zero-tprune --model '" + (dir / "none").string() +
                           "' --schedule 0@0.5 --out '" + out + "'";
  KernelRun r = pare_with_env("OPENBLAS_CORETYPE=Prescott", args);
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_TRUE(has(r.err, "refusing to benchmark: the BLAS runs its Prescott kernels (SSE, chosen by "
                         "OPENBLAS_CORETYPE=Prescott from the environment)"))
      << show(r);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << show(r);
  EXPECT_FALSE(fs::exists(dir / "sub")) << show(r);
  // Without timing it is not refused (it fails later, on the missing model).
  r = pare_with_env("OPENBLAS_CORETYPE=Prescott", args + " --no-timing");
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_FALSE(has(r.err, "refusing to benchmark")) << show(r);
  // PARE_BLAS_CORE=best runs it on the best kernels: no refusal either.
  r = pare_with_env("OPENBLAS_CORETYPE=Prescott PARE_BLAS_CORE=best", args);
  EXPECT_EQ(r.code, 2) << show(r);
  EXPECT_FALSE(has(r.err, "refusing to benchmark")) << show(r);
  // vit-speed: timing refused, its correctness dump (--no-timing, what ctest's ONNX Runtime
  // check uses) still runs on these kernels.
  const std::string vit = std::string(PARE_SOURCE_DIR) + "/models/vit-fmnist";
  if (fs::exists("/usr/share/datasets/fashion-mnist")) {
    r = pare_with_env("OPENBLAS_CORETYPE=Prescott", "--threads 2 bench vit-speed --model '" + vit +
                                                        "' --batches 2 --dump '" + (dir / "d.st").string() + "'");
    EXPECT_EQ(r.code, 2) << show(r);
    EXPECT_TRUE(has(r.err, "refusing to benchmark")) << show(r);
    r = pare_with_env("OPENBLAS_CORETYPE=Prescott", "--threads 2 bench vit-speed --model '" + vit +
                                                        "' --batches 2 --no-timing --dump '" +
                                                        (dir / "d.st").string() + "'");
    EXPECT_EQ(r.code, 0) << show(r);
    EXPECT_TRUE(fs::exists(dir / "d.st")) << show(r);
    EXPECT_FALSE(has(r.out, "\"what\":\"forward\"")) << show(r);
  }
  fs::remove_all(dir);
}

}  // namespace
