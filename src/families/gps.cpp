// The gps family (GraphGPS, Rampášek et al., NeurIPS 2022): slots, forward on graph batches,
// costs, pare's checkpoint names (GraphGym's without "model.") and GraphGym `.ckpt` import.
// The layer follows graphgps/layer/gps_layer.py (GPSLayer.forward in eval mode), the MPNNs PyG's
// GINEConv / GINConv and graphgps/layer/gatedgcn_layer.py, the encoders
// graphgps/encoder/{type_dict,kernel_pos,laplace_pos,linear_node}_encoder.py and OGB's
// Atom/BondEncoder, the head graphgps/head/san_graph.py. See gps.h for the formulas and names.
#include "families/gps.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <limits>
#include <regex>

#include "families/attention.h"
#include "families/blocks.h"
#include "base/error.h"
#include "data/graph_data.h"
#include "ir/quant_linear.h"
#include "base/recipe.h"
#include "families/token_pruning.h"
#include "io/torch_pickle.h"

namespace fs = std::filesystem;

namespace pare {

namespace {

using Shape = std::vector<int64_t>;

// OGB's categorical feature sizes (ogb.utils.features get_atom_feature_dims /
// get_bond_feature_dims), which fix the embedding tables of the Atom and Bond encoders.
const std::vector<int64_t> kAtomVocab{119, 5, 12, 12, 10, 6, 6, 2, 2};
const std::vector<int64_t> kBondVocab{5, 6, 2};

std::string blk(int64_t l) { return "blk." + std::to_string(l) + "."; }
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool has_local(const ArchConfig& c) { return c.gps.local_model != "None"; }
bool has_global(const ArchConfig& c) { return c.gps.global_model != "None"; }
bool gated(const ArchConfig& c) { return c.gps.local_model == "CustomGatedGCN"; }
bool has_pe(const ArchConfig& c) { return c.gps.rwse_steps > 0 || c.gps.lappe_k > 0; }
int64_t node_width(const ArchConfig& c) { return c.hidden_size - c.gps.rwse_dim - c.gps.lappe_dim; }
// Output width of LapPE's linear_A: dim_pe with one DeepSet layer, 2·dim_pe otherwise.
int64_t lappe_hidden(const ArchConfig& c) {
  return c.gps.lappe_layers == 1 ? c.gps.lappe_dim : 2 * c.gps.lappe_dim;
}

const char* const kGatedSlots[] = {"local_A", "local_B", "local_C", "local_D", "local_E"};
const char* const kBnParts[] = {"weight", "bias", "running_mean", "running_var"};

void add_norm(std::map<std::string, Shape>& e, const std::string& slot, int64_t n, bool batchnorm) {
  for (const char* p : kBnParts) {
    if (!batchnorm && std::string(p).rfind("running", 0) == 0) continue;
    e[slot + "." + p] = {n};
  }
}

void add_linear(std::map<std::string, Shape>& e, const std::string& slot, int64_t out, int64_t in) {
  e[slot + ".weight"] = {out, in};
  e[slot + ".bias"] = {out};
}

// Flat-name prefix <-> checkpoint-name prefix (GraphGym's state_dict names without "model."),
// for every slot and tensor group of `c`. Q/K/V are fused on save (in_proj_weight/in_proj_bias);
// their per-slot names here serve quantized forms, which cannot be fused.
std::vector<std::pair<std::string, std::string>> name_table(const ArchConfig& c) {
  const GpsConfig& g = c.gps;
  std::vector<std::pair<std::string, std::string>> t;
  const std::string enc = "encoder.node_encoder";
  const std::string np = has_pe(c) ? enc + ".encoder1" : enc;
  if (g.node_encoder == "TypeDictNode") t.push_back({"node_embd.0", np + ".encoder.weight"});
  if (g.node_encoder == "Atom")
    for (size_t i = 0; i < g.node_vocab.size(); ++i)
      t.push_back({"node_embd." + std::to_string(i),
                   np + ".atom_embedding_list." + std::to_string(i) + ".weight"});
  if (g.node_encoder == "LinearNode") t.push_back({"node_lin", np + ".encoder"});
  int next = 2;
  if (g.lappe_k > 0) {
    const std::string lp = enc + ".encoder" + std::to_string(next++);
    t.push_back({"lappe_norm", lp + ".raw_norm"});
    t.push_back({"lappe_A", lp + ".linear_A"});
    for (int64_t j = 0; j + 1 < g.lappe_layers; ++j)
      t.push_back(
          {"lappe_enc." + std::to_string(j), lp + ".pe_encoder." + std::to_string(2 * j + 1)});
  }
  if (g.rwse_steps > 0) {
    const std::string rp = enc + ".encoder" + std::to_string(next++);
    t.push_back({"rwse_norm", rp + ".raw_norm"});
    t.push_back({"rwse_lin", rp + ".pe_encoder"});
  }
  if (g.edge_encoder == "TypeDictEdge")
    t.push_back({"edge_embd.0", "encoder.edge_encoder.encoder.weight"});
  if (g.edge_encoder == "Bond")
    for (size_t i = 0; i < g.edge_vocab.size(); ++i)
      t.push_back({"edge_embd." + std::to_string(i),
                   "encoder.edge_encoder.bond_embedding_list." + std::to_string(i) + ".weight"});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string b = blk(l), L = "layers." + std::to_string(l) + ".";
    t.push_back({b + "local_nn0", L + "local_model.nn.0"});
    t.push_back({b + "local_nn2", L + "local_model.nn.2"});
    t.push_back({b + "local_eps", L + "local_model.eps"});
    for (const char* s : kGatedSlots)
      t.push_back({b + s, L + "local_model." + std::string(s).substr(6)});
    t.push_back({b + "local_bn_x", L + "local_model.bn_node_x"});
    t.push_back({b + "local_bn_e", L + "local_model.bn_edge_e"});
    t.push_back({b + "attn_q", L + "self_attn.q_proj"});
    t.push_back({b + "attn_k", L + "self_attn.k_proj"});
    t.push_back({b + "attn_v", L + "self_attn.v_proj"});
    t.push_back({b + "attn_o", L + "self_attn.out_proj"});
    t.push_back({b + "norm_local", L + "norm1_local"});
    t.push_back({b + "norm_attn", L + "norm1_attn"});
    t.push_back({b + "norm_ffn", L + "norm2"});
    t.push_back({b + "ffn_up", L + "ff_linear1"});
    t.push_back({b + "ffn_down", L + "ff_linear2"});
    t.push_back({b + "token_score", "pare." + L + "token_score"});  // GTSP's node scorer
  }
  for (int64_t i = 0; i < g.head_layers; ++i)
    t.push_back({"head." + std::to_string(i), "post_mp.FC_layers." + std::to_string(i)});
  return t;
}

// Maps `name` through the table from one side to the other ("" when nothing matches): an entry
// matches the whole name or a prefix followed by '.'.
std::string translate(const std::vector<std::pair<std::string, std::string>>& table,
                      const std::string& name, bool to_checkpoint) {
  for (const auto& [flat, ck] : table) {
    const std::string& from = to_checkpoint ? flat : ck;
    const std::string& to = to_checkpoint ? ck : flat;
    if (name == from) return to;
    if (name.size() > from.size() && name.compare(0, from.size(), from) == 0 &&
        name[from.size()] == '.')
      return to + name.substr(from.size());
  }
  return "";
}

// ---- forward pieces
// ------------------------------------------------------------------------------

// BatchNorm1d over axis 1 of x ([rows, C] or [rows, C, L]): running statistics in eval mode; with
// gps.training (the trainer) the batch's statistics (biased variance), and the running ones
// updated in place as torch.nn.BatchNorm1d(momentum=0.1) does (unbiased variance).
torch::Tensor gps_batch_norm(const Model& m, const std::string& slot, const torch::Tensor& x) {
  if (x.size(0) == 0) return x;
  return at::batch_norm(x, m.at(slot + ".weight"), m.at(slot + ".bias"),
                        m.at(slot + ".running_mean"), m.at(slot + ".running_var"),
                        /*training=*/m.config.gps.training, 0.1, m.config.layer_norm_eps,
                        /*cudnn_enabled=*/false);
}

// Each node's row in the padded per-graph layout [G * n_max] (PyG to_dense_batch): batch [N] is
// the graph of each node, ptr [G + 1] the first node of each graph.
torch::Tensor dense_index_of(const torch::Tensor& batch, const torch::Tensor& ptr, int64_t n_max) {
  return batch * n_max + (at::arange(batch.size(0), batch.options()) - ptr.index_select(0, batch));
}

// Node counts per graph [G] (int64) from the batch's ptr.
torch::Tensor graph_sizes(const GraphBatch& b) {
  return b.ptr.slice(0, 1) - b.ptr.slice(0, 0, b.ptr.size(0) - 1);
}

// The layer norm of the model: BatchNorm (eval) or PyG LayerNorm in graph mode: per graph,
// mean and variance over all its nodes and channels, then a per-channel affine map.
torch::Tensor gps_norm(const Model& m, const std::string& slot, const torch::Tensor& x,
                       const ForwardState& s) {
  if (m.config.norm == "batchnorm") return gps_batch_norm(m, slot, x);
  const GraphBatch& b = *s.graph;
  const int64_t G = b.num_graphs;
  torch::Tensor batch = b.batch.to(x.device());
  torch::Tensor count =
      (graph_sizes(b).to(x.device()).to(x.scalar_type()) * x.size(1)).unsqueeze(1);
  torch::Tensor mean =
      at::zeros({G, x.size(1)}, x.options()).index_add_(0, batch, x).sum(1, true) / count;
  torch::Tensor xc = x - mean.index_select(0, batch);
  torch::Tensor var =
      at::zeros({G, x.size(1)}, x.options()).index_add_(0, batch, xc * xc).sum(1, true) / count;
  torch::Tensor inv = (var + m.config.layer_norm_eps).rsqrt().index_select(0, batch);
  return xc * inv * m.at(slot + ".weight") + m.at(slot + ".bias");
}

// Σ_i embedding_i(cat[:, i]) over `tables` columns, checking each index against its vocabulary.
torch::Tensor embed_columns(const Model& m, const std::string& prefix, const torch::Tensor& cat,
                            int64_t columns, const std::vector<int64_t>& vocab, const char* what) {
  torch::Tensor out;
  for (int64_t i = 0; i < columns; ++i) {
    torch::Tensor idx = cat.select(1, i);
    if (idx.numel() > 0) {
      const int64_t lo = idx.min().item<int64_t>(), hi = idx.max().item<int64_t>();
      PARE_CHECK(lo >= 0 && hi < vocab[i], "gps: ", what, " column ", i, " holds category ",
                 lo < 0 ? lo : hi, ", outside the encoder's vocabulary 0..", vocab[i] - 1);
    }
    torch::Tensor e = at::embedding(m.at(prefix + std::to_string(i)), idx);
    out = out.defined() ? out + e : e;
  }
  return out;
}

torch::Tensor lin(const Model& m, const std::string& slot, const torch::Tensor& x) {
  return m.linear(slot).forward(x);
}

class GpsFamily : public Family {
 public:
  std::string name() const override { return "gps"; }

