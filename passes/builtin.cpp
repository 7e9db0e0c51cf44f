#include "builtin.h"

#include "drop_layers.h"
#include "fine_tune.h"
#include "gtsp.h"
#include "prune_heads.h"
#include "quantize_pass.h"
#include "shrp.h"
#include "slicegpt.h"
#include "zero_tprune.h"

namespace pare {

void register_builtin_passes() {
  static bool done = false;
  if (done) return;
  done = true;
  PassTable& t = PassTable::global();
  register_slicegpt(t);
  register_quantize(t);
  register_zero_tprune(t);
  register_prune_heads(t);
  register_gtsp(t);
  register_fine_tune(t);
  register_shrp(t);
  register_drop_layers(t);
}

}  // namespace pare
