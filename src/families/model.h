// The model IR: a config, one store of named slots, coupled dimension groups, hooks.
//
// Slots have canonical names ("blk.3.attn_q", "pos_embd", ...). Linear slots hold a LinearForm;
// every other weight is a plain tensor. Flat names address single tensors: a linear's parts are
// "SLOT.weight" / "SLOT.bias"; plain tensors are stored under their flat name.
//
// Dimension groups (DESIGN.md) declare coupled axes: every use of a group is edited at once by the
// Rewriter, which also updates the per-layer dimensions in the config, so shapes and config can
// not drift apart. verify() lists every mismatch between the tensors and the config.
#pragma once

#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/config.h"
#include "ir/linear.h"

namespace pare {

class SpillFile;

// Points in the forward where hooks observe (and may steer) activations.
enum class HookPoint {
  kResidual,   // residual stream at a site before its norm, [B, T, d]; index = site
  kAttnProbs,  // attention probabilities of a layer, [B, H, T, T]; index = layer
  kLogits,     // model output [B, labels]; index = 0
  // Where masks/ gates what it may remove (index = layer; [.., C] is [B, T, C] for token models,
  // [N, C] for graph models, over the rows that run):
  kHeadContext,  // each head's context vector before the output projection, [.., heads·head_dim]
  kFfnHidden,    // the FFN's activation before ffn_down, [.., intermediate_size]
  kAttnBranch,   // the attention branch's output before its residual add, [.., d]
  kFfnBranch,    // the FFN branch's output before its residual add, [.., d]
  // A learned token-pruning step's candidate scores (ir/config.h TokenPruneStep "learned"), index =
  // layer: vit [B, T − specials]; gps [G, n_max], the padded layout of each graph's attending
  // nodes, -inf at padding. A hook may replace the tensor by a 0/1 keep mask of the same shape
  // with the step's keep count of ones per row (gradients flow through its values, which then
  // multiply the kept tokens' attention outputs); left as it is, the top scores are kept.
  kTokenScores,
};

struct Hooks {
  using Fn = std::function<void(HookPoint, int64_t index, torch::Tensor&)>;
  std::vector<Fn> observers;
  bool empty() const { return observers.empty(); }
  void fire(HookPoint p, int64_t index, torch::Tensor& t) const {
    for (const auto& f : observers) f(p, index, t);
  }
};

// One use of a coupled axis: tensor `name` (flat), axis `axis`, in blocks of `block` elements
// (head_dim for the heads group, 1 otherwise).
struct TensorUse {
  std::string name;
  int64_t axis = 0;
  int64_t block = 1;
  bool is_norm = false;  // a norm's weight/bias: rotation would break it (fold norms first)
};

struct DimGroup {
  enum Kind { kHidden, kSite, kHeads, kKvHeads, kFfn };
  // "hidden", "resid.3", "blk.2.heads", "blk.2.kv_heads" (grouped-query attention: K/V rows;
  // without GQA the heads group holds Q, K, V and O), "blk.2.ffn"
  std::string name;
  Kind kind = kHidden;
  int64_t index = 0;  // site or layer
  int64_t size = 0;   // in units (heads for kHeads)
  std::vector<TensorUse> uses;
};

class Family;

class Model {
 public:
  ArchConfig config;
  std::map<std::string, torch::Tensor> tensors;                  // plain tensors by flat name
  std::map<std::string, std::shared_ptr<LinearForm>> linears;    // linear slots by slot name
  Hooks hooks;

  const Family& family() const;

  bool has(const std::string& flat) const;
  // The tensor at a flat name; linear parts need the dense form (InputError otherwise).
  torch::Tensor& at(const std::string& flat);
  const torch::Tensor& at(const std::string& flat) const;
  const LinearForm& linear(const std::string& slot) const;
  DenseLinear& dense(const std::string& slot);

  // Every stored tensor by flat name (linear parts included).
  std::map<std::string, torch::Tensor> flat_tensors() const;
  int64_t num_params() const;  // buffers (Family::is_buffer) not counted
  // Leaf tensors for training: floating tensors except buffers (BatchNorm running statistics).
  std::vector<torch::Tensor> parameters();
  void set_requires_grad(bool on);
  // Converts floating tensors (and linear forms) to `dtype`; with `prefix`, only those whose flat
  // or slot name starts with it (layer-by-layer passes convert one "blk.N." at a time).
  void to_dtype(torch::ScalarType dtype, const std::string& prefix = "");
  torch::ScalarType dtype() const;
  Model clone() const;  // deep copy (hooks not copied)

  // Shape problems between the tensors and the config (empty when consistent).
  std::vector<std::string> verify() const;
  void verify_or_throw(const std::string& context) const;

  torch::Tensor forward(const torch::Tensor& inputs) const;
};

// The only way to change shapes (DESIGN.md): edits every use of a dimension group at once and
// updates the config.
class Rewriter {
 public:
  explicit Rewriter(Model& m) : m_(m) {}
  std::vector<DimGroup> groups() const;
  DimGroup group(const std::string& name) const;  // InputError when unknown
  // Keeps units `indices` (sorted, unique, in [0, size)) of a group on every use.
  void keep(const std::string& group, const std::vector<int64_t>& indices);
  // T ×_axis Q on every use: new[.., j, ..] = Σ_i T[.., i, ..] Q[i, j]. Q is [size, d]: rotation
  // and slicing in one (d <= size). Readers then compute x Q · (Qᵀ W) = x W. Refuses norm uses.
  // Computed in float64 and stored back in each tensor's own dtype (uses may differ in dtype while
  // a layer-by-layer pass holds one layer in float64).
  void rotate(const std::string& group, const torch::Tensor& Q);
  // Decouples the residual sites: adds identity shortcut matrices ("blk.N.attn_shortcut"
  // [attn_in, mlp_in], "blk.N.ffn_shortcut" [mlp_in, next]) so each site can be rotated alone.
  // Parallel blocks (phi) get only "blk.N.ffn_shortcut" [attn_in, next]: one update per layer.
  void add_shortcuts();
  // Removes the attention branch (`branch` = "attention") or the FFN branch ("ffn") of `layer`
  // (vit, bert, gps; masks/ materialisation): every tensor and linear slot the branch owned goes and
  // the config records that the layer lacks it (LayerDims::attention / ffn; heads or
  // intermediate_size become 0), so costs() and num_params() drop it. InputError naming the
  // layer when the family has no such branch, it is already gone, or a token-pruning step sits
  // in the layer's attention.
  void remove_branch(int64_t layer, const std::string& branch);
  // Deletes `layer` once both its branches are gone (vit, bert: the layer is then the identity);
  // later layers move down (blk.N+1 → blk.N, config and token-pruning steps renumbered).
  // InputError when a branch remains, the family is not vit or bert, shortcut matrices are present, or
  // it is the last layer left.
  void remove_layer(int64_t layer);

  // Where rotate() puts every result of 1 MiB or more and add_shortcuts() its identity
  // matrices; null: in memory. A layer-by-layer pass sets its scratch file here: rotate() then
  // writes each result there in chunks of at most 2M elements, drops it from memory
  // (SpillFile::release) and pages the source out (page_out), so no weight is resident twice.
  SpillFile* scratch = nullptr;

 private:
  void apply_size(const DimGroup& g, int64_t size);
  Model& m_;
};

// Expands unit indices to element indices for a block size.
torch::Tensor expand_block_indices(const std::vector<int64_t>& units, int64_t block);

}  // namespace pare
