// slicegpt — SliceGPT: delete rows and columns of every weight matrix by rotating the residual
// stream onto its principal components and slicing the hidden dimension.
//
// Paper: Ashkboos, Croci, Nascimento, Hoefler, Hensman, "SliceGPT: Compress Large Language Models
// by Deleting Rows and Columns", ICLR 2024 (arXiv 2401.15024), §3.2 (LayerNorm → RMSNorm), §3.3
// (rotations and slicing, shortcut matrices), §3.4 (PCA on calibration data). Details from
// METHODS.md: float64 folding and PCA, 1% damping, d rounded down to a multiple of 8, D stays the
// normaliser of the folded RMSNorm, the head unsliced by default.
//
// Steps: (1) fold each LayerNorm's α/β into the next linear and centre the embeddings and every
// residual writer, so each norm becomes x·rsqrt(Σx²/D + eps) (exact); (2) decouple the residual
// sites with identity shortcut matrices; (3) layer by layer on the calibration activations, for
// each site s (attention input, MLP input, next block input) take Q_s = eigenvectors of Σ XᵀX of
// the site's signal computed with the already-sliced upstream weights, and Rewriter::rotate the
// site by Q_s[:, :d] — readers W ← W·Q, writers W ← Qᵀ·W, shortcuts Q_{s-1}ᵀ·Q_s.
//
// Invariant: with slicing 0 the rotated model computes the same function (orthogonal Q);
// shapes always match the config (Rewriter). Preserves: nothing (shapes change).
#include "slicegpt.h"

#include <ATen/ATen.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <cmath>

#include "families/blocks.h"
#include "base/error.h"
#include "families/family.h"
#include "base/memstat.h"
#include "ir/spill.h"

