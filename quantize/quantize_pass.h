// quantize: weight-only RTN / GPTQ quantization of a model's linear slots (quantize_pass.cpp).
#pragma once

#include <string>
#include <vector>

#include "gptq.h"
#include "pipeline/pass.h"

namespace pare {

struct QuantizeOptions {
  QuantSlot format{4, 128, true};  // bits, group size (0 = per channel), symmetric
  std::string method = "gptq";     // "rtn" | "gptq"
  GptqOptions gptq;                // damping, act_order, block size
  std::string include = "blk\\..*";  // regex (whole slot name) of the slots to quantize
  std::string exclude;               // regex of slots to leave dense ("" = none)
};

// The linear slots `o` selects, in the family's order. InputError when a regex is invalid, nothing
// is selected, a selected slot is already quantized, or the group size does not divide a selected
// slot's input width (the message names the slot and the width).
std::vector<std::string> quantize_slots(const Model& m, const QuantizeOptions& o);
// The same from the config alone (widths from the family's expected shapes; quantized slots from
// config.quantized): what the recipe's plan checks before the earlier stages have run.
std::vector<std::string> quantize_slots(const ArchConfig& c, const QuantizeOptions& o);

// Quantizes the selected slots in place: RTN needs no data; GPTQ runs `calibration` [n, C, H, W]
// through the model layer by layer (batches of `batch_size`) and quantizes each slot with the
// Hessian of its own inputs, computed with the already-quantized upstream layers. Sets
// config.quant_method / config.quantized. Returns the notes for the report.
nlohmann::json quantize_model(Model& m, const torch::Tensor& calibration, const QuantizeOptions& o,
                              int64_t batch_size, const std::function<void(const std::string&)>& log);

// The same for a graph transformer (gps) with GPTQ calibrated on graphs idx of `graphs`
// (batches of `batch_size` graphs through family.embed_graph). InputError for another family.
nlohmann::json quantize_model(Model& m, const GraphDataset& graphs, const std::vector<int64_t>& idx,
                              const QuantizeOptions& o, int64_t batch_size,
                              const std::function<void(const std::string&)>& log);

// Options of a recipe stage (InputError when bits is not 4 or 8).
QuantizeOptions quantize_options(const PassOptions& p);

void register_quantize(PassTable& t);

}  // namespace pare
