// Measurements of decoder language models: perplexity exactly as SliceGPT reports it, fidelity to
// a reference model (mean KL divergence per token and top-1 agreement, as llama.cpp's
// perplexity --kl-divergence reports quantization damage), greedy decoding, and forward
// throughput in tokens per second.
//
// Perplexity (SliceGPT, Ashkboos et al. 2024, §4 "Setup"; their code's evaluate_ppl): the test
// text is tokenised once (with the tokenizer's BOS in front when it has one), cut into
// non-overlapping windows of `seq_len` tokens (a trailing partial window is dropped), each window
// run on its own, and perplexity = exp(mean NLL) over every predicted token (seq_len − 1 per
// window: position t predicts token t+1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "families/model.h"

namespace pare {

struct LmEvalResult {
  double perplexity = 0;
  double nll = 0;               // mean negative log-likelihood per predicted token (nats)
  int64_t predicted = 0;        // tokens scored: windows × (seq_len − 1)
  int64_t windows = 0, seq_len = 0;
  double seconds = 0;           // forward passes only
  double tokens_per_second = 0; // windows × seq_len / seconds
  bool has_reference = false;
  double kl = 0;                // mean KL(P_reference ‖ P_model) per predicted token (nats)
  double top1 = 0;              // share of predicted tokens where both argmaxes agree, [0, 1]
};

// Non-overlapping windows [n, seq_len] of a 1-D token tensor (trailing partial window dropped);
// at most `max_windows` (all when < 0). InputError when not even one window fits.
torch::Tensor token_windows(const torch::Tensor& tokens, int64_t seq_len, int64_t max_windows,
                            const std::string& source);

// `samples` windows of seq_len tokens starting at uniformly drawn offsets (seeded): SliceGPT's
// calibration set from a training text. [samples, seq_len] int64.
torch::Tensor calibration_windows(const torch::Tensor& tokens, int64_t samples, int64_t seq_len,
                                  uint64_t seed, const std::string& source);

// Perplexity of `m` on `windows` [n, T] in batches; with `reference`, also KL and top-1
// agreement of m against it on the same tokens.
LmEvalResult evaluate_lm(const Model& m, const torch::Tensor& windows, int64_t batch_size,
                         const Model* reference = nullptr);

// Greedy decoding without a cache: appends the argmax token `max_new` times (stops after `eos`
// when eos >= 0). Returns prompt + generated ids.
std::vector<int64_t> greedy_generate(const Model& m, std::vector<int64_t> prompt, int64_t max_new,
                                     int64_t eos = -1);

}  // namespace pare
