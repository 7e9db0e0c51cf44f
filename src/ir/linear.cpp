#include "ir/linear.h"

#include <ATen/ATen.h>

namespace pare {

torch::Tensor DenseLinear::forward(const torch::Tensor& x) const {
  return bias.defined() ? at::linear(x, weight, bias) : at::linear(x, weight);
}

std::map<std::string, torch::Tensor> DenseLinear::tensors() const {
  std::map<std::string, torch::Tensor> m{{"weight", weight}};
  if (bias.defined()) m["bias"] = bias;
  return m;
}

std::shared_ptr<LinearForm> DenseLinear::clone() const {
  return std::make_shared<DenseLinear>(weight.detach().clone(),
                                       bias.defined() ? bias.detach().clone() : torch::Tensor());
}

void DenseLinear::to_dtype(torch::ScalarType dtype) {
  weight = weight.detach().to(dtype);
  if (bias.defined()) bias = bias.detach().to(dtype);
}

}  // namespace pare