  bool is_buffer(const std::string& flat) const override {
    return ends_with(flat, ".running_mean") || ends_with(flat, ".running_var") ||
           ends_with(flat, ".local_eps");
  }

  std::vector<std::string> linear_slots(const ArchConfig& c) const override {
    const GpsConfig& g = c.gps;
    std::vector<std::string> s;
    if (g.node_encoder == "LinearNode") s.push_back("node_lin");
    if (g.lappe_k > 0) {
      s.push_back("lappe_A");
      for (int64_t j = 0; j + 1 < g.lappe_layers; ++j)
        s.push_back("lappe_enc." + std::to_string(j));
    }
    if (g.rwse_steps > 0) s.push_back("rwse_lin");
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string b = blk(l);
      if (gated(c))
        for (const char* n : kGatedSlots) s.push_back(b + n);
      else if (has_local(c))
        for (const char* n : {"local_nn0", "local_nn2"}) s.push_back(b + n);
      if (has_global(c) && c.layers[l].attention)
        for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_o"}) s.push_back(b + n);
      if (c.layers[l].ffn)
        for (const char* n : {"ffn_up", "ffn_down"}) s.push_back(b + n);
    }
    for (int64_t i = 0; i < g.head_layers; ++i) s.push_back("head." + std::to_string(i));
    return s;
  }

