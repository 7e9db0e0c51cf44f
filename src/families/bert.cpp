#include "families/bert.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <regex>

#include "base/error.h"
#include "families/attention.h"
#include "families/blocks.h"
#include "ir/linear.h"
#include "ir/quant_linear.h"

namespace pare {
namespace {

std::string blk(int64_t l) { return "blk." + std::to_string(l) + "."; }

using Shape = std::vector<int64_t>;

class BertFamily : public Family {
 public:
  std::string name() const override { return "bert"; }

  std::vector<std::string> linear_slots(const ArchConfig& c) const override {
    std::vector<std::string> s{"pooler", "cls_head"};
    append_encoder_block_slots(c, s);
    return s;
  }

  std::map<std::string, Shape> expected_shapes(const ArchConfig& c) const override {
    std::map<std::string, Shape> e;
    const int64_t d = c.hidden_size;
    e["tok_embd"] = {c.vocab_size, d};
    e["pos_embd"] = {c.max_position_embeddings, d};
    e["type_embd"] = {c.type_vocab_size, d};
    e["embd_norm.weight"] = e["embd_norm.bias"] = {d};
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const auto& ld = c.layers[l];
      const int64_t inner = ld.heads * ld.head_dim;
      const std::string b = blk(l);
      if (ld.attention) {
        for (const char* n : {"attn_q", "attn_k", "attn_v"}) {
          e[b + n + ".weight"] = {inner, d};
          e[b + n + ".bias"] = {inner};
        }
        e[b + "attn_o.weight"] = {d, inner};
        e[b + "attn_o.bias"] = {d};
        e[b + "attn_norm.weight"] = e[b + "attn_norm.bias"] = {d};
      }
      if (ld.ffn) {
        e[b + "ffn_up.weight"] = {ld.intermediate_size, d};
        e[b + "ffn_up.bias"] = {ld.intermediate_size};
        e[b + "ffn_down.weight"] = {d, ld.intermediate_size};
        e[b + "ffn_down.bias"] = {d};
        e[b + "ffn_norm.weight"] = e[b + "ffn_norm.bias"] = {d};
      }
    }
    e["pooler.weight"] = {d, d};
    e["pooler.bias"] = {d};
    e["cls_head.weight"] = {c.num_labels, d};
    e["cls_head.bias"] = {c.num_labels};
    if (c.mlm_head) {
      e["mlm_dense.weight"] = {d, d};
      e["mlm_dense.bias"] = e["mlm_norm.weight"] = e["mlm_norm.bias"] = {d};
      e["mlm_bias"] = {c.vocab_size};
    }
    apply_quantized_shapes(c, linear_slots(c), e, "config.json");
    return e;
  }

  // Hugging Face BertPreTrainedModel._init_weights: normal(0, 0.02) weights and embeddings (the
  // padding row of the word embeddings zeroed), zero biases, LayerNorm 1 / 0.
  Model init(const ArchConfig& c, uint64_t seed) const override {
    torch::manual_seed(seed);
    Model m;
    m.config = c;
    auto shapes = expected_shapes(c);
    for (const auto& slot : linear_slots(c)) {
      torch::Tensor w = torch::empty(shapes.at(slot + ".weight"));
      w.normal_(0.0, 0.02);
      m.linears[slot] = std::make_shared<DenseLinear>(w, torch::zeros(shapes.at(slot + ".bias")));
    }
    for (const auto& [name, shape] : shapes) {
      if (m.has(name)) continue;
      torch::Tensor t;
      if (name.find("norm.weight") != std::string::npos)
        t = torch::ones(shape);
      else if (name.find("norm.bias") != std::string::npos || name == "mlm_bias" || name == "mlm_dense.bias")
        t = torch::zeros(shape);
      else
        t = torch::empty(shape).normal_(0.0, 0.02);
      m.tensors[name] = t;
    }
    m.tensors["tok_embd"][c.pad_token_id].zero_();
    return m;
  }

