// Small file helpers: atomic writes (temp file in the same folder, then rename) and reading.
#pragma once

#include <string>

namespace pare {

// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, then rename, so a
// reader never sees a partial file. Throws InputError naming the path on any failure.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Reads a whole file. Throws InputError("FILE: cannot open ...") when missing or unreadable.
std::string read_file(const std::string& path);

bool file_exists(const std::string& path);

// Size of a file in bytes; throws InputError when it does not exist.
long long file_size(const std::string& path);

}  // namespace pare
