// A small trainer for image classifiers and decoder language models (the shipped models are
// trained with it).
//
// AdamW (decoupled weight decay on matrices only; biases, norms, CLS and positions undecayed),
// linear warm-up then cosine decay to zero, gradient clipping by global L2 norm, label smoothing,
// optional augmentation (random horizontal flip, random translation by up to `translate` pixels
// with zero padding), a seed for initialisation, shuffling and augmentation. Progress goes to
// stderr.
#pragma once

#include <functional>
#include <string>

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
TrainResult train_lm(Model& m, const torch::Tensor& train_tokens, const torch::Tensor& val_tokens,
                     const TrainOptions& opt);

}  // namespace pare
