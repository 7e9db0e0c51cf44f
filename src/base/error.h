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
#include <string_view>

namespace pare {

namespace detail {
// what() is a C string: a NUL taken from a file (a safetensors key, a JSON "\u0000") would end
// the message there, so NUL bytes are written as \x00 instead.
inline std::string without_nul(std::string s) {
  for (size_t i = s.find('\0'); i != std::string::npos; i = s.find('\0', i + 4))
    s.replace(i, 1, "\\x00");
  return s;
}
}  // namespace detail

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(detail::without_nul(what)) {}
  explicit Error(const char* what) : std::runtime_error(what) {}
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

// Text from a file made safe to print in a one-line message: printable ASCII is kept, every
// other byte becomes \xNN (control bytes and newlines included, so the message stays one line).
// With keep_utf8, well-formed multi-byte UTF-8 sequences are kept too (a message's own "×").
inline std::string printable(std::string_view s, bool keep_utf8 = false) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && (keep_utf8 || c != '\\')) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    if (keep_utf8 && c >= 0xc2 && c <= 0xf4) {
      const size_t n = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
      size_t k = 1;
      while (k < n && i + k < s.size() && (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80) ++k;
      if (k == n) {
        out.append(s.substr(i, n));
        i += n;
        continue;
      }
    }
    out += "\\x";
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
    ++i;
  }
  return out;
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
