// Process memory figures from Linux /proc, for reporting peak RSS of layer-by-layer passes.
//
// RSS counts the process's resident pages: its own (anonymous) memory plus the resident pages of
// every file it maps, including the shared libraries (LibTorch alone is ~100-200 MB) and a
// memory-mapped checkpoint's pages once touched. All figures in bytes; -1 when /proc does not
// have them (not Linux).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pare {

int64_t current_rss_bytes();  // VmRSS
int64_t peak_rss_bytes();     // VmHWM: the peak since start or since the last reset_peak_rss()
// Resets VmHWM to the current RSS (writes "5" to /proc/self/clear_refs, Linux >= 4.0); false
// when the kernel refuses.
bool reset_peak_rss();
// Resident bytes of this process's mappings of files whose path contains one of `needles`
// (sum of "Rss:" in /proc/self/smaps; an unlinked file shows as "PATH (deleted)").
int64_t mapped_resident_bytes(const std::vector<std::string>& needles);

}  // namespace pare