namespace pare {

int64_t sliced_width(int64_t hidden, double slicing, int64_t round_to) {
  if (slicing <= 0.0) return hidden;
  int64_t d = static_cast<int64_t>(std::floor((1.0 - slicing) * double(hidden) + 1e-9));
  if (round_to > 1) d = (d / round_to) * round_to;
  return std::max<int64_t>(std::min(d, hidden), std::min(round_to, hidden));
}

namespace {

std::string blk(int64_t l) { return "blk." + std::to_string(l) + "."; }

// fn(t) computed in float64 over chunks of rows (axis 0) and stored in t's dtype, so a
// vocab × hidden matrix never exists in float64 at once. fn must treat rows independently. With a
// scratch file a result of more than one chunk goes there, and each finished chunk of the source
// and the result leaves memory behind it (as in Rewriter::rotate).
torch::Tensor rows_f64(const torch::Tensor& t,
                       const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                       SpillFile* scratch = nullptr) {
  // Chunks of at most 2M elements (16 MiB in float64).
  const int64_t kRows =
      std::max<int64_t>(1, (int64_t(2) << 20) / std::max<int64_t>(1, t.numel() / std::max<int64_t>(1, t.size(0))));
  const bool stream = scratch && t.dim() >= 2 && t.is_contiguous() &&
                      t.numel() * int64_t(t.element_size()) >= (int64_t(1) << 20);
  torch::Tensor out;
  for (int64_t i = 0; i < t.size(0); i += kRows) {
    const int64_t n = std::min(kRows, t.size(0) - i);
    torch::Tensor r = fn(t.narrow(0, i, n).to(torch::kFloat64));
    if (!out.defined()) {
      std::vector<int64_t> shape = r.sizes().vec();
      shape[0] = t.size(0);
      out = stream ? scratch->allocate(shape, t.scalar_type()) : torch::empty(shape, t.options());
    }
    out.narrow(0, i, n).copy_(r);
    if (stream) {
      page_out(t.narrow(0, i, n));
      SpillFile::release(out.narrow(0, i, n));
      trim_heap();
    }
  }
  return out;
}

// Folds LayerNorm `norm` (α, β) into the linears that read it: W ← W·diag(α), b ← b + W·β.
void fold_norm_into(Model& m, const std::string& norm, const std::vector<std::string>& readers,
                    SpillFile* scratch) {
  torch::Tensor alpha = m.tensors.at(norm + ".weight").to(torch::kFloat64);
  torch::Tensor beta = m.tensors.at(norm + ".bias").to(torch::kFloat64);
  for (const auto& slot : readers) {
    DenseLinear& d = m.dense(slot);
    torch::Tensor wb = rows_f64(d.weight, [&](const torch::Tensor& w) { return at::matmul(w, beta); });
    if (d.bias.defined())
      wb = (d.bias.to(torch::kFloat64) + wb.to(torch::kFloat64)).to(d.weight.scalar_type());
    d.bias = wb;
    d.weight = rows_f64(d.weight, [&](const torch::Tensor& w) { return w * alpha.unsqueeze(0); },
                        scratch);
  }
  m.tensors.erase(norm + ".weight");
  m.tensors.erase(norm + ".bias");
}

// Subtracts the mean over the hidden axis of a residual writer (linear: output rows).
void centre_writer(Model& m, const std::string& slot) {
  DenseLinear& d = m.dense(slot);
  torch::Tensor w = d.weight.to(torch::kFloat64);
  d.weight = (w - w.mean(0, true)).to(d.weight.scalar_type());
  if (d.bias.defined()) {
    torch::Tensor b = d.bias.to(torch::kFloat64);
    d.bias = (b - b.mean()).to(d.bias.scalar_type());
  }
}

void centre_last_axis(torch::Tensor& t) {
  if (t.dim() < 2) {
    torch::Tensor x = t.to(torch::kFloat64);
    t = (x - x.mean(-1, true)).to(t.scalar_type());
    return;
  }
  t = rows_f64(t, [](const torch::Tensor& x) { return x - x.mean(-1, true); });
}

// Principal directions of the rows of X [..., D]: eigenvectors of Σ XᵀX (float64, damped; `cov`
// is consumed), sorted by decreasing eigenvalue. Returns (Q [D, width]: the first `width`
// directions, eigenvalues [D] descending). Only the kept columns are copied out of LAPACK's
// result, so the transient memory is the covariance, the eigenvectors and LAPACK's work space.
std::pair<torch::Tensor, torch::Tensor> pca(torch::Tensor cov, double damping, int64_t width) {
  cov.diagonal().add_(damping * cov.diagonal().mean().item<double>());
  auto [evals, evecs] = at::linalg_eigh(cov);  // ascending
  cov = torch::Tensor();
  const int64_t D = evals.size(0);
  return {evecs.narrow(1, D - width, width).flip(1).contiguous(), evals.flip(0)};
}

// Σ XᵀX over every token of every batch, float64.
torch::Tensor covariance(const std::vector<ForwardState>& states) {
  torch::Tensor c;
  for (const auto& s : states) {
    torch::Tensor f = s.x.reshape({-1, s.x.size(-1)}).to(torch::kFloat64);
    if (c.defined())
      c.addmm_(f.t(), f);
    else
      c = at::matmul(f.t(), f);
  }
  return c;
}

}  // namespace

namespace {

// Folding, in three parts so that slice_gpt can fold one layer right before it first rotates
// that layer's weights (every tensor touched becomes a new, owned copy: folding the whole model
// up front would copy all of it out of the memory-mapped checkpoint at once).
struct Folder {
  Model& m;
  bool centre = false;  // LayerNorm: centre the residual writers (SliceGPT §3.2)
  SpillFile* scratch = nullptr;  // where large folded matrices go (rows_f64)