  std::map<std::string, Shape> expected_shapes(const ArchConfig& c) const override {
    const GpsConfig& g = c.gps;
    const int64_t d = c.hidden_size, dn = node_width(c);
    const bool bn = c.norm == "batchnorm";
    std::map<std::string, Shape> e;
    if (g.node_encoder == "LinearNode")
      add_linear(e, "node_lin", dn, g.node_attr_dims);
    else
      for (size_t i = 0; i < g.node_vocab.size(); ++i)
        e["node_embd." + std::to_string(i)] = {g.node_vocab[i], dn};
    if (g.edge_encoder != "None")
      for (size_t i = 0; i < g.edge_vocab.size(); ++i)
        e["edge_embd." + std::to_string(i)] = {g.edge_vocab[i], d};
    if (g.lappe_k > 0) {
      if (g.lappe_raw_norm) add_norm(e, "lappe_norm", g.lappe_k, true);
      add_linear(e, "lappe_A", lappe_hidden(c), 2);
      for (int64_t j = 0; j + 1 < g.lappe_layers; ++j)
        add_linear(e, "lappe_enc." + std::to_string(j),
                   j + 2 < g.lappe_layers ? 2 * g.lappe_dim : g.lappe_dim, 2 * g.lappe_dim);
    }
    if (g.rwse_steps > 0) {
      if (g.rwse_raw_norm) add_norm(e, "rwse_norm", g.rwse_steps, true);
      add_linear(e, "rwse_lin", g.rwse_dim, g.rwse_steps);
    }
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const auto& ld = c.layers[l];
      const std::string b = blk(l);
      if (gated(c)) {
        for (const char* n : kGatedSlots) add_linear(e, b + n, d, d);
        add_norm(e, b + "local_bn_x", d, true);
        add_norm(e, b + "local_bn_e", d, true);
      } else if (has_local(c)) {
        add_linear(e, b + "local_nn0", d, d);
        add_linear(e, b + "local_nn2", d, d);
        e[b + "local_eps"] = {1};
      }
      if (has_local(c)) add_norm(e, b + "norm_local", d, bn);
      if (has_global(c)) {
        const int64_t inner = ld.heads * ld.head_dim;
        if (ld.attention) {
          for (const char* n : {"attn_q", "attn_k", "attn_v"}) add_linear(e, b + n, inner, d);
          add_linear(e, b + "attn_o", d, inner);
        }
        add_norm(e, b + "norm_attn", d, bn);  // without the branch: Norm_attn(h) alone
      }
      if (ld.ffn) {
        add_linear(e, b + "ffn_up", ld.intermediate_size, d);
        add_linear(e, b + "ffn_down", d, ld.intermediate_size);
      }
      add_norm(e, b + "norm_ffn", d, bn);
      if (const TokenPruneStep* st = c.prune_step(l); st && st->method == "learned") {
        e[b + "token_score.weight"] = {d};
        e[b + "token_score.bias"] = {1};
      }
    }
    for (int64_t i = 0; i < g.head_layers; ++i) {
      const int64_t in = d >> i, out = i + 1 == g.head_layers ? c.num_labels : d >> (i + 1);
      add_linear(e, "head." + std::to_string(i), out, in);
    }
    apply_quantized_shapes(c, linear_slots(c), e, "config.json");
    return e;
  }

  Model init(const ArchConfig& c, uint64_t seed) const override {
    // PyTorch's defaults: nn.Linear U(±1/√in) for weight and bias; MultiheadAttention
    // xavier_uniform on the fused in_proj, zero in_proj and out_proj biases; nn.Embedding N(0, 1)
    // (OGB Atom/Bond: xavier_uniform); norms γ = 1, β = 0, running mean 0 / var 1; GINE ε = 0.
    torch::manual_seed(seed);
    Model m;
    m.config = c;
    auto shapes = expected_shapes(c);
    for (const auto& slot : linear_slots(c)) {
      const Shape& ws = shapes.at(slot + ".weight");
      const double bound = 1.0 / std::sqrt(double(std::max<int64_t>(ws[1], 1)));
      torch::Tensor w = torch::empty(ws).uniform_(-bound, bound);
      torch::Tensor bias = torch::empty(shapes.at(slot + ".bias")).uniform_(-bound, bound);
      const bool qkv =
          ends_with(slot, "attn_q") || ends_with(slot, "attn_k") || ends_with(slot, "attn_v");
      if (qkv) {
        const double xb = std::sqrt(6.0 / double(ws[1] + 3 * ws[0]));
        w.uniform_(-xb, xb);
      }
      if (qkv || ends_with(slot, "attn_o")) bias.zero_();
      m.linears[slot] = std::make_shared<DenseLinear>(w, bias);
    }
    const bool xavier_nodes = c.gps.node_encoder == "Atom",
               xavier_edges = c.gps.edge_encoder == "Bond";
    for (const auto& [name, shape] : shapes) {
      if (m.has(name)) continue;
      torch::Tensor t;
      if (ends_with(name, ".weight") || ends_with(name, ".running_var"))
        t = torch::ones(shape);
      else if (ends_with(name, ".bias") || ends_with(name, ".running_mean") ||
               ends_with(name, "local_eps"))
        t = torch::zeros(shape);
      else if ((name.rfind("node_embd.", 0) == 0 && xavier_nodes) ||
               (name.rfind("edge_embd.", 0) == 0 && xavier_edges)) {
        const double xb = std::sqrt(6.0 / double(shape[0] + shape[1]));
        t = torch::empty(shape).uniform_(-xb, xb);
      } else {
        t = torch::randn(shape);
      }
      m.tensors[name] = t;
    }
    return m;
  }

  std::vector<DimGroup> dim_groups(const Model& m) const override {
    const ArchConfig& c = m.config;
    std::vector<DimGroup> groups;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string b = blk(l);
      const auto& d = c.layers[l];
      if (has_global(c) && d.attention) {
        DimGroup heads{b + "heads", DimGroup::kHeads, l, d.heads, {}};
        for (const char* q : {"attn_q", "attn_k", "attn_v"}) {
          heads.uses.push_back({b + q + ".weight", 0, d.head_dim});
          heads.uses.push_back({b + q + ".bias", 0, d.head_dim});
        }
        heads.uses.push_back({b + "attn_o.weight", 1, d.head_dim});
        groups.push_back(heads);
      }
      if (d.ffn)
        groups.push_back(
          {b + "ffn",
           DimGroup::kFfn,
           l,
           d.intermediate_size,
           {{b + "ffn_up.weight", 0}, {b + "ffn_up.bias", 0}, {b + "ffn_down.weight", 1}}});
    }
    return groups;
  }

  ForwardState embed(const Model&, const torch::Tensor&) const override {
    throw InputError(
        "gps: a graph transformer takes graph inputs (a GraphBatch through "
        "Family::forward_graph), not a tensor");
  }

  ForwardState embed_graph(const Model& m, const GraphBatch& b) const override {
    const ArchConfig& c = m.config;
    const GpsConfig& g = c.gps;
    const auto dt = m.dtype();
    PARE_CHECK(b.num_graphs > 0 && b.batch.defined() && b.ptr.defined() && b.num_nodes() > 0,
               "gps: empty graph batch (no graphs or no nodes)");
    const int64_t G = b.num_graphs, N = b.num_nodes();
    PARE_CHECK(b.ptr.dim() == 1 && b.ptr.size(0) == G + 1 && b.ptr[0].item<int64_t>() == 0 &&
                   b.ptr[G].item<int64_t>() == N,
               "gps: batch.ptr must be [G + 1] node offsets from 0 to ", N, ", got ",
               b.ptr.sizes());
    torch::Tensor sizes = graph_sizes(b);
    PARE_CHECK(sizes.min().item<int64_t>() > 0, "gps: graph ",
               (sizes <= 0).nonzero()[0][0].item<int64_t>(), " of the batch has no nodes");
    PARE_CHECK(
        b.batch.dim() == 1 &&
            at::equal(b.batch, at::repeat_interleave(at::arange(G, b.batch.options()), sizes)),
        "gps: batch.batch must list each node's graph in order, consistent with batch.ptr");
    PARE_CHECK(b.edge_index.defined() && b.edge_index.dim() == 2 && b.edge_index.size(0) == 2,
               "gps: batch.edge_index must be [2, E]");
    const int64_t E = b.edge_index.size(1);
    if (E > 0) {
      PARE_CHECK(b.edge_index.min().item<int64_t>() >= 0 && b.edge_index.max().item<int64_t>() < N,
                 "gps: batch.edge_index holds a node id outside 0..", N - 1);
      PARE_CHECK(at::equal(b.batch.index_select(0, b.edge_index[0]),
                           b.batch.index_select(0, b.edge_index[1])),
                 "gps: batch.edge_index has an edge between two different graphs");
    }
    // Node encoder.
    torch::Tensor h;
    if (g.node_encoder == "LinearNode") {
      PARE_CHECK(b.node_attr.defined() && b.node_attr.dim() == 2 && b.node_attr.size(0) == N &&
                     b.node_attr.size(1) == g.node_attr_dims,
                 "gps: the LinearNode encoder needs node_attr [", N, ", ", g.node_attr_dims,
                 "], got ", b.node_attr.defined() ? b.node_attr.sizes() : c10::IntArrayRef{});
      h = lin(m, "node_lin", b.node_attr.to(dt));
    } else {
      const int64_t cols = static_cast<int64_t>(g.node_vocab.size());
      PARE_CHECK(b.node_cat.defined() && b.node_cat.dim() == 2 && b.node_cat.size(0) == N &&
                     (g.node_encoder == "TypeDictNode" ? b.node_cat.size(1) >= 1
                                                       : b.node_cat.size(1) == cols),
                 "gps: the ", g.node_encoder, " encoder needs node_cat [", N, ", ", cols,
                 "] (categorical ", "node features), got ",
                 b.node_cat.defined() ? b.node_cat.sizes() : c10::IntArrayRef{});
      h = embed_columns(m, "node_embd.", b.node_cat, cols, g.node_vocab,
                        "node_cat");  // TypeDict: column 0
    }
    std::vector<torch::Tensor> parts{h};
    if (g.lappe_k > 0) {
      const int64_t k = g.lappe_k;
      PARE_CHECK(b.lap_vec.defined() && b.lap_val.defined() &&
                     b.lap_vec.sizes() == b.lap_val.sizes() && b.lap_vec.dim() == 2 &&
                     b.lap_vec.size(0) == N && b.lap_vec.size(1) == k,
                 "gps: LapPE needs lap_vec and lap_val [", N, ", ", k,
                 "] (compute_lappe with k = ", k, ")");
      // Eigenpairs past a graph's node count are padding (GraphGPS: NaN), zeroed before and after
      // the DeepSet.
      torch::Tensor pad = at::arange(k, b.batch.options()).unsqueeze(0) >=
                          sizes.index_select(0, b.batch).unsqueeze(1);
      torch::Tensor pos =
          at::stack({b.lap_vec.to(dt), b.lap_val.to(dt)}, 2).masked_fill(pad.unsqueeze(2), 0.0);
      if (g.lappe_raw_norm) pos = gps_batch_norm(m, "lappe_norm", pos);
      pos = at::relu(lin(m, "lappe_A", pos));
      for (int64_t j = 0; j + 1 < g.lappe_layers; ++j)
        pos = at::relu(lin(m, "lappe_enc." + std::to_string(j), pos));
      parts.push_back(pos.masked_fill(pad.unsqueeze(2), 0.0).sum(1));
    }
    if (g.rwse_steps > 0) {
      PARE_CHECK(b.rwse.defined() && b.rwse.dim() == 2 && b.rwse.size(0) == N &&
                     b.rwse.size(1) == g.rwse_steps,
                 "gps: RWSE needs rwse [", N, ", ", g.rwse_steps,
                 "] (compute_rwse with K = ", g.rwse_steps, "), got ",
                 b.rwse.defined() ? b.rwse.sizes() : c10::IntArrayRef{});
      torch::Tensor r = b.rwse.to(dt);
      if (g.rwse_raw_norm) r = gps_batch_norm(m, "rwse_norm", r);
      parts.push_back(lin(m, "rwse_lin", r));
    }
    ForwardState s;
    s.graph = &b;
    s.x = parts.size() == 1 ? parts[0] : at::cat(parts, 1);
    if (g.edge_encoder != "None") {
      const int64_t cols = static_cast<int64_t>(g.edge_vocab.size());
      PARE_CHECK(b.edge_cat.defined() && b.edge_cat.dim() == 2 && b.edge_cat.size(0) == E &&
                     (g.edge_encoder == "TypeDictEdge" ? b.edge_cat.size(1) >= 1
                                                       : b.edge_cat.size(1) == cols),
                 "gps: the ", g.edge_encoder, " encoder needs edge_cat [", E, ", ", cols,
                 "] (categorical ", "edge features), got ",
                 b.edge_cat.defined() ? b.edge_cat.sizes() : c10::IntArrayRef{});
      s.edge_attr = embed_columns(m, "edge_embd.", b.edge_cat, cols, g.edge_vocab, "edge_cat");
    }
    // The padded per-graph layout of the global attention (PyG to_dense_batch).
    const int64_t n_max = sizes.max().item<int64_t>();
    s.dense_index = dense_index_of(b.batch, b.ptr, n_max);
    torch::Tensor valid = at::arange(n_max, b.batch.options()).unsqueeze(0) < sizes.unsqueeze(1);
    s.key_padding = at::zeros({G, n_max}, s.x.options())
                        .masked_fill(valid.logical_not(), -std::numeric_limits<double>::infinity())
                        .view({G, 1, 1, n_max});
    return s;
  }

  void attention(const Model& m, int64_t l, ForwardState& s) const override {
    const ArchConfig& c = m.config;
    PARE_CHECK(s.graph,
               "gps: attention() needs the state embed_graph() prepares from graph inputs");
    const std::string b = blk(l);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kResidual, 2 * l, s.x);
    const torch::Tensor h = s.x;
    torch::Tensor out;
    if (has_local(c)) {
      const torch::Tensor& ei = s.graph->edge_index;
      torch::Tensor src = ei[0].to(h.device()), dst = ei[1].to(h.device());
      torch::Tensor hl;
      if (gated(c)) {
        torch::Tensor Ax = lin(m, b + "local_A", h), Bx = lin(m, b + "local_B", h),
                      Ce = lin(m, b + "local_C", s.edge_attr), Dx = lin(m, b + "local_D", h),
                      Ex = lin(m, b + "local_E", h);
        torch::Tensor e_ij = Dx.index_select(0, dst) + Ex.index_select(0, src) + Ce;
        torch::Tensor sigma = at::sigmoid(e_ij);
        torch::Tensor num = at::zeros_like(h).index_add_(0, dst, sigma * Bx.index_select(0, src));
        torch::Tensor den = at::zeros_like(h).index_add_(0, dst, sigma);
        torch::Tensor x = at::relu(gps_batch_norm(m, b + "local_bn_x", Ax + num / (den + 1e-6)));
        hl = h + x;
        s.edge_attr = s.edge_attr + at::relu(gps_batch_norm(m, b + "local_bn_e", e_ij));
      } else {
        torch::Tensor msg = h.index_select(0, src);
        if (c.gps.local_model == "GINE") msg = at::relu(msg + s.edge_attr);
        torch::Tensor z =
            h * (m.at(b + "local_eps") + 1.0) + at::zeros_like(h).index_add_(0, dst, msg);
        hl = h + lin(m, b + "local_nn2", at::relu(lin(m, b + "local_nn0", z)));
      }
      out = gps_norm(m, b + "norm_local", hl, s);
    }
    if (has_global(c)) {
      torch::Tensor ha = gps_norm(
          m, b + "norm_attn", c.layers[l].attention ? h + self_attention(m, l, h, s) : h, s);
      out = out.defined() ? out + ha : ha;
    }
    s.x = out;
  }

  void mlp(const Model& m, int64_t l, ForwardState& s) const override {
    const auto& d = m.config.layers[l];
    const std::string b = blk(l);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kResidual, 2 * l + 1, s.x);
    torch::Tensor f;
    if (!d.ffn) {  // the branch was removed: Norm_ffn(x) alone
      s.x = gps_norm(m, b + "norm_ffn", s.x, s);
      return;
    }
    if (d.intermediate_size == 0) {
      f = m.at(b + "ffn_down.bias").expand_as(s.x);
    } else {
      torch::Tensor hid = at::relu(lin(m, b + "ffn_up", s.x));
      if (!m.hooks.empty()) m.hooks.fire(HookPoint::kFfnHidden, l, hid);
      f = lin(m, b + "ffn_down", hid);
    }
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kFfnBranch, l, f);
    s.x = gps_norm(m, b + "norm_ffn", s.x + f, s);
  }

  torch::Tensor head(const Model& m, ForwardState& s) const override {
    const ArchConfig& c = m.config;
    PARE_CHECK(s.graph, "gps: head() needs the state embed_graph() prepares from graph inputs");
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kResidual, c.num_sites() - 1, s.x);
    const GraphBatch& b = *s.graph;
    const int64_t G = b.num_graphs;
    torch::Tensor batch = b.batch.to(s.x.device());
    torch::Tensor g;
    if (c.gps.pooling == "max") {  // over the padded layout of all nodes, padding at -inf
      int64_t n_max = s.key_padding.size(3);
      torch::Tensor dense_index = s.dense_index;
      if (s.attn_nodes.defined()) {  // the attention's layout covers fewer nodes: rebuild it
        n_max = graph_sizes(b).max().item<int64_t>();
        dense_index = dense_index_of(batch, b.ptr.to(batch.device()), n_max);
      }
      g = at::full({G * n_max, s.x.size(1)}, -std::numeric_limits<double>::infinity(),
                   s.x.options())
              .index_copy_(0, dense_index, s.x)
              .view({G, n_max, s.x.size(1)})
              .amax(1);
    } else {
      g = at::zeros({G, s.x.size(1)}, s.x.options()).index_add_(0, batch, s.x);
      if (c.gps.pooling == "mean")
        g = g / graph_sizes(b).to(g.device()).to(g.scalar_type()).unsqueeze(1);
    }
    for (int64_t i = 0; i < c.gps.head_layers; ++i) {
      g = lin(m, "head." + std::to_string(i), g);
      if (i + 1 < c.gps.head_layers) g = at::relu(g);
    }
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kLogits, 0, g);
    return g;
  }

  std::vector<CostRow> costs(const Model& m) const override {
    // FLOPs per graph at the config's mean nodes n and directed edges E (2 × multiply-accumulates):
    // node-wise linears (encoders, MPNN, FFN) × n, GatedGCN's edge linear C × E, Q/K/V/O × the
    // nodes a in the layer's global attention (a = n without node pruning), attention QKᵀ and AV
    // 2·heads·a²·head_dim (a² at the mean), plus node selection, the head once per graph.
    // Not counted: embedding lookups, message sums, gates, norms, softmax, activations, adds.
    const ArchConfig& c = m.config;
    const GpsConfig& g = c.gps;
    const double n = g.mean_nodes, E = g.mean_edges;
    auto params_of = [&](const std::string& prefix) {
      int64_t p = params_under(m, prefix);
      for (const auto& [name, t] : m.tensors)
        if (name.rfind(prefix, 0) == 0 && is_buffer(name)) p -= t.numel();
      return p;
    };
    auto macs = [&](const std::string& slot) { return double(m.linear(slot).macs_per_row()); };
    std::vector<CostRow> rows;
    CostRow emb{"embeddings"};
    emb.params =
        params_of("node_") + params_of("edge_embd.") + params_of("rwse_") + params_of("lappe_");
    double em = 0;
    if (g.node_encoder == "LinearNode") em += n * macs("node_lin");
    if (g.rwse_steps > 0) em += n * macs("rwse_lin");
    if (g.lappe_k > 0) {
      double per = macs("lappe_A");
      for (int64_t j = 0; j + 1 < g.lappe_layers; ++j)
        per += macs("lappe_enc." + std::to_string(j));
      em += n * double(g.lappe_k) * per;
    }
    emb.flops = std::llround(2 * em);
    emb.attn_in = c.hidden_size;
    emb.tokens = emb.tokens_out = std::llround(n);
    rows.push_back(emb);
    // Node pruning: nodes in each layer's global attention and the multiply-accumulates of
    // choosing them, exact for a graph of integer size (graph_eval averages those), interpolated
    // between the neighbouring sizes for a fractional mean.
    const int64_t L = c.num_hidden_layers;
    auto attending = [&](int64_t nn, std::vector<double>& in, std::vector<double>& sel) {
      in.assign(L, 0), sel.assign(L, 0);
      for (int64_t l = 0; l < L; ++l) {
        in[l] = double(nn);
        if (const TokenPruneStep* st = c.prune_step(l)) {
          const int64_t keep = graph_keep(*st, nn), inner = c.layers[l].heads * c.layers[l].head_dim;
          sel[l] = st->method == "learned"  // the scorer's x·w over the attending nodes
                       ? double(nn * c.hidden_size)
                       : double(selection_macs(*st, nn, keep, graph_similar(*st, nn),
                                               c.layers[l].heads, inner, 0));
          nn = keep;
        }
      }
    };
    std::vector<double> att_in, att_sel;
    {
      const int64_t lo = std::max<int64_t>(1, int64_t(std::floor(n))), hi = int64_t(std::ceil(n));
      std::vector<double> in_hi, sel_hi;
      attending(lo, att_in, att_sel);
      attending(std::max(hi, lo), in_hi, sel_hi);
      const double w = hi > lo ? n - double(lo) : 0.0;
      for (int64_t l = 0; l < L; ++l) {
        att_in[l] += w * (in_hi[l] - att_in[l]);
        att_sel[l] += w * (sel_hi[l] - att_sel[l]);
      }
    }
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const auto& d = c.layers[l];
      const std::string b = blk(l);
      CostRow r{"blk." + std::to_string(l)};
      r.params = params_of(b);
      double mac = 0;
      if (gated(c)) {
        for (const char* s : {"local_A", "local_B", "local_D", "local_E"}) mac += n * macs(b + s);
        mac += E * macs(b + "local_C");
      } else if (has_local(c)) {
        mac += n * (macs(b + "local_nn0") + macs(b + "local_nn2"));
      }
      if (has_global(c) && d.attention) {
        const double a = att_in[l];
        for (const char* s : {"attn_q", "attn_k", "attn_v", "attn_o"}) mac += a * macs(b + s);
        mac += 2.0 * double(d.heads) * a * a * double(d.head_dim) + att_sel[l];
      }
      if (d.ffn) mac += n * (macs(b + "ffn_up") + macs(b + "ffn_down"));
      r.flops = std::llround(2 * mac);
      r.heads = has_global(c) ? d.heads : 0;
      r.head_dim = d.head_dim;
      r.intermediate_size = d.intermediate_size;
      r.attn_in = d.attn_in;
      r.mlp_in = d.mlp_in;
      r.tokens = std::llround(att_in[l]);  // nodes in the global attention
      r.tokens_out = l + 1 < L ? std::llround(att_in[l + 1]) : r.tokens;
      if (l + 1 == L && c.prune_step(l)) r.tokens_out = graph_keep(*c.prune_step(l), r.tokens);
      rows.push_back(r);
    }
    CostRow h{"head"};
    h.params = params_of("head.");
    double hm = 0;
    for (int64_t i = 0; i < g.head_layers; ++i) hm += macs("head." + std::to_string(i));
    h.flops = std::llround(2 * hm);
    h.attn_in = c.hidden_size;
    h.tokens = h.tokens_out = 1;
    rows.push_back(h);
    return rows;
  }

  std::map<std::string, torch::Tensor> to_checkpoint(const Model& m) const override {
    const ArchConfig& c = m.config;
    const auto table = name_table(c);
    std::map<std::string, torch::Tensor> flat = m.flat_tensors(), out;
    for (int64_t l = 0; l < c.num_hidden_layers && has_global(c); ++l) {
      const std::string b = blk(l), L = "layers." + std::to_string(l) + ".self_attn.";
      if (!c.layers[l].attention) continue;  // the branch was removed
      const bool dense = std::all_of(std::begin(kQkv), std::end(kQkv), [&](const char* s) {
        return m.linear(b + s).kind() == "dense";
      });
      if (!dense) continue;  // quantized: kept per slot (q_proj/k_proj/v_proj, pare-only names)
      std::vector<torch::Tensor> w, bias;
      for (const char* s : kQkv) {
        w.push_back(flat.at(b + s + ".weight").detach());
        bias.push_back(flat.at(b + s + ".bias").detach());
        flat.erase(b + s + ".weight");
        flat.erase(b + s + ".bias");
      }
      out[L + "in_proj_weight"] = at::cat(w, 0).contiguous();
      out[L + "in_proj_bias"] = at::cat(bias, 0).contiguous();
    }
    for (const auto& [f, t] : flat) {
      const std::string name = translate(table, f, true);
      PARE_ASSERT(!name.empty(), "no checkpoint name for ", f);
      out[name] = t.detach().contiguous();
    }
    return out;
  }

  Model from_checkpoint(const ArchConfig& c, std::map<std::string, torch::Tensor> t,
                        const std::string& src) const override {
    return build(c, std::move(t), src, "", "config.json");
  }

  // from_checkpoint with names shown as `shown` + name in errors ("model." for GraphGym files),
  // and `config_name` the file whose dimensions disagree with a tensor.
  Model build(const ArchConfig& c, std::map<std::string, torch::Tensor> tensors,
              const std::string& src, const std::string& shown,
              const std::string& config_name) const {
    auto expected = expected_shapes(c);
    const auto table = name_table(c);
    std::vector<std::string> unknown, missing;
    std::map<std::string, torch::Tensor> flat;
    auto check_shape = [&](const std::string& name, const torch::Tensor& t, const Shape& want) {
      PARE_CHECK(t.sizes().vec() == want, src, ": tensor '", shown, name, "': expected ",
                 c10::IntArrayRef(want), ", got ", t.sizes(), " (", config_name,
                 " disagrees with the weights)");
    };
    static const std::regex in_proj(R"(layers\.(\d+)\.self_attn\.in_proj_(weight|bias))");
    for (auto& [name, t] : tensors) {
      if (ends_with(name, ".num_batches_tracked")) {
        const std::string base =
            name.substr(0, name.size() - std::string(".num_batches_tracked").size());
        const std::string f = translate(table, base + ".running_mean", false);
        if (!f.empty() && expected.count(f))
          continue;  // BatchNorm's step counter: not used in eval
        unknown.push_back(shown + name);
        continue;
      }
      std::smatch mt;
      if (std::regex_match(name, mt, in_proj) && has_global(c) &&
          std::stoll(mt[1].str()) < c.num_hidden_layers) {
        const std::string b = "blk." + mt[1].str() + ".", part = mt[2].str();
        Shape want =
            expected.count(b + "attn_q." + part) ? expected[b + "attn_q." + part] : Shape{};
        if (want.empty()) {  // quantized Q: the fused dense tensor does not belong
          unknown.push_back(shown + name);
          continue;
        }
        want[0] *= 3;
        check_checkpoint_dtype(t, part, src, shown + name);
        check_shape(name, t, want);
        auto qkv = t.to(torch::kFloat32).chunk(3, 0);
        for (int i = 0; i < 3; ++i) flat[b + kQkv[i] + "." + part] = qkv[i].contiguous();
        continue;
      }
      const std::string f = translate(table, name, false);
      if (f.empty() || !expected.count(f)) {
        unknown.push_back(shown + name);
        continue;
      }
      const std::string part = f.substr(f.rfind('.') + 1);
      check_checkpoint_dtype(t, part, src, shown + name);
      check_shape(name, t, expected[f]);
      flat[f] = (is_quant_code_part(part) ? t : t.to(torch::kFloat32)).contiguous();
    }
    for (const auto& [f, shape] : expected) {
      if (flat.count(f)) continue;
      std::string name = translate(table, f, true);
      for (const char* s : kQkv) {  // dense Q/K/V come from the fused tensors
        const std::string pre = std::string(".self_attn.") + (s + 5) + "_proj.";
        const auto at = name.find(pre);
        if (at != std::string::npos && !c.quantized.count(f.substr(0, f.rfind('.'))))
          name = name.substr(0, at) + ".self_attn.in_proj_" + f.substr(f.rfind('.') + 1);
      }
      if (std::find(missing.begin(), missing.end(), shown + name) == missing.end())
        missing.push_back(shown + name);
    }
    return assemble_model(c, linear_slots(c), std::move(flat), missing, unknown, src);
  }

 private:
  static constexpr const char* kQkv[] = {"attn_q", "attn_k", "attn_v"};

  // Multi-head attention over the nodes of each graph that still take part (all, or
  // s.attn_nodes after a node-pruning step). Returns [N, hidden]: nodes dropped from the global
  // attention get 0 (their h_attn is Norm(h), the residual alone). A pruning step at layer l runs
  // after the attention (its output is complete) and decides which nodes attend from layer l + 1.
  torch::Tensor self_attention(const Model& m, int64_t l, const torch::Tensor& h,
                               ForwardState& s) const {
    const auto& d = m.config.layers[l];
    const std::string b = blk(l);
    const torch::Tensor nodes = s.attn_nodes;  // before this layer's step
    auto scatter = [&](const torch::Tensor& y) {
      return nodes.defined() ? at::zeros({h.size(0), y.size(1)}, y.options()).index_copy_(0, nodes, y)
                             : y;
    };
    const torch::Tensor hin = nodes.defined() ? h.index_select(0, nodes) : h;
    if (d.heads == 0) {
      torch::Tensor y = scatter(m.at(b + "attn_o.bias").expand({hin.size(0), h.size(1)}).contiguous());
      if (!m.hooks.empty()) m.hooks.fire(HookPoint::kAttnBranch, l, y);
      return y;
    }
    const int64_t G = s.key_padding.size(0), n_max = s.key_padding.size(3),
                  inner = d.heads * d.head_dim;
    const TokenPruneStep* step = m.config.prune_step(l);
    // Inference without hooks: each graph's attending nodes are consecutive rows of hin (PyG
    // layout, attn_nodes ascending), so attention runs per graph at its own node count on those
    // rows (ranged_multi_head_attention: the fused kernel, nothing computed for padding; issue 20,
    // ByteTransformer's variable-length attention). Steps that read the probabilities or keys in
    // the padded layout (zero-tprune and its baselines), hooks and autograd take the padded path.
    if (m.hooks.empty() && !at::GradMode::is_enabled() && hin.scalar_type() == at::kFloat &&
        d.head_dim % 8 == 0 && (!step || step->method == "learned")) {
      const torch::Tensor counts = (s.key_padding.view({G, n_max}) == 0).sum(1).to(at::kLong).cpu().contiguous();
      if (counts.min().item<int64_t>() > 0) {
        const torch::Tensor starts = (counts.cumsum(0) - counts).contiguous();
        torch::Tensor ctx = ranged_multi_head_attention(lin(m, b + "attn_q", hin), lin(m, b + "attn_k", hin),
                                                        lin(m, b + "attn_v", hin), starts, counts, d.heads);
        torch::Tensor yo = lin(m, b + "attn_o", ctx);
        if (s.attn_gate.defined()) yo = yo * s.attn_gate.unsqueeze(1).to(yo.dtype());
        torch::Tensor y = scatter(yo);
        if (step) prune_nodes_learned(m, l, *step, hin, s);
        return y;
      }
    }
    auto dense = [&](const char* slot) {  // [N', inner] -> [G, heads, n_max, head_dim]
      torch::Tensor z = at::zeros({G * n_max, inner}, h.options())
                            .index_copy_(0, s.dense_index, lin(m, b + slot, hin));
      return z.view({G, n_max, d.heads, d.head_dim}).transpose(1, 2);
    };
    torch::Tensor q = dense("attn_q"), k = dense("attn_k"), v = dense("attn_v");
    torch::Tensor scores =
        at::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(d.head_dim)) + s.key_padding;
    torch::Tensor probs = at::softmax(scores, -1);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kAttnProbs, l, probs);
    torch::Tensor ctx = at::matmul(probs, v)
                            .transpose(1, 2)
                            .reshape({G * n_max, inner})
                            .index_select(0, s.dense_index);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kHeadContext, l, ctx);
    torch::Tensor yo = lin(m, b + "attn_o", ctx);
    if (s.attn_gate.defined()) yo = yo * s.attn_gate.unsqueeze(1).to(yo.dtype());
    torch::Tensor y = scatter(yo);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kAttnBranch, l, y);
    if (step) {
      if (step->method == "learned")
        prune_nodes_learned(m, l, *step, hin, s);
      else
        prune_nodes(*step, probs, k.transpose(1, 2).reshape({G, n_max, inner}), h.size(0), s);
    }
    return y;
  }

  // A learned step (GTSP node sparsification): scores = h·w + b of the attending nodes, in the
  // padded layout [G, n_max] with -inf at padding (never a candidate); each graph keeps
  // graph_keep(step, n) of its n. Hooks see the scores (HookPoint::kTokenScores) and may replace
  // them by a 0/1 keep mask (masks/: Gumbel top-k, straight-through); the kept nodes' attention
  // outputs in later layers are then multiplied by their mask values (1 in value), the gate
  // through which the scorer learns. Without a mask: the top scores, ties to the lower position.
  static void prune_nodes_learned(const Model& m, int64_t l, const TokenPruneStep& step,
                                  const torch::Tensor& hin, ForwardState& s) {
    const std::string b = blk(l);
    const int64_t G = s.key_padding.size(0), n_max = s.key_padding.size(3), N = s.graph->num_nodes();
    const torch::Tensor sc = at::matmul(hin, m.at(b + "token_score.weight").to(hin.dtype())) +
                             m.at(b + "token_score.bias").to(hin.dtype());
    const torch::Tensor scores =
        at::full({G * n_max}, -std::numeric_limits<double>::infinity(), sc.options())
            .index_copy(0, s.dense_index, sc)
            .view({G, n_max});
    torch::Tensor t = scores;
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kTokenScores, l, t);
    const torch::Tensor counts = (s.key_padding.view({G, n_max}) == 0).sum(1).cpu().contiguous();
    const int64_t* cnt = counts.data_ptr<int64_t>();
    std::vector<int64_t> keep(G);
    for (int64_t g = 0; g < G; ++g) keep[g] = graph_keep(step, cnt[g]);
    const bool masked = !t.is_same(scores);
    if (masked)
      PARE_CHECK(t.sizes() == scores.sizes(), "gps: layer ", l, ": a node mask must be ",
                 scores.sizes(), ", got ", t.sizes());
    // Kept positions of each row, ascending, concatenated: the mask's ones, or the top scores
    // (one stable descending sort of all rows; padding at -inf sorts last, ties to the lower position).
    const torch::Tensor rank =
        masked ? (t.detach() > 0.5).to(torch::kFloat32).cpu() : scores.detach().cpu();
    const torch::Tensor order =
        std::get<1>(rank.sort(/*stable=*/true, /*dim=*/1, /*descending=*/true)).contiguous();
    const int64_t* ord = order.data_ptr<int64_t>();
    std::vector<int64_t> kept;
    for (int64_t g = 0; g < G; ++g) {
      const size_t at = kept.size();
      kept.insert(kept.end(), ord + g * n_max, ord + g * n_max + keep[g]);
      std::sort(kept.begin() + at, kept.end());
    }
    if (masked)  // a mask must hold exactly the step's count of ones in every row
      PARE_ASSERT((((t.detach() > 0.5).sum(1)).cpu() == torch::tensor(keep)).all().item<bool>(),
                  "node keep mask: every graph must keep its step's count");
    torch::Tensor gate;
    if (masked) {
      std::vector<int64_t> flat;
      for (int64_t g = 0, i = 0; g < G; ++g)
        for (int64_t j = 0; j < keep[g]; ++j, ++i) flat.push_back(g * n_max + kept[i]);
      gate = t.reshape({-1}).index_select(0, torch::tensor(flat, torch::kInt64).to(t.device()));
    }
    rebuild_layout(kept, keep, N, s, gate);
  }

  // Zero-TPrune (or a baseline) on the global attention graph of each graph: keeps
  // graph_keep(step, n) of its n attending nodes and rebuilds the padded layout for them.
  static void prune_nodes(const TokenPruneStep& step, const torch::Tensor& probs,
                          const torch::Tensor& keys, int64_t N, ForwardState& s) {
    const int64_t G = probs.size(0), n_max = probs.size(-1);
    const torch::Tensor counts = (s.key_padding.view({G, n_max}) == 0).sum(1).cpu();
    std::vector<int64_t> n(G), keep(G), r(G);
    for (int64_t g = 0; g < G; ++g) {
      n[g] = counts[g].item<int64_t>();
      keep[g] = graph_keep(step, n[g]);
      r[g] = graph_similar(step, n[g]);
    }
    const std::vector<int64_t> kept = select_tokens_ragged(step, probs.cpu(), keys.cpu(), n, keep, r);
    rebuild_layout(kept, keep, N, s, torch::Tensor());
  }

  // The attending nodes after a step: `kept` lists each graph's kept positions in the current
  // padded layout (ascending, graphs in order), keep[g] of graph g. `gate` [Σ keep] (or
  // undefined): the kept nodes' mask values, multiplied into the gate the nodes already carry.
  static void rebuild_layout(const std::vector<int64_t>& kept, const std::vector<int64_t>& keep,
                             int64_t N, ForwardState& s, const torch::Tensor& gate) {
    const int64_t G = s.key_padding.size(0), n_max = s.key_padding.size(3);
    if (s.attn_gate.defined() || gate.defined()) {
      // The old gate is indexed by attending node in order; map the kept slots back to it.
      torch::Tensor old = s.attn_gate;
      if (old.defined()) {
        const torch::Tensor slot_rank = at::full({G * n_max}, -1, s.dense_index.options())
                                            .index_copy_(0, s.dense_index,
                                                         at::arange(s.dense_index.size(0), s.dense_index.options()))
                                            .cpu();
        const int64_t* sr = slot_rank.data_ptr<int64_t>();
        std::vector<int64_t> rows;
        for (int64_t g = 0, i = 0; g < G; ++g)
          for (int64_t j = 0; j < keep[g]; ++j, ++i) rows.push_back(sr[g * n_max + kept[i]]);
        old = old.index_select(0, torch::tensor(rows, torch::kInt64).to(old.device()));
      }
      s.attn_gate = old.defined() && gate.defined() ? old * gate : old.defined() ? old : gate;
    }
    // Padded slot -> node row, for the nodes attending now.
    const torch::Tensor cur = s.attn_nodes.defined() ? s.attn_nodes : at::arange(N, s.dense_index.options());
    const torch::Tensor slot_node = at::full({G * n_max}, -1, cur.options())
                                        .index_copy_(0, s.dense_index, cur)
                                        .cpu();
    const int64_t* sn = slot_node.data_ptr<int64_t>();
    const int64_t k_max = *std::max_element(keep.begin(), keep.end());
    std::vector<int64_t> nodes, dense;
    nodes.reserve(kept.size()), dense.reserve(kept.size());
    size_t i = 0;
    for (int64_t g = 0; g < G; ++g)
      for (int64_t j = 0; j < keep[g]; ++j, ++i) {
        nodes.push_back(sn[g * n_max + kept[i]]);
        dense.push_back(g * k_max + j);
      }
    auto idx = [&](const std::vector<int64_t>& v) {
      return torch::tensor(v, torch::kInt64).to(s.dense_index.device());
    };
    s.attn_nodes = idx(nodes);
    s.dense_index = idx(dense);
    torch::Tensor valid = at::arange(k_max, s.dense_index.options()).unsqueeze(0) <
                          idx(keep).unsqueeze(1);
    s.key_padding = at::zeros({G, k_max}, s.key_padding.options())
                        .masked_fill(valid.logical_not(), -std::numeric_limits<double>::infinity())
                        .view({G, 1, 1, k_max});
  }
};

