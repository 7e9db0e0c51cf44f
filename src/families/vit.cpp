#include "families/vit.h"

#include <ATen/ATen.h>
#include <torch/nn/init.h>

#include <array>
#include <cmath>
#include <regex>

#include "families/attention.h"
#include "families/bert.h"
#include "families/blocks.h"
#include "families/decoder.h"
#include "base/error.h"
#include "families/gps.h"
#include "ir/linear.h"
#include "ir/quant_linear.h"
#include "families/token_pruning.h"

namespace pare {

torch::Tensor Family::forward(const Model& m, const torch::Tensor& inputs) const {
  ForwardState s = embed(m, inputs);
  for (int64_t l = 0; l < m.config.num_hidden_layers; ++l) {
    attention(m, l, s);
    mlp(m, l, s);
  }
  return head(m, s);
}

torch::Tensor Family::forward_graph(const Model& m, const GraphBatch& batch) const {
  ForwardState s = embed_graph(m, batch);
  for (int64_t l = 0; l < m.config.num_hidden_layers; ++l) {
    attention(m, l, s);
    mlp(m, l, s);
  }
  return head(m, s);
}

namespace {

std::string blk(int64_t l) { return "blk." + std::to_string(l) + "."; }

using Shape = std::vector<int64_t>;

class VitFamily : public Family {
 public:
  std::string name() const override { return "vit"; }

  std::vector<std::string> linear_slots(const ArchConfig& c) const override {
    std::vector<std::string> s{"patch_embd", "cls_head"};
    append_encoder_block_slots(c, s);
    return s;
  }

  std::map<std::string, Shape> expected_shapes(const ArchConfig& c) const override {
    std::map<std::string, Shape> e;
    const int64_t d0 = c.site_dim(0), P = c.num_channels * c.patch_size * c.patch_size;
    e["patch_embd.weight"] = {d0, P};
    e["patch_embd.bias"] = {d0};
    e["cls_token"] = {1, 1, d0};
    e["pos_embd"] = {1, c.seq_len(), d0};
    const bool ln = c.norm == "layernorm";
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const auto& d = c.layers[l];
      const int64_t inner = d.heads * d.head_dim, next = c.site_dim(2 * l + 2);
      const std::string b = blk(l);
      if (ln && d.attention) e[b + "attn_norm.weight"] = e[b + "attn_norm.bias"] = {d.attn_in};
      if (ln && d.ffn) e[b + "ffn_norm.weight"] = e[b + "ffn_norm.bias"] = {d.mlp_in};
      if (d.attention) {
        for (const char* n : {"attn_q", "attn_k", "attn_v"}) {
          e[b + n + ".weight"] = {inner, d.attn_in};
          e[b + n + ".bias"] = {inner};
        }
        e[b + "attn_o.weight"] = {d.mlp_in, inner};
        e[b + "attn_o.bias"] = {d.mlp_in};
      }
      if (d.ffn) {
        e[b + "ffn_up.weight"] = {d.intermediate_size, d.mlp_in};
        e[b + "ffn_up.bias"] = {d.intermediate_size};
        e[b + "ffn_down.weight"] = {next, d.intermediate_size};
        e[b + "ffn_down.bias"] = {next};
      }
      if (const TokenPruneStep* st = c.prune_step(l); st && st->method == "learned") {
        e[b + "token_score.weight"] = {d.attn_in};
        e[b + "token_score.bias"] = {1};
      }
      if (c.shortcuts) {
        e[b + "attn_shortcut"] = {d.attn_in, d.mlp_in};
        e[b + "ffn_shortcut"] = {d.mlp_in, next};
      }
    }
    if (ln) e["out_norm.weight"] = e["out_norm.bias"] = {c.out_dim};
    e["cls_head.weight"] = {c.num_labels, c.out_dim};
    e["cls_head.bias"] = {c.num_labels};
    apply_quantized_shapes(c, linear_slots(c), e, "config.json");
    return e;
  }

