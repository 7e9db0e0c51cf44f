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
#include <cmath>

#include "error.h"
#include "family.h"

namespace pare {

int64_t sliced_width(int64_t hidden, double slicing, int64_t round_to) {
  if (slicing <= 0.0) return hidden;
  int64_t d = static_cast<int64_t>(std::floor((1.0 - slicing) * double(hidden) + 1e-9));
  if (round_to > 1) d = (d / round_to) * round_to;
  return std::max<int64_t>(std::min(d, hidden), std::min(round_to, hidden));
}

namespace {

std::string blk(int64_t l) { return "blk." + std::to_string(l) + "."; }

// Folds LayerNorm `norm` (α, β) into the linears that read it.
void fold_norm_into(Model& m, const std::string& norm, const std::vector<std::string>& readers) {
  torch::Tensor alpha = m.tensors.at(norm + ".weight").to(torch::kFloat64);
  torch::Tensor beta = m.tensors.at(norm + ".bias").to(torch::kFloat64);
  for (const auto& slot : readers) {
    DenseLinear& d = m.dense(slot);
    torch::Tensor w = d.weight.to(torch::kFloat64);
    torch::Tensor b = d.bias.defined() ? d.bias.to(torch::kFloat64)
                                       : torch::zeros({w.size(0)}, torch::kFloat64);
    d.bias = (b + at::matmul(w, beta)).to(d.weight.scalar_type());
    d.weight = (w * alpha.unsqueeze(0)).to(d.weight.scalar_type());
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
  torch::Tensor x = t.to(torch::kFloat64);
  t = (x - x.mean(-1, true)).to(t.scalar_type());
}

// Principal directions of the rows of X [..., D]: eigenvectors of Σ XᵀX (float64, damped),
// sorted by decreasing eigenvalue. Returns (Q [D, D], eigenvalues descending).
std::pair<torch::Tensor, torch::Tensor> pca(const torch::Tensor& cov, double damping) {
  torch::Tensor c = cov.clone();
  c.diagonal().add_(damping * c.diagonal().mean().item<double>());
  auto [evals, evecs] = at::linalg_eigh(c);  // ascending
  torch::Tensor order = at::argsort(evals, -1, true);
  return {evecs.index_select(1, order), evals.index_select(0, order)};
}

// Σ XᵀX over every token of every batch, float64.
torch::Tensor covariance(const std::vector<ForwardState>& states) {
  torch::Tensor c;
  for (const auto& s : states) {
    torch::Tensor f = s.x.reshape({-1, s.x.size(-1)}).to(torch::kFloat64);
    torch::Tensor p = at::matmul(f.t(), f);
    c = c.defined() ? c + p : p;
  }
  return c;
}

}  // namespace

void fold_layernorms(Model& m) {
  ArchConfig& c = m.config;
  if (c.norm == "rmsnorm") return;
  PARE_CHECK(!c.shortcuts, "slicegpt: the model already has shortcut matrices");
  const auto dtype = m.dtype();
  m.to_dtype(torch::kFloat64);
  if (c.is_lm() && c.tie_word_embeddings) {
    // The head folds the final norm and the embedding is centred (LayerNorm) and rotated at
    // site 0 while the head reads site 2L: they stop being one matrix. Untied, the head's
    // vocab × hidden weights count as parameters of their own.
    m.linears["lm_head"] = std::make_shared<DenseLinear>(m.at("tok_embd").clone(), torch::Tensor());
    c.tie_word_embeddings = false;
  }
  // RMSNorm (Llama) has no mean to subtract: folding its weight is enough. LayerNorm needs every
  // residual writer centred so that its mean subtraction becomes a no-op (SliceGPT §3.2).
  const bool centre = c.norm == "layernorm";
  if (c.family == "vit") {
    centre_writer(m, "patch_embd");
    centre_last_axis(m.tensors.at("cls_token"));
    centre_last_axis(m.tensors.at("pos_embd"));
  } else if (centre) {
    centre_last_axis(m.tensors.at("tok_embd"));
    if (m.tensors.count("pos_embd")) centre_last_axis(m.tensors.at("pos_embd"));
  }
  auto fold = [&](const std::string& norm, const std::vector<std::string>& readers) {
    if (centre) {
      fold_norm_into(m, norm, readers);
      return;
    }
    // RMSNorm weight γ only: W ← W·diag(γ).
    torch::Tensor g = m.tensors.at(norm + ".weight").to(torch::kFloat64);
    for (const auto& slot : readers) {
      DenseLinear& d = m.dense(slot);
      d.weight = (d.weight.to(torch::kFloat64) * g.unsqueeze(0)).to(d.weight.scalar_type());
    }
    m.tensors.erase(norm + ".weight");
  };
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string b = blk(l);
    std::vector<std::string> attn_readers{b + "attn_q", b + "attn_k", b + "attn_v"};
    std::vector<std::string> mlp_readers;
    for (const char* u : {"ffn_gate", "ffn_up"})
      if (m.linears.count(b + u)) mlp_readers.push_back(b + u);
    if (c.parallel_blocks()) {
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
  fold("out_norm", {c.family == "vit" ? "cls_head" : "lm_head"});
  c.norm = "rmsnorm";
  m.to_dtype(dtype);
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
  m.to_dtype(torch::kFloat64);
  fold_layernorms(m);
  Rewriter rw(m);
  rw.add_shortcuts();

  nlohmann::json notes = {{"hidden_size", D}, {"sliced_width", d}, {"slice_head", o.slice_head}};
  nlohmann::json kept = nlohmann::json::array();
  // Calibration activations at the current site, in batches, in the site's current basis.
  std::vector<ForwardState> states;
  for (int64_t i = 0; i < calibration.size(0); i += batch_size)
    states.push_back(fam.embed(m, calibration.narrow(0, i, std::min(batch_size, calibration.size(0) - i))));

  auto slice_site = [&](int64_t site, int64_t width) {
    auto [Q, ev] = pca(covariance(states), o.damping);
    torch::Tensor Qd = Q.narrow(1, 0, width).contiguous();
    rw.rotate("resid." + std::to_string(site), Qd);
    for (auto& s : states) s.x = at::matmul(s.x, Qd);
    double frac = ev.narrow(0, 0, width).sum().item<double>() / ev.sum().item<double>();
    kept.push_back({{"site", site}, {"width", width}, {"variance_kept", frac}});
  };

  slice_site(0, d);
  for (int64_t l = 0; l < L; ++l) {
    for (auto& s : states) fam.attention(m, l, s);
    // Parallel blocks (phi) have no residual state between attention and MLP to slice.
    if (!m.config.parallel_blocks()) slice_site(2 * l + 1, d);
    for (auto& s : states) fam.mlp(m, l, s);
    if (l + 1 < L || o.slice_head) slice_site(2 * l + 2, d);
    log(concat("slicegpt: layer ", l + 1, "/", L, " sliced to ", d));
  }
  m.to_dtype(dtype);
  notes["sites"] = kept;
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
  }
  PreservedAnalyses run(Model& m, AnalysisManager& am, PassContext& ctx) override {
    const torch::Tensor calib = calibration_inputs(m, am, ctx, "slicegpt");
    nlohmann::json notes = slice_gpt(m, calib, o_, ctx.batch_size, ctx.log);
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
  };
  p.create = [](const PassOptions& o) { return std::make_unique<SliceGptPass>(o); };
  t.add(std::move(p));
}

}  // namespace pare
