// Mask groups: per-layer masks applied to a model through its forward hooks (families/model.h
// HookPoint), never by copying model code (issue 19, masks/ item 2). A mask is a float tensor in
// [0, 1] (a gate's output: masks/gates.h), multiplied into what it gates:
//   kHeads        [heads] per layer: each head's context vector before the output projection
//                 (HookPoint::kHeadContext, [.., heads·head_dim] viewed [.., heads, head_dim]); a
//                 closed head then contributes only the output projection's bias, which its
//                 deletion keeps (the Rewriter removes the head's Q/K/V rows and O columns).
//   kFfnChannels  [intermediate_size] per layer: the FFN activation before ffn_down (kFfnHidden).
//   kAttnBranch   [1] per layer: the attention branch's output before its residual add
//                 (kAttnBranch; GraphGPS: the global attention's, as DropPath gates it).
//   kFfnBranch    [1] per layer: the FFN branch's output before its residual add (kFfnBranch).
// Masks are kept by the MaskSet and read at every forward, so a training loop can replace them
// each step (a gate sample) and evaluation can set the deterministic ones.
#pragma once

#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "families/model.h"

namespace pare::masks {

enum class MaskGroupKind { kHeads, kFfnChannels, kAttnBranch, kFfnBranch };

std::string kind_name(MaskGroupKind k);  // "heads", "ffn-channels", "attn-branch", "ffn-branch"

class MaskSet {
 public:
  MaskSet();
  // Sets the mask of (kind, layer), checked against the activation when applied: InputError
  // naming the group and layer when its length does not split the context into heads, is not the
  // FFN width, or (branches) is not 1.
  void set(MaskGroupKind kind, int64_t layer, torch::Tensor mask);
  void erase(MaskGroupKind kind, int64_t layer);
  const torch::Tensor* find(MaskGroupKind kind, int64_t layer) const;
  size_t size() const;
  // Adds the hook that applies the masks to `m` (m.hooks); the hook shares this set's masks, so
  // later set() calls take effect at the next forward. Returns the hook's position in
  // m.hooks.observers.
  size_t attach(Model& m) const;

 private:
  std::shared_ptr<std::map<std::pair<int, int64_t>, torch::Tensor>> masks_;
};

}  // namespace pare::masks