  Model init(const ArchConfig& c, uint64_t seed) const override {
    torch::manual_seed(seed);
    Model m;
    m.config = c;
    auto shapes = expected_shapes(c);
    for (const auto& slot : linear_slots(c)) {
      torch::Tensor w = torch::empty(shapes.at(slot + ".weight"));
      w.normal_(0.0, 0.02).clamp_(-0.04, 0.04);  // truncated normal, std 0.02 (HF init)
      m.linears[slot] = std::make_shared<DenseLinear>(w, torch::zeros(shapes.at(slot + ".bias")));
    }
    for (const auto& [name, shape] : shapes) {
      if (m.has(name)) continue;
      torch::Tensor t;
      if (name.find("norm.weight") != std::string::npos)
        t = torch::ones(shape);
      else if (name.find("norm.bias") != std::string::npos)
        t = torch::zeros(shape);
      else if (name.find("shortcut") != std::string::npos)
        t = torch::eye(shape[0], shape[1]);
      else {
        t = torch::empty(shape);
        t.normal_(0.0, 0.02).clamp_(-0.04, 0.04);  // truncated normal, std 0.02 (HF init)
      }
      m.tensors[name] = t;
    }
    return m;
  }

  std::vector<DimGroup> dim_groups(const Model& m) const override {
    const ArchConfig& c = m.config;
    const int64_t L = c.num_hidden_layers;
    const bool ln = c.norm == "layernorm";
    // Readers and writers of each residual site.
    std::vector<std::vector<TensorUse>> site(c.num_sites());
    auto norm_uses = [&](int64_t s, const std::string& slot) {
      if (!ln) return;
      site[s].push_back({slot + ".weight", 0, 1, true});
      site[s].push_back({slot + ".bias", 0, 1, true});
    };
    site[0] = {{"patch_embd.weight", 0}, {"patch_embd.bias", 0}, {"cls_token", 2}, {"pos_embd", 2}};
    for (int64_t l = 0; l < L; ++l) {
      const std::string b = blk(l);
      const int64_t a = 2 * l, f = 2 * l + 1, n = 2 * l + 2;
      const auto& d = c.layers[l];
      if (d.attention) {
        norm_uses(a, b + "attn_norm");
        for (const char* q : {"attn_q", "attn_k", "attn_v"}) site[a].push_back({b + q + ".weight", 1});
        site[f].push_back({b + "attn_o.weight", 0});
        site[f].push_back({b + "attn_o.bias", 0});
      }
      if (m.has(b + "token_score.weight")) site[a].push_back({b + "token_score.weight", 0});
      if (d.ffn) {
        norm_uses(f, b + "ffn_norm");
        site[f].push_back({b + "ffn_up.weight", 1});
        site[n].push_back({b + "ffn_down.weight", 0});
        site[n].push_back({b + "ffn_down.bias", 0});
      }
      if (c.shortcuts) {
        site[a].push_back({b + "attn_shortcut", 0});
        site[f].push_back({b + "attn_shortcut", 1});
        site[f].push_back({b + "ffn_shortcut", 0});
        site[n].push_back({b + "ffn_shortcut", 1});
      }
    }
    norm_uses(2 * L, "out_norm");
    site[2 * L].push_back({"cls_head.weight", 1});

    std::vector<DimGroup> groups = residual_groups(c, site, /*parallel_blocks=*/false);
    append_encoder_block_groups(c, groups);
    return groups;
  }

  ForwardState embed(const Model& m, const torch::Tensor& images) const override {
    const ArchConfig& c = m.config;
    PARE_CHECK(images.dim() == 4 && images.size(1) == c.num_channels &&
                   images.size(2) == c.image_size && images.size(3) == c.image_size,
               "vit: expected images [B, ", c.num_channels, ", ", c.image_size, ", ", c.image_size,
               "], got ", images.sizes());
    const int64_t B = images.size(0), p = c.patch_size, g = c.image_size / p;
    // [B, C, g, p, g, p] -> [B, g, g, C, p, p]: the flattening order of a conv weight [D, C, p, p].
    torch::Tensor patches = images.to(m.dtype())
                                .reshape({B, c.num_channels, g, p, g, p})
                                .permute({0, 2, 4, 1, 3, 5})
                                .reshape({B, g * g, c.num_channels * p * p});
    torch::Tensor x = m.linear("patch_embd").forward(patches);
    torch::Tensor cls = m.at("cls_token").expand({B, 1, x.size(2)});
    ForwardState s;
    s.x = at::cat({cls, x}, 1) + m.at("pos_embd");
    return s;
  }