  // Unties a tied head and centres the embeddings; from here on the config's norm is the folded
  // RMSNorm (a layer runs only after fold_layer).
  void prelude() {
    ArchConfig& c = m.config;
    PARE_CHECK(!c.shortcuts, "slicegpt: the model already has shortcut matrices");
    if (c.is_lm() && c.tie_word_embeddings) {
      // The head folds the final norm and the embedding is centred (LayerNorm) and rotated at
      // site 0 while the head reads site 2L: they stop being one matrix. Untied, the head's
      // vocab × hidden weights count as parameters of their own.
      const torch::Tensor& e = m.at("tok_embd");
      m.linears["lm_head"] = std::make_shared<DenseLinear>(
          scratch ? rows_f64(e, [](const torch::Tensor& x) { return x; }, scratch) : e.clone(),
          torch::Tensor());
      c.tie_word_embeddings = false;
    }
    // RMSNorm (Llama) has no mean to subtract: folding its weight is enough. LayerNorm needs
    // every residual writer centred so that its mean subtraction becomes a no-op.
    centre = c.norm == "layernorm";
    if (c.family == "vit") {
      centre_writer(m, "patch_embd");
      centre_last_axis(m.tensors.at("cls_token"));
      centre_last_axis(m.tensors.at("pos_embd"));
    } else if (centre) {
      centre_last_axis(m.tensors.at("tok_embd"));
      if (m.tensors.count("pos_embd")) centre_last_axis(m.tensors.at("pos_embd"));
    }
    c.norm = "rmsnorm";
  }

  void fold(const std::string& norm, const std::vector<std::string>& readers) {
    if (centre) {
      fold_norm_into(m, norm, readers, scratch);
      return;
    }
    // RMSNorm weight γ only: W ← W·diag(γ).
    torch::Tensor g = m.tensors.at(norm + ".weight").to(torch::kFloat64);
    for (const auto& slot : readers)
      m.dense(slot).weight = rows_f64(
          m.dense(slot).weight, [&](const torch::Tensor& w) { return w * g.unsqueeze(0); },
          scratch);
    m.tensors.erase(norm + ".weight");
  }

  void layer(int64_t l) {
    const std::string b = blk(l);
    std::vector<std::string> attn_readers{b + "attn_q", b + "attn_k", b + "attn_v"};
    std::vector<std::string> mlp_readers;
    for (const char* u : {"ffn_gate", "ffn_up"})
      if (m.linears.count(b + u)) mlp_readers.push_back(b + u);
    if (m.config.parallel_blocks()) {
      // Phi: one norm feeds attention and MLP.
      attn_readers.insert(attn_readers.end(), mlp_readers.begin(), mlp_readers.end());
      fold(b + "attn_norm", attn_readers);
    } else {
      fold(b + "attn_norm", attn_readers);
      fold(b + "ffn_norm", mlp_readers);
    }
    if (centre) {
      centre_writer(m, b + "attn_o");
      centre_writer(m, b + "ffn_down");
    }
  }