const GpsFamily& gps_impl() {
  static const GpsFamily f;
  return f;
}

// ---- GraphGym import
// -----------------------------------------------------------------------------

// config.yaml lookups: "a.b.c" -> the JSON value or nullptr.
const nlohmann::json* yaml_at(const nlohmann::json& j, const std::string& path) {
  const nlohmann::json* cur = &j;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string key =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object() || !cur->contains(key)) return nullptr;
    cur = &(*cur)[key];
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

struct YamlReader {
  const nlohmann::json& j;
  std::string src;
  const nlohmann::json& need(const std::string& key) const {
    const nlohmann::json* v = yaml_at(j, key);
    PARE_CHECK(v && !v->is_null(), src, ": ", key, ": missing (GraphGPS needs it)");
    return *v;
  }
  int64_t integer(const std::string& key, int64_t dflt, bool required = false) const {
    const nlohmann::json* v = yaml_at(j, key);
    if (!v || v->is_null()) {
      PARE_CHECK(!required, src, ": ", key, ": missing (GraphGPS needs it)");
      return dflt;
    }
    PARE_CHECK(v->is_number_integer(), src, ": ", key, ": expected an integer, got ", v->dump());
    return v->get<int64_t>();
  }
  std::string string(const std::string& key, const std::string& dflt, bool required = false) const {
    const nlohmann::json* v = yaml_at(j, key);
    if (!v || v->is_null()) {
      PARE_CHECK(!required, src, ": ", key, ": missing (GraphGPS needs it)");
      return dflt;
    }
    return v->is_string() ? v->get<std::string>() : v->dump();
  }
  bool boolean(const std::string& key, bool dflt) const {
    const nlohmann::json* v = yaml_at(j, key);
    if (!v || v->is_null()) return dflt;
    PARE_CHECK(v->is_boolean(), src, ": ", key, ": expected true or false, got ", v->dump());
    return v->get<bool>();
  }
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return s;
}

