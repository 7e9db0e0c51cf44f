// Registers every built-in pass in PassTable::global() (idempotent).
#pragma once

namespace pare {
void register_builtin_passes();
}
