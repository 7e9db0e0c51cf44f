#include "families/decoder.h"

#include <ATen/ATen.h>

#include <cmath>
#include <regex>

#include "families/blocks.h"
#include "base/error.h"
#include "ir/quant_linear.h"

namespace pare {

namespace {

using Shape = std::vector<int64_t>;

std::string blk(int64_t l) { return "blk." + std::to_string(l) + "."; }

bool llama_like(const std::string& f) { return f == "llama" || f == "qwen2" || f == "mistral"; }
bool has_positions(const ArchConfig& c) { return c.family == "opt" || c.family == "gpt2"; }
bool gated(const ArchConfig& c) { return llama_like(c.family); }
bool uses_rope(const ArchConfig& c) { return llama_like(c.family) || c.family == "phi"; }
// Row offset of position 0 in OPT's learned position table (OPTLearnedPositionalEmbedding).
int64_t position_offset(const ArchConfig& c) { return c.family == "opt" ? 2 : 0; }
bool affine_norm(const ArchConfig& c) { return c.norm != "rmsnorm"; }
bool norm_has_bias(const ArchConfig& c) { return c.norm == "layernorm"; }

// Which linears carry a bias in each family.
bool has_bias(const ArchConfig& c, const std::string& slot_kind) {
  // SliceGPT folds a LayerNorm's β into the head: the head of a folded opt/gpt2 model has a bias.
  if (c.family == "opt" || c.family == "gpt2") return slot_kind != "lm_head" || c.norm == "rmsnorm";
  if (c.family == "phi") return true;
  if (c.family == "qwen2") return slot_kind == "attn_q" || slot_kind == "attn_k" || slot_kind == "attn_v";
  // llama, mistral: attention_bias covers q/k/v/o; MLP and head have none.
  return c.attention_bias && slot_kind.rfind("attn_", 0) == 0;
}

// Checkpoint names of a family: top-level flat name -> HF name, per-layer slot -> HF suffix.
struct Names {
  std::vector<std::pair<std::string, std::string>> top;
  std::string layer_prefix;  // "model.layers."
  std::vector<std::pair<std::string, std::string>> layer;
};

const Names& names_of(const std::string& f) {
  static const Names llama{{{"tok_embd", "model.embed_tokens.weight"},
                            {"out_norm", "model.norm"},
                            {"lm_head", "lm_head"}},
                           "model.layers.",
                           {{"attn_norm", "input_layernorm"},
                            {"attn_q", "self_attn.q_proj"},
                            {"attn_k", "self_attn.k_proj"},
                            {"attn_v", "self_attn.v_proj"},
                            {"attn_o", "self_attn.o_proj"},
                            {"ffn_norm", "post_attention_layernorm"},
                            {"ffn_gate", "mlp.gate_proj"},
                            {"ffn_up", "mlp.up_proj"},
                            {"ffn_down", "mlp.down_proj"}}};
  static const Names opt{{{"tok_embd", "model.decoder.embed_tokens.weight"},
                          {"pos_embd", "model.decoder.embed_positions.weight"},
                          {"out_norm", "model.decoder.final_layer_norm"},
                          {"lm_head", "lm_head"}},
                         "model.decoder.layers.",
                         {{"attn_norm", "self_attn_layer_norm"},
                          {"attn_q", "self_attn.q_proj"},
                          {"attn_k", "self_attn.k_proj"},
                          {"attn_v", "self_attn.v_proj"},
                          {"attn_o", "self_attn.out_proj"},
                          {"ffn_norm", "final_layer_norm"},
                          {"ffn_up", "fc1"},
                          {"ffn_down", "fc2"}}};
  static const Names gpt2{{{"tok_embd", "transformer.wte.weight"},
                           {"pos_embd", "transformer.wpe.weight"},
                           {"out_norm", "transformer.ln_f"},
                           {"lm_head", "lm_head"}},
                          "transformer.h.",
                          {{"attn_norm", "ln_1"},
                           {"attn_o", "attn.c_proj"},
                           {"ffn_norm", "ln_2"},
                           {"ffn_up", "mlp.c_fc"},
                           {"ffn_down", "mlp.c_proj"}}};
  static const Names phi{{{"tok_embd", "model.embed_tokens.weight"},
                          {"out_norm", "model.final_layernorm"},
                          {"lm_head", "lm_head"}},
                         "model.layers.",
                         {{"attn_norm", "input_layernorm"},
                          {"attn_q", "self_attn.q_proj"},
                          {"attn_k", "self_attn.k_proj"},
                          {"attn_v", "self_attn.v_proj"},
                          {"attn_o", "self_attn.dense"},
                          {"ffn_up", "mlp.fc1"},
                          {"ffn_down", "mlp.fc2"}}};
  if (f == "opt") return opt;
  if (f == "gpt2") return gpt2;
  if (f == "phi") return phi;
  return llama;
}

// GPT-2 stores these as Conv1D: weight [in, out].
bool gpt2_conv(const std::string& slot_kind) {
  return slot_kind == "attn_o" || slot_kind == "ffn_up" || slot_kind == "ffn_down";
}

// "blk.3.attn_q.weight" -> {3, "attn_q", "weight"}; layer -1 for top-level names.
struct FlatParts {
  int64_t layer = -1;
  std::string slot, part;
};
FlatParts split_flat(const std::string& flat) {
  static const std::regex re(R"(blk\.(\d+)\.([a-z_]+)(\.([a-z_]+))?)");
  std::smatch mt;
  FlatParts p;
  if (std::regex_match(flat, mt, re)) {
    p.layer = std::stoll(mt[1].str());
    p.slot = mt[2].str();
    p.part = mt[4].str();
    return p;
  }
  const auto dot = flat.find('.');
  p.slot = flat.substr(0, dot);
  p.part = dot == std::string::npos ? "" : flat.substr(dot + 1);
  return p;
}

// rotate_half: [x1, x2] -> [-x2, x1] over the last axis.
torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}

// RoPE on the first cos.size(-1) dims of x [B, H, T, hd].
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t rot = cos.size(-1), hd = x.size(-1);
  if (rot == hd) return x * cos + rotate_half(x) * sin;
  torch::Tensor r = x.narrow(-1, 0, rot);
  return at::cat({r * cos + rotate_half(r) * sin, x.narrow(-1, rot, hd - rot)}, -1);
}

