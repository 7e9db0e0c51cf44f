// pare's error hierarchy (DESIGN.md "Errors").
//
// InputError: the user's input is wrong (a file, key, offset or option); the CLI prints its one-line
//   message and exits 2. Every message names what was wrong and what was expected.
// InternalError: a broken invariant inside pare (a bug); the CLI exits 3.
// The split follows PyTorch's TORCH_CHECK (user error) vs TORCH_INTERNAL_ASSERT (bug).
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace pare {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad input: file, key, option, data. Exit code 2.
class InputError : public Error {
 public:
  using Error::Error;
};

// Broken invariant inside pare. Exit code 3.
class InternalError : public Error {
 public:
  using Error::Error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class T, class... R>
void append(std::ostringstream& os, const T& v, const R&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// Concatenates the arguments with operator<< into one string.
template <class... A>
std::string concat(const A&... a) {
  std::ostringstream os;
  detail::append(os, a...);
  return os.str();
}

}  // namespace pare

// User-facing check: throws pare::InputError with the concatenated message.
#define PARE_CHECK(cond, ...)                                  \
  do {                                                         \
    if (!(cond)) throw ::pare::InputError(::pare::concat(__VA_ARGS__)); \
  } while (0)

// Invariant check: throws pare::InternalError naming the source location.
#define PARE_ASSERT(cond, ...)                                                           \
  do {                                                                                   \
    if (!(cond))                                                                         \
      throw ::pare::InternalError(::pare::concat(__FILE__, ":", __LINE__, ": internal: ", \
                                              #cond, " ", ##__VA_ARGS__));             \
  } while (0)