// posenc_RWSE.kernel: the list `times`, else `times_func` "range(a, b)" / "range(b)".
int64_t rwse_steps(const YamlReader& y) {
  const nlohmann::json* times = yaml_at(y.j, "posenc_RWSE.kernel.times");
  if (times && times->is_array() && !times->empty()) return static_cast<int64_t>(times->size());
  const std::string f = y.string("posenc_RWSE.kernel.times_func", "");
  static const std::regex range(R"(\s*range\(\s*(-?\d+)\s*(?:,\s*(-?\d+)\s*)?\)\s*)");
  std::smatch mt;
  PARE_CHECK(std::regex_match(f, mt, range), y.src, ": posenc_RWSE.kernel.times_func: expected ",
             "range(a, b) (or a times list), got '", f, "'");
  const int64_t a = mt[2].matched ? std::stoll(mt[1].str()) : 0;
  const int64_t b = std::stoll(mt[2].matched ? mt[2].str() : mt[1].str());
  PARE_CHECK(b > a, y.src, ": posenc_RWSE.kernel.times_func '", f, "' is empty");
  return b - a;
}

const torch::Tensor& state_tensor(const std::map<std::string, torch::Tensor>& state,
                                  const std::string& key, const std::string& src, const char* why) {
  auto it = state.find(key);
  PARE_CHECK(it != state.end() && it->second.dim() == 2, src, ": tensor '", key, "' ",
             it == state.end() ? "is missing" : "is not a matrix", " (", why, ")");
  return it->second;
}

}  // namespace

