// Image classification data: Fashion-MNIST / MNIST idx files (LeCun's format), plain or gzip.
//
// The Debian package dataset-fashion-mnist installs train-images-idx3-ubyte.gz,
// train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz under
// /usr/share/datasets/fashion-mnist (60,000 train and 10,000 test images, 28×28, 10 classes).
#pragma once

#include <torch/types.h>

#include <string>

namespace pare {

inline const char* kDefaultFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct ImageDataset {
  torch::Tensor images;  // [N, C, H, W] uint8
  torch::Tensor labels;  // [N] int64
  int64_t size() const { return labels.size(0); }
};

// split: "train" or "test". Throws InputError naming the file on a missing folder or file, a bad
// magic number, counts that disagree between images and labels, or a truncated file.
ImageDataset load_fashion_mnist(const std::string& dir, const std::string& split);

// Checks that a split's two idx files exist (cheap; used before loading weights).
void require_fashion_mnist(const std::string& dir, const std::string& split);

// uint8 images -> float, (x/255 - mean)/std per channel.
torch::Tensor normalize_images(const torch::Tensor& images_u8, const std::vector<double>& mean,
                               const std::vector<double>& std);

}  // namespace pare
