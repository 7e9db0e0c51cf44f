// pare: compress trained transformers. Exit codes: 0 ok, 1 budget not met, 2 bad input or usage,
// 3 internal error (DESIGN.md).
#include <ATen/Parallel.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <c10/util/Exception.h>

#include <iostream>
#include <thread>

#include "base/blas_runtime.h"
#include "builtin.h"
#include "commands.h"
#include "base/error.h"
#include "base/version.h"

namespace pare::cli {
int set_threads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  return threads;
}
}  // namespace pare::cli

int main(int argc, char** argv) {
  // First, before any GEMM: make OpenBLAS use the best kernels this CPU has (may re-execute the
  // program once with OPENBLAS_CORETYPE set; README "Threads and kernels").
  try {
    pare::select_blas_kernels(argv);
  } catch (const pare::InputError& e) {
    std::cerr << "pare: error: " << pare::printable(e.what(), true) << "\n";
    return 2;
  }
#if defined(__GLIBC__)
  // Tensors of a forward are allocated and freed again every batch. With glibc's defaults the
  // large ones come straight from mmap (or trim the heap when freed), so every forward pays page
  // faults and page zeroing for them (measured with perf on the gps forward: a third of its time).
  // Serving them from the heap and keeping freed memory lets the next batch reuse it; passes that
  // must give memory back call malloc_trim (slicegpt does after each layer).
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  pare::register_builtin_passes();
  CLI::App app{"pare: make trained transformers smaller and faster"};
  app.require_subcommand(1);
  app.set_version_flag("--version", [] { return pare::version_text(); },
                       "pare, LibTorch and BLAS versions, the GEMM kernel and why");
  pare::cli::Common common;
  app.add_option("--threads", common.threads, "LibTorch intra-op threads (0 = all cores)")
      ->check(CLI::Range(0, 4096));
  std::vector<std::pair<std::string, pare::cli::Runner>> runners = {
      {"compress", pare::cli::add_compress(app, common)},
      {"eval", pare::cli::add_eval(app, common)},
      {"inspect", pare::cli::add_inspect(app, common)},
      {"generate", pare::cli::add_generate(app, common)},
      {"convert", pare::cli::add_convert(app, common)},
      {"train", pare::cli::add_train(app, common)},
      {"passes", pare::cli::add_passes(app, common)},
      {"bench", pare::cli::add_bench(app, common)},
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "pare: error: " << pare::printable(e.what(), true) << " (see pare --help)\n";
    return 2;
  }
  try {
    pare::cli::set_threads(common.threads);
    for (auto& [name, run] : runners)
      if (app.got_subcommand(name)) return run();
    return 2;
  } catch (const pare::InputError& e) {
    std::cerr << "pare: error: " << pare::printable(e.what(), true) << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "pare: error: " << pare::printable(e.what_without_backtrace(), true) << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "pare: internal error: " << pare::printable(e.what(), true) << "\n";
    return 3;
  }
}
