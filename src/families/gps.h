// The gps family: GraphGPS (Rampášek et al., "Recipe for a General, Powerful, Scalable Graph
// Transformer", NeurIPS 2022, §3 and github.com/rampasek/GraphGPS) in eval mode, in pare's model
// IR, and its checkpoints (pare's folder format and GraphGym/GraphGPS `.ckpt` files).
//
// Forward on a GraphBatch (graph_data.h; PyG layout: nodes of all graphs concatenated):
//   embed      node encoder (TypeDictNode | OGB Atom | LinearNode) of width d − dim_pe(LapPE) −
//              dim_pe(RWSE), then LapPE (DeepSet) and RWSE (BatchNorm over K, Linear K → dim_pe)
//              concatenated in that order; edge encoder (TypeDictEdge | OGB Bond) of width d.
//   attention  (GPSLayer, first half) h_local = Norm(h + MPNN(h, e)) (GatedGCN: its own residual,
//              and e is updated); h_attn = Norm(h + MHA(h over each graph's nodes)); h = h_local +
//              h_attn (either may be absent: local/global model None).
//   mlp        h = Norm(h + W2·ReLU(W1·h)), d → 2d → d.
//   head       SANGraphHead: add/mean/max pooling per graph, Linear d → d/2, ReLU, ..., → out.
// Norm: BatchNorm1d with running statistics (eps = layer_norm_eps, 1e-5), or PyG LayerNorm in
// graph mode (statistics over all nodes and channels of each graph).
// MPNNs (messages flow edge_index[0] = source j → edge_index[1] = target i):
//   GINE  nn((1 + ε)·x_i + Σ_j ReLU(x_j + e_ji)), nn = Linear-ReLU-Linear; ε a stored buffer.
//   GIN   nn((1 + ε)·x_i + Σ_j x_j).
//   CustomGatedGCN  ê_ij = D x_i + E x_j + C e_ij, σ = sigmoid(ê), x_i' = A x_i + Σ_j σ⊙B x_j /
//         (Σ_j σ + 1e-6); x' = x + ReLU(BN(x_i')), e' = e + ReLU(BN(ê)).
// Hooks: kResidual fires with the node features [N, d] at site 2l (layer input), 2l+1 (MLP input)
// and 2L (head input); kAttnProbs with [G, heads, n_max, n_max] (padded keys get probability 0,
// padded query rows are discarded); kLogits with [G, out].
//
// Slots (canonical flat names): node_embd.I [vocab_I, d_node] | node_lin; edge_embd.I [vocab_I, d];
// rwse_norm.{weight,bias,running_mean,running_var} [K], rwse_lin [dim_pe, K]; lappe_norm.* [k],
// lappe_A [., 2], lappe_enc.J; per layer blk.N.local_nn0, blk.N.local_nn2, blk.N.local_eps [1]
// (GINE/GIN) or blk.N.local_A..local_E, blk.N.local_bn_x.*, blk.N.local_bn_e.* (GatedGCN);
// blk.N.attn_q/attn_k/attn_v/attn_o; blk.N.norm_local.*, blk.N.norm_attn.*, blk.N.norm_ffn.*;
// blk.N.ffn_up, blk.N.ffn_down; head.0 .. head.{head_layers-1}. Dimension groups: blk.N.heads
// (Q/K/V rows, O columns, in head_dim blocks) and blk.N.ffn. No residual ("hidden") group:
// BatchNorm in the residual stream is not rotation-invariant, so SliceGPT does not apply.
//
// Checkpoint names are GraphGym's state_dict names without the "model." prefix
// (layers.N.self_attn.in_proj_weight [3·inner, d] = Q, K, V rows fused; out_proj; norm1_local,
// norm1_attn, norm2; ff_linear1/2; local_model.nn.0/2, local_model.eps, local_model.A..E,
// bn_node_x, bn_edge_e; encoder.node_encoder[.encoder1].encoder | .atom_embedding_list.I,
// encoder.node_encoder.encoder2|3.{raw_norm, pe_encoder, linear_A};
// encoder.edge_encoder.encoder | .bond_embedding_list.I; post_mp.FC_layers.I), so
// GPSModel.load_state_dict reads pare's safetensors. BatchNorm's num_batches_tracked is dropped on
// load and not written (PyTorch's BatchNorm fills it in on load_state_dict; it only matters for
// momentum=None training).
#pragma once

#include <map>
#include <string>

#include "families/family.h"

namespace pare {

const Family& gps_family();

// A gps ArchConfig with GraphGPS's fixed choices filled in (family gps, BatchNorm, eps 1e-5, ReLU,
// FFN 2d); the caller sets the sizes, encoders and task, then calls finalize().
ArchConfig gps_default_config();

// True when `path` is a GraphGym/GraphGPS checkpoint: a `.ckpt` file, or a folder without
// config.json that holds a GraphGym config.yaml.
bool is_graphgym_checkpoint(const std::string& path);

// Loads a GraphGym/GraphGPS checkpoint: a `.ckpt` written by torch.save({'model_state', ...})
// (GraphGym's save_ckpt) with its config.yaml in the same folder or one or two folders up
// (GraphGym keeps OUT/config.yaml and OUT/SEED/ckpt/EPOCH.ckpt); or a folder holding config.yaml
// and the .ckpt files in it, in ckpt/ or in SEED/ckpt/ (one such folder only; the highest epoch
// there is taken, as GraphGym resumes). Read with the restricted unpickler (torch_pickle.h: runs
// no code). Throws InputError naming the file and key: config.yaml keys pare does not support
// (gt.layer_type other than {GINE, GIN, CustomGatedGCN, None}+{Transformer, None}, gnn.head other
// than san_graph, gnn.layers_pre_mp > 0, encoders with BatchNorm, RWSE models other than Linear,
// LapPE other than DeepSet without post layers, EquivStableLapPE/SignNet), every tensor whose
// shape disagrees with the config ("tensor 'model.layers.0.ff_linear1.weight': expected [64, 32],
// got [32, 16]"), missing and unexpected tensors.
Model load_graphgym_checkpoint(const std::string& path);

// The architecture described by GraphGym config.yaml `yaml_path`, completed from the checkpoint's
// model_state tensors `state` (names with the "model." prefix) where config.yaml cannot be trusted:
// GraphGym dumps config.yaml before the data set sets share.dim_in / share.dim_out, so the output
// width is read from the head's last weight and LinearNode's input width from its weight.
ArchConfig gps_config_from_graphgym(const std::string& yaml_path,
                                    const std::map<std::string, torch::Tensor>& state);
// Builds the model from GraphGym model_state tensors (names with the "model." prefix;
// num_batches_tracked dropped). Errors name `source` and the "model."-prefixed key.
Model gps_from_graphgym_state(const ArchConfig& c, std::map<std::string, torch::Tensor> state,
                              const std::string& source);

}  // namespace pare
