#include "weights.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "base/error.h"

namespace pare::masks {

namespace {

// Flattened per-slot tensors, concatenated in slot order, and their split back.
torch::Tensor concat_flat(const std::vector<torch::Tensor>& parts) {
  std::vector<torch::Tensor> flat;
  for (const auto& p : parts) flat.push_back(p.reshape({-1}));
  return torch::cat(flat);
}

}  // namespace

WeightMasks::WeightMasks(Model& m, std::vector<std::string> slots, GmpSchedule schedule)
    : slots_(std::move(slots)), schedule_(schedule) {
  PARE_CHECK(!slots_.empty(), "weight masks: expected at least one linear slot");
  const GmpSchedule& s = schedule_;
  PARE_CHECK(s.initial >= 0 && s.final <= 1 && s.initial <= s.final, "weight masks: sparsities ", s.initial,
             " -> ", s.final, ": expected 0 <= initial <= final <= 1");
  PARE_CHECK(s.end >= s.start && s.every >= 1, "weight masks: schedule steps ", s.start, " -> ", s.end,
             " every ", s.every, ": expected end >= start and every >= 1");
  std::set<std::string> seen;
  for (const std::string& slot : slots_) {
    PARE_CHECK(seen.insert(slot).second, "weight masks: slot '", slot, "' given twice");
    const torch::Tensor& w = m.dense(slot).weight;  // InputError for an unknown or non-dense slot
    masks_[slot] = torch::ones(w.sizes(), w.options().dtype(torch::kFloat32));
  }
}

double WeightMasks::sparsity_at(int64_t step) const {
  const GmpSchedule& s = schedule_;
  if (step < s.start) return s.initial;
  if (step >= s.end) return s.final;
  const int64_t t = s.start + (step - s.start) / s.every * s.every;  // the last pruning step
  const double left = 1.0 - double(t - s.start) / double(s.end - s.start);
  return s.final + (s.initial - s.final) * left * left * left;
}

void WeightMasks::prune_to(Model& m, double sparsity) {
  PARE_CHECK(sparsity >= 0 && sparsity <= 1, "weight masks: sparsity ", sparsity, ": expected [0, 1]");
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> scores;
  for (const std::string& slot : slots_) {
    const torch::Tensor mask = masks_.at(slot);
    const torch::Tensor a = m.dense(slot).weight.detach().abs().to(torch::kFloat64);
    scores.push_back(torch::where(mask > 0, a, torch::full({}, -1.0, a.options())));  // pruned first
  }
  const torch::Tensor flat = concat_flat(scores);
  const int64_t total = flat.numel();
  const int64_t k = std::clamp<int64_t>(std::llround(sparsity * double(total)), 0, total);
  const torch::Tensor order = std::get<1>(flat.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
  torch::Tensor keep = torch::ones({total}, flat.options().dtype(torch::kFloat32));
  keep.index_fill_(0, order.slice(0, 0, k), 0.0);
  int64_t at = 0;
  just_pruned_.clear();
  for (const std::string& slot : slots_) {
    torch::Tensor& mask = masks_.at(slot);
    const torch::Tensor next = keep.slice(0, at, at + mask.numel()).view(mask.sizes()).clone();
    at += mask.numel();
    just_pruned_[slot] = (mask > 0).logical_and(next == 0);
    mask = next;
  }
  apply(m);
}

void WeightMasks::prune_nm(Model& m, int n, int M) {
  PARE_CHECK(n >= 1 && M >= 1 && n <= M, "weight masks: ", n, ":", M, " sparsity: expected 1 <= n <= M");
  torch::NoGradGuard ng;
  for (const std::string& slot : slots_) {
    const torch::Tensor w = m.dense(slot).weight.detach();
    PARE_CHECK(w.size(1) % M == 0, "weight masks: slot '", slot, "' has ", w.size(1),
               " in-features, not a multiple of M = ", M, " (", n, ":", M, " sparsity)");
  }
  just_pruned_.clear();
  for (const std::string& slot : slots_) {
    const torch::Tensor w = m.dense(slot).weight.detach();
    const torch::Tensor groups = w.abs().to(torch::kFloat32).view({w.size(0), w.size(1) / M, M});
    const torch::Tensor order = std::get<1>(groups.sort(/*stable=*/true, /*dim=*/2, /*descending=*/true));
    masks_[slot] = torch::zeros_like(groups).scatter_(2, order.narrow(2, 0, n), 1.0).view(w.sizes());
  }
  apply(m);
}

void WeightMasks::regrow(Model& m, const std::map<std::string, torch::Tensor>& grads, double fraction) {
  PARE_CHECK(fraction >= 0 && fraction <= 1, "weight masks: regrowth fraction ", fraction, ": expected [0, 1]");
  torch::NoGradGuard ng;
  std::vector<std::string> slots;
  std::vector<torch::Tensor> scores;
  int64_t count = 0;
  for (const std::string& slot : slots_) {
    auto jp = just_pruned_.find(slot);
    if (jp == just_pruned_.end()) continue;
    const int64_t c = jp->second.sum().item<int64_t>();
    if (c == 0) continue;
    auto g = grads.find(slot);
    PARE_CHECK(g != grads.end() && g->second.defined(), "weight masks: regrowth needs the gradient of slot '",
               slot, "'");
    PARE_CHECK(g->second.sizes() == jp->second.sizes(), "weight masks: gradient of slot '", slot, "' is ",
               g->second.sizes(), ", expected ", jp->second.sizes());
    const torch::Tensor a = g->second.detach().abs().to(torch::kFloat64).to(jp->second.device());
    scores.push_back(torch::where(jp->second, a, torch::full({}, -1.0, a.options())));
    slots.push_back(slot);
    count += c;
  }
  const int64_t r = std::llround(fraction * double(count));
  if (r == 0) return;
  const torch::Tensor flat = concat_flat(scores);
  const torch::Tensor order = std::get<1>(flat.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  torch::Tensor grow = torch::zeros({flat.numel()}, torch::dtype(torch::kBool).device(flat.device()));
  grow.index_fill_(0, order.slice(0, 0, r), true);
  int64_t at = 0;
  for (const std::string& slot : slots) {
    torch::Tensor& mask = masks_.at(slot);
    const torch::Tensor g = grow.slice(0, at, at + mask.numel()).view(mask.sizes());
    at += mask.numel();
    mask.masked_fill_(g, 1.0);
    just_pruned_.at(slot).masked_fill_(g, false);
  }
  apply(m);  // revived weights restart from 0 (they already are)
}

void WeightMasks::apply(Model& m) const {
  torch::NoGradGuard ng;
  for (const auto& [slot, mask] : masks_) {
    torch::Tensor& w = m.dense(slot).weight;
    w.mul_(mask.to(w.device(), w.scalar_type()));
  }
}

void WeightMasks::mask_gradients(Model& m) const {
  torch::NoGradGuard ng;
  for (const auto& [slot, mask] : masks_) {
    torch::Tensor& w = m.dense(slot).weight;
    if (w.grad().defined()) w.mutable_grad().mul_(mask.to(w.grad().device(), w.grad().scalar_type()));
  }
}

double WeightMasks::density() const {
  double kept = 0, all = 0;
  for (const auto& [slot, mask] : masks_) {
    kept += mask.sum().item<double>();
    all += double(mask.numel());
  }
  return all > 0 ? kept / all : 1.0;
}

}  // namespace pare::masks
