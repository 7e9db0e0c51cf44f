#include "ir/quant_linear.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "base/error.h"

namespace pare {

torch::Tensor pack_codes(const torch::Tensor& codes, int64_t bits) {
  PARE_ASSERT(codes.dim() == 2 && (bits == 4 || bits == 8), "pack_codes: codes ", codes.sizes(),
              ", bits ", bits);
  torch::Tensor c = codes.to(torch::kUInt8).contiguous();
  if (bits == 8) return c;
  PARE_ASSERT(c.size(1) % 2 == 0, "pack_codes: 4-bit codes need an even width, got ", c.size(1));
  torch::Tensor pairs = c.view({c.size(0), c.size(1) / 2, 2});
  return at::bitwise_or(pairs.select(2, 0).bitwise_and(15),
                        pairs.select(2, 1).bitwise_and(15).bitwise_left_shift(4))
      .contiguous();
}

torch::Tensor unpack_codes(const torch::Tensor& packed, int64_t bits) {
  PARE_ASSERT(packed.dim() == 2 && packed.scalar_type() == torch::kUInt8 && (bits == 4 || bits == 8),
              "unpack_codes: packed ", packed.sizes(), ", bits ", bits);
  if (bits == 8) return packed;
  torch::Tensor lo = packed.bitwise_and(15), hi = packed.bitwise_right_shift(4);
  return at::stack({lo, hi}, 2).view({packed.size(0), packed.size(1) * 2});
}

QuantLinear::QuantLinear(QuantSlot spec_, torch::Tensor qweight_, torch::Tensor scales_,
                         torch::Tensor qzeros_, torch::Tensor bias_)
    : spec(spec_),
      qweight(std::move(qweight_)),
      scales(std::move(scales_)),
      qzeros(std::move(qzeros_)),
      bias(std::move(bias_)) {
  PARE_ASSERT(spec.bits == 4 || spec.bits == 8, "QuantLinear: bits ", spec.bits);
  PARE_ASSERT(qweight.dim() == 2 && qweight.scalar_type() == torch::kUInt8,
              "QuantLinear: qweight must be uint8 [out, in*bits/8], got ", qweight.sizes());
  in_ = qweight.size(1) * 8 / spec.bits;
  const int64_t out = qweight.size(0), g = group();
  PARE_ASSERT(g > 0 && in_ % g == 0, "QuantLinear: group ", g, " does not divide width ", in_);
  scales = scales.detach().to(torch::kFloat32).contiguous();
  PARE_ASSERT(scales.sizes().vec() == std::vector<int64_t>({out, in_ / g}), "QuantLinear: scales ",
              scales.sizes(), ", expected [", out, ", ", in_ / g, "]");
  if (spec.symmetric) {
    PARE_ASSERT(!qzeros.defined(), "QuantLinear: symmetric form with stored zero points");
  } else {
    PARE_ASSERT(qzeros.defined() && qzeros.scalar_type() == torch::kUInt8 &&
                    qzeros.sizes() == scales.sizes(),
                "QuantLinear: qzeros must be uint8 like scales");
  }
  PARE_ASSERT(!bias.defined() || bias.sizes().vec() == std::vector<int64_t>({out}),
              "QuantLinear: bias ", bias.sizes());
}

std::shared_ptr<QuantLinear> QuantLinear::from_codes(QuantSlot spec, const torch::Tensor& codes,
                                                     torch::Tensor scales, torch::Tensor qzeros,
                                                     torch::Tensor bias) {
  return std::make_shared<QuantLinear>(spec, pack_codes(codes, spec.bits), std::move(scales),
                                       std::move(qzeros), std::move(bias));
}

torch::Tensor QuantLinear::zeros_rows(int64_t row0, int64_t rows) const {
  if (!spec.symmetric) return qzeros.narrow(0, row0, rows).to(torch::kFloat32);
  return torch::full({rows, in_ / group()}, double(int64_t(1) << (spec.bits - 1)), torch::kFloat32);
}

torch::Tensor QuantLinear::dequantize_rows(int64_t row0, int64_t rows) const {
  const int64_t g = group(), G = in_ / g;
  torch::Tensor c = unpack_codes(qweight.narrow(0, row0, rows), spec.bits)
                        .to(torch::kFloat32)
                        .view({rows, G, g});
  torch::Tensor s = scales.narrow(0, row0, rows).unsqueeze(2);
  if (spec.symmetric) c.sub_(double(int64_t(1) << (spec.bits - 1)));
  else c.sub_(qzeros.narrow(0, row0, rows).unsqueeze(2));
  return c.mul_(s).view({rows, in_});
}

torch::Tensor QuantLinear::forward(const torch::Tensor& x) const {
  PARE_CHECK(x.size(-1) == in_, "quantized linear: input width ", x.size(-1), ", expected ", in_);
  const auto dt = x.scalar_type();
  if (mode == Mode::kWhole) {
    torch::Tensor w = dequantize().to(dt);
    return bias.defined() ? at::linear(x, w, bias.to(dt)) : at::linear(x, w);
  }
  const int64_t out = out_features(), step = std::max<int64_t>(1, kChunkElems / in_);
  torch::Tensor x2 = x.reshape({-1, in_});
  torch::Tensor y = at::empty({x2.size(0), out}, x.options());
  for (int64_t r0 = 0; r0 < out; r0 += step) {
    const int64_t n = std::min(step, out - r0);
    torch::Tensor yc = y.narrow(1, r0, n);  // row stride `out`: BLAS writes it in place
    at::mm_out(yc, x2, dequantize_rows(r0, n).to(dt).t());
  }
  if (bias.defined()) y.add_(bias.to(dt));
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = out;
  return y.view(shape);
}

int64_t QuantLinear::num_params() const {
  return out_features() * in_ + (bias.defined() ? bias.numel() : 0);
}

std::map<std::string, torch::Tensor> QuantLinear::tensors() const {
  std::map<std::string, torch::Tensor> m{{"qweight", qweight}, {"scales", scales}};
  if (qzeros.defined()) m["qzeros"] = qzeros;
  if (bias.defined()) m["bias"] = bias;
  return m;
}

std::shared_ptr<LinearForm> QuantLinear::clone() const {
  auto c = std::make_shared<QuantLinear>(spec, qweight.clone(), scales.clone(),
                                         qzeros.defined() ? qzeros.clone() : torch::Tensor(),
                                         bias.defined() ? bias.detach().clone() : torch::Tensor());
  c->mode = mode;
  return c;
}

void QuantLinear::to_dtype(torch::ScalarType dtype) {
  if (bias.defined()) bias = bias.detach().to(dtype);
}

// ---- checkpoint helpers --------------------------------------------------------------------------

bool is_quant_code_part(const std::string& part) { return part == "qweight" || part == "qzeros"; }
bool is_quant_part(const std::string& part) { return is_quant_code_part(part) || part == "scales"; }

void apply_quantized_shapes(const ArchConfig& c, const std::vector<std::string>& linear_slots,
                            std::map<std::string, std::vector<int64_t>>& expected,
                            const std::string& context) {
  for (const auto& [slot, q] : c.quantized) {
    const std::string where = concat(context, ": pare.quantization.slots.", slot);
    PARE_CHECK(std::find(linear_slots.begin(), linear_slots.end(), slot) != linear_slots.end(),
               where, ": not a linear slot of this ", c.family, " model");
    auto it = expected.find(slot + ".weight");
    PARE_ASSERT(it != expected.end() && it->second.size() == 2, "no weight shape for ", slot);
    const int64_t out = it->second[0], in = it->second[1];
    const int64_t g = q.group_size == 0 ? in : q.group_size;
    PARE_CHECK(g > 0 && in % g == 0, where, ": group_size ", q.group_size,
               " does not divide the input width ", in);
    PARE_CHECK(q.bits != 4 || in % 2 == 0, where, ": 4-bit codes pack two per byte and need an ",
               "even input width, got ", in);
    expected.erase(it);
    expected[slot + ".qweight"] = {out, in * q.bits / 8};
    expected[slot + ".scales"] = {out, in / g};
    if (!q.symmetric) expected[slot + ".qzeros"] = {out, in / g};
  }
}

std::shared_ptr<LinearForm> take_linear_form(const ArchConfig& c, const std::string& slot,
                                             std::map<std::string, torch::Tensor>& flat) {
  auto take = [&](const std::string& part) {
    auto it = flat.find(slot + "." + part);
    if (it == flat.end()) return torch::Tensor();
    torch::Tensor t = it->second;
    flat.erase(it);
    return t;
  };
  torch::Tensor bias = take("bias");
  auto q = c.quantized.find(slot);
  if (q == c.quantized.end()) return std::make_shared<DenseLinear>(take("weight"), bias);
  torch::Tensor qweight = take("qweight"), scales = take("scales"), qzeros = take("qzeros");
  return std::make_shared<QuantLinear>(q->second, qweight, scales, qzeros, bias);
}

}  // namespace pare