  void final() { fold("out_norm", {m.config.family == "vit" ? "cls_head" : "lm_head"}); }
};

void check_foldable(const ArchConfig& c) {
  PARE_CHECK(c.family != "gps", "slicegpt: the gps family is refused: its residual stream passes ",
             "through BatchNorm (per-channel running statistics and affine weights), which does not ",
             "commute with a rotation, so SliceGPT's invariance (Ashkboos et al. 2024, section 3.1) ",
             "does not hold");
  PARE_CHECK(c.family != "bert", "slicegpt: the bert family is refused: its blocks are post-LN ",
             "(LayerNorm after each residual add), so no norm can be folded into the next linear and a ",
             "rotation of the residual stream does not pass through the norms; SliceGPT's invariance ",
             "(Ashkboos et al. 2024, section 3.1) needs pre-LN blocks");
  for (size_t l = 0; l < c.layers.size(); ++l)
    PARE_CHECK(c.layers[l].attention && c.layers[l].ffn, "slicegpt: layer ", l, " has no ",
               c.layers[l].attention ? "FFN" : "attention",
               " branch (removed by gtsp); slice the model before branches are removed");
}

}  // namespace

void fold_layernorms(Model& m) {
  if (m.config.norm == "rmsnorm") return;
  check_foldable(m.config);
  Folder f{m};
  f.prelude();
  for (int64_t l = 0; l < m.config.num_hidden_layers; ++l) f.layer(l);
  f.final();
}

nlohmann::json slice_gpt(Model& m, const torch::Tensor& calibration, const SliceGptOptions& o,
                         int64_t batch_size, const std::function<void(const std::string&)>& log) {
  PARE_CHECK(o.slicing >= 0.0 && o.slicing < 1.0, "slicegpt: slicing must be in [0, 1), got ",
             o.slicing);
  PARE_CHECK(!m.config.shortcuts, "slicegpt: the model is already sliced (has shortcut matrices); ",
             "slice the original model instead");
  const Family& fam = m.family();
  const auto dtype = m.dtype();
  const int64_t D = m.config.hidden_size, L = m.config.num_hidden_layers;
  for (int64_t s = 0; s < m.config.num_sites(); ++s)
    PARE_CHECK(m.config.site_dim(s) == D, "slicegpt: residual width at site ", s, " is ",
               m.config.site_dim(s), ", expected hidden_size ", D);
  PARE_CHECK(o.round_to <= D, "slicegpt: round_to (", o.round_to, ") exceeds hidden_size (", D,
             "); nothing could be sliced");
  const int64_t d = sliced_width(D, o.slicing, o.round_to);
  torch::NoGradGuard ng;
  // Memory figures for the notes: the peak RSS of this call against its parts (one layer's
  // weights as loaded, the calibration activations of one site).
  const bool peak_reset = reset_peak_rss();
  const int64_t rss_start = current_rss_bytes();
  int64_t largest_unit = 0;
  {
    const int64_t elem = torch::elementSize(dtype);
    for (int64_t l = 0; l < L; ++l) largest_unit = std::max(largest_unit, params_under(m, blk(l)) * elem);
    for (const char* u : {"tok_embd", "lm_head", "patch_embd", "cls_head"})
      largest_unit = std::max(largest_unit, params_under(m, u) * elem);
  }
  // Layer by layer (SliceGPT §3.4 and its reference code): only the layer being sliced is held in
  // float64 (and, once rotated, as a new owned copy); the rest stays as loaded — memory-mapped
  // for a safetensors checkpoint — until its turn. The calibration activations of the current
  // site are the only other large state.
  const bool folded = m.config.norm == "rmsnorm";
  check_foldable(m.config);
  PARE_CHECK(o.precision == "float64" || o.precision == "float32",
             "slicegpt: precision: expected float64 or float32, got '", o.precision, "'");
  // The dtype of the layer being sliced and of the calibration forward; PCA is float64 always.
  const torch::ScalarType work = o.precision == "float64" ? torch::kFloat64 : torch::kFloat32;
  std::unique_ptr<SpillFile> spill;
  if (!o.spill_dir.empty()) spill = std::make_unique<SpillFile>(o.spill_dir);
  Folder fold{m};
  fold.scratch = spill.get();
  if (!folded) fold.prelude();
  Rewriter rw(m);
  rw.scratch = spill.get();
  rw.add_shortcuts();

  nlohmann::json notes = {{"hidden_size", D}, {"sliced_width", d}, {"slice_head", o.slice_head}};
  nlohmann::json kept = nlohmann::json::array();
  // Calibration activations at the current site, in batches, in the site's current basis.
  std::vector<ForwardState> states;
  for (int64_t i = 0; i < calibration.size(0); i += batch_size) {
    ForwardState s =
        fam.embed(m, calibration.narrow(0, i, std::min(batch_size, calibration.size(0) - i)));
    for (torch::Tensor* t : {&s.x, &s.rope_cos, &s.rope_sin, &s.causal_mask})
      if (t->defined()) *t = t->to(work);
    states.push_back(std::move(s));
  }

  auto slice_site = [&](int64_t site, int64_t width) {
    auto [Qd, ev] = pca(covariance(states), o.damping, width);
    rw.rotate("resid." + std::to_string(site), Qd);
    for (auto& s : states) s.x = at::matmul(s.x, Qd.to(s.x.scalar_type()));
    double frac = ev.narrow(0, 0, width).sum().item<double>() / ev.sum().item<double>();
    kept.push_back({{"site", site}, {"width", width}, {"variance_kept", frac}});
    if (spill) trim_heap();  // pre-rotation copies and the PCA's work space
  };

  int64_t calibration_bytes = 0;
  for (const auto& s : states) calibration_bytes += s.x.numel() * s.x.element_size();
  // Replaces every tensor named under `prefix` by a view of the scratch file.
  // Every tensor of the model named under `prefix` (linear weights and biases included).
  auto each_under = [&](const std::string& prefix, const std::function<void(torch::Tensor&)>& fn) {
    auto under = [&](const std::string& n) { return n.compare(0, prefix.size(), prefix) == 0; };
    for (auto& [name, t] : m.tensors)
      if (under(name)) fn(t);
    for (auto& [slot, form] : m.linears)
      if (under(slot)) {
        DenseLinear& dl = m.dense(slot);
        fn(dl.weight);
        if (dl.bias.defined()) fn(dl.bias);
      }
  };
  // Moves every tensor under `prefix` to the scratch file; those already there (large rotated or
  // folded ones) just leave memory.
  auto spill_under = [&](const std::string& prefix) {
    each_under(prefix, [&](torch::Tensor& t) {
      if (spill->owns(t))
        SpillFile::release(t);
      else
        t = spill->spill(t);
    });
  };
  m.to_dtype(work, blk(0));
  if (!folded) fold.layer(0);
  slice_site(0, d);
  if (spill)  // site 0 is the last to touch the embeddings
    for (const char* e : {"tok_embd", "pos_embd", "patch_embd", "cls_token"}) spill_under(e);
  // After a calibration forward the layer's weights are resident; the rotations that follow read
  // them again chunk by chunk, so with a scratch file they leave memory first (file-backed pages
  // only: the checkpoint's map and the scratch file).
  auto drop_pages = [&](int64_t l) {
    if (!spill) return;
    each_under(blk(l), [&](torch::Tensor& t) {
      if (spill->owns(t))
        SpillFile::release(t);
      else
        page_out(t);
    });
  };
  for (int64_t l = 0; l < L; ++l) {
    for (auto& s : states) fam.attention(m, l, s);
    drop_pages(l);
    // Parallel blocks (phi) have no residual state between attention and MLP to slice.
    if (!m.config.parallel_blocks()) slice_site(2 * l + 1, d);
    for (auto& s : states) fam.mlp(m, l, s);
    drop_pages(l);
    // Layer l's forward is done: back to its dtype before the next layer becomes float64, so
    // only one layer is ever held in float64 (its ffn_down is still rotated below, computed in
    // float64 by the Rewriter and stored in its dtype).
    m.to_dtype(dtype, blk(l));
    // Site 2l+2 is read by the next layer (or the head): fold it before rotating it.
    if (l + 1 < L) {
      m.to_dtype(work, blk(l + 1));
      if (!folded) fold.layer(l + 1);
    } else if (!folded) {
      fold.final();
    }
    if (l + 1 < L || o.slice_head) slice_site(2 * l + 2, d);
    if (spill) {
      spill_under(blk(l));
      trim_heap();  // the finished layer's working and pre-rotation copies
    }
    log(concat("slicegpt: layer ", l + 1, "/", L, " sliced to ", d));
  }
  m.to_dtype(dtype);
  notes["sites"] = kept;
  notes["memory"] = {{"rss_start_bytes", rss_start},
                     {"peak_rss_bytes", peak_reset ? peak_rss_bytes() : -1},
                     {"largest_layer_bytes", largest_unit},
                     {"calibration_activation_bytes", calibration_bytes}};
  return notes;
}

namespace {

class SliceGptPass : public Pass {
 public:
  explicit SliceGptPass(const PassOptions& p) {
    o_.slicing = p.number("slicing");
    o_.round_to = p.integer("round_to");
    o_.slice_head = p.boolean("slice_head");
    o_.damping = p.number("damping");
    o_.spill_dir = p.boolean("spill") ? std::filesystem::temp_directory_path().string() : "";
    o_.calibration_batch = p.integer("calibration_batch");
    o_.precision = p.string("precision");
  }
  PreservedAnalyses run(Model& m, AnalysisManager& am, PassContext& ctx) override {
    check_foldable(m.config);  // before asking for calibration inputs a gps model cannot have
    const torch::Tensor calib = calibration_inputs(m, am, ctx, "slicegpt");
    nlohmann::json notes = slice_gpt(
        m, calib, o_, o_.calibration_batch > 0 ? o_.calibration_batch : ctx.batch_size, ctx.log);
    if (ctx.notes) *ctx.notes = notes;
    return PreservedAnalyses::none();
  }