  std::vector<DimGroup> dim_groups(const Model& m) const override {
    const ArchConfig& c = m.config;
    const int64_t L = c.num_hidden_layers;
    // Post-LN: every norm reads the whole residual stream, so the residual is one "hidden" group.
    std::vector<std::vector<TensorUse>> site(c.num_sites());
    auto norm_uses = [&](int64_t s, const std::string& slot) {
      site[s].push_back({slot + ".weight", 0, 1, true});
      site[s].push_back({slot + ".bias", 0, 1, true});
    };
    site[0] = {{"tok_embd", 1}, {"pos_embd", 1}, {"type_embd", 1}};
    norm_uses(0, "embd_norm");
    for (int64_t l = 0; l < L; ++l) {
      const std::string b = blk(l);
      const int64_t a = 2 * l, f = 2 * l + 1;
      const auto& d = c.layers[l];
      if (d.attention) {
        for (const char* q : {"attn_q", "attn_k", "attn_v"}) site[a].push_back({b + q + ".weight", 1});
        site[f].push_back({b + "attn_o.weight", 0});
        site[f].push_back({b + "attn_o.bias", 0});
        norm_uses(f, b + "attn_norm");
      }
      if (d.ffn) {
        site[f].push_back({b + "ffn_up.weight", 1});
        site[f + 1].push_back({b + "ffn_down.weight", 0});
        site[f + 1].push_back({b + "ffn_down.bias", 0});
        norm_uses(f + 1, b + "ffn_norm");
      }
    }
    site[2 * L].push_back({"pooler.weight", 1});
    if (c.mlm_head) {  // the MLM head reads and writes the hidden width (its decoder is tok_embd)
      site[2 * L].push_back({"mlm_dense.weight", 0});
      site[2 * L].push_back({"mlm_dense.weight", 1});
      site[2 * L].push_back({"mlm_dense.bias", 0});
      norm_uses(2 * L, "mlm_norm");
    }
    std::vector<DimGroup> groups = residual_groups(c, site, /*parallel_blocks=*/false);
    append_encoder_block_groups(c, groups);
    return groups;
  }

  ForwardState embed(const Model& m, const torch::Tensor& ids) const override {
    return embed_layout(m, ids, !at::GradMode::is_enabled());
  }

  static ForwardState embed_layout(const Model& m, const torch::Tensor& ids_in, bool packed) {
    const ArchConfig& c = m.config;
    PARE_CHECK(ids_in.dim() == 2 && !ids_in.is_floating_point() && ids_in.size(1) >= 1, "bert: expected ",
               "token ids int64 [B, T], got ", ids_in.sizes(), " ", ids_in.dtype());
    const torch::Tensor ids = ids_in.to(at::kLong).cpu().contiguous();
    const int64_t B = ids.size(0), T = ids.size(1);
    PARE_CHECK(T <= c.max_position_embeddings, "bert: ", T, " tokens per row, more than the model's ",
               c.max_position_embeddings, " positions (max_position_embeddings)");
    if (ids.numel() > 0) {
      const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
      PARE_CHECK(lo >= 0 && hi < c.vocab_size, "bert: token id ", lo < 0 ? lo : hi, " outside the vocabulary [0, ",
                 c.vocab_size, ")");
    }
    const torch::Tensor real = ids.ne(c.pad_token_id);  // [B, T]
    ForwardState s;
    s.seq_lengths = real.sum(1).to(at::kLong).contiguous();
    if (B > 0 && !real.select(1, 0).all().item<bool>()) {
      const int64_t b = real.select(1, 0).logical_not().nonzero()[0][0].item<int64_t>();
      throw InputError(concat("bert: row ", b, " starts with the padding id ", c.pad_token_id,
                              " (each row is [CLS] … [SEP] then padding)"));
    }
    const auto dt = m.at("tok_embd").scalar_type();
    const torch::Tensor type0 = m.at("type_embd")[0];
    s.packed = packed;
    if (packed) {
      const torch::Tensor flat = real.view({-1}).nonzero().view({-1});  // row-major: rows stay contiguous
      s.x = m.at("tok_embd").index_select(0, ids.view({-1}).index_select(0, flat)) +
            m.at("pos_embd").index_select(0, flat.remainder(T)) + type0;
      s.seq_starts = s.seq_lengths.cumsum(0).sub_(s.seq_lengths).contiguous();
    } else {
      s.x = at::embedding(m.at("tok_embd"), ids) + m.at("pos_embd").narrow(0, 0, T) + type0;
      s.seq_starts = at::arange(B, ids.options()).mul_(T);
      if (!real.all().item<bool>())
        s.key_padding = at::zeros({B, 1, 1, T}, at::TensorOptions().dtype(dt))
                            .masked_fill_(real.logical_not().view({B, 1, 1, T}),
                                          std::numeric_limits<float>::lowest());
    }
    s.x = apply_norm(m, "embd_norm", s.x);
    return s;
  }