torch::Tensor activation(const ArchConfig& c, const torch::Tensor& x) {
  if (c.hidden_act == "relu") return at::relu(x);
  if (c.hidden_act == "silu") return at::silu(x);
  return at::gelu(x, "tanh");  // gelu_new
}

class DecoderFamily : public Family {
 public:
  explicit DecoderFamily(std::string name) : name_(std::move(name)) {}
  std::string name() const override { return name_; }

  std::vector<std::string> linear_slots(const ArchConfig& c) const override {
    std::vector<std::string> s;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_o", "ffn_up", "ffn_down"})
        s.push_back(blk(l) + n);
      if (gated(c)) s.push_back(blk(l) + "ffn_gate");
    }
    if (!c.tie_word_embeddings) s.push_back("lm_head");
    return s;
  }

  std::map<std::string, Shape> expected_shapes(const ArchConfig& c) const override {
    std::map<std::string, Shape> e;
    e["tok_embd"] = {c.vocab_size, c.site_dim(0)};
    if (has_positions(c)) e["pos_embd"] = {c.max_position_embeddings + position_offset(c), c.site_dim(0)};
    auto norm = [&](const std::string& slot, int64_t d) {
      if (!affine_norm(c)) return;
      e[slot + ".weight"] = {d};
      if (norm_has_bias(c)) e[slot + ".bias"] = {d};
    };
    auto linear = [&](const std::string& b, const std::string& kind, int64_t out, int64_t in) {
      e[b + kind + ".weight"] = {out, in};
      if (has_bias(c, kind)) e[b + kind + ".bias"] = {out};
    };
    const bool par = c.parallel_blocks();
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const auto& d = c.layers[l];
      const std::string b = blk(l);
      const int64_t next = c.site_dim(2 * l + 2);
      const int64_t attn_out = par ? next : d.mlp_in, mlp_read = par ? d.attn_in : d.mlp_in;
      norm(b + "attn_norm", d.attn_in);
      linear(b, "attn_q", d.heads * d.head_dim, d.attn_in);
      linear(b, "attn_k", d.kv_heads * d.head_dim, d.attn_in);
      linear(b, "attn_v", d.kv_heads * d.head_dim, d.attn_in);
      linear(b, "attn_o", attn_out, d.heads * d.head_dim);
      if (!par) norm(b + "ffn_norm", d.mlp_in);
      if (gated(c)) linear(b, "ffn_gate", d.intermediate_size, mlp_read);
      linear(b, "ffn_up", d.intermediate_size, mlp_read);
      linear(b, "ffn_down", next, d.intermediate_size);
      if (c.shortcuts) {
        if (!par) e[b + "attn_shortcut"] = {d.attn_in, d.mlp_in};
        e[b + "ffn_shortcut"] = {mlp_read, next};
      }
    }
    norm("out_norm", c.out_dim);
    if (!c.tie_word_embeddings) linear("", "lm_head", c.vocab_size, c.out_dim);
    apply_quantized_shapes(c, linear_slots(c), e, "config.json");
    return e;
  }

  Model init(const ArchConfig& c, uint64_t seed) const override {
    torch::manual_seed(seed);
    Model m;
    m.config = c;
    auto shapes = expected_shapes(c);
    const double resid_std = 0.02 / std::sqrt(2.0 * c.num_hidden_layers);  // GPT-2 scaled init
    auto normal = [](const Shape& s, double std) { return torch::empty(s).normal_(0.0, std); };
    for (const auto& slot : linear_slots(c)) {
      const FlatParts p = split_flat(slot);
      const bool resid = p.slot == "attn_o" || p.slot == "ffn_down";
      torch::Tensor w = normal(shapes.at(slot + ".weight"), resid ? resid_std : 0.02);
      torch::Tensor bias = shapes.count(slot + ".bias") ? torch::zeros(shapes.at(slot + ".bias"))
                                                       : torch::Tensor();
      m.linears[slot] = std::make_shared<DenseLinear>(w, bias);
    }
    for (const auto& [name, shape] : shapes) {
      if (m.has(name)) continue;
      if (name.find("norm.weight") != std::string::npos)
        m.tensors[name] = torch::ones(shape);
      else if (name.find("norm.bias") != std::string::npos)
        m.tensors[name] = torch::zeros(shape);
      else if (name.find("shortcut") != std::string::npos)
        m.tensors[name] = torch::eye(shape[0], shape[1]);
      else
        m.tensors[name] = normal(shape, name == "pos_embd" ? 0.01 : 0.02);
    }
    return m;
  }

  std::vector<DimGroup> dim_groups(const Model& m) const override {
    const ArchConfig& c = m.config;
    const int64_t L = c.num_hidden_layers;
    const bool par = c.parallel_blocks();
    PARE_CHECK(!(c.tie_word_embeddings && c.shortcuts), "model: tied embeddings with SliceGPT ",
               "shortcuts (the embedding and the head read different residual sites); untie first");
    std::vector<std::vector<TensorUse>> site(c.num_sites());
    auto norm_uses = [&](int64_t s, const std::string& slot) {
      if (!affine_norm(c)) return;
      site[s].push_back({slot + ".weight", 0, 1, true});
      if (norm_has_bias(c)) site[s].push_back({slot + ".bias", 0, 1, true});
    };
    auto writer = [&](int64_t s, const std::string& slot) {
      site[s].push_back({slot + ".weight", 0});
      if (m.has(slot + ".bias")) site[s].push_back({slot + ".bias", 0});
    };
    site[0].push_back({"tok_embd", 1});
    if (has_positions(c)) site[0].push_back({"pos_embd", 1});
    for (int64_t l = 0; l < L; ++l) {
      const std::string b = blk(l);
      const int64_t a = 2 * l, f = 2 * l + 1, n = 2 * l + 2;
      norm_uses(a, b + "attn_norm");
      for (const char* q : {"attn_q", "attn_k", "attn_v"}) site[a].push_back({b + q + ".weight", 1});
      writer(par ? n : f, b + "attn_o");
      const int64_t mlp_site = par ? a : f;
      if (!par) norm_uses(f, b + "ffn_norm");
      if (gated(c)) site[mlp_site].push_back({b + "ffn_gate.weight", 1});
      site[mlp_site].push_back({b + "ffn_up.weight", 1});
      writer(n, b + "ffn_down");
      if (c.shortcuts) {
        if (!par) {
          site[a].push_back({b + "attn_shortcut", 0});
          site[f].push_back({b + "attn_shortcut", 1});
        }
        site[mlp_site].push_back({b + "ffn_shortcut", 0});
        site[n].push_back({b + "ffn_shortcut", 1});
      }
    }
    norm_uses(2 * L, "out_norm");
    if (!c.tie_word_embeddings) site[2 * L].push_back({"lm_head.weight", 1});

    std::vector<DimGroup> groups = residual_groups(c, site, par);
    for (int64_t l = 0; l < L; ++l) {
      const std::string b = blk(l);
      const auto& d = c.layers[l];
      const bool gqa = d.kv_heads != d.heads;
      DimGroup heads{b + "heads", DimGroup::kHeads, l, d.heads, {}};
      DimGroup kv{b + "kv_heads", DimGroup::kKvHeads, l, d.kv_heads, {}};
      for (const char* q : {"attn_q", "attn_k", "attn_v"}) {
        DimGroup& g = (gqa && std::string(q) != "attn_q") ? kv : heads;
        g.uses.push_back({b + q + ".weight", 0, d.head_dim});
        if (m.has(b + q + ".bias")) g.uses.push_back({b + q + ".bias", 0, d.head_dim});
      }
      heads.uses.push_back({b + "attn_o.weight", 1, d.head_dim});
      groups.push_back(heads);
      if (gqa) groups.push_back(kv);
      DimGroup ffn{b + "ffn", DimGroup::kFfn, l, d.intermediate_size, {}};
      for (const char* u : {"ffn_up", "ffn_gate"}) {
        if (!m.linears.count(b + u)) continue;
        ffn.uses.push_back({b + u + ".weight", 0});
        if (m.has(b + u + ".bias")) ffn.uses.push_back({b + u + ".bias", 0});
      }
      ffn.uses.push_back({b + "ffn_down.weight", 1});
      groups.push_back(ffn);
    }
    return groups;
  }

  ForwardState embed(const Model& m, const torch::Tensor& ids) const override {
    const ArchConfig& c = m.config;
    PARE_CHECK(ids.dim() == 2 && !ids.is_floating_point(), name_,
               ": expected token ids [batch, tokens] of an integer dtype, got ", ids.sizes(), " ",
               c10::toString(ids.scalar_type()));
    const int64_t B = ids.size(0), T = ids.size(1);
    PARE_CHECK(T > 0, name_, ": empty sequence");
    PARE_CHECK(!has_positions(c) || T <= c.max_position_embeddings, name_, ": ", T,
               " tokens exceed max_position_embeddings (", c.max_position_embeddings, ")");
    torch::Tensor flat = ids.reshape({-1}).to(torch::kLong);
    const int64_t lo = flat.min().item<int64_t>(), hi = flat.max().item<int64_t>();
    PARE_CHECK(lo >= 0 && hi < c.vocab_size, name_, ": token id ", lo < 0 ? lo : hi,
               " outside the vocabulary [0, ", c.vocab_size, ")");
    ForwardState s;
    s.x = m.at("tok_embd").index_select(0, flat).view({B, T, -1});
    const auto dtype = s.x.scalar_type();
    if (has_positions(c))
      s.x = s.x + m.at("pos_embd").narrow(0, position_offset(c), T);
    if (uses_rope(c)) {
      const int64_t hd = c.layers.empty() ? 0 : c.layers[0].head_dim;
      const int64_t rot = static_cast<int64_t>(static_cast<double>(hd) * c.partial_rotary_factor);
      auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
      torch::Tensor inv_freq =
          1.0 / torch::pow(c.rope_theta, torch::arange(0, rot, 2, f64) / static_cast<double>(rot));
      torch::Tensor freqs = torch::outer(torch::arange(T, f64), inv_freq);
      torch::Tensor emb = at::cat({freqs, freqs}, -1);
      s.rope_cos = emb.cos().to(dtype);
      s.rope_sin = emb.sin().to(dtype);
    }
    s.causal_mask = torch::full({T, T}, -std::numeric_limits<double>::infinity(),
                                torch::TensorOptions().dtype(dtype))
                        .triu_(1);
    return s;
  }

  void attention(const Model& m, int64_t l, ForwardState& s) const override {
    const ArchConfig& c = m.config;
    const auto& d = c.layers[l];
    const std::string b = blk(l);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kResidual, 2 * l, s.x);
    torch::Tensor h = apply_norm(m, b + "attn_norm", s.x);
    const int64_t B = h.size(0), T = h.size(1);
    torch::Tensor out;
    if (d.heads == 0) {
      const LinearForm& o = m.linear(b + "attn_o");
      out = torch::zeros({B, T, o.out_features()}, h.options());
      if (m.has(b + "attn_o.bias")) out = out + m.at(b + "attn_o.bias");
    } else {
      auto split = [&](const char* slot, int64_t heads) {
        return m.linear(b + slot).forward(h).view({B, T, heads, d.head_dim}).transpose(1, 2);
      };
      torch::Tensor q = split("attn_q", d.heads), k = split("attn_k", d.kv_heads),
                    v = split("attn_v", d.kv_heads);
      if (s.rope_cos.defined()) {
        q = apply_rope(q, s.rope_cos, s.rope_sin);
        k = apply_rope(k, s.rope_cos, s.rope_sin);
      }
      if (d.kv_heads != d.heads) {  // grouped-query attention: head h reads kv head h / group
        const int64_t g = d.heads / d.kv_heads;
        k = k.unsqueeze(2).expand({B, d.kv_heads, g, T, d.head_dim}).reshape({B, d.heads, T, d.head_dim});
        v = v.unsqueeze(2).expand({B, d.kv_heads, g, T, d.head_dim}).reshape({B, d.heads, T, d.head_dim});
      }
      torch::Tensor scores = at::matmul(q, k.transpose(-2, -1))
                                 .mul_(1.0 / std::sqrt(static_cast<double>(d.head_dim)))
                                 .add_(s.causal_mask);
      torch::Tensor probs = at::softmax(scores, -1);
      if (!m.hooks.empty()) m.hooks.fire(HookPoint::kAttnProbs, l, probs);
      torch::Tensor ctx = at::matmul(probs, v).transpose(1, 2).reshape({B, T, d.heads * d.head_dim});
      if (!m.hooks.empty()) m.hooks.fire(HookPoint::kHeadContext, l, ctx);
      out = m.linear(b + "attn_o").forward(ctx);
    }
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kAttnBranch, l, out);
    if (c.parallel_blocks()) {
      s.block_in = h;
      s.attn_out = out;
      return;
    }
    s.x = add_residual(m, b + "attn_shortcut", s.x, out);
  }

  void mlp(const Model& m, int64_t l, ForwardState& s) const override {
    const ArchConfig& c = m.config;
    const auto& d = c.layers[l];
    const std::string b = blk(l);
    const bool par = c.parallel_blocks();
    if (!m.hooks.empty() && !par) m.hooks.fire(HookPoint::kResidual, 2 * l + 1, s.x);
    torch::Tensor h = par ? s.block_in : apply_norm(m, b + "ffn_norm", s.x);
    torch::Tensor out;
    if (d.intermediate_size == 0) {
      const LinearForm& down = m.linear(b + "ffn_down");
      out = torch::zeros({h.size(0), h.size(1), down.out_features()}, h.options());
      if (m.has(b + "ffn_down.bias")) out = out + m.at(b + "ffn_down.bias");
    } else {
      torch::Tensor up = m.linear(b + "ffn_up").forward(h);
      torch::Tensor act = gated(c) ? at::silu(m.linear(b + "ffn_gate").forward(h)).mul_(up)
                                   : activation(c, up);
      if (!m.hooks.empty()) m.hooks.fire(HookPoint::kFfnHidden, l, act);
      out = m.linear(b + "ffn_down").forward(act);
    }
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kFfnBranch, l, out);
    if (par) {
      out = out + s.attn_out;
      s.block_in = s.attn_out = torch::Tensor();
    }
    s.x = add_residual(m, b + "ffn_shortcut", s.x, out);
  }

  torch::Tensor head(const Model& m, ForwardState& s) const override {
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kResidual, m.config.num_sites() - 1, s.x);
    torch::Tensor h = apply_norm(m, "out_norm", s.x);
    torch::Tensor logits = m.config.tie_word_embeddings ? at::linear(h, m.at("tok_embd"))
                                                        : m.linear("lm_head").forward(h);
    if (!m.hooks.empty()) m.hooks.fire(HookPoint::kLogits, 0, logits);
    return logits;
  }

  // Costs of one sequence of context_length tokens. Attention products count the full T×T
  // score and context matrices the forward computes (the causal mask zeroes half of them but
  // they are still multiplied).
  std::vector<CostRow> costs(const Model& m) const override {
    const ArchConfig& c = m.config;
    const int64_t T = c.seq_len();
    std::vector<CostRow> rows;
    CostRow emb{"embeddings"};
    emb.params = params_under(m, "tok_embd") + params_under(m, "pos_embd");
    emb.flops = 0;  // table lookups
    emb.attn_in = c.site_dim(0);
    emb.tokens = emb.tokens_out = T;
    rows.push_back(emb);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const auto& d = c.layers[l];
      const std::string b = blk(l);
      CostRow r{"blk." + std::to_string(l)};
      r.params = params_under(m, b);
      int64_t macs = 0;
      for (const auto& slot : linear_slots(c))
        if (slot.rfind(b, 0) == 0) macs += T * m.linear(slot).macs_per_row();
      macs += 2 * d.heads * T * T * d.head_dim;  // QKᵀ and AV
      if (c.shortcuts) {
        for (const char* sc : {"attn_shortcut", "ffn_shortcut"})
          if (m.tensors.count(b + sc)) macs += T * m.at(b + sc).numel();
      }
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
    h.params = params_under(m, "lm_head.") + params_under(m, "out_norm.");
    h.flops = 2 * T * c.vocab_size * c.out_dim;
    h.attn_in = c.out_dim;
    h.tokens = h.tokens_out = T;
    rows.push_back(h);
    return rows;
  }

  std::map<std::string, torch::Tensor> to_checkpoint(const Model& m) const override {
    const ArchConfig& c = m.config;
    std::map<std::string, torch::Tensor> out;
    auto flat = m.flat_tensors();
    if (c.family == "gpt2") {
      // Fused c_attn (Conv1D [in, 3·inner]) when q, k, v are dense; pare names otherwise.
      for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
        const std::string b = blk(l), hf = "transformer.h." + std::to_string(l) + ".attn.c_attn.";
        bool dense = true;
        for (const char* q : {"attn_q", "attn_k", "attn_v"}) dense = dense && flat.count(b + q + ".weight");
        if (!dense) continue;
        for (const char* part : {"weight", "bias"}) {
          std::vector<torch::Tensor> ts;
          for (const char* q : {"attn_q", "attn_k", "attn_v"}) ts.push_back(flat.at(b + q + "." + part).detach());
          torch::Tensor fused = at::cat(ts, 0);
          out[hf + part] = (std::string(part) == "weight" ? fused.t() : fused).contiguous();
          for (const char* q : {"attn_q", "attn_k", "attn_v"}) flat.erase(b + q + "." + part);
        }
      }
    }
    for (const auto& [f, t] : flat) {
      std::string hf = decoder_hf_name(c.family, f);
      PARE_ASSERT(!hf.empty(), "no checkpoint name for ", f);
      torch::Tensor v = t.detach();
      const FlatParts p = split_flat(f);
      if (c.family == "gpt2" && p.part == "weight" && gpt2_conv(p.slot) && hf.rfind("pare.", 0) != 0)
        v = v.t();
      out[hf] = v.contiguous();
    }
    return out;
  }

  Model from_checkpoint(const ArchConfig& c, std::map<std::string, torch::Tensor> tensors,
                        const std::string& src) const override {
    auto expected = expected_shapes(c);
    std::map<std::string, std::string> to_flat;  // checkpoint name -> flat name
    for (const auto& [f, shape] : expected) {
      const std::string hf = decoder_hf_name(c.family, f);
      if (!hf.empty()) to_flat[hf] = f;
    }
    std::vector<std::string> unknown, missing;
    std::map<std::string, torch::Tensor> flat;
    torch::Tensor tied_head;
    static const std::regex c_attn(R"(transformer\.h\.(\d+)\.attn\.c_attn\.(weight|bias))");
    static const std::regex gpt2_buffer(R"(transformer\.h\.\d+\.attn\.(bias|masked_bias))");
    for (auto& [hf, t] : tensors) {
      std::smatch mt;
      if (c.family == "gpt2" && std::regex_match(hf, gpt2_buffer)) continue;  // causal-mask buffers
      if (c.tie_word_embeddings && hf == "lm_head.weight") {  // tied duplicate: must be equal
        tied_head = t;
        continue;
      }
      if (c.family == "gpt2" && std::regex_match(hf, mt, c_attn)) {
        const int64_t l = std::stoll(mt[1].str());
        const std::string part = mt[2].str();
        if (l >= c.num_hidden_layers) {
          unknown.push_back(hf);
          continue;
        }
        const auto& d = c.layers[l];
        const int64_t q = d.heads * d.head_dim, kv = d.kv_heads * d.head_dim;
        const Shape want = part == "weight" ? Shape{d.attn_in, q + 2 * kv} : Shape{q + 2 * kv};
        PARE_CHECK(t.is_floating_point(), src, ": tensor '", hf, "': expected a floating dtype, got ",
                   c10::toString(t.scalar_type()));
        PARE_CHECK(t.sizes().vec() == want, src, ": tensor '", hf, "': expected ",
                   c10::IntArrayRef(want), ", got ", t.sizes(), " (config.json disagrees with the weights)");
        torch::Tensor rows = (part == "weight" ? t.t() : t).to(torch::kFloat32);
        const std::string b = blk(l);
        flat[b + "attn_q." + part] = rows.narrow(0, 0, q).contiguous();
        flat[b + "attn_k." + part] = rows.narrow(0, q, kv).contiguous();
        flat[b + "attn_v." + part] = rows.narrow(0, q + kv, kv).contiguous();
        continue;
      }
      auto it = to_flat.find(hf);
      if (it == to_flat.end()) {
        unknown.push_back(hf);
        continue;
      }
      const std::string& f = it->second;
      const FlatParts p = split_flat(f);
      const bool codes = is_quant_code_part(p.part);
      check_checkpoint_dtype(t, p.part, src, hf);
      if (c.family == "gpt2" && p.part == "weight" && gpt2_conv(p.slot) && hf.rfind("pare.", 0) != 0)
        t = t.t();
      PARE_CHECK(t.sizes().vec() == expected[f], src, ": tensor '", hf, "': expected ",
                 c10::IntArrayRef(gpt2_conv(p.slot) && c.family == "gpt2" && p.part == "weight"
                                      ? Shape{expected[f][1], expected[f][0]}
                                      : expected[f]),
                 ", got ",
                 gpt2_conv(p.slot) && c.family == "gpt2" && p.part == "weight" ? t.t().sizes()
                                                                                : t.sizes(),
                 " (config.json disagrees with the weights)");
      flat[f] = (codes ? t : t.to(torch::kFloat32)).contiguous();
    }
    if (tied_head.defined() && flat.count("tok_embd"))
      PARE_CHECK(tied_head.sizes() == flat.at("tok_embd").sizes() &&
                     torch::equal(tied_head.to(torch::kFloat32), flat.at("tok_embd")),
                 src, ": tensor 'lm_head.weight' differs from the embedding but config.json says ",
                 "tie_word_embeddings: true");
    for (const auto& [f, shape] : expected) {
      if (flat.count(f)) continue;
      const FlatParts p = split_flat(f);
      if (c.family == "gpt2" && (p.slot == "attn_q" || p.slot == "attn_k" || p.slot == "attn_v"))
        missing.push_back("transformer.h." + std::to_string(p.layer) + ".attn.c_attn." + p.part);
      else
        missing.push_back(decoder_hf_name(c.family, f));
    }
    std::sort(missing.begin(), missing.end());
    missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
    return assemble_model(c, linear_slots(c), std::move(flat), missing, unknown, src);
  }

 private:
  std::string name_;
};

}  // namespace

