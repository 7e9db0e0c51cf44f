// quantize — weight-only quantization of the linear slots to 8 or 4 bits, per output channel or
// per group of input columns, symmetric or with zero points, by round-to-nearest (RTN) or GPTQ.
//
// Paper: Frantar, Ashkboos, Hoefler, Alistarh, "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers", ICLR 2023 (arXiv 2210.17323): Algorithm 1 (Cholesky
// error feedback, lazy batches of 128 columns, 1% damping), §4 and the reference code for groups
// and act-order. RTN is the paper's baseline.
//
// Steps (GPTQ): run the calibration inputs through family.embed (images, token windows) or
// family.embed_graph (graphs of the train split, for gps); for each layer l, temporarily
// wrap every selected linear slot of the layer in a recording form that accumulates XᵀX (float64)
// of its inputs while delegating to the dense weights, run attention(l) + mlp(l), quantize each
// slot with H = 2XᵀX (quantize/gptq.h), then re-run layer l with the quantized weights to make
// the next layer's inputs (errors of earlier layers are seen by later ones). Slots outside the
// blocks (patch_embd, cls_head; not selected by default) are recorded during embed / head.
// RTN quantizes each selected slot from its weights alone.
//
// Invariant: shapes, config dimensions and FLOPs are unchanged; every selected slot becomes a
// QuantLinear listed in config.quantized (so the checkpoint round-trips) and every other slot is
// untouched. Preserves: shapes (weights changed).
#include "quantize_pass.h"

#include <ATen/ATen.h>

#include <chrono>
#include <regex>

#include "base/error.h"
#include "families/family.h"
#include "data/graph_data.h"

namespace pare {

namespace {

std::regex compile(const std::string& pattern, const char* option) {
  try {
    return std::regex(pattern);
  } catch (const std::regex_error& e) {
    throw InputError(concat("quantize: ", option, ": invalid regular expression '", pattern,
                            "': ", e.what()));
  }
}

// Delegates to the dense form and accumulates XᵀX of every input row (float64).
class RecordingLinear : public LinearForm {
 public:
  explicit RecordingLinear(std::shared_ptr<LinearForm> inner) : inner_(std::move(inner)) {}
  std::string kind() const override { return "recording(" + inner_->kind() + ")"; }
  torch::Tensor forward(const torch::Tensor& x) const override {
    torch::Tensor f = x.detach().reshape({-1, x.size(-1)}).to(torch::kFloat64);
    xtx_ = xtx_.defined() ? xtx_.addmm_(f.t(), f) : at::matmul(f.t(), f);
    rows_ += f.size(0);
    return inner_->forward(x);
  }
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  int64_t macs_per_row() const override { return inner_->macs_per_row(); }
  int64_t num_params() const override { return inner_->num_params(); }
  std::map<std::string, torch::Tensor> tensors() const override { return inner_->tensors(); }
  std::shared_ptr<LinearForm> clone() const override { return inner_->clone(); }
  void to_dtype(torch::ScalarType dtype) override { inner_->to_dtype(dtype); }

  const std::shared_ptr<LinearForm>& inner() const { return inner_; }
  const torch::Tensor& xtx() const { return xtx_; }
  int64_t rows() const { return rows_; }

 private:
  std::shared_ptr<LinearForm> inner_;
  mutable torch::Tensor xtx_;
  mutable int64_t rows_ = 0;
};

// Installs recording forms on `slots` of `m`; finish() (or the destructor, on an exception)
// puts the original forms back.
class Recorders {
 public:
  Recorders(Model& m, const std::vector<std::string>& slots) : m_(m) {
    for (const auto& s : slots) {
      auto r = std::make_shared<RecordingLinear>(m.linears.at(s));
      rec_[s] = r;
      m.linears[s] = r;
    }
  }
  ~Recorders() { restore(); }
  // Restores the forms; returns H = 2XᵀX of every slot that saw inputs.
  std::map<std::string, torch::Tensor> finish() {
    std::map<std::string, torch::Tensor> h;
    for (const auto& [s, r] : rec_)
      if (r->rows() > 0) h[s] = r->xtx() * 2.0;
    restore();
    return h;
  }