  void attention(const Model& m, int64_t l, ForwardState& s) const override {
    const auto& d = m.config.layers[l];
    const std::string b = blk(l);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kResidual, 2 * l, s.x);
    if (!d.attention) {  // the branch was removed: the residual passes unchanged
      if (m.config.shortcuts) s.x = at::matmul(s.x, m.at(b + "attn_shortcut"));
      return;
    }
    if (d.heads == 0) {
      PARE_CHECK(!m.config.prune_step(l), "vit: layer ", l,
                 " has no attention heads, so its token-pruning step has no attention to rank by");
      torch::Tensor y = m.at(b + "attn_o.bias").expand({s.x.size(0), s.x.size(1), d.mlp_in});
      if (!m.hooks.empty()) m.hooks.fire(HookPoint::kAttnBranch, l, y);
      s.x = add_residual(m, b + "attn_shortcut", s.x, y);
      return;
    }
    torch::Tensor h = apply_norm(m, b + "attn_norm", s.x);
    const int64_t T = h.size(1);
    const auto [q, keys, v] = encoder_qkv_projection(m, b, h);  // each [B, T, heads·head_dim]
    const TokenPruneStep* step = m.config.prune_step(l);
    const bool prune = step && step->keep < T;
    // ctx [B, T, heads·head_dim]; attn: what the pruning step reads of the probabilities (the
    // probabilities [B, heads, T, T], their summary [B, heads, T] or nothing: selection_reads).
    torch::Tensor attn;
    AttentionOutputs out;
    const SelectionReads reads = prune ? selection_reads(*step) : SelectionReads::kNothing;
    // With hooks attached the selection reads the probabilities the hooks may have changed.
    if (reads == SelectionReads::kProbs || (prune && !m.hooks.empty() && step->method != "learned"))
      out.probs = &attn;
    if (reads == SelectionReads::kSummary && m.hooks.empty()) {
      out.query_weights = summary_query_weights(*step, T, m.config.special_tokens());
      out.column_sums = &attn;
    }
    if (!m.hooks.empty())  // hooks see (and may replace) the probabilities before they weigh the values
      out.steer_probs = [&](torch::Tensor& p) { m.hooks.fire(HookPoint::kAttnProbs, l, p); };
    torch::Tensor ctx = multi_head_attention(q, keys, v, d.heads, out);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kHeadContext, l, ctx);
    // Zero-TPrune and baselines keep `keep` tokens; the output projection, residual and
    // everything after run on them only (per-token ops, so pruning here equals pruning after).
    torch::Tensor idx, gate;
    if (prune) {
      if (step->method == "learned")
        std::tie(idx, gate) = learned_selection(m, l, *step, s.x);
      else
        idx = select_tokens(*step, attn, keys, m.config.special_tokens());
      ctx = gather_tokens(ctx, idx);
    }
    torch::Tensor y = m.linear(b + "attn_o").forward(ctx);
    if (gate.defined()) y = y * gate.unsqueeze(-1).to(y.dtype());
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kAttnBranch, l, y);
    if (prune && !m.config.shortcuts)
      s.x = add_gathered_tokens_(y, s.x, idx);  // the residual's gather and add in one pass
    else
      s.x = add_fresh_residual(m, b + "attn_shortcut", prune ? gather_tokens(s.x, idx) : s.x, y);
  }

  // A learned step (GTSP node sparsification): scores = x·w + b of the tokens entering layer l
  // [B, T]; CLS is always kept, the other T − 1 compete for keep − 1 places. Hooks see the
  // candidates' scores [B, T − 1] (HookPoint::kTokenScores) and may replace them by a 0/1 keep
  // mask with exactly keep − 1 ones per row (masks/: a Gumbel top-k sample with straight-through
  // gradients); the kept tokens' attention outputs are then multiplied by their mask values
  // (1 in value), the gate through which the scorer learns. Without a mask: the top keep − 1
  // scores, ties to the lower position. Returns the kept positions [B, keep] (ascending, CLS
  // first) and the gate [B, keep] (undefined without a mask).
  static std::pair<torch::Tensor, torch::Tensor> learned_selection(const Model& m, int64_t l,
                                                                   const TokenPruneStep& step,
                                                                   const torch::Tensor& x) {
    const std::string b = blk(l);
    const int64_t sp = m.config.special_tokens(), B = x.size(0), k = step.keep - sp;
    torch::Tensor scores =
        at::matmul(x.narrow(1, sp, x.size(1) - sp), m.at(b + "token_score.weight").to(x.dtype())) +
        m.at(b + "token_score.bias").to(x.dtype());
    torch::Tensor t = scores;
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kTokenScores, l, t);
    torch::Tensor pos, gate;
    if (!t.is_same(scores)) {
      PARE_CHECK(t.sizes() == scores.sizes(), "vit: layer ", l, ": a token mask must be ",
                 scores.sizes(), ", got ", t.sizes());
      pos = mask_positions(t, k);
      gate = at::cat({at::ones({B, sp}, t.options()), t.gather(1, pos)}, 1);
    } else {
      pos = topk_positions(scores.detach(), k);
    }
    torch::Tensor idx = at::cat({at::arange(sp, pos.options()).unsqueeze(0).expand({B, sp}), pos + sp}, 1);
    return {idx, gate};
  }

  // add_residual for a sub-block output `y` that nothing else holds (a linear's fresh product):
  // without autograd and shortcut matrices the residual is added into y in place (x + y and
  // y + x are the same float sums; one [B, T, C] allocation and write fewer per sub-block).
  static torch::Tensor add_fresh_residual(const Model& m, const std::string& shortcut,
                                          const torch::Tensor& x, torch::Tensor y) {
    if (m.config.shortcuts || at::GradMode::is_enabled() || x.sizes() != y.sizes() ||
        x.scalar_type() != y.scalar_type() || !y.is_contiguous())
      return add_residual(m, shortcut, x, y);
    return y.add_(x);
  }

  void mlp(const Model& m, int64_t l, ForwardState& s) const override {
    const auto& d = m.config.layers[l];
    const std::string b = blk(l);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kResidual, 2 * l + 1, s.x);
    if (!d.ffn) {  // the branch was removed: the residual passes unchanged
      if (m.config.shortcuts) s.x = at::matmul(s.x, m.at(b + "ffn_shortcut"));
      return;
    }
    if (d.intermediate_size == 0) {
      const int64_t next = m.config.site_dim(2 * l + 2);
      torch::Tensor y = m.at(b + "ffn_down.bias").expand({s.x.size(0), s.x.size(1), next});
      if (!m.hooks.empty()) m.hooks.fire(HookPoint::kFfnBranch, l, y);
      s.x = add_residual(m, b + "ffn_shortcut", s.x, y);
      return;
    }
    torch::Tensor h = apply_norm(m, b + "ffn_norm", s.x);
    h = m.linear(b + "ffn_up").forward(h);
    h = at::GradMode::is_enabled() ? at::gelu(h) : at::gelu_(h);  // h is this call's own tensor
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kFfnHidden, l, h);
    torch::Tensor y = m.linear(b + "ffn_down").forward(h);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kFfnBranch, l, y);
    s.x = add_fresh_residual(m, b + "ffn_shortcut", s.x, y);
  }

  torch::Tensor head(const Model& m, ForwardState& s) const override {
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kResidual, m.config.num_sites() - 1, s.x);
    torch::Tensor cls = s.x.select(1, 0);  // norms are per token: normalising CLS alone is exact
    torch::Tensor logits = m.linear("cls_head").forward(apply_norm(m, "out_norm", cls));
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kLogits, 0, logits);
    return logits;
  }

  std::vector<CostRow> costs(const Model& m) const override {
    const ArchConfig& c = m.config;
    const int64_t T = c.seq_len(), N = c.num_patches();
    auto params_of = [&](const std::string& prefix) { return params_under(m, prefix); };
    std::vector<CostRow> rows;
    CostRow emb{"embeddings"};
    emb.params = params_of("patch_embd.") + params_of("cls_token") + params_of("pos_embd");
    emb.flops = 2 * N * m.linear("patch_embd").macs_per_row();
    emb.attn_in = c.site_dim(0);
    emb.tokens = emb.tokens_out = T;
    rows.push_back(emb);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const auto& d = c.layers[l];
      const std::string b = blk(l);
      CostRow r{"blk." + std::to_string(l)};
      r.params = params_of(b);
      const int64_t Ti = c.tokens_in(l), To = c.tokens_out(l);
      int64_t macs = 0;
      if (d.attention) {
        for (const char* n : {"attn_q", "attn_k", "attn_v"}) macs += Ti * m.linear(b + n).macs_per_row();
        macs += To * m.linear(b + "attn_o").macs_per_row();
      }
      if (d.ffn)
        for (const char* n : {"ffn_up", "ffn_down"}) macs += To * m.linear(b + n).macs_per_row();
      macs += 2 * d.heads * Ti * Ti * d.head_dim;  // QKᵀ and AV
      if (const TokenPruneStep* st = c.prune_step(l)) {
        if (st->method == "learned")
          macs += To < Ti ? Ti * d.attn_in : 0;  // the scorer's x·w over the tokens entering
        else
          macs += token_selection_macs(*st, Ti, d.heads, d.heads * d.head_dim, c.special_tokens());
      }
      if (c.shortcuts) macs += To * (m.at(b + "attn_shortcut").numel() + m.at(b + "ffn_shortcut").numel());
      r.flops = 2 * macs;
      r.heads = d.heads;
      r.head_dim = d.head_dim;
      r.intermediate_size = d.intermediate_size;
      r.attn_in = d.attn_in;
      r.mlp_in = d.mlp_in;
      r.tokens = Ti;
      r.tokens_out = To;
      rows.push_back(r);
    }
    CostRow h{"head"};
    h.params = params_of("cls_head.") + params_of("out_norm.");
    h.flops = 2 * m.linear("cls_head").macs_per_row();  // CLS token only
    h.attn_in = c.out_dim;
    h.tokens = h.tokens_out = 1;
    rows.push_back(h);
    return rows;
  }

  std::map<std::string, torch::Tensor> to_checkpoint(const Model& m) const override {
    std::map<std::string, torch::Tensor> out;
    const ArchConfig& c = m.config;
    for (const auto& [flat, t] : m.flat_tensors()) {
      std::string hf = vit_hf_name(flat);
      PARE_ASSERT(!hf.empty(), "no checkpoint name for ", flat);
      torch::Tensor v = t.detach();
      if (flat == "patch_embd.weight")
        v = v.reshape({t.size(0), c.num_channels, c.patch_size, c.patch_size});
      out[hf] = v.contiguous();
    }
    return out;
  }

  Model from_checkpoint(const ArchConfig& c, std::map<std::string, torch::Tensor> tensors,
                        const std::string& src) const override {
    auto expected = expected_shapes(c);
    std::vector<std::string> unknown, missing;
    std::map<std::string, torch::Tensor> flat;
    for (auto& [hf, t] : tensors) {
      std::string f = vit_flat_name(hf);
      if (f.empty() || !expected.count(f)) {
        unknown.push_back(hf);
        continue;
      }
      const bool codes = is_quant_code_part(f.substr(f.rfind('.') + 1));
      check_checkpoint_dtype(t, f.substr(f.rfind('.') + 1), src, hf);
      if (f == "patch_embd.weight") {
        const Shape want{expected[f][0], c.num_channels, c.patch_size, c.patch_size};
        PARE_CHECK(t.sizes().vec() == want, src, ": tensor '", hf, "': expected ",
                   c10::IntArrayRef(want), ", got ", t.sizes());
        t = t.reshape({want[0], -1});
      }
      PARE_CHECK(t.sizes().vec() == expected[f], src, ": tensor '", hf, "': expected ",
                 c10::IntArrayRef(expected[f]), ", got ", t.sizes(), " (config.json disagrees with ",
                 "the weights)");
      flat[f] = (codes ? t : t.to(torch::kFloat32)).contiguous();
    }
    for (const auto& [f, shape] : expected)
      if (!flat.count(f)) missing.push_back(vit_hf_name(f));
    return assemble_model(c, linear_slots(c), std::move(flat), missing, unknown, src);
  }
};

