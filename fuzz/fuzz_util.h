// Shared by the libFuzzer harnesses (issue 25): each input is written to one temporary file per
// process (pare's readers take paths, as users give them), then read. The contract under test:
// a bad file throws pare::InputError (a one-line error, exit 2 in the CLI); anything else — a
// crash, a sanitizer report, another exception type, a hang — is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>

#include "base/error.h"

namespace pare_fuzz {

// A path under $TMPDIR (or /tmp) unique to this process, ending in `suffix`.
inline const std::string& input_path(const std::string& suffix) {
  static const std::string p = [&] {
    const char* t = std::getenv("TMPDIR");
    return std::string(t && *t ? t : "/tmp") + "/pare_fuzz_" + std::to_string(::getpid()) + suffix;
  }();
  return p;
}

inline const std::string& write_input(const uint8_t* data, size_t size, const std::string& suffix) {
  const std::string& p = input_path(suffix);
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                            static_cast<std::streamsize>(size));
  return p;
}

// Runs `f`; InputError is the expected outcome of a bad input, any other exception aborts (a
// finding libFuzzer then minimises and saves).
template <typename F>
int only_input_errors(F&& f) {
  try {
    f();
  } catch (const pare::InputError&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pare fuzz: unexpected exception (not InputError): %s\n", e.what());
    std::abort();
  }
  return 0;
}

}  // namespace pare_fuzz
