// A model family: slot layout, dimension groups, forward, costs and checkpoint names.
//
// The forward is split into embed → (attention, mlp) per layer → head so that layer-by-layer
// passes (SliceGPT, GPTQ) can run one sub-block at a time on calibration activations without
// copying model code. Families register in family_registry().
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

#include "base/error.h"
#include "families/model.h"

namespace pare {

struct GraphBatch;  // graph_data.h

// Activations flowing between sub-blocks: the residual stream x [B, T, d_site], plus what a
// family's embed() prepares for every layer (decoder LMs: RoPE tables, the causal mask) and what
// a parallel block (phi) hands from its attention to its MLP half.
//
// Graph families (gps) run on a GraphBatch: x is then the node features [N, d] of all graphs of
// the batch concatenated (PyG layout), and embed_graph() also prepares the per-batch tensors below.
struct ForwardState {
  torch::Tensor x;
  torch::Tensor rope_cos, rope_sin;  // [T, rotary_dim] (RoPE families)
  torch::Tensor causal_mask;         // [T, T] additive: 0 on and below the diagonal, -inf above
  torch::Tensor block_in, attn_out;  // parallel blocks: norm output and attention output
  // Graph inputs (gps): the batch (owned by the caller for the whole forward), the edge features
  // [E, d] (GatedGCN layers update them), each node's row in the padded per-graph layout
  // [G * n_max] (int64 [N]) and the additive key padding mask [G, 1, 1, n_max] (0 for a node,
  // -inf for padding) of the global attention.
  const GraphBatch* graph = nullptr;
  torch::Tensor edge_attr;
  torch::Tensor dense_index;
  torch::Tensor key_padding;
  // Node pruning (gps): the rows of x that still take part in the global attention (int64 [N'],
  // ascending; undefined: all). dense_index and key_padding then describe these rows' layout.
  torch::Tensor attn_nodes;
  // Learned node steps under a keep mask (HookPoint::kTokenScores): the mask values [N'] of the
  // attending nodes, multiplied into their attention outputs (undefined: none).
  torch::Tensor attn_gate;
  // Text encoders (bert, families/bert.h): where each sequence's tokens are, int64 CPU [B]. Packed
  // layout: x is [N, d] and sequence b is rows [seq_starts[b], seq_starts[b] + seq_lengths[b]).
  // Padded layout: x is [B, T, d], seq_starts[b] = b·T, and key_padding is the additive key mask
  // [B, 1, 1, T] (0 for a token, the lowest float for padding; undefined when no row is padded).
  torch::Tensor seq_starts, seq_lengths;
  bool packed = false;
};

// Analytic cost of one row of the per-layer table. FLOPs = 2 × multiply-accumulates of every
// matmul (linears, shortcut matrices, attention QKᵀ and AV) for one input; norms, softmax,
// activations, bias and residual adds are not counted. With token pruning each sub-block counts
// the tokens it actually runs on, plus the multiply-accumulates of choosing them.
struct CostRow {
  std::string name;  // "embeddings", "blk.0", ..., "head"
  int64_t params = 0;
  int64_t flops = 0;
  int64_t heads = 0, head_dim = 0, intermediate_size = 0, attn_in = 0, mlp_in = 0;
  int64_t tokens = 0;      // tokens entering the block
  int64_t tokens_out = 0;  // tokens after its token-pruning step (= tokens without one)
};

class Family {
 public:
  virtual ~Family() = default;
  virtual std::string name() const = 0;
  // Expected shape of every flat tensor for `c` (plain tensors and linear parts).
  virtual std::map<std::string, std::vector<int64_t>> expected_shapes(const ArchConfig& c) const = 0;
  virtual std::vector<std::string> linear_slots(const ArchConfig& c) const = 0;
  // Fresh weights (trainer): seeded.
  virtual Model init(const ArchConfig& c, uint64_t seed) const = 0;
  virtual std::vector<DimGroup> dim_groups(const Model& m) const = 0;

  virtual ForwardState embed(const Model& m, const torch::Tensor& inputs) const = 0;
  virtual void attention(const Model& m, int64_t layer, ForwardState& s) const = 0;
  virtual void mlp(const Model& m, int64_t layer, ForwardState& s) const = 0;
  virtual torch::Tensor head(const Model& m, ForwardState& s) const = 0;
  torch::Tensor forward(const Model& m, const torch::Tensor& inputs) const;

  // Graph inputs (gps): embed_graph prepares the state from a batch (InputError for families that
  // take tensors); forward_graph runs embed_graph, attention and mlp per layer and head, giving
  // the logits [G, num_labels]. `batch` must outlive the returned state.
  virtual ForwardState embed_graph(const Model& m, const GraphBatch& batch) const {
    (void)m;
    (void)batch;
    throw InputError(concat("family ", name(), " does not take graph inputs"));
  }
  torch::Tensor forward_graph(const Model& m, const GraphBatch& batch) const;

  // Stored tensors that are state, not trained parameters (BatchNorm running statistics, GINE's
  // fixed eps): not counted as parameters by costs(), not for an optimiser.
  virtual bool is_buffer(const std::string& flat) const {
    (void)flat;
    return false;
  }

  virtual std::vector<CostRow> costs(const Model& m) const = 0;

  // Checkpoint names (Hugging Face for vit) <-> flat names, with layout conversion.
  virtual std::map<std::string, torch::Tensor> to_checkpoint(const Model& m) const = 0;
  // Builds the model from checkpoint tensors; every tensor is checked against the config
  // (InputError names `source`, the key, expected and actual shape; missing/unknown keys listed).
  virtual Model from_checkpoint(const ArchConfig& c, std::map<std::string, torch::Tensor> t,
                                const std::string& source) const = 0;
};

const Family& family_by_name(const std::string& name);  // InputError when unknown

}  // namespace pare