const Family& gps_family() { return gps_impl(); }

ArchConfig gps_default_config() {
  ArchConfig c;
  c.family = "gps";
  c.norm = "batchnorm";
  c.layer_norm_eps = 1e-5;
  c.hidden_act = "relu";
  return c;
}

bool is_graphgym_checkpoint(const std::string& path) {
  if (fs::is_regular_file(path)) return fs::path(path).extension() == ".ckpt";
  return fs::is_directory(path) && !fs::exists(path + "/config.json") &&
         fs::exists(path + "/config.yaml");
}

ArchConfig gps_config_from_graphgym(const std::string& yaml_path,
                                    const std::map<std::string, torch::Tensor>& state) {
  const nlohmann::json j = load_yaml_or_json(yaml_path);
  const YamlReader y{j, yaml_path};
  ArchConfig c = gps_default_config();
  GpsConfig& g = c.gps;
  const std::string src = yaml_path;

  const std::string model_type = y.string("model.type", "GPSModel");
  PARE_CHECK(model_type == "GPSModel", src, ": model.type '", model_type,
             "' is not supported (pare reads GraphGPS's GPSModel)");
  c.hidden_size = y.integer("gt.dim_hidden", 0, true);
  const int64_t inner = y.integer("gnn.dim_inner", c.hidden_size);
  PARE_CHECK(inner == c.hidden_size, src, ": gnn.dim_inner (", inner,
             ") must equal gt.dim_hidden (", c.hidden_size, "), as GPSModel requires");
  c.num_hidden_layers = y.integer("gt.layers", 0, true);
  c.num_attention_heads = y.integer("gt.n_heads", 0, true);
  PARE_CHECK(c.hidden_size > 0 && c.num_hidden_layers > 0 && c.num_attention_heads > 0 &&
                 c.hidden_size % c.num_attention_heads == 0,
             src, ": gt.dim_hidden (", c.hidden_size, "), gt.layers (", c.num_hidden_layers,
             ") and gt.n_heads (", c.num_attention_heads,
             ") must be positive, n_heads dividing dim_hidden");
  const std::string layer_type = y.string("gt.layer_type", "", true);
  const auto plus = layer_type.find('+');
  g.local_model = layer_type.substr(0, plus);
  g.global_model = plus == std::string::npos ? "" : layer_type.substr(plus + 1);
  PARE_CHECK(plus != std::string::npos &&
                 (g.local_model == "GINE" || g.local_model == "GIN" ||
                  g.local_model == "CustomGatedGCN" || g.local_model == "None") &&
                 (g.global_model == "Transformer" || g.global_model == "None"),
             src, ": gt.layer_type '", layer_type,
             "' is not supported (pare implements GINE, GIN, ",
             "CustomGatedGCN or None, + Transformer or None)");
  const bool ln = y.boolean("gt.layer_norm", false), bn = y.boolean("gt.batch_norm", true);
  PARE_CHECK(ln != bn, src,
             ": gt.layer_norm and gt.batch_norm: exactly one must be true (GPSLayer ",
             "refuses both; pare does not implement neither)");
  c.norm = bn ? "batchnorm" : "graph_layernorm";
  const std::string act = y.string("gnn.act", "relu");
  PARE_CHECK(act == "relu", src, ": gnn.act '", act, "' is not supported (expected relu)");
  const std::string head = y.string("gnn.head", "", true);
  PARE_CHECK(head == "san_graph", src, ": gnn.head '", head,
             "' is not supported (expected san_graph)");
  g.head_layers = 3;  // SANGraphHead(L=2): GPSModel never passes gnn.layers_post_mp
  const int64_t pre_mp = y.integer("gnn.layers_pre_mp", 0);
  PARE_CHECK(pre_mp == 0, src, ": gnn.layers_pre_mp = ", pre_mp, " is not supported (expected 0)");
  g.pooling = y.string("model.graph_pooling", "add");
  PARE_CHECK(
      y.boolean("dataset.node_encoder", true), src,
      ": dataset.node_encoder: false is not supported (GraphGPS models embed node features)");
  PARE_CHECK(!y.boolean("dataset.node_encoder_bn", false), src,
             ": dataset.node_encoder_bn: true is not supported");
  PARE_CHECK(!y.boolean("posenc_EquivStableLapPE.enable", false), src,
             ": posenc_EquivStableLapPE.enable: true is not supported");

  // Node encoder "DATASET[+LapPE][+RWSE]".
  const std::string node_name = y.string("dataset.node_encoder_name", "", true);
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    const size_t p = node_name.find('+', start);
    parts.push_back(
        node_name.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) break;
    start = p + 1;
  }
  g.node_encoder = parts[0];
  const bool lap = std::find(parts.begin(), parts.end(), "LapPE") != parts.end();
  const bool rw = std::find(parts.begin(), parts.end(), "RWSE") != parts.end();
  const size_t expected_parts = 1 + (lap ? 1 : 0) + (rw ? 1 : 0);
  PARE_CHECK((g.node_encoder == "TypeDictNode" || g.node_encoder == "Atom" ||
              g.node_encoder == "LinearNode") &&
                 parts.size() == expected_parts && (!lap || parts[1] == "LapPE"),
             src, ": dataset.node_encoder_name '", node_name,
             "' is not supported (pare implements ",
             "TypeDictNode, Atom or LinearNode, optionally +LapPE, +RWSE or +LapPE+RWSE)");
  if (g.node_encoder == "TypeDictNode")
    g.node_vocab = {y.integer("dataset.node_encoder_num_types", 0, true)};
  if (g.node_encoder == "Atom") g.node_vocab = kAtomVocab;
  if (g.node_encoder == "LinearNode")
    g.node_attr_dims =
        state_tensor(state,
                     std::string("model.encoder.node_encoder.") + (lap || rw ? "encoder1." : "") +
                         "encoder.weight",
                     src,
                     "LinearNode's input width: config.yaml's share.dim_in is written "
                     "before the data set sets it")
            .size(1);
  if (rw) {
    g.rwse_steps = rwse_steps(y);
    g.rwse_dim = y.integer("posenc_RWSE.dim_pe", 16);
    const std::string model = lower(y.string("posenc_RWSE.model", "none"));
    PARE_CHECK(model == "linear", src, ": posenc_RWSE.model '",
               y.string("posenc_RWSE.model", "none"), "' is not supported (expected Linear)");
    const std::string norm = lower(y.string("posenc_RWSE.raw_norm_type", "none"));
    PARE_CHECK(norm == "batchnorm" || norm == "none", src, ": posenc_RWSE.raw_norm_type '", norm,
               "': expected BatchNorm or none");
    g.rwse_raw_norm = norm == "batchnorm";
  }
  if (lap) {
    const std::string model = y.string("posenc_LapPE.model", "none");
    PARE_CHECK(model == "DeepSet", src, ": posenc_LapPE.model '", model,
               "' is not supported (pare implements the DeepSet LapPE encoder)");
    const int64_t post = y.integer("posenc_LapPE.post_layers", 0);
    PARE_CHECK(post == 0, src, ": posenc_LapPE.post_layers = ", post,
               " is not supported (expected 0)");
    g.lappe_k = y.integer("posenc_LapPE.eigen.max_freqs", 10);
    g.lappe_dim = y.integer("posenc_LapPE.dim_pe", 16);
    g.lappe_layers = y.integer("posenc_LapPE.layers", 3);
    const std::string norm = lower(y.string("posenc_LapPE.raw_norm_type", "none"));
    PARE_CHECK(norm == "batchnorm" || norm == "none", src, ": posenc_LapPE.raw_norm_type '", norm,
               "': expected BatchNorm or none");
    g.lappe_raw_norm = norm == "batchnorm";
  }

  if (y.boolean("dataset.edge_encoder", false)) {
    PARE_CHECK(!y.boolean("dataset.edge_encoder_bn", false), src,
               ": dataset.edge_encoder_bn: true is not supported");
    g.edge_encoder = y.string("dataset.edge_encoder_name", "", true);
    PARE_CHECK(g.edge_encoder == "TypeDictEdge" || g.edge_encoder == "Bond", src,
               ": dataset.edge_encoder_name '", g.edge_encoder,
               "' is not supported (expected TypeDictEdge or Bond)");
    if (g.edge_encoder == "TypeDictEdge")
      g.edge_vocab = {y.integer("dataset.edge_encoder_num_types", 0, true)};
    if (g.edge_encoder == "Bond") g.edge_vocab = kBondVocab;
  } else {
    g.edge_encoder = "None";
  }

  // Output width from the head (share.dim_out in config.yaml predates the data set).
  c.num_labels =
      state_tensor(state,
                   "model.post_mp.FC_layers." + std::to_string(g.head_layers - 1) + ".weight", src,
                   "the output width: config.yaml's share.dim_out is written before the "
                   "data set sets it")
          .size(0);
  const std::string task = y.string("dataset.task_type", "", true);
  if (task == "regression")
    g.task = "regression";
  else if (task == "classification")
    g.task = c.num_labels == 1 ? "binary" : "classification";
  else if (task == "classification_binary")
    g.task = "binary";
  else
    throw InputError(concat(
        src, ": dataset.task_type '", task,
        "' is not supported (expected classification, classification_binary or regression)"));

  // FLOPs statistics: known for ZINC (the shared data's ZINC subset test split, 1000 graphs).
  const std::string format = y.string("dataset.format", ""), dname = y.string("dataset.name", "");
  g.stats_dataset = format.empty() ? dname : format + "/" + dname;
  if (format == "PyG-ZINC" && dname == "subset") {
    g.stats_dataset = "ZINC subset, test split (1000 graphs)";
    g.mean_nodes = 23.117;
    g.mean_edges = 49.72;
    g.max_nodes = 37;
    g.max_edges = 84;
  }
  c.history.push_back({{"step", "import"}, {"from", "graphgym"}, {"config", yaml_path}});
  c.finalize(src);
  return c;
}

