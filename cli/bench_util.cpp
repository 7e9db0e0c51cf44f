#include "bench_util.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "base/blas_runtime.h"
#include "base/error.h"
#include "base/fileio.h"

namespace pare::cli {

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::pair<double, double> side_by_side(const Model& a, const Model& b, int64_t batch, int reps) {
  torch::manual_seed(7);
  const auto& c = a.config;
  torch::Tensor x = torch::randn({batch, c.num_channels, c.image_size, c.image_size});
  return side_by_side(a, b, reps, [&](const Model& m) { return m.forward(x); });
}

std::pair<double, double> side_by_side(const Model& a, const Model& b, int reps,
                                       const std::function<torch::Tensor(const Model&)>& run) {
  torch::NoGradGuard ng;
  for (int i = 0; i < 3; ++i) {
    run(a);
    run(b);
  }
  std::vector<double> ta, tb;
  for (int i = 0; i < reps; ++i) {
    double t0 = now_ms();
    (void)run(a).sum().item<float>();
    double t1 = now_ms();
    (void)run(b).sum().item<float>();
    double t2 = now_ms();
    ta.push_back(t1 - t0);
    tb.push_back(t2 - t1);
  }
  std::sort(ta.begin(), ta.end());
  std::sort(tb.begin(), tb.end());
  return {ta[ta.size() / 2], tb[tb.size() / 2]};
}

std::string f(const char* fmt, double v) {
  char b[64];
  std::snprintf(b, sizeof b, fmt, v);
  return b;
}

void add_bench_paths(CLI::App* sub, BenchPaths& p) {
  sub->add_option("--model", p.model, "Dense model folder")->capture_default_str();
  sub->add_option("--out", p.out,
                  "Markdown output (missing folders are created; in an existing file, the text "
                  "from its <!-- discussion --> marker on is kept)")
      ->capture_default_str();
  sub->add_option("--data", p.data, "Fashion-MNIST folder")->capture_default_str();
  sub->add_option("--limit", p.limit, "Images evaluated (-1: all)")->capture_default_str();
}

void refuse_generic_blas() {
  const BlasInfo blas = blas_info();
  if (blas.below_cpu())
    throw InputError(concat("refusing to benchmark: the BLAS runs its ", blas.core, " kernels (",
                            isa_name(blas.core_isa), ", chosen by ", blas.chosen_by,
                            ") on a CPU with ", isa_name(blas.cpu_isa),
                            "; unset OPENBLAS_CORETYPE or set PARE_BLAS_CORE=best"));
}

std::string machine_line() {
  const BlasInfo blas = blas_info();
  return concat("CPU: ", blas.cpu.model_name.empty() ? std::string("unknown") : blas.cpu.model_name,
                " (", isa_name(blas.cpu_isa), "); BLAS: ", blas.summary());
}

void write_results(const std::string& path, const std::string& md) {
  std::string keep;
  if (file_exists(path)) {
    std::string old = read_file(path);
    auto pos = old.find("<!-- discussion -->");
    if (pos != std::string::npos) keep = old.substr(pos);
  }
  if (keep.empty()) keep = "<!-- discussion -->\n";
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  write_file_atomic(path, md + "\n_" + machine_line() + "_\n\n" + keep);
}

}  // namespace pare::cli