  void attention(const Model& m, int64_t l, ForwardState& s) const override {
    const auto& d = m.config.layers[l];
    const std::string b = blk(l);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kResidual, 2 * l, s.x);
    if (!d.attention) return;  // the branch and its norm were removed: x passes unchanged
    torch::Tensor y;
    if (d.heads == 0) {
      y = m.at(b + "attn_o.bias").expand(s.x.sizes());
    } else {
      const auto [q, k, v] = encoder_qkv_projection(m, b, s.x);
      torch::Tensor ctx = self_attention(s, q, k, v, d.heads);
      if (!m.hooks.empty()) m.hooks.fire(HookPoint::kHeadContext, l, ctx);
      y = m.linear(b + "attn_o").forward(ctx);
    }
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kAttnBranch, l, y);
    s.x = apply_norm(m, b + "attn_norm", s.x + y);
  }

  // ctx of every token: per sequence at its own length (packed, or padded without autograd: the
  // fused kernel over each row's real tokens), else LibTorch ops with the additive key mask.
  static torch::Tensor self_attention(const ForwardState& s, const torch::Tensor& q, const torch::Tensor& k,
                                      const torch::Tensor& v, int64_t heads) {
    const int64_t C = q.size(-1);
    if (s.packed) return ranged_multi_head_attention(q, k, v, s.seq_starts, s.seq_lengths, heads);
    const int64_t B = q.size(0), T = q.size(1);
    const bool grad = at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
    if (!grad && q.scalar_type() == at::kFloat && (C / heads) % 8 == 0)
      return ranged_multi_head_attention(q.reshape({B * T, C}), k.reshape({B * T, C}), v.reshape({B * T, C}),
                                         s.seq_starts, s.seq_lengths, heads)
          .view({B, T, C});
    const int64_t hd = C / heads;
    auto split = [&](const torch::Tensor& t) { return t.view({B, T, heads, hd}).transpose(1, 2); };
    torch::Tensor scores = at::matmul(split(q), split(k).transpose(-2, -1)) / std::sqrt(double(hd));
    if (s.key_padding.defined()) scores = scores + s.key_padding.to(scores.scalar_type());
    return at::matmul(at::softmax(scores, -1), split(v)).transpose(1, 2).reshape({B, T, C});
  }

  void mlp(const Model& m, int64_t l, ForwardState& s) const override {
    const auto& d = m.config.layers[l];
    const std::string b = blk(l);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kResidual, 2 * l + 1, s.x);
    if (!d.ffn) return;
    torch::Tensor y;
    if (d.intermediate_size == 0) {
      y = m.at(b + "ffn_down.bias").expand(s.x.sizes());
    } else {
      torch::Tensor h = m.linear(b + "ffn_up").forward(s.x);
      h = at::GradMode::is_enabled() ? at::gelu(h) : at::gelu_(h);
      if (!m.hooks.empty()) m.hooks.fire(HookPoint::kFfnHidden, l, h);
      y = m.linear(b + "ffn_down").forward(h);
    }
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kFfnBranch, l, y);
    s.x = apply_norm(m, b + "ffn_norm", s.x + y);
  }

  torch::Tensor head(const Model& m, ForwardState& s) const override {
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kResidual, m.config.num_sites() - 1, s.x);
    const torch::Tensor cls = s.packed ? s.x.index_select(0, s.seq_starts) : s.x.select(1, 0);
    torch::Tensor pooled = at::tanh(m.linear("pooler").forward(cls));
    torch::Tensor logits = m.linear("cls_head").forward(pooled);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kLogits, 0, logits);
    return logits;
  }

  // One sequence of context_length tokens (no padding: costs count what the packed forward runs).
  std::vector<CostRow> costs(const Model& m) const override {
    const ArchConfig& c = m.config;
    const int64_t T = c.seq_len();
    std::vector<CostRow> rows;
    CostRow emb{"embeddings"};
    emb.params = params_under(m, "tok_embd") + params_under(m, "pos_embd") + params_under(m, "type_embd") +
                 params_under(m, "embd_norm.");
    emb.attn_in = c.hidden_size;
    emb.tokens = emb.tokens_out = T;
    rows.push_back(emb);  // lookups: no multiply-accumulates
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const auto& d = c.layers[l];
      const std::string b = blk(l);
      CostRow r{"blk." + std::to_string(l)};
      r.params = params_under(m, b);
      int64_t macs = 0;
      if (d.attention)
        for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_o"}) macs += T * m.linear(b + n).macs_per_row();
      if (d.ffn)
        for (const char* n : {"ffn_up", "ffn_down"}) macs += T * m.linear(b + n).macs_per_row();
      macs += 2 * d.heads * T * T * d.head_dim;  // QKᵀ and AV
      r.flops = 2 * macs;
      r.heads = d.heads;
      r.head_dim = d.head_dim;
      r.intermediate_size = d.intermediate_size;
      r.attn_in = d.attn_in;
      r.mlp_in = d.mlp_in;
      r.tokens = r.tokens_out = T;
      rows.push_back(r);
    }
    CostRow h{"head"};
    h.params = params_under(m, "pooler.") + params_under(m, "cls_head.");
    h.flops = 2 * (m.linear("pooler").macs_per_row() + m.linear("cls_head").macs_per_row());  // CLS only
    h.attn_in = c.out_dim;
    h.tokens = h.tokens_out = 1;
    rows.push_back(h);
    return rows;
  }

  std::map<std::string, torch::Tensor> to_checkpoint(const Model& m) const override {
    std::map<std::string, torch::Tensor> out;
    for (const auto& [flat, t] : m.flat_tensors()) {
      const std::string hf = bert_hf_name(flat);
      PARE_ASSERT(!hf.empty(), "no checkpoint name for ", flat);
      out[hf] = t.detach().contiguous();
    }
    return out;
  }

  Model from_checkpoint(const ArchConfig& c, std::map<std::string, torch::Tensor> tensors,
                        const std::string& src) const override {
    auto expected = expected_shapes(c);
    std::vector<std::string> unknown, missing;
    std::map<std::string, torch::Tensor> flat;
    for (auto& [hf, t] : tensors) {
      if (hf == "bert.embeddings.position_ids") {  // a buffer of older HF checkpoints: arange(P)
        PARE_CHECK(!t.is_floating_point(), src, ": tensor '", hf, "': expected integer position ids");
        continue;
      }
      const std::string f = bert_flat_name(hf);
      if (f.empty() || !expected.count(f)) {
        unknown.push_back(hf);
        continue;
      }
      const std::string part = f.find('.') == std::string::npos ? "" : f.substr(f.rfind('.') + 1);
      check_checkpoint_dtype(t, part, src, hf);
      PARE_CHECK(t.sizes().vec() == expected[f], src, ": tensor '", hf, "': expected ",
                 c10::IntArrayRef(expected[f]), ", got ", t.sizes(), " (config.json disagrees with the weights)");
      flat[f] = (is_quant_code_part(part) ? t : t.to(torch::kFloat32)).contiguous();
    }
    for (const auto& [f, shape] : expected)
      if (!flat.count(f)) missing.push_back(bert_hf_name(f));
    return assemble_model(c, linear_slots(c), std::move(flat), missing, unknown, src);
  }
};

