#include "tasks/lm_eval.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>

#include "base/error.h"

namespace pare {

torch::Tensor token_windows(const torch::Tensor& tokens, int64_t seq_len, int64_t max_windows,
                            const std::string& source) {
  PARE_CHECK(seq_len >= 2, source, ": sequence length must be at least 2, got ", seq_len);
  PARE_CHECK(tokens.dim() == 1, source, ": expected a 1-D token sequence");
  int64_t n = tokens.numel() / seq_len;
  PARE_CHECK(n >= 1, source, ": ", tokens.numel(), " tokens are fewer than one window of ",
             seq_len, " tokens; use a longer text or a shorter --seq-len");
  if (max_windows >= 0) n = std::min(n, max_windows);
  return tokens.narrow(0, 0, n * seq_len).view({n, seq_len}).to(torch::kLong);
}

torch::Tensor calibration_windows(const torch::Tensor& tokens, int64_t samples, int64_t seq_len,
                                  uint64_t seed, const std::string& source) {
  PARE_CHECK(samples >= 1, source, ": calibration samples must be positive, got ", samples);
  PARE_CHECK(tokens.dim() == 1 && tokens.numel() > seq_len, source, ": ", tokens.numel(),
             " tokens are too few for calibration windows of ", seq_len, " tokens");
  torch::Generator gen = at::detail::createCPUGenerator(seed);
  torch::Tensor starts = torch::randint(tokens.numel() - seq_len + 1, {samples}, gen, torch::kLong);
  torch::Tensor offs = starts.unsqueeze(1) + torch::arange(seq_len, torch::kLong).unsqueeze(0);
  return tokens.to(torch::kLong).index({offs});
}

LmEvalResult evaluate_lm(const Model& m, const torch::Tensor& windows, int64_t batch_size,
                         const Model* reference) {
  c10::InferenceMode guard;  // no autograd, no view/version tracking
  LmEvalResult r;
  r.windows = windows.size(0);
  r.seq_len = windows.size(1);
  r.has_reference = reference != nullptr;
  double nll_sum = 0, kl_sum = 0;
  int64_t agree = 0;
  for (int64_t i = 0; i < r.windows; i += batch_size) {
    torch::Tensor ids = windows.narrow(0, i, std::min(batch_size, r.windows - i));
    auto t0 = std::chrono::steady_clock::now();
    torch::Tensor logits = m.forward(ids);
    r.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t T = ids.size(1);
    torch::Tensor logp = at::log_softmax(logits.narrow(1, 0, T - 1).to(torch::kFloat64), -1);
    torch::Tensor target = ids.narrow(1, 1, T - 1).unsqueeze(-1);
    nll_sum -= logp.gather(-1, target).sum().item<double>();
    if (reference) {
      torch::Tensor ref = at::log_softmax(reference->forward(ids).narrow(1, 0, T - 1).to(torch::kFloat64), -1);
      kl_sum += (ref.exp() * (ref - logp)).sum().item<double>();
      agree += (ref.argmax(-1) == logp.argmax(-1)).sum().item<int64_t>();
    }
  }
  r.predicted = r.windows * (r.seq_len - 1);
  r.nll = nll_sum / static_cast<double>(r.predicted);
  PARE_CHECK(std::isfinite(r.nll), "the model's log-probabilities are not finite (NaN or inf ",
             "weights or activations); perplexity is undefined");
  r.perplexity = std::exp(r.nll);
  r.tokens_per_second = r.seconds > 0 ? static_cast<double>(r.windows * r.seq_len) / r.seconds : 0;
  if (reference) {
    r.kl = kl_sum / static_cast<double>(r.predicted);
    r.top1 = static_cast<double>(agree) / static_cast<double>(r.predicted);
  }
  return r;
}

std::vector<int64_t> greedy_generate(const Model& m, std::vector<int64_t> ids, int64_t max_new,
                                     int64_t eos) {
  c10::InferenceMode guard;
  PARE_CHECK(!ids.empty(), "greedy decoding needs at least one prompt token (e.g. BOS)");
  for (int64_t i = 0; i < max_new; ++i) {
    if (m.config.max_position_embeddings > 0 &&
        static_cast<int64_t>(ids.size()) >= m.config.max_position_embeddings)
      break;
    torch::Tensor in = torch::tensor(ids, torch::kLong).unsqueeze(0);
    torch::Tensor logits = m.forward(in);
    const int64_t next = logits.select(1, logits.size(1) - 1).argmax(-1).item<int64_t>();
    ids.push_back(next);
    if (next == eos) break;
  }
  return ids;
}

}  // namespace pare
