// The weight-only quantized Linear form (issue 5) and the family-independent checkpoint helpers
// that let load_model build it from any checkpoint pare writes, without a registration step.
// The algorithms that choose the codes (round-to-nearest, GPTQ: Frantar, Ashkboos, Hoefler,
// Alistarh, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers",
// ICLR 2023, arXiv 2210.17323) and the `quantize` pass live in quantize/.
//
// Format. A weight W [out, in] is stored as unsigned integer codes c in [0, 2^bits − 1], one float32
// scale s per output row and group of g input columns (g = group_size, or in when group_size is
// 0: per output channel), and a zero point z per row and group:
//     W[r, k] ≈ (c[r, k] − z[r, k / g]) · s[r, k / g]
// Symmetric: z = 2^(bits−1) implicitly, s = max|w| / (2^(bits−1) − 1) over the group. Asymmetric:
// z stored as uint8 in [0, 2^bits − 1] ("qzeros"). Codes are packed in uint8: 8 bits one per byte;
// 4 bits two per byte, the even column in the low nibble (byte = c[2j] | c[2j+1] << 4).
//
// Stored tensors (LinearForm::tensors(), checkpoint parts "SLOT.<part>"): "qweight" uint8
// [out, in·bits/8], "scales" float32 [out, in/g], "qzeros" uint8 [out, in/g] (asymmetric only),
// "bias" [out] when present. config.json's pare.quantization lists the format of every quantized
// slot (ArchConfig::quantized), which fixes every shape.
//
// Forward: y = x · dequant(W)ᵀ + b in x's dtype. Two modes, same result up to float rounding:
// kChunked dequantizes kChunkElems weights (a block of output rows) at a time and multiplies
// into the matching columns of y (transient memory bounded by 64 KiB of float32 whatever the
// layer size); kWhole dequantizes the whole matrix then calls one GEMM. Default: kWhole, by the
// measurement of `pare bench quantize` (results/quantize.md, models/vit-fmnist, 2 threads, layers
// of at most 256 × 256): chunked was 1.11–1.19× slower than whole at batch 1 and 0.96× / 1.49× at
// batch 256 (one GEMM reads the activations once instead of once per chunk). Chunked is the mode
// for layers whose dequantized matrix would not fit in cache or memory.
//
// FLOPs: a quantized linear performs the same multiply-accumulates as the dense one
// (macs_per_row = out·in; dequantization is not counted). num_params counts the logical weights
// (out·in) plus the bias; scales and zero points are storage (they show in checkpoint bytes).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/config.h"
#include "ir/linear.h"

namespace pare {

// Packs codes [out, in] (integers in [0, 2^bits − 1], any integer dtype) into uint8
// [out, in·bits/8] as described above. bits: 4 or 8; in must be even for 4 bits.
// InternalError on a violated precondition (callers validate user input first).
torch::Tensor pack_codes(const torch::Tensor& codes, int64_t bits);
// Inverse of pack_codes: uint8 [out, in·bits/8] -> uint8 codes [out, in].
torch::Tensor unpack_codes(const torch::Tensor& packed, int64_t bits);

class QuantLinear : public LinearForm {
 public:
  enum class Mode { kChunked, kWhole };
  static constexpr int64_t kChunkElems = 16384;  // weights dequantized at once in kChunked

  // qweight uint8 [out, in·bits/8]; scales float [out, in/g] (stored as float32); qzeros uint8
  // [out, in/g] when !spec.symmetric (undefined otherwise); bias [out] or undefined.
  // InternalError when the shapes or dtypes disagree with `spec` (load paths check first).
  QuantLinear(QuantSlot spec, torch::Tensor qweight, torch::Tensor scales, torch::Tensor qzeros,
              torch::Tensor bias);
  // Builds the form from unpacked codes [out, in] (values in [0, 2^bits − 1]).
  static std::shared_ptr<QuantLinear> from_codes(QuantSlot spec, const torch::Tensor& codes,
                                                 torch::Tensor scales, torch::Tensor qzeros,
                                                 torch::Tensor bias);

  std::string kind() const override { return "quantized"; }
  torch::Tensor forward(const torch::Tensor& x) const override;
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return qweight.size(0); }
  int64_t macs_per_row() const override { return out_features() * in_; }
  int64_t num_params() const override;
  std::map<std::string, torch::Tensor> tensors() const override;
  std::shared_ptr<LinearForm> clone() const override;
  // Converts the bias only: codes stay uint8 and scales stay float32 (the forward casts the
  // dequantized weights to the input's dtype, so a float64 model still computes in float64).
  void to_dtype(torch::ScalarType dtype) override;

  int64_t group() const { return spec.group_size == 0 ? in_ : spec.group_size; }
  // Dequantized weights of output rows [row0, row0 + rows): float32 [rows, in].
  torch::Tensor dequantize_rows(int64_t row0, int64_t rows) const;
  torch::Tensor dequantize() const { return dequantize_rows(0, out_features()); }  // [out, in]
  // Zero points as float [rows, in/g] (the implicit 2^(bits−1) when symmetric).
  torch::Tensor zeros_rows(int64_t row0, int64_t rows) const;

  QuantSlot spec;
  torch::Tensor qweight;  // uint8 [out, in·bits/8]
  torch::Tensor scales;   // float32 [out, in/g]
  torch::Tensor qzeros;   // uint8 [out, in/g] (asymmetric) or undefined
  torch::Tensor bias;     // [out] or undefined
  Mode mode = Mode::kWhole;  // not stored; see the header comment

 private:
  int64_t in_ = 0;
};

// ---- checkpoint helpers (family-independent) -----------------------------------------------------

// The stored parts of a quantized slot whose dtype is uint8 ("qweight", "qzeros").
bool is_quant_code_part(const std::string& part);
// True for the parts a quantized slot stores ("qweight", "scales", "qzeros").
bool is_quant_part(const std::string& part);

// Rewrites a family's dense expected shapes (`expected`: flat name -> shape, with "SLOT.weight"
// [out, in] for every linear slot) for the quantized slots of `c`: "SLOT.weight" is replaced by
// "SLOT.qweight" [out, in·bits/8], "SLOT.scales" [out, in/g] and, asymmetric, "SLOT.qzeros"
// [out, in/g]. InputError (prefixed by `context`) naming the slot when a slot in c.quantized is not
// one of `linear_slots`, when its group size does not divide its input width, or when 4-bit codes
// would need an odd width.
void apply_quantized_shapes(const ArchConfig& c, const std::vector<std::string>& linear_slots,
                            std::map<std::string, std::vector<int64_t>>& expected,
                            const std::string& context);

// Takes the parts of linear slot `slot` out of `flat` (flat names "SLOT.weight", "SLOT.qweight",
// ..., already checked against the shapes of apply_quantized_shapes) and builds its form: a
// QuantLinear when c.quantized lists the slot, a DenseLinear otherwise.
std::shared_ptr<LinearForm> take_linear_form(const ArchConfig& c, const std::string& slot,
                                             std::map<std::string, torch::Tensor>& flat);

}  // namespace pare