struct NamePair {
  const char* flat;
  const char* hf;
};

// Per-layer names (after "blk.N." / "vit.encoder.layer.N.").
const NamePair kLayerNames[] = {
    {"attn_norm", "layernorm_before"},         {"attn_q", "attention.attention.query"},
    {"attn_k", "attention.attention.key"},     {"attn_v", "attention.attention.value"},
    {"attn_o", "attention.output.dense"},      {"ffn_norm", "layernorm_after"},
    {"ffn_up", "intermediate.dense"},          {"ffn_down", "output.dense"},
};
const NamePair kTopNames[] = {
    {"cls_token", "vit.embeddings.cls_token"},
    {"pos_embd", "vit.embeddings.position_embeddings"},
    {"patch_embd.weight", "vit.embeddings.patch_embeddings.projection.weight"},
    {"patch_embd.bias", "vit.embeddings.patch_embeddings.projection.bias"},
    {"out_norm.weight", "vit.layernorm.weight"},
    {"out_norm.bias", "vit.layernorm.bias"},
    {"cls_head.weight", "classifier.weight"},
    {"cls_head.bias", "classifier.bias"},
    // Quantized linears (src/ir/quant_linear.h): packed codes, scales, zero points.
    {"patch_embd.qweight", "vit.embeddings.patch_embeddings.projection.qweight"},
    {"patch_embd.scales", "vit.embeddings.patch_embeddings.projection.scales"},
    {"patch_embd.qzeros", "vit.embeddings.patch_embeddings.projection.qzeros"},
    {"cls_head.qweight", "classifier.qweight"},
    {"cls_head.scales", "classifier.scales"},
    {"cls_head.qzeros", "classifier.qzeros"},
};

}  // namespace

