#include "gates.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "base/error.h"

namespace pare::masks {

HardConcrete::HardConcrete(int64_t n, double init_open, double beta_, double gamma_, double zeta_)
    : beta(beta_), gamma(gamma_), zeta(zeta_) {
  PARE_CHECK(n >= 1, "hard-concrete: expected at least one gate, got ", n);
  PARE_CHECK(init_open > 0 && init_open < 1, "hard-concrete: init_open must be in (0, 1), got ", init_open);
  PARE_CHECK(beta > 0 && gamma < 0 && zeta > 1, "hard-concrete: expected beta > 0, gamma < 0, zeta > 1, got ",
             beta, ", ", gamma, ", ", zeta);
  // σ(log α − β log(−γ/ζ)) = init_open.
  const double la = std::log(init_open / (1 - init_open)) + beta * std::log(-gamma / zeta);
  log_alpha = torch::full({n}, la, torch::kFloat32).set_requires_grad(true);
}

torch::Tensor HardConcrete::sample(torch::Generator& gen) const {
  // u in (0, 1) strictly: log u and log(1 − u) finite.
  torch::Tensor u = torch::rand(log_alpha.sizes(), gen, torch::kFloat32).clamp(1e-6, 1 - 1e-6);
  torch::Tensor s = torch::sigmoid((torch::log(u) - torch::log1p(-u) + log_alpha) / beta);
  return (s * (zeta - gamma) + gamma).clamp(0.0, 1.0);
}

torch::Tensor HardConcrete::deterministic() const {
  return (torch::sigmoid(log_alpha) * (zeta - gamma) + gamma).clamp(0.0, 1.0);
}

torch::Tensor HardConcrete::expected_open() const {
  return torch::sigmoid(log_alpha - beta * std::log(-gamma / zeta));
}

AnnealedSigmoid::AnnealedSigmoid(int64_t n, double init_score, double t_start, double t_end, int64_t steps)
    : t_start_(t_start), t_end_(t_end), t_(t_start), steps_(steps) {
  PARE_CHECK(n >= 1, "annealed sigmoid: expected at least one gate, got ", n);
  PARE_CHECK(t_start > 0 && t_end > 0, "annealed sigmoid: temperatures must be positive, got ", t_start,
             " and ", t_end);
  PARE_CHECK(steps >= 1, "annealed sigmoid: steps must be at least 1, got ", steps);
  scores = torch::full({n}, init_score, torch::kFloat32).set_requires_grad(true);
}

void AnnealedSigmoid::set_step(int64_t step) {
  const double f = double(std::min(std::max<int64_t>(step, 0), steps_)) / double(steps_);
  t_ = t_start_ * std::pow(t_end_ / t_start_, f);
}

torch::Tensor AnnealedSigmoid::soft() const { return torch::sigmoid(scores / t_); }

torch::Tensor AnnealedSigmoid::deterministic() const { return (scores > 0).to(torch::kFloat32); }

torch::Tensor straight_through_topk(const torch::Tensor& scores, const torch::Tensor& valid,
                                    const torch::Tensor& k, bool training, torch::Generator* gen,
                                    double tau) {
  PARE_CHECK(scores.dim() == 2, "top-k gate: scores must be [rows, n], got ", scores.sizes());
  const int64_t R = scores.size(0), n = scores.size(1);
  PARE_CHECK(!valid.defined() || (valid.sizes() == scores.sizes() && valid.scalar_type() == torch::kBool),
             "top-k gate: valid must be a bool tensor of the scores' shape ", scores.sizes());
  PARE_CHECK(k.dim() == 1 && k.size(0) == R, "top-k gate: k must be [", R, "], got ", k.sizes());
  PARE_CHECK(tau > 0, "top-k gate: tau must be positive, got ", tau);
  torch::Tensor kk = k.to(torch::kLong);
  PARE_CHECK(R == 0 || kk.min().item<int64_t>() >= 0, "top-k gate: k must be >= 0");
  const torch::Tensor ok = valid.defined() ? valid : torch::ones({R, n}, torch::kBool);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  torch::Tensor s = scores.to(torch::kFloat32);
  torch::Tensor perturbed = s;
  if (training) {
    PARE_CHECK(gen, "top-k gate: training needs a generator");
    torch::Tensor u = torch::rand({R, n}, *gen, torch::kFloat32).clamp(1e-6, 1 - 1e-6);
    perturbed = s - torch::log(-torch::log(u));  // + Gumbel(0, 1)
  }
  // Hard top-k per row over the valid entries (a stable sort: ties go to the lower position).
  torch::Tensor ranked = perturbed.detach().masked_fill(~ok, neg_inf);
  torch::Tensor order = std::get<1>(ranked.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
  torch::Tensor count = ok.sum(1);
  torch::Tensor keep_n = torch::minimum(kk, count);  // [R]
  torch::Tensor rank_keep = torch::arange(n, torch::kLong).unsqueeze(0) < keep_n.unsqueeze(1);  // [R, n]
  torch::Tensor hard = torch::zeros({R, n}, torch::kFloat32).scatter(1, order, rank_keep.to(torch::kFloat32));
  if (!training || !scores.requires_grad()) return hard;
  // Straight-through: forward value `hard`, gradient of k·softmax over the valid entries.
  // (A large finite negative, not −inf, for invalid entries: a row without any valid entry would
  // give NaN, and NaN gradients, otherwise; they are zeroed after.)
  torch::Tensor soft = torch::softmax((perturbed / tau).masked_fill(~ok, -1e30), 1) *
                       keep_n.unsqueeze(1).to(torch::kFloat32);
  soft = soft.masked_fill(~ok, 0.0);
  return (soft - soft.detach()) + hard;  // (s − s) is exactly 0: the forward value is exactly `hard`
}

}  // namespace pare::masks
