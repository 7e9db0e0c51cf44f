#include "groups.h"

#include "base/error.h"

namespace pare::masks {

std::string kind_name(MaskGroupKind k) {
  switch (k) {
    case MaskGroupKind::kHeads: return "heads";
    case MaskGroupKind::kFfnChannels: return "ffn-channels";
    case MaskGroupKind::kAttnBranch: return "attn-branch";
    case MaskGroupKind::kFfnBranch: return "ffn-branch";
  }
  return "?";
}

MaskSet::MaskSet() : masks_(std::make_shared<std::map<std::pair<int, int64_t>, torch::Tensor>>()) {}

void MaskSet::set(MaskGroupKind kind, int64_t layer, torch::Tensor mask) {
  PARE_CHECK(mask.defined() && mask.dim() == 1, "mask ", kind_name(kind), " layer ", layer,
             ": expected a 1-D mask");
  (*masks_)[{static_cast<int>(kind), layer}] = std::move(mask);
}

void MaskSet::erase(MaskGroupKind kind, int64_t layer) { masks_->erase({static_cast<int>(kind), layer}); }

const torch::Tensor* MaskSet::find(MaskGroupKind kind, int64_t layer) const {
  auto it = masks_->find({static_cast<int>(kind), layer});
  return it == masks_->end() ? nullptr : &it->second;
}

size_t MaskSet::size() const { return masks_->size(); }

size_t MaskSet::attach(Model& m) const {
  auto masks = masks_;
  m.hooks.observers.push_back([masks](HookPoint p, int64_t l, torch::Tensor& t) {
    MaskGroupKind kind;
    switch (p) {
      case HookPoint::kHeadContext: kind = MaskGroupKind::kHeads; break;
      case HookPoint::kFfnHidden: kind = MaskGroupKind::kFfnChannels; break;
      case HookPoint::kAttnBranch: kind = MaskGroupKind::kAttnBranch; break;
      case HookPoint::kFfnBranch: kind = MaskGroupKind::kFfnBranch; break;
      default: return;
    }
    auto it = masks->find({static_cast<int>(kind), l});
    if (it == masks->end()) return;
    // The shapes come from the activation itself (heads·head_dim, intermediate size), so the hook
    // holds no reference to the model it was attached to.
    const torch::Tensor& z = it->second;
    const int64_t width = t.size(-1);
    if (kind == MaskGroupKind::kHeads) {
      const int64_t heads = z.size(0);
      PARE_CHECK(heads > 0 && width % heads == 0, "mask heads layer ", l, ": ", heads,
                 " entries do not split a context of width ", width, " into heads");
      std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end() - 1);
      shape.push_back(heads);
      shape.push_back(width / heads);
      t = (t.reshape(shape) * z.to(t.dtype()).unsqueeze(1)).reshape(t.sizes());
    } else if (kind == MaskGroupKind::kFfnChannels) {
      PARE_CHECK(z.size(0) == width, "mask ffn-channels layer ", l, ": ", z.size(0),
                 " entries for an FFN of width ", width);
      t = t * z.to(t.dtype());
    } else {
      PARE_CHECK(z.size(0) == 1, "mask ", kind_name(kind), " layer ", l, ": expected one entry, got ", z.size(0));
      t = t * z.to(t.dtype());
    }
  });
  return m.hooks.observers.size() - 1;
}

}  // namespace pare::masks