 private:
  void restore() {
    for (const auto& [s, r] : rec_) m_.linears[s] = r->inner();
    rec_.clear();
  }
  Model& m_;
  std::map<std::string, std::shared_ptr<RecordingLinear>> rec_;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::vector<std::string> quantize_slots(const Model& m, const QuantizeOptions& o) {
  const std::vector<std::string> out = quantize_slots(m.config, o);
  for (const auto& s : out) {
    const LinearForm& f = m.linear(s);
    PARE_CHECK(f.kind() == "dense", "quantize: slot '", s, "' is already ", f.kind(),
               "; quantize a model once (or exclude the slot)");
  }
  return out;
}

std::vector<std::string> quantize_slots(const ArchConfig& c, const QuantizeOptions& o) {
  const std::regex inc = compile(o.include, "include");
  const bool has_exc = !o.exclude.empty();
  const std::regex exc = has_exc ? compile(o.exclude, "exclude") : std::regex();
  std::vector<std::string> out;
  const Family& fam = family_by_name(c.family);
  const auto all = fam.linear_slots(c);
  for (const auto& s : all)
    if (std::regex_match(s, inc) && !(has_exc && std::regex_match(s, exc))) out.push_back(s);
  PARE_CHECK(!out.empty(), "quantize: include '", o.include, "' and exclude '", o.exclude,
             "' select no linear slot (slots are named like ", all.front(), ", blk.0.attn_q)");
  const auto shapes = fam.expected_shapes(c);
  for (const auto& s : out) {
    PARE_CHECK(!c.quantized.count(s), "quantize: slot '", s,
               "' is already quantized; quantize a model once (or exclude the slot)");
    const auto w = shapes.find(s + ".weight");
    PARE_ASSERT(w != shapes.end() && w->second.size() == 2, "quantize: no [out, in] weight shape for slot ", s);
    const int64_t in = w->second[1];
    PARE_CHECK(o.format.group_size == 0 || in % o.format.group_size == 0, "quantize: group_size ",
               o.format.group_size, " does not divide the input width ", in, " of slot '", s,
               "' (use a divisor of ", in, ", or 0 for per-channel scales)");
    PARE_CHECK(o.format.bits != 4 || in % 2 == 0, "quantize: slot '", s, "' has odd input width ",
               in, "; 4-bit codes pack two per byte");
  }
  return out;
}

namespace {

// The calibration inputs of GPTQ as the embedded forward states of its batches (`count` inputs in
// all); empty for RTN.
struct Calibration {
  std::function<std::vector<ForwardState>()> embed;
  int64_t count = 0;
};

nlohmann::json quantize_with(Model& m, const Calibration& calibration, const QuantizeOptions& o,
                             const std::function<void(const std::string&)>& log) {
  PARE_CHECK(o.format.bits == 4 || o.format.bits == 8, "quantize: bits: expected 4 or 8, got ",
             o.format.bits);
  PARE_CHECK(o.method == "rtn" || o.method == "gptq", "quantize: method: expected rtn or gptq, got '",
             o.method, "'");
  PARE_CHECK(m.config.quantized.empty() || m.config.quant_method == o.method,
             "quantize: the model is already quantized with ", m.config.quant_method,
             "; one model holds codes of one method");
  const std::vector<std::string> slots = quantize_slots(m, o);
  const auto t0 = std::chrono::steady_clock::now();
  torch::NoGradGuard ng;
  nlohmann::json per_slot = nlohmann::json::object();

  // Replaces `slot` (dense) by its quantized form.
  auto quantize_slot = [&](const std::string& slot, const torch::Tensor& H) {
    DenseLinear& d = m.dense(slot);
    QuantizedWeight q = H.defined() ? gptq_quantize(d.weight, H, o.format, o.gptq)
                                    : rtn_quantize(d.weight, o.format);
    nlohmann::json note = {{"in", d.weight.size(1)}, {"out", d.weight.size(0)}};
    if (H.defined()) {
      // Relative output error on the calibration inputs: tr(ΔW H ΔWᵀ) / tr(W H Wᵀ).
      torch::Tensor w = d.weight.to(torch::kFloat64), dw = q.dequantized(o.format.group_size) - w;
      note["rel_output_error"] = (at::matmul(dw, H) * dw).sum().item<double>() /
                                 (at::matmul(w, H) * w).sum().item<double>();
    }
    per_slot[slot] = note;
    m.linears[slot] = q.form(o.format, d.bias.defined() ? d.bias.detach().clone() : torch::Tensor());
    m.config.quantized[slot] = o.format;
  };

  if (o.method == "rtn") {
    for (const auto& s : slots) quantize_slot(s, torch::Tensor());
  } else {
    PARE_CHECK(calibration.count > 0, "quantize: gptq needs calibration inputs");
    const Family& fam = m.family();
    const int64_t L = m.config.num_hidden_layers;
    std::map<int64_t, std::vector<std::string>> by_layer;
    std::vector<std::string> outer;  // slots outside the blocks
    static const std::regex blk_re(R"(blk\.(\d+)\..*)");
    for (const auto& s : slots) {
      std::smatch mt;
      if (std::regex_match(s, mt, blk_re)) by_layer[std::stoll(mt[1].str())].push_back(s);
      else outer.push_back(s);
    }
    auto quantize_recorded = [&](Recorders& r) {
      for (const auto& [s, H] : r.finish()) quantize_slot(s, H);
    };
    std::vector<ForwardState> states;
    auto embed_all = [&] { states = calibration.embed(); };
    {
      Recorders rec(m, outer);
      embed_all();
      const size_t before = m.config.quantized.size();
      quantize_recorded(rec);
      if (m.config.quantized.size() != before) embed_all();  // the blocks see quantized embeddings
    }
    for (int64_t l = 0; l < L; ++l) {
      auto it = by_layer.find(l);
      if (it != by_layer.end()) {
        Recorders rec(m, it->second);
        for (const auto& s : states) {
          ForwardState t = s;
          fam.attention(m, l, t);
          fam.mlp(m, l, t);
        }
        quantize_recorded(rec);
      }
      for (auto& s : states) {
        fam.attention(m, l, s);
        fam.mlp(m, l, s);
      }
      log(concat("quantize: layer ", l + 1, "/", L, it == by_layer.end() ? " kept" : " quantized"));
    }
    if (m.config.quantized.size() < slots.size()) {
      Recorders rec(m, outer);  // slots not seen by embed (the head)
      for (auto& s : states) fam.head(m, s);
      quantize_recorded(rec);
    }
    for (const auto& s : slots)
      PARE_ASSERT(m.config.quantized.count(s), "quantize: slot ", s, " never saw calibration inputs");
  }
  m.config.quant_method = o.method;
  const double secs = seconds_since(t0);
  log(concat("quantize: ", slots.size(), " slots to ", o.format.bits, " bits in ", secs, " s"));
  return {{"method", o.method},
          {"bits", o.format.bits},
          {"group_size", o.format.group_size},
          {"symmetric", o.format.symmetric},
          {"act_order", o.gptq.act_order},
          {"damping", o.gptq.damping},
          {"calibration_samples", o.method == "gptq" ? calibration.count : 0},
          {"seconds", secs},
          {"slots", per_slot}};
}

}  // namespace

nlohmann::json quantize_model(Model& m, const torch::Tensor& calibration, const QuantizeOptions& o,
                              int64_t batch_size, const std::function<void(const std::string&)>& log) {
  Calibration c;
  if (calibration.defined()) {
    c.count = calibration.size(0);
    c.embed = [&] {
      std::vector<ForwardState> states;
      for (int64_t i = 0; i < calibration.size(0); i += batch_size)
        states.push_back(m.family().embed(
            m, calibration.narrow(0, i, std::min(batch_size, calibration.size(0) - i))));
      return states;
    };
  }
  return quantize_with(m, c, o, log);
}

nlohmann::json quantize_model(Model& m, const GraphDataset& graphs, const std::vector<int64_t>& idx,
                              const QuantizeOptions& o, int64_t batch_size,
                              const std::function<void(const std::string&)>& log) {
  PARE_CHECK(m.config.is_graph(), "quantize: calibration graphs given for a ", m.config.family,
             " model");
  PARE_CHECK(batch_size > 0, "quantize: batch size must be positive, got ", batch_size);
  // The states point at their batches, which must outlive them: built once, kept here.
  std::vector<GraphBatch> batches;
  for (size_t i = 0; i < idx.size(); i += size_t(batch_size))
    batches.push_back(collate(
        graphs, std::vector<int64_t>(idx.begin() + i, idx.begin() + std::min(idx.size(), i + size_t(batch_size)))));
  Calibration c;
  c.count = static_cast<int64_t>(idx.size());
  c.embed = [&] {
    std::vector<ForwardState> states;
    for (const GraphBatch& b : batches) states.push_back(m.family().embed_graph(m, b));
    return states;
  };
  return quantize_with(m, c, o, log);
}

QuantizeOptions quantize_options(const PassOptions& p) {
  QuantizeOptions o;
  o.format.bits = p.integer("bits");
  PARE_CHECK(o.format.bits == 4 || o.format.bits == 8, "quantize: bits: expected 4 or 8, got ",
             o.format.bits);
  o.format.group_size = p.integer("group_size");
  o.format.symmetric = p.boolean("symmetric");
  o.method = p.string("method");
  o.gptq.damping = p.number("damping");
  o.gptq.act_order = p.boolean("act_order");
  o.include = p.string("include");
  o.exclude = p.string("exclude");
  compile(o.include, "include");
  if (!o.exclude.empty()) compile(o.exclude, "exclude");
  return o;
}

namespace {

class QuantizePass : public Pass {
 public:
  explicit QuantizePass(const PassOptions& p) : o_(quantize_options(p)) {}
  PreservedAnalyses run(Model& m, AnalysisManager& am, PassContext& ctx) override {
    quantize_slots(m, o_);  // bad widths fail before calibration images load
    nlohmann::json notes;
    if (o_.method == "gptq" && m.config.is_graph()) {
      const CalibrationSet& cs = calibration_set(m, am, ctx, "quantize");
      PARE_CHECK(cs.graphs && !cs.graph_idx.empty(),
                 "quantize: gptq on a graph model needs calibration graphs (recipe data: "
                 "dataset: graph; they come from its train split)");
      notes = quantize_model(m, *cs.graphs, cs.graph_idx, o_, ctx.batch_size, ctx.log);
    } else {
      torch::Tensor calib;
      if (o_.method == "gptq") calib = calibration_inputs(m, am, ctx, "quantize");
      notes = quantize_model(m, calib, o_, ctx.batch_size, ctx.log);
    }
    if (ctx.notes) *ctx.notes = notes;
    return PreservedAnalyses::shapes();
  }

