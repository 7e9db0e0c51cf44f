// drop-layers: removes whole encoder layers (attention and FFN) — the top-layer dropping baseline
// of Sajjad, Dalvi, Durrani, Nakov, "On the Effect of Dropping Layers of Pre-trained Transformer
// Models", Computer Speech & Language 2023 (arXiv 2004.03844), §3 "top-layer dropping"; any layer
// list may be given. Usually followed by fine-tune.
#pragma once

#include "pipeline/pass.h"

namespace pare {

// The layers drop-layers removes (0-based, sorted, unique) from its options: `layers` as given, or
// the top ones so that `keep` remain. InputError naming the option: both or neither given, an
// index out of range, nothing left, a family other than vit / bert, shortcut matrices.
std::vector<int64_t> plan_drop_layers(const ArchConfig& c, const PassOptions& o);

void register_drop_layers(PassTable& t);

}  // namespace pare
