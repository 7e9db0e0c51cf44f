// Forward pieces shared by the families (vit, decoder LMs): norms, residual updates with SliceGPT
// shortcut matrices, parameter counting by name prefix.
#pragma once

#include <torch/types.h>

#include <array>
#include <string>

#include "families/model.h"

namespace pare {

// The model's norm over the last axis of x [..., d]:
//   layernorm       (x - mean) / sqrt(var + eps) · γ + β   (SLOT.weight, SLOT.bias)
//   rmsnorm_affine  x · rsqrt(mean(x²) + eps) · γ         (SLOT.weight; Llama RMSNorm, computed
//                   in float32 or wider and cast back, as Hugging Face does)
//   rmsnorm         x · rsqrt(Σx²/hidden_size + eps)       (folded by SliceGPT: no weight, and
//                   hidden_size stays the normaliser after slicing, SliceGPT §3.2)
torch::Tensor apply_norm(const Model& m, const std::string& slot, const torch::Tensor& x);

// Residual update: x·S + out with a SliceGPT shortcut S [d_in, d_out] (one GEMM accumulating into
// out), x + out without shortcuts. x [B, T, d_in], out [B, T, d_out].
torch::Tensor add_residual(const Model& m, const std::string& shortcut, const torch::Tensor& x,
                           const torch::Tensor& out);

// Parameters under a name prefix: plain tensors by numel, linear slots by num_params (a quantized
// slot counts its logical weights, not its packed codes and scales).
int64_t params_under(const Model& m, const std::string& prefix);

// The residual dimension groups from each site's uses (`site_uses[s]`, s = 0 .. 2L): one
// "hidden" group over every use without SliceGPT shortcuts, else one "resid.S" group per site.
// `parallel_blocks` skips the odd sites between attention and MLP (phi), which do not exist.
std::vector<DimGroup> residual_groups(const ArchConfig& c,
                                      const std::vector<std::vector<TensorUse>>& site_uses,
                                      bool parallel_blocks);

// Encoder blocks (vit, bert) with separate Q/K/V/O and a two-matrix FFN:
// the linear slots blk.L.{attn_q,attn_k,attn_v,attn_o} (when the layer has its attention branch)
// and blk.L.{ffn_up,ffn_down} (when it has its FFN) of every layer, appended to `slots`;
// and the per-layer dimension groups "blk.L.heads" (Q/K/V rows and their biases, O columns, in
// blocks of head_dim) and "blk.L.ffn" (ffn_up rows and bias, ffn_down columns).
void append_encoder_block_slots(const ArchConfig& c, std::vector<std::string>& slots);

// Q, K and V of encoder block `b` ("blk.L.", vit and bert) for its input h [.., d]: one GEMM on
// the concatenated weights when all three are dense float32, no gradient is wanted and h has at
// least 512 rows (h packed once instead of three times, and a 3x wider product: a 12,800 x 128
// input at 2 threads, 11.0 -> 7.9 ms; at batch 1, 50 rows, concatenating the weights costs more
// than it saves), returned as views of that [.., 3C] product, which the fused attention reads in
// place; otherwise three products. Same values up to float32 rounding in the GEMM's blocking.
std::array<torch::Tensor, 3> encoder_qkv_projection(const Model& m, const std::string& b, const torch::Tensor& h);
void append_encoder_block_groups(const ArchConfig& c, std::vector<DimGroup>& groups);

// Checkpoint loading, shared by the families' from_checkpoint: a tensor's dtype must be U8 for
// packed quantization codes (`part` qweight/qzeros) and floating otherwise (InputError naming
// `src` and the checkpoint name `name`).
void check_checkpoint_dtype(const torch::Tensor& t, const std::string& part, const std::string& src,
                            const std::string& name);
// Throws InputError listing (the first 8 of) the missing and the unexpected checkpoint names,
// then builds the model: every linear slot's form from `flat`, the rest as plain tensors.
Model assemble_model(const ArchConfig& c, const std::vector<std::string>& linear_slots,
                     std::map<std::string, torch::Tensor> flat, const std::vector<std::string>& missing,
                     const std::vector<std::string>& unknown, const std::string& src);

}  // namespace pare
