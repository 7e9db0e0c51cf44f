// gtsp: Graph Transformer SParsification, training-time compression along four axes (nodes /
// tokens, attention heads, layers, weights) learned while fine-tuning on the task loss.
//
// Paper: Liu, Yang, Liu, Zhang, Wang, Chen, Chen, Wang, "Exploring Sparsity in Graph
// Transformers", Neural Networks 2024 (arXiv 2312.05479), §3.1-§3.4 (one section per axis).
// What pare does differently from the reference code (LiuChuang0059/GTSP), and why: see
// passes/gtsp.cpp's opening comment and METHODS.md.
#pragma once

#include "pipeline/pass.h"

namespace pare {

struct GtspOptions {
  bool nodes = false, heads = false, layers = false, weights = false;  // the axes
  double target_flops = 0.7;   // structural axes: FLOPs per sample / dense, in (0, 1]
  double sparsity = 0.5;       // weights axis: share of the blocks' linear weights zeroed, [0, 1)
  int64_t epochs = 3;          // fine-tuning epochs (the one training loop)
  int64_t batch_size = 32;
  double lr = 2e-4;            // peak learning rate of the weights (and node scorers)
  int64_t warmup_steps = 50;
  double prune_until = 0.6;    // share of the fine-tuning steps over which units are removed
  int64_t update_every = 25;   // steps between head / branch / weight updates
  double regrow = 0.1;         // weights axis: share of the just-pruned weights regrown (GraNet)
  double drop_path = 0.1;      // layers axis: stochastic depth on open branches in training
  double tau = 1.0;            // nodes axis: Gumbel top-k temperature
  std::string branches = "attention";  // layers axis candidates: attention | both (+ FFN)
  int64_t limit_train = -1;    // fine-tune on N training samples (-1: all)
  uint64_t seed = 0;
};

// Checks options against the model (InputError naming the option): no axis chosen, a target
// outside (0, 1], a family other than vit / gps, the nodes axis on a model that already prunes
// tokens, a gps model without global attention (heads, nodes), a quantized block slot, a gps
// model that records no training split.
void check_gtsp(const Model& m, const GtspOptions& o);

void register_gtsp(PassTable& t);

}  // namespace pare
