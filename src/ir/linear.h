// Linear slots and their forms (DESIGN.md "Model IR").
//
// A Linear maps x [..., in] to y [..., out]. Its form decides how the weight is stored:
// dense (weight [out, in], optional bias [out], PyTorch layout) or quantized (src/quant_linear.h);
// low-rank and dense×sparse forms implement the same interface later, so the forward never asks
// which pass made a slot. Passes that edit rows/columns (Rewriter) need the dense form and say so
// otherwise.
#pragma once

#include <torch/types.h>

#include <map>
#include <memory>
#include <string>

namespace pare {

class LinearForm {
 public:
  virtual ~LinearForm() = default;
  virtual std::string kind() const = 0;            // "dense", ...
  virtual torch::Tensor forward(const torch::Tensor& x) const = 0;  // [..., in] -> [..., out]
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // Multiply-accumulates for one input row (FLOPs = 2 × MACs).
  virtual int64_t macs_per_row() const = 0;
  // Parameters the form represents: logical weights (out·in for a quantized form, whose scales
  // and zero points are storage, not parameters) plus the bias.
  virtual int64_t num_params() const = 0;
  // Stored tensors by part name ("weight", "bias", ...), as written to the checkpoint.
  virtual std::map<std::string, torch::Tensor> tensors() const = 0;
  virtual std::shared_ptr<LinearForm> clone() const = 0;
  // Converts every stored floating tensor to `dtype` (float32 / float64).
  virtual void to_dtype(torch::ScalarType dtype) = 0;
};

class DenseLinear : public LinearForm {
 public:
  DenseLinear(torch::Tensor weight, torch::Tensor bias) : weight(std::move(weight)), bias(std::move(bias)) {}
  std::string kind() const override { return "dense"; }
  torch::Tensor forward(const torch::Tensor& x) const override;
  int64_t in_features() const override { return weight.size(1); }
  int64_t out_features() const override { return weight.size(0); }
  int64_t macs_per_row() const override { return weight.size(0) * weight.size(1); }
  int64_t num_params() const override {
    return weight.numel() + (bias.defined() ? bias.numel() : 0);
  }
  std::map<std::string, torch::Tensor> tensors() const override;
  std::shared_ptr<LinearForm> clone() const override;
  void to_dtype(torch::ScalarType dtype) override;

  torch::Tensor weight;  // [out, in]
  torch::Tensor bias;    // [out] or undefined
};

}  // namespace pare
