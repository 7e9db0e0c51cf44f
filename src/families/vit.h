// Family `vit`: Vision Transformer (Dosovitskiy et al. 2021) as in Hugging Face
// ViTForImageClassification: patch embedding (conv p×p stride p, stored here as a Linear over
// flattened C·p·p patches), CLS token, learned positions, pre-LN blocks with multi-head attention
// and a GELU MLP, final norm, linear classifier on the CLS token. Per-layer heads and widths;
// after SliceGPT: folded RMSNorm (dividing by the original hidden size) and residual shortcut
// matrices.
//
// Inputs: images [B, C, H, W] float, already normalised. Output: logits [B, num_labels].
#pragma once

#include "families/family.h"

namespace pare {

const Family& vit_family();

// Checkpoint name <-> flat name for HF ViTForImageClassification ("vit.encoder.layer.3.attention.
// attention.query.weight" <-> "blk.3.attn_q.weight"). pare-only tensors (shortcuts) keep their
// flat name prefixed "pare.". Returns "" when the name is not part of the layout.
std::string vit_hf_name(const std::string& flat);
std::string vit_flat_name(const std::string& hf);

}  // namespace pare
