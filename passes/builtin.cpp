#include "builtin.h"

#include "quantize_pass.h"
#include "slicegpt.h"

namespace pare {

void register_builtin_passes() {
  static bool done = false;
  if (done) return;
  done = true;
  PassTable& t = PassTable::global();
  register_slicegpt(t);
  register_quantize(t);
}

}  // namespace pare
