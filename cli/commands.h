// The `pare` subcommands. Each registers itself on the CLI11 app and returns the exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace pare::cli {

// Options shared by every subcommand.
struct Common {
  int threads = 0;  // 0: all cores
};

using Runner = std::function<int()>;

Runner add_train(CLI::App& app, Common& common);

// Sets LibTorch's intra-op thread count (0 = number of cores) and returns it.
int set_threads(int threads);

}  // namespace pare::cli