 private:
  SliceGptOptions o_;
};

}  // namespace

void register_slicegpt(PassTable& t) {
  PassInfo p;
  p.name = "slicegpt";
  p.summary = "rotate the residual stream onto its principal components and slice the hidden size";
  p.source = "Ashkboos et al., SliceGPT, ICLR 2024 (arXiv 2401.15024), sections 3.2-3.4";
  p.options = {
      {"slicing", OptionSpec::kNumber, 0.25, 0.0, 1.0, false, {},
       "fraction of the hidden size removed, in [0, 1)"},
      {"round_to", OptionSpec::kInteger, 8, 1.0, 4096.0, true, {},
       "round the kept width down to a multiple of this"},
      {"slice_head", OptionSpec::kBool, false, {}, {}, true, {},
       "also slice the classifier input (the reference keeps the head unsliced)"},
      {"damping", OptionSpec::kNumber, 0.01, 0.0, 1.0, true, {},
       "fraction of mean(diag C) added to the covariance diagonal"},
      {"spill", OptionSpec::kBool, true, {}, {}, true, {},
       "keep finished layers in an unlinked scratch file in TMPDIR, memory-mapped, instead of "
       "in memory"},
      {"precision", OptionSpec::kString, "float64", {}, {}, true, {"float64", "float32"},
       "dtype of the layer being sliced and of the calibration forward (PCA is float64 always); "
       "float32 holds half the memory"},
      {"calibration_batch", OptionSpec::kInteger, 0, 0.0, 1e6, true, {},
       "calibration windows (images) per forward batch, 0 = the eval batch size; smaller holds "
       "less memory (the float64 forward's temporaries), same result"},
  };
  p.check = [](const Model& m, const PassOptions&) { check_foldable(m.config); };
  // The shapes slice_gpt will leave: every residual site (the head's only with slice_head) at
  // sliced_width, shortcut matrices; refused as slice_gpt refuses (sliced or quantized models).
  p.plan = [](ArchConfig& c, const PassOptions& p) -> bool {
    check_foldable(c);
    PARE_CHECK(!c.shortcuts, "slicegpt: the model is already sliced (has shortcut matrices); ",
               "slice the original model instead");
    for (const auto& s : family_by_name(c.family).linear_slots(c))
      PARE_CHECK(!c.quantized.count(s), "slicegpt: slot '", s,
                 "' is quantized; slicegpt needs the dense form (put quantize after slicegpt)");
    const int64_t D = c.hidden_size, round_to = p.integer("round_to");
    PARE_CHECK(round_to <= D, "slicegpt: round_to (", round_to, ") exceeds hidden_size (", D,
               "); nothing could be sliced");
    const int64_t d = sliced_width(D, p.number("slicing"), round_to);
    for (int64_t s = 0; s + 1 < c.num_sites(); ++s)
      if (!(c.parallel_blocks() && s % 2 == 1)) c.set_site_dim(s, d);
    if (p.boolean("slice_head")) c.set_site_dim(c.num_sites() - 1, d);
    c.shortcuts = true;
    return true;
  };
  p.create = [](const PassOptions& o) { return std::make_unique<SliceGptPass>(o); };
  t.add(std::move(p));
}

}  // namespace pare
