// The `pare` subcommands. Each registers itself on the CLI11 app and returns a runner that gives
// the exit code (0 ok, 1 budget not met, 2 bad input; errors are thrown as pare::InputError).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace pare::cli {

struct Common {
  int threads = 0;  // 0: all cores
};

using Runner = std::function<int()>;

Runner add_train(CLI::App& app, Common& common);
Runner add_compress(CLI::App& app, Common& common);
Runner add_eval(CLI::App& app, Common& common);
Runner add_inspect(CLI::App& app, Common& common);
Runner add_generate(CLI::App& app, Common& common);
Runner add_convert(CLI::App& app, Common& common);
Runner add_passes(CLI::App& app, Common& common);
Runner add_bench(CLI::App& app, Common& common);

// InputError unless `out` is neither the input model nor inside it nor around it (cmd_compress.cpp).
void check_out_not_input(const std::string& out, const std::string& model);

// Sets LibTorch's intra-op thread count (0 = number of cores) and returns it.
int set_threads(int threads);

}  // namespace pare::cli