std::string decoder_hf_name(const std::string& family, const std::string& flat) {
  const Names& n = names_of(family);
  const FlatParts p = split_flat(flat);
  if (p.slot == "attn_shortcut" || p.slot == "ffn_shortcut") return "pare." + flat;
  if (p.layer < 0) {
    for (const auto& [f, hf] : n.top) {
      if (flat == f) return hf;  // plain tensors (tok_embd, pos_embd)
      if (p.slot == f && !p.part.empty()) return hf + "." + p.part;
    }
    return "";
  }
  for (const auto& [f, hf] : n.layer)
    if (p.slot == f && !p.part.empty()) {
      // GPT-2's Conv1D slots hold [in, out] weights; pare's packed codes are [out, in/k], so a
      // quantized GPT-2 slot keeps pare's own name rather than pretend to be a Conv1D.
      if (family == "gpt2" && is_quant_part(p.part)) return "pare." + flat;
      return n.layer_prefix + std::to_string(p.layer) + "." + hf + "." + p.part;
    }
  // GPT-2 q/k/v live in the fused c_attn; unfused (quantized) parts keep pare names.
  if (family == "gpt2" && (p.slot == "attn_q" || p.slot == "attn_k" || p.slot == "attn_v"))
    return "pare." + flat;
  return "";
}

bool is_decoder_family(const std::string& name) {
  return name == "llama" || name == "qwen2" || name == "mistral" || name == "opt" ||
         name == "gpt2" || name == "phi";
}

const Family& decoder_family(const std::string& name) {
  static const DecoderFamily llama("llama"), qwen2("qwen2"), mistral("mistral"), opt("opt"),
      gpt2("gpt2"), phi("phi");
  if (name == "qwen2") return qwen2;
  if (name == "mistral") return mistral;
  if (name == "opt") return opt;
  if (name == "gpt2") return gpt2;
  if (name == "phi") return phi;
  PARE_ASSERT(name == "llama", "not a decoder family: ", name);
  return llama;
}

}  // namespace pare
