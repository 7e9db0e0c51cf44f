#include "base/memstat.h"

#include <fstream>
#include <sstream>

namespace pare {
namespace {

int64_t status_kb(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, key.size(), key) == 0) {
      std::istringstream is(line.substr(key.size()));
      int64_t kb = -1;
      is >> kb;
      return kb;
    }
  return -1;
}

}  // namespace

int64_t current_rss_bytes() {
  const int64_t kb = status_kb("VmRSS:");
  return kb < 0 ? -1 : kb * 1024;
}

int64_t peak_rss_bytes() {
  const int64_t kb = status_kb("VmHWM:");
  return kb < 0 ? -1 : kb * 1024;
}

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

int64_t mapped_resident_bytes(const std::vector<std::string>& needles) {
  std::ifstream in("/proc/self/smaps");
  if (!in) return -1;
  std::string line;
  bool inside = false;
  int64_t kb = 0;
  while (std::getline(in, line)) {
    // A mapping header: "start-end perms offset dev inode [path]"; fields: "Name: value kB".
    const size_t colon = line.find(':'), space = line.find(' ');
    if (space != std::string::npos && (colon == std::string::npos || colon > space)) {
      const size_t slash = line.find('/');
      inside = false;
      if (slash != std::string::npos)
        for (const auto& n : needles) inside = inside || line.find(n, slash) != std::string::npos;
    } else if (inside && line.compare(0, 4, "Rss:") == 0) {
      std::istringstream is(line.substr(4));
      int64_t v = 0;
      is >> v;
      kb += v;
    }
  }
  return kb * 1024;
}

}  // namespace pare
