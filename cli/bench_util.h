// Shared pieces of the `pare bench` subcommands: timing alternated side by side, number
// formatting, and writing results/*.md while keeping the hand-written discussion.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <utility>

#include "commands.h"
#include "data/images.h"
#include "families/model.h"

namespace pare::cli {

// One `pare bench NAME` subcommand and its runner.
struct BenchCommand {
  CLI::App* sub = nullptr;
  Runner run;
};
BenchCommand bench_zero_tprune(CLI::App* bench);

// Options every benchmark takes: --model, --out, --data, --limit.
struct BenchPaths {
  std::string model = "models/vit-fmnist", out, data = kDefaultFashionMnistDir;
  int64_t limit = -1;  // images evaluated (-1: all)
};
void add_bench_paths(CLI::App* sub, BenchPaths& p);
BenchCommand bench_quantize(CLI::App* bench);  // cmd_bench_quantize.cpp
BenchCommand bench_slicegpt_lm(CLI::App* bench);  // cmd_bench_lm.cpp
BenchCommand bench_lm_speed(CLI::App* bench);     // cmd_bench_lm.cpp
BenchCommand bench_slicegpt_memory(CLI::App* bench);  // cmd_bench_lm.cpp
BenchCommand bench_gps_speed(CLI::App* bench);        // cmd_bench_gps.cpp

double now_ms();

// Median ms of `reps` alternating forwards of a and b on the same random input batch (3 warm-up
// runs each first), so a/b is a ratio from one run.
std::pair<double, double> side_by_side(const Model& a, const Model& b, int64_t batch, int reps);
// The same for any forward: `run` (a model's forward on fixed inputs) alternates between a and b.
std::pair<double, double> side_by_side(const Model& a, const Model& b, int reps,
                                       const std::function<torch::Tensor(const Model&)>& run);

// printf-style formatting of one number ("%.2f").
std::string f(const char* fmt, double v);

// Writes `md` to `path` atomically, keeping the text from the line "<!-- discussion -->" of an
// existing file (added when missing). A line naming the CPU, the BLAS and its kernel goes just
// before the discussion.
void write_results(const std::string& path, const std::string& md);

// InputError when the BLAS runs kernels of a lower instruction set than this CPU offers
// (OpenBLAS's generic fallback, or an OPENBLAS_CORETYPE from the environment): timings taken so
// would not show what the hardware gives. Every `pare bench` that times calls it before it starts
// (add_bench: all but runs with --no-timing).
void refuse_generic_blas();

// "CPU: <model name>, <isa>; BLAS: <library>, kernel <core> (chosen by ...)": one line.
std::string machine_line();

}  // namespace pare::cli