struct NamePair {
  const char* flat;
  const char* hf;
};

// Per-layer names (after "blk.N." / "bert.encoder.layer.N.").
const NamePair kLayerNames[] = {
    {"attn_q", "attention.self.query"},   {"attn_k", "attention.self.key"},
    {"attn_v", "attention.self.value"},   {"attn_o", "attention.output.dense"},
    {"attn_norm", "attention.output.LayerNorm"}, {"ffn_up", "intermediate.dense"},
    {"ffn_down", "output.dense"},         {"ffn_norm", "output.LayerNorm"},
};
const NamePair kTopNames[] = {
    {"tok_embd", "bert.embeddings.word_embeddings.weight"},
    {"pos_embd", "bert.embeddings.position_embeddings.weight"},
    {"type_embd", "bert.embeddings.token_type_embeddings.weight"},
    {"embd_norm.weight", "bert.embeddings.LayerNorm.weight"},
    {"embd_norm.bias", "bert.embeddings.LayerNorm.bias"},
};
const NamePair kMlmNames[] = {
    {"mlm_dense.weight", "cls.predictions.transform.dense.weight"},
    {"mlm_dense.bias", "cls.predictions.transform.dense.bias"},
    {"mlm_norm.weight", "cls.predictions.transform.LayerNorm.weight"},
    {"mlm_norm.bias", "cls.predictions.transform.LayerNorm.bias"},
    {"mlm_bias", "cls.predictions.bias"},
};
const NamePair kSlotNames[] = {{"pooler", "bert.pooler.dense"}, {"cls_head", "classifier"}};

