// Graph data sets for graph transformers (gps family): the in-memory form, readers, splits,
// structural/positional encodings and PyG-style batching.
//
// Readers:
//   - TUDataset text format (Morris et al. 2020): NAME_A.txt ("i, j" or "i,j" per line, 1-based
//     node ids, directed; undirected graphs list both directions), NAME_graph_indicator.txt,
//     NAME_graph_labels.txt, optional NAME_node_labels.txt, NAME_edge_labels.txt,
//     NAME_node_attributes.txt. ../shared/data/tudatasets/{MUTAG,PROTEINS,NCI1,ENZYMES} and
//     ../shared/data/zinc/subset_tu (ZINC_val / ZINC_test).
//   - Molecules from SMILES (src/molecules.h, RDKit): MoleculeNet HIV.csv (ogbg-molhiv's source)
//     and ESOL.
// Encodings computed from the graph (GraphGPS, Rampášek et al. 2022, §3.1 and its code):
//   - RWSE: diag((D⁻¹A)^k), k = 1..K (isolated nodes: 0).
//   - LapPE: eigenvectors of the symmetric normalised Laplacian I − D^-1/2 A D^-1/2 (Eigen),
//     the k with the smallest eigenvalues, with a fixed sign convention (first non-zero entry
//     of each eigenvector positive) so inference is deterministic; graphs with fewer than k nodes
//     are zero-padded (value and vector), as GraphGPS pads with NaN and masks.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace pare {

// One graph. Edges are directed; undirected data sets store both directions (PyG convention).
struct Graph {
  int64_t num_nodes = 0;
  std::vector<int64_t> edge_src, edge_dst;  // 0-based node ids, same length
  std::vector<int64_t> node_cat;    // [num_nodes × node_cat_dims] categorical features, row-major
  std::vector<float> node_attr;     // [num_nodes × node_attr_dims] dense features
  std::vector<int64_t> edge_cat;    // [num_edges × edge_cat_dims] categorical features
  double y = 0.0;                   // class index (classification) or target (regression)
  std::vector<float> rwse;          // [num_nodes × K] after compute_rwse
  std::vector<float> lap_vec;       // [num_nodes × k] after compute_lappe
  std::vector<float> lap_val;       // [k] eigenvalues (ascending) after compute_lappe
  int64_t num_edges() const { return static_cast<int64_t>(edge_src.size()); }
};

struct GraphDataset {
  std::string name;                 // "NCI1", "molhiv", "ZINC_test", ...
  std::string task;                 // "classification" (num_classes ≥ 2), "binary" (one logit,
                                    // ROC-AUC: molhiv) or "regression"
  int64_t num_classes = 0;          // classification; 1 for binary; 0 for regression
  int64_t node_cat_dims = 0, node_attr_dims = 0, edge_cat_dims = 0;
  std::vector<int64_t> node_vocab;  // per categorical node feature: number of categories
  std::vector<int64_t> edge_vocab;  // per categorical edge feature
  int64_t rwse_steps = 0;           // K of the stored RWSE (0: none)
  int64_t lappe_dim = 0;            // k of the stored LapPE (0: none)
  std::vector<Graph> graphs;
  // Named splits of graph indices ("train", "valid", "test"), each sorted.
  std::map<std::string, std::vector<int64_t>> splits;
  int64_t size() const { return static_cast<int64_t>(graphs.size()); }
};

// A PyG-style batch of graphs: nodes concatenated, edge_index offset per graph, batch vector.
struct GraphBatch {
  int64_t num_graphs = 0;
  torch::Tensor node_cat;    // [N, Fc] int64 (undefined when the data has none)
  torch::Tensor node_attr;   // [N, Fd] float32 (undefined when none)
  torch::Tensor edge_index;  // [2, E] int64: row 0 source j, row 1 target i (messages j → i)
  torch::Tensor edge_cat;    // [E, Fe] int64 (undefined when none)
  torch::Tensor batch;       // [N] int64 graph id of each node, non-decreasing
  torch::Tensor ptr;         // [G + 1] int64 node offsets
  torch::Tensor y;           // [G] int64 (classification) or float32 (binary / regression)
  torch::Tensor rwse;        // [N, K] float32 (undefined when not computed)
  torch::Tensor lap_vec;     // [N, k] float32
  torch::Tensor lap_val;     // [N, k] float32 (each node carries its graph's eigenvalues)
  int64_t num_nodes() const { return batch.defined() ? batch.size(0) : 0; }
};

