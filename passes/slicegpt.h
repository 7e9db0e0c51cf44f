// slicegpt: SliceGPT rotation slicing (Ashkboos et al., ICLR 2024, arXiv 2401.15024).
#pragma once

#include "pipeline/pass.h"

namespace pare {

struct SliceGptOptions {
  double slicing = 0.25;   // fraction of the hidden dimension removed, in [0, 1)
  int64_t round_to = 8;    // sliced width rounded down to a multiple of this (reference: 8)
  bool slice_head = false; // also slice the classifier's input (reference keeps it)
  double damping = 0.01;   // fraction of mean(diag C) added to C's diagonal
  // Finished layers are written to an unlinked scratch file in this folder and memory-mapped back
  // (src/ir/spill.h), so only the layer being sliced stays in anonymous memory. Empty: keep them in
  // memory.
  std::string spill_dir;
  // Calibration windows (images) per forward batch; 0: the pipeline's batch size. The float64
  // forward's temporaries (attention scores, MLP activations) scale with it, the results do not.
  int64_t calibration_batch = 0;
  // dtype of the layer being sliced and of the calibration forward: "float64" (default, as the
  // tests' Python reference) or "float32" (half the memory: the layer stays in its stored dtype
  // when that is float32; the SliceGPT reference runs this forward in the model's own dtype).
  // The covariance and PCA are float64 either way.
  std::string precision = "float64";
};

// Folds every LayerNorm into the adjacent linears (float64 inside) so the model becomes a
// weightless RMSNorm model with identical outputs (SliceGPT §3.2; METHODS.md). Idempotent for
// models already folded.
void fold_layernorms(Model& m);

// Width kept for a slicing ratio: floor((1 - slicing)·D) rounded down to a multiple of round_to
// (never below round_to, never above D; slicing 0 keeps D).
int64_t sliced_width(int64_t hidden, double slicing, int64_t round_to);

// Runs SliceGPT layer by layer on calibration inputs (images [n, C, H, W] for vit, token ids
// [n, T] for decoder LMs): only the current layer is converted to float64, and the calibration
// activations of the current residual site are the only other large state. Returns notes: per
// site the kept width and fraction of calibration variance kept; "memory": the peak RSS of the
// call (bytes, -1 where /proc cannot reset it), the largest layer's weights and the activation
// bytes. Throws InputError for a gps model (BatchNorm in the residual stream).
nlohmann::json slice_gpt(Model& m, const torch::Tensor& calibration, const SliceGptOptions& o,
                         int64_t batch_size, const std::function<void(const std::string&)>& log);

void register_slicegpt(PassTable& t);

}  // namespace pare
