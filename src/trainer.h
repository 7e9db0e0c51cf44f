// A small trainer for image classifiers, decoder language models and graph transformers (the
// shipped models are trained with it).
//
// AdamW (decoupled weight decay on matrices only; biases, norms, CLS and positions undecayed),
// linear warm-up then cosine decay to zero, gradient clipping by global L2 norm, label smoothing,
// optional augmentation (random horizontal flip, random translation by up to `translate` pixels
// with zero padding), a seed for initialisation, shuffling and augmentation. Progress goes to
// stderr.
#pragma once

#include <functional>
#include <string>

#include "graph_data.h"
#include "images.h"
#include "model.h"

namespace pare {

struct TrainOptions {
  int epochs = 1;
  int64_t batch_size = 128;
  double lr = 1e-3;             // peak learning rate
  double weight_decay = 0.05;
  int64_t warmup_steps = 100;
  double clip_grad_norm = 1.0;  // <= 0: off
  double label_smoothing = 0.0;
  bool hflip = false;
  int64_t translate = 0;        // pixels
  uint64_t seed = 0;
  int64_t limit_train = -1;     // use the first N training images (tests)
  int64_t log_every = 50;       // steps
  // Language models (train_lm): optimizer steps and tokens per training window.
  int64_t steps = 0;
  int64_t seq_len = 128;
  // Graph models (train_graph): batch size of the per-epoch validation / test evaluation.
  int64_t eval_batch_size = 256;
};

struct TrainResult {
  double seconds = 0;
  double final_loss = 0;
  int64_t steps = 0;
  std::vector<double> test_accuracy;  // after each epoch when a test set is given
};

TrainResult train_classifier(Model& m, const ImageDataset& train, const ImageDataset* test,
                             const TrainOptions& opt);

// Next-token training of a decoder LM: each step draws batch_size windows of seq_len + 1 tokens at
// uniform offsets of `train_tokens` (seeded), cross-entropy of every position's next token,
// AdamW + warm-up/cosine as above. `val_tokens` is not used for training.
// One epoch of train_graph: mean training loss, the learning rate at its last step, the metric
// and loss on the valid and test splits (BatchNorm in eval mode), wall seconds (training +
// evaluation) since training began.
struct GraphEpoch {
  int epoch = 0;  // 1-based
  double train_loss = 0, lr = 0;
  double valid = 0, valid_loss = 0, test = 0, test_loss = 0;
  double train_seconds = 0, eval_seconds = 0, elapsed = 0;
};

struct GraphTrainResult {
  TrainResult run;
  std::string metric;  // accuracy | rocauc | mae (graph_eval.h)
  std::vector<GraphEpoch> epochs;
  int best_epoch = 0;  // 1-based epoch with the best validation metric (first on ties)
  double best_valid = 0, best_test = 0;
  int64_t train_graphs = 0;
};

// Trains a graph model (gps) on ds.splits["train"] (the first opt.limit_train graphs of a seeded
// permutation of it when limit_train >= 0): each epoch shuffles (seeded), runs batches of
// opt.batch_size graphs (the last one partial) with BatchNorm in training mode, loss graph_loss
// of the model's task (cross-entropy / BCE with logits / L1), AdamW with warm-up + cosine per
// step and clipping as above; after each epoch evaluates "valid" and "test". On return `m` holds
// the weights of the epoch with the best validation metric (as GraphGPS reports test at best
// validation), BatchNorm in eval mode. InputError for empty splits or data that does not fit.
GraphTrainResult train_graph(Model& m, const GraphDataset& ds, const TrainOptions& opt);

TrainResult train_lm(Model& m, const torch::Tensor& train_tokens, const torch::Tensor& val_tokens,
                     const TrainOptions& opt);

}  // namespace pare