// Reads a TU data set from folder `dir` (files NAME_*.txt where NAME is the folder's last
// component unless `name` is given). Node labels become one categorical feature (ids remapped
// to 0..n-1 in sorted order; vocab recorded), edge labels likewise; node attributes are dense.
// Graph labels are remapped to 0..C-1 (classification); a float label file (ZINC) gives a
// regression task. Throws InputError naming the file and line: an edge past the node count, a
// node id < 1, indicator / label counts that disagree, an empty graph (no nodes), a malformed
// line.
// Details: fields are comma-separated with optional spaces; a label file with several columns
// gives one categorical feature per column. Graph labels are classes when every one is an
// integer, else regression targets; without NAME_graph_labels.txt a one-column
// NAME_graph_attributes.txt is the regression target (ZINC). The indicator's graph ids must
// start at 1 and never decrease or skip (each graph's nodes contiguous); an edge's two nodes must
// be in one graph. Required: NAME_A, NAME_graph_indicator and a graph label / attribute file.
// NAME_edge_attributes.txt is not read. The remapping is per file: two splits stored as separate
// data sets (ZINC_val, ZINC_test) agree on ids only where their sorted label sets agree (ZINC's
// atom types are 0-based and contiguous: ids agree, vocab sizes may differ, 16 vs 17).
GraphDataset load_tu_dataset(const std::string& dir, const std::string& name = "");

// Seeded random split into train/valid/test by fractions (e.g. 0.8, 0.1, 0.1), stored in
// ds.splits. Deterministic for a seed (std::mt19937_64 + Fisher–Yates).
void random_split(GraphDataset& ds, double train, double valid, uint64_t seed);

// RWSE with K steps for every graph (sets ds.rwse_steps). LapPE with k eigenvectors.
// rwse: [n × K] row-major, entry (i, k-1) = P^k[i, i], P = D⁻¹A from the edge list as given
// (duplicate edges add up). lappe: vec [n × k] row-major (column c = eigenvector c), val [k]
// ascending, both zero-padded when n < k. Throw InputError for K / k < 1 or an edge id outside
// 0..num_nodes-1. Eigenvectors of repeated eigenvalues are one orthonormal basis of the eigenspace,
// not a unique one (see graph_data.cpp).
void compute_rwse(GraphDataset& ds, int64_t K);
void compute_lappe(GraphDataset& ds, int64_t k);
std::vector<float> rwse(const Graph& g, int64_t K);  // [n × K]
void lappe(const Graph& g, int64_t k, std::vector<float>& vec, std::vector<float>& val);

// Batches graphs `idx` of `ds` (in that order). InputError for an index outside the data set;
// InternalError when a graph's arrays disagree with the data set's dimensions.
GraphBatch collate(const GraphDataset& ds, const std::vector<int64_t>& idx);

// Summary for FLOPs and reports: nodes and directed edges per graph over `idx` (all when empty).
struct GraphStats {
  double mean_nodes = 0, mean_edges = 0;
  int64_t max_nodes = 0, max_edges = 0;
  int64_t graphs = 0;
};
GraphStats graph_stats(const GraphDataset& ds, const std::vector<int64_t>& idx = {});

// Binary cache of a converted data set (molecules: avoids re-parsing SMILES). Format in the .cpp
// header comment; load checks magic, version and every count (InputError naming the file and
// offset). Save writes a temporary file and renames it (never a partial cache); encodings a
// graph still holds while the data set's rwse_steps / lappe_dim is 0 are not written.
void save_graph_cache(const GraphDataset& ds, const std::string& path);
GraphDataset load_graph_cache(const std::string& path);

}  // namespace pare