bool is_part(const std::string& p) { return p == "weight" || p == "bias" || is_quant_part(p); }

}  // namespace

std::string bert_hf_name(const std::string& flat) {
  for (const auto& p : kTopNames)
    if (flat == p.flat) return p.hf;
  for (const auto& p : kMlmNames)
    if (flat == p.flat) return p.hf;
  const size_t dot = flat.rfind('.');
  if (dot == std::string::npos) return "";
  const std::string part = flat.substr(dot + 1);
  if (!is_part(part)) return "";
  for (const auto& p : kSlotNames)
    if (flat.substr(0, dot) == p.flat) return std::string(p.hf) + "." + part;
  static const std::regex re(R"(blk\.(\d+)\.([a-z_]+)\.([a-z]+))");
  std::smatch mt;
  if (!std::regex_match(flat, mt, re)) return "";
  if (is_quant_part(part) && mt[2].str().find("norm") != std::string::npos) return "";
  for (const auto& p : kLayerNames)
    if (mt[2] == p.flat) return "bert.encoder.layer." + mt[1].str() + "." + p.hf + "." + part;
  return "";
}

std::string bert_flat_name(const std::string& hf) {
  for (const auto& p : kTopNames)
    if (hf == p.hf) return p.flat;
  for (const auto& p : kMlmNames)
    if (hf == p.hf) return p.flat;
  const size_t dot = hf.rfind('.');
  if (dot == std::string::npos) return "";
  const std::string part = hf.substr(dot + 1);
  for (const auto& p : kSlotNames)
    if (hf.substr(0, dot) == p.hf && is_part(part)) return std::string(p.flat) + "." + part;
  static const std::regex re(R"(bert\.encoder\.layer\.(\d+)\.(.+)\.([a-z]+))");
  std::smatch mt;
  if (!std::regex_match(hf, mt, re)) return "";
  for (const auto& p : kLayerNames)
    if (mt[2] == p.hf) {
      const std::string f = "blk." + mt[1].str() + "." + p.flat + "." + mt[3].str();
      return bert_hf_name(f) == hf ? f : "";
    }
  return "";
}

const Family& bert_family() {
  static const BertFamily f;
  return f;
}

torch::Tensor bert_lengths(const ArchConfig& c, const torch::Tensor& ids) {
  return ids.ne(c.pad_token_id).sum(1).to(at::kLong).cpu().contiguous();
}

namespace {
ForwardState run_layers(const Model& m, const torch::Tensor& ids, bool packed) {
  PARE_CHECK(m.config.is_text_encoder(), "bert_forward: expected a bert model, got family ", m.config.family);
  // BertFamily is this file's: its embed_layout is reachable through the singleton's type.
  ForwardState s = BertFamily::embed_layout(m, ids, packed);
  const Family& f = bert_family();
  for (int64_t l = 0; l < m.config.num_hidden_layers; ++l) {
    f.attention(m, l, s);
    f.mlp(m, l, s);
  }
  return s;
}
}  // namespace

torch::Tensor bert_forward(const Model& m, const torch::Tensor& ids, BertLayout layout) {
  const bool packed = layout == BertLayout::kPacked || (layout == BertLayout::kAuto && !at::GradMode::is_enabled());
  ForwardState s = run_layers(m, ids, packed);
  return bert_family().head(m, s);
}

torch::Tensor bert_sequence_output(const Model& m, const torch::Tensor& ids) {
  return run_layers(m, ids, /*packed=*/false).x;
}

torch::Tensor bert_mlm_logits(const Model& m, const torch::Tensor& hidden) {
  PARE_CHECK(m.config.mlm_head, "bert: the model has no masked-LM head (pare.mlm_head)");
  torch::Tensor h = at::gelu(at::linear(hidden, m.at("mlm_dense.weight"), m.at("mlm_dense.bias")));
  h = at::layer_norm(h, {h.size(-1)}, m.at("mlm_norm.weight"), m.at("mlm_norm.bias"), m.config.layer_norm_eps);
  return at::linear(h, m.at("tok_embd"), m.at("mlm_bias"));
}

}  // namespace pare