std::string vit_hf_name(const std::string& flat) {
  for (const auto& p : kTopNames)
    if (flat == p.flat) return p.hf;
  static const std::regex re(R"(blk\.(\d+)\.([a-z_]+)(\.(weight|bias|qweight|scales|qzeros))?)");
  std::smatch mt;
  if (!std::regex_match(flat, mt, re)) return "";
  const std::string rest = mt[3].str();
  if (mt[2] == "attn_shortcut" || mt[2] == "ffn_shortcut") return rest.empty() ? "pare." + flat : "";
  if (mt[2] == "token_score") return rest == ".weight" || rest == ".bias" ? "pare." + flat : "";
  if (is_quant_part(mt[4].str()) && mt[2].str().find("norm") != std::string::npos) return "";
  for (const auto& p : kLayerNames)
    if (mt[2] == p.flat && !rest.empty())
      return "vit.encoder.layer." + mt[1].str() + "." + p.hf + rest;
  return "";
}

std::string vit_flat_name(const std::string& hf) {
  for (const auto& p : kTopNames)
    if (hf == p.hf) return p.flat;
  if (hf.rfind("pare.", 0) == 0) {
    std::string f = hf.substr(5);
    return vit_hf_name(f) == hf ? f : "";
  }
  static const std::regex re(R"(vit\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias|qweight|scales|qzeros))");
  std::smatch mt;
  if (!std::regex_match(hf, mt, re)) return "";
  for (const auto& p : kLayerNames)
    if (mt[2] == p.hf) {
      const std::string f = "blk." + mt[1].str() + "." + p.flat + "." + mt[3].str();
      return vit_hf_name(f) == hf ? f : "";
    }
  return "";
}

const Family& vit_family() {
  static const VitFamily f;
  return f;
}

const Family& family_by_name(const std::string& name) {
  if (name == "vit") return vit_family();
  if (name == "gps") return gps_family();
  if (name == "bert") return bert_family();
  if (is_decoder_family(name)) return decoder_family(name);
  throw InputError(concat("unknown model family '", name,
                          "' (known: vit, gps, bert, llama, qwen2, mistral, opt, gpt2, phi)"));
}

}  // namespace pare