Model gps_from_graphgym_state(const ArchConfig& c, std::map<std::string, torch::Tensor> state,
                              const std::string& source) {
  std::map<std::string, torch::Tensor> t;
  std::vector<std::string> outside;
  for (auto& [k, v] : state) {
    if (k.rfind("model.", 0) == 0)
      t[k.substr(6)] = v;
    else
      outside.push_back(k);
  }
  PARE_CHECK(outside.empty(), source, ": unexpected tensors: ", outside.front(),
             outside.size() > 1 ? concat(", ... (", outside.size(), " in all)") : "",
             " (GraphGym's model_state names start with 'model.')");
  Model m = gps_impl().build(c, std::move(t), source, "model.", "config.yaml");
  m.verify_or_throw(source);
  return m;
}

Model load_graphgym_checkpoint(const std::string& path) {
  std::string file;
  if (fs::is_directory(path)) {
    std::map<std::string, std::vector<fs::path>> by_folder;
    auto scan = [&](const fs::path& dir) {
      if (!fs::is_directory(dir)) return;
      for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file() && e.path().extension() == ".ckpt")
          by_folder[dir.string()].push_back(e.path());
    };
    scan(path);
    scan(fs::path(path) / "ckpt");
    for (const auto& e : fs::directory_iterator(path))
      if (e.is_directory()) scan(e.path() / "ckpt");
    PARE_CHECK(!by_folder.empty(), path,
               ": no GraphGym .ckpt file here, in ckpt/ or in SEED/ckpt/");
    PARE_CHECK(by_folder.size() == 1, path, ": .ckpt files in ", by_folder.size(), " folders (",
               by_folder.begin()->first, ", ", std::next(by_folder.begin())->first,
               "...): pass the .ckpt file to load");
    auto files = by_folder.begin()->second;
    // GraphGym names checkpoints EPOCH.ckpt; the highest epoch is the last saved.
    auto epoch = [&](const fs::path& p) -> int64_t {
      const std::string stem = p.stem().string();
      PARE_CHECK(!stem.empty() && std::all_of(stem.begin(), stem.end(), ::isdigit), path,
                 ": several .ckpt files and '", p.filename().string(),
                 "' is not named EPOCH.ckpt: pass the .ckpt file to load");
      return std::stoll(stem);
    };
    if (files.size() > 1)
      std::sort(files.begin(), files.end(),
                [&](const fs::path& a, const fs::path& b) { return epoch(a) < epoch(b); });
    file = files.back().string();
  } else {
    file = path;
  }
  std::string yaml;
  fs::path dir = fs::path(file).parent_path();
  std::string looked;
  for (int up = 0; up < 3 && yaml.empty(); ++up) {
    const fs::path cand = (dir.empty() ? fs::path(".") : dir) / "config.yaml";
    looked += (looked.empty() ? "" : ", ") + cand.string();
    if (fs::exists(cand)) yaml = cand.string();
    dir = dir.parent_path();
  }
  PARE_CHECK(!yaml.empty(), file, ": a GraphGym checkpoint needs its config.yaml (looked for ",
             looked, ")");
  TorchCheckpoint ck = read_torch_checkpoint(file);  // restricted unpickler: runs no code
  std::map<std::string, torch::Tensor> state;
  for (auto& [k, t] : ck.tensors)
    if (k.rfind("model_state.", 0) == 0) state[k.substr(12)] = t;
  PARE_CHECK(!state.empty(), file, ": no 'model_state' tensors (expected GraphGym's ",
             "torch.save({'model_state': ..., 'optimizer_state': ..., 'scheduler_state': ...}))");
  ArchConfig c = gps_config_from_graphgym(yaml, state);
  c.history.back()["checkpoint"] = file;
  return gps_from_graphgym_state(c, std::move(state), file);
}

}  // namespace pare
