#include "tokens.h"

#include <ATen/CPUGeneratorImpl.h>

#include <limits>

#include "base/error.h"
#include "families/token_pruning.h"
#include "gates.h"

namespace pare::masks {

TokenGate::TokenGate(uint64_t seed, double tau) : state_(std::make_shared<State>()) {
  PARE_CHECK(tau > 0, "token gate: tau must be positive, got ", tau);
  state_->tau = tau;
  state_->gen = at::make_generator<at::CPUGeneratorImpl>(seed);
}

size_t TokenGate::attach(Model& m) const {
  auto st = state_;
  const ArchConfig* c = &m.config;  // read at every call: a schedule may change the keep counts
  m.hooks.observers.push_back([st, c](HookPoint p, int64_t l, torch::Tensor& t) {
    if (p != HookPoint::kTokenScores || !st->training) return;
    const TokenPruneStep* step = c->prune_step(l);
    const bool graph = c->is_graph();
    const int64_t specials = c->special_tokens();
    PARE_ASSERT(step && step->method == "learned", "token scores fired at layer ", l,
                " without a learned step");
    const torch::Tensor valid = t.detach() > -std::numeric_limits<double>::infinity();
    const torch::Tensor n = valid.sum(1).cpu();
    torch::Tensor k = torch::empty({t.size(0)}, torch::kInt64);
    for (int64_t r = 0; r < t.size(0); ++r)
      k[r] = graph ? graph_keep(*step, n[r].item<int64_t>()) : step->keep - specials;
    // straight_through_topk reads scores only where valid; padding at -inf is replaced by 0
    // so the soft relaxation stays finite.
    const torch::Tensor scores = t.masked_fill(valid.logical_not(), 0.0);
    t = straight_through_topk(scores, valid, k, /*training=*/true, &st->gen, st->tau);
    st->offered += n.sum().item<int64_t>();
    st->kept += k.sum().item<int64_t>();
  });
  return m.hooks.observers.size() - 1;
}

}  // namespace pare::masks
