// Weight quantizers: round-to-nearest (RTN) and GPTQ (Frantar, Ashkboos, Hoefler, Alistarh,
// "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers",
// ICLR 2023, arXiv 2210.17323, Algorithm 1 and §4 "Step 1–3"), producing the codes, scales and
// zero points of the QuantLinear format (src/ir/quant_linear.h: W ≈ (c − z)·s per output row and
// group of g input columns, codes in [0, 2^bits − 1]).
//
// Grid of a group (fit_grid), from the weights w of one row over the group's columns:
//   symmetric:  s = max|w| / (2^(bits−1) − 1),  z = 2^(bits−1)
//   asymmetric: s = (max(w, 0) − min(w, 0)) / (2^bits − 1),  z = round(−min(w, 0) / s)
// (s = 1 when the group is all zeros; s is rounded to float32 before the codes are computed, so
// the stored scale reproduces them exactly). Codes: c = clamp(round(w / s) + z, 0, 2^bits − 1)
// (round half to even). RTN applies this to every group of the original weights, so
// |w − (c − z)·s| ≤ s/2.
#pragma once

#include <memory>

#include "ir/quant_linear.h"

namespace pare {

// Codes and grid of one weight matrix W [out, in] in a QuantSlot format; G = in / g groups.
struct QuantizedWeight {
  torch::Tensor codes;   // uint8 [out, in], values in [0, 2^bits − 1]
  torch::Tensor scales;  // float32 [out, G]
  torch::Tensor zeros;   // uint8 [out, G] (symmetric: every entry 2^(bits−1))
  // (c − z)·s as float64 [out, in].
  torch::Tensor dequantized(int64_t group_size) const;
  // The QuantLinear form (packs the codes; drops the implicit zero points when symmetric).
  std::shared_ptr<QuantLinear> form(const QuantSlot& spec, torch::Tensor bias) const;
};

// Grid per row of w [..., k] over its last axis: scale and zero point float64 [...] (see above).
struct Grid {
  torch::Tensor scale, zero;
};
Grid fit_grid(const torch::Tensor& w, const QuantSlot& spec);
// Codes float64 of w [..., k] on a grid broadcast over the last axis ([...] -> [..., 1]).
torch::Tensor grid_codes(const torch::Tensor& w, const Grid& g, int64_t bits);

// Round-to-nearest on the original weights W [out, in] (any floating dtype). InputError when the
// group size does not divide in.
QuantizedWeight rtn_quantize(const torch::Tensor& W, const QuantSlot& spec);

struct GptqOptions {
  double damping = 0.01;     // λ = damping · mean(diag H) added to diag H (paper: percdamp)
  bool act_order = false;    // quantize columns in decreasing diag(H) order (static groups)
  int64_t block_size = 128;  // lazy-batch block B (paper §4 Step 2)
};

// GPTQ of W [out, in] with Hessian H = 2XᵀX [in, in] (X the calibration inputs of the layer,
// rows = tokens). Dead columns (diag H = 0) get H_ii = 1 and W[:, i] = 0; H += λI; the upper
// Cholesky factor U of H⁻¹ drives the column-by-column error feedback
//   err = (w_j − q_j) / U_jj,  W[:, j:] −= err · U[j, j:]
// within blocks of block_size columns, and W[:, block end:] −= Err · U[block, block end:] after
// each block. Groups (g < in): the grid of a group is fit when its first column is reached, on
// the weights as updated by every error so far; with act_order the columns run in decreasing
// diag(H) order and the groups are static (fit on the original weights, the group of a column is
// its original index / g). Per channel (g = in): one grid per row from the original weights.
// The result does not depend on the scale of H. InputError when the group size does not divide
// in, H is not [in, in], or H + λI is not positive definite (raise damping).
QuantizedWeight gptq_quantize(const torch::Tensor& W, const torch::Tensor& H, const QuantSlot& spec,
                              const GptqOptions& o);

}  // namespace pare