 private:
  QuantizeOptions o_;
};

}  // namespace

void register_quantize(PassTable& t) {
  PassInfo p;
  p.name = "quantize";
  p.summary = "weight-only 8/4-bit quantization of the linear slots (RTN or GPTQ)";
  p.source = "Frantar et al., GPTQ, ICLR 2023 (arXiv 2210.17323), Algorithm 1 and section 4";
  p.options = {
      {"bits", OptionSpec::kInteger, 4, 4.0, 8.0, true, {}, "bits per weight code: 4 or 8"},
      {"group_size", OptionSpec::kInteger, 128, 0.0, 65536.0, true, {},
       "input columns sharing a scale; 0 = one scale per output channel"},
      {"symmetric", OptionSpec::kBool, true, {}, {}, true, {},
       "symmetric grid (implicit zero point); false stores a zero point per group"},
      {"method", OptionSpec::kString, "gptq", {}, {}, true, {"rtn", "gptq"},
       "rtn: round to nearest; gptq: Hessian-aware error feedback on calibration data"},
      {"damping", OptionSpec::kNumber, 0.01, 0.0, 1.0, true, {},
       "gptq: fraction of mean(diag H) added to the Hessian diagonal"},
      {"act_order", OptionSpec::kBool, false, {}, {}, true, {},
       "gptq: quantize columns in decreasing Hessian-diagonal order (static groups)"},
      {"include", OptionSpec::kString, "blk\\..*", {}, {}, true, {},
       "regular expression over slot names to quantize (default: the blocks; not the patch "
       "embedding or the classifier; SliceGPT's shortcut matrices are not linear slots and stay "
       "float32)"},
      {"exclude", OptionSpec::kString, "", {}, {}, true, {},
       "regular expression over slot names to keep dense"},
  };
  p.create = [](const PassOptions& o) { return std::make_unique<QuantizePass>(o); };
  // Bits 5..7, bad regexes, group sizes that do not divide a slot: refused before the baseline
  // when quantize is the first pass (later, the widths are known only once earlier passes ran).
  p.check = [](const Model& m, const PassOptions& o) { quantize_slots(m, quantize_options(o)); };
  // Planned: the selected slots at the widths earlier stages leave, then marked quantized (so a
  // later slicegpt or a second quantize of the same slots is refused before anything runs).
  p.plan = [](ArchConfig& c, const PassOptions& p) -> bool {
    const QuantizeOptions o = quantize_options(p);
    for (const auto& s : quantize_slots(c, o)) c.quantized[s] = o.format;
    c.quant_method = o.method;
    return true;
  };
  t.add(std::move(p));
}

}  // namespace pare
