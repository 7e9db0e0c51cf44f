// Helpers of the CLI test files: run the built pare binary in a folder and capture its output.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace pare_cli_test {

namespace fs = std::filesystem;

inline std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct PareRun {
  std::string cmd, out, err;
  int code = -1;
};

// `pare --threads 2 ARGS` in `cwd`, stdout / stderr captured through files in `cwd`.
inline PareRun pare_in(const fs::path& cwd, const std::vector<std::string>& args) {
  static int n = 0;
  const std::string stem = "run." + std::to_string(::getpid()) + "." + std::to_string(n++);
  const fs::path out = cwd / (stem + ".out"), err = cwd / (stem + ".err");
  PareRun r;
  r.cmd = quote(PARE_BIN) + " --threads 2";
  for (const auto& a : args) r.cmd += " " + quote(a);
  const std::string sh = "cd " + quote(cwd.string()) + " && exec " + r.cmd + " >" +
                         quote(out.string()) + " 2>" + quote(err.string()) + " </dev/null";
  const int st = std::system(sh.c_str());
  r.code = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = read_all(out);
  r.err = read_all(err);
  fs::remove(out);
  fs::remove(err);
  return r;
}

inline std::string show(const PareRun& r) {
  return r.cmd + "\nexit " + std::to_string(r.code) + "\n--- stdout\n" + r.out + "--- stderr\n" +
         r.err;
}

}  // namespace pare_cli_test
