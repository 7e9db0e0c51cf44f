#include "ir/config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <filesystem>
#include <type_traits>

#include "base/error.h"
#include "base/fileio.h"

namespace pare {

int64_t ArchConfig::site_dim(int64_t s) const {
  PARE_ASSERT(s >= 0 && s < num_sites());
  if (s == num_sites() - 1) return out_dim;
  const LayerDims& l = layers[s / 2];
  return s % 2 == 0 || parallel_blocks() ? l.attn_in : l.mlp_in;
}

void ArchConfig::set_site_dim(int64_t s, int64_t d) {
  PARE_ASSERT(s >= 0 && s < num_sites());
  if (s == num_sites() - 1) {
    out_dim = d;
    return;
  }
  LayerDims& l = layers[s / 2];
  if (parallel_blocks()) {
    PARE_ASSERT(s % 2 == 0, "parallel blocks have no residual site between attention and MLP");
    l.attn_in = l.mlp_in = d;
    return;
  }
  (s % 2 == 0 ? l.attn_in : l.mlp_in) = d;
}

const TokenPruneStep* ArchConfig::prune_step(int64_t layer) const {
  for (const auto& st : token_pruning)
    if (st.layer == layer) return &st;
  return nullptr;
}

int64_t ArchConfig::tokens_in(int64_t layer) const {
  int64_t t = seq_len();
  for (const auto& st : token_pruning)
    if (st.layer < layer) t = st.keep;
  return t;
}

int64_t ArchConfig::tokens_out(int64_t layer) const {
  const TokenPruneStep* st = prune_step(layer);
  return st ? st->keep : tokens_in(layer);
}

int64_t ArchConfig::seq_len() const {
  if (is_lm() || is_text_encoder()) return context_length;
  if (is_graph()) return std::max<int64_t>(1, std::llround(gps.mean_nodes));
  return num_patches() + 1;
}

bool GpsConfig::operator==(const GpsConfig& o) const {
  return local_model == o.local_model && global_model == o.global_model && pooling == o.pooling &&
         node_encoder == o.node_encoder && node_vocab == o.node_vocab &&
         node_attr_dims == o.node_attr_dims && edge_encoder == o.edge_encoder &&
         edge_vocab == o.edge_vocab && rwse_steps == o.rwse_steps && rwse_dim == o.rwse_dim &&
         rwse_raw_norm == o.rwse_raw_norm && lappe_k == o.lappe_k && lappe_dim == o.lappe_dim &&
         lappe_layers == o.lappe_layers && lappe_raw_norm == o.lappe_raw_norm &&
         head_layers == o.head_layers && task == o.task && stats_dataset == o.stats_dataset &&
         mean_nodes == o.mean_nodes && mean_edges == o.mean_edges && max_nodes == o.max_nodes &&
         max_edges == o.max_edges && split == o.split && split_seed == o.split_seed;
}

bool ArchConfig::hf_expressible() const {
  if (norm == "rmsnorm" || shortcuts || out_dim != hidden_size) return false;
  const int64_t kv = num_key_value_heads > 0 ? num_key_value_heads : num_attention_heads;
  for (const auto& l : layers)
    if (l.heads != num_attention_heads || l.kv_heads != kv || l.head_dim * l.heads != hidden_size ||
        l.intermediate_size != intermediate_size || l.attn_in != hidden_size ||
        l.mlp_in != hidden_size)
      return false;
  return true;
}

namespace {
const char* const kLmFamilies[] = {"llama", "qwen2", "mistral", "opt", "gpt2", "phi"};
}  // namespace

void ArchConfig::finalize(const std::string& src) {
  bool known = family == "vit" || family == "gps" || family == "bert";
  for (const char* f : kLmFamilies) known = known || family == f;
  PARE_CHECK(known, src, ": family '", family,
             "' is not supported (expected vit, gps, bert, llama, qwen2, mistral, opt, gpt2 or phi)");
  PARE_CHECK(hidden_size > 0, src, ": hidden_size: expected a positive integer, got ", hidden_size);
  PARE_CHECK(num_hidden_layers > 0, src, ": num_hidden_layers: expected a positive integer, got ",
             num_hidden_layers);
  PARE_CHECK(layer_norm_eps > 0, src, ": layer_norm_eps: expected > 0, got ", layer_norm_eps);
  if (is_lm()) {
    finalize_lm(src);
  } else if (is_graph()) {
    finalize_gps(src);
  } else if (is_text_encoder()) {
    finalize_bert(src);
  } else {
    PARE_CHECK(image_size > 0 && patch_size > 0 && image_size % patch_size == 0, src,
               ": image_size (", image_size, ") must be a positive multiple of patch_size (",
               patch_size, ")");
    PARE_CHECK(num_channels > 0, src, ": num_channels: expected a positive integer, got ",
               num_channels);
    PARE_CHECK(num_labels > 0, src, ": num_labels: expected a positive integer, got ", num_labels);
    PARE_CHECK(hidden_act == "gelu", src, ": hidden_act '", hidden_act,
               "' is not supported (expected gelu)");
  }
  if (is_graph())
    PARE_CHECK(norm == "batchnorm" || norm == "graph_layernorm", src,
               ": pare.norm: expected batchnorm or graph_layernorm for gps, got '", norm, "'");
  else
    PARE_CHECK(norm == "layernorm" || norm == "rmsnorm" || norm == "rmsnorm_affine", src,
               ": pare.norm: expected layernorm, rmsnorm_affine or rmsnorm, got '", norm, "'");
  if (layers.empty()) {
    PARE_CHECK(num_attention_heads > 0 && hidden_size % num_attention_heads == 0, src,
               ": num_attention_heads (", num_attention_heads, ") must divide hidden_size (",
               hidden_size, ")");
    PARE_CHECK(intermediate_size > 0, src, ": intermediate_size: expected a positive integer, got ",
               intermediate_size);
    const int64_t kv = num_key_value_heads > 0 ? num_key_value_heads : num_attention_heads;
    LayerDims l{num_attention_heads, hidden_size / num_attention_heads, intermediate_size,
                hidden_size, hidden_size, kv};
    layers.assign(num_hidden_layers, l);
  }
  for (auto& l : layers)
    if (l.kv_heads == 0) l.kv_heads = l.heads;  // configs written before kv_heads existed
  if (out_dim == 0) out_dim = hidden_size;
  PARE_CHECK(static_cast<int64_t>(layers.size()) == num_hidden_layers, src, ": pare.layers has ",
             layers.size(), " entries, expected num_hidden_layers = ", num_hidden_layers);
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& l = layers[i];
    PARE_CHECK(l.heads >= 0 && l.head_dim > 0 && l.intermediate_size >= 0 && l.attn_in > 0 &&
                   l.mlp_in > 0 && l.kv_heads >= 0,
               src, ": pare.layers[", i, "]: dimensions must be positive");
    PARE_CHECK(l.heads == 0 ? l.kv_heads == 0 : l.kv_heads > 0 && l.heads % l.kv_heads == 0, src,
               ": pare.layers[", i, "]: kv_heads (", l.kv_heads, ") must divide heads (", l.heads,
               ")");
    PARE_CHECK(!parallel_blocks() || l.attn_in == l.mlp_in, src, ": pare.layers[", i,
               "]: parallel blocks read one input, so attn_in and mlp_in must agree");
    PARE_CHECK((l.attention && l.ffn) || !is_lm(), src, ": pare.layers[", i,
               "]: a layer without its ", l.attention ? "FFN" : "attention",
               " branch is supported by the vit, bert and gps families, not ", family);
    PARE_CHECK(l.attention || l.heads == 0, src, ": pare.layers[", i,
               "]: attention is false, so heads must be 0, got ", l.heads);
    PARE_CHECK(l.ffn || l.intermediate_size == 0, src, ": pare.layers[", i,
               "]: ffn is false, so intermediate_size must be 0, got ", l.intermediate_size);
  }
  PARE_CHECK(out_dim > 0, src, ": pare.out_dim must be positive");
  if (norm != "rmsnorm" && !shortcuts) {
    // Without SliceGPT shortcuts the residual stream has one width, normalised by its norm.
    for (int64_t s = 0; s < num_sites(); ++s)
      PARE_CHECK(site_dim(s) == hidden_size, src, ": residual width ", site_dim(s), " at ",
                 s == num_sites() - 1 ? std::string("pare.out_dim")
                                      : concat("pare.layers[", s / 2, "].", s % 2 ? "mlp_in" : "attn_in"),
                 " disagrees with hidden_size ", hidden_size);
  }
  PARE_CHECK(!is_lm() || token_pruning.empty(), src,
             ": pare.token_pruning: token pruning applies to encoders (vit), not to decoder LMs");
  PARE_CHECK(!is_text_encoder() || token_pruning.empty(), src,
             ": pare.token_pruning: token pruning is not implemented for bert");
  PARE_CHECK(static_cast<int64_t>(token_pruning.size()) <= num_hidden_layers, src,
             ": pare.token_pruning has ", token_pruning.size(), " steps, more than the ",
             num_hidden_layers, " layers");
  int64_t tokens = seq_len(), prev_layer = -1;
  for (size_t i = 0; i < token_pruning.size(); ++i) {
    const auto& st = token_pruning[i];
    const std::string ts = concat(src, ": pare.token_pruning[", i, "]");
    PARE_CHECK(st.layer >= 0 && st.layer < num_hidden_layers, ts, ".layer: expected 0..",
               num_hidden_layers - 1, ", got ", st.layer);
    PARE_CHECK(st.layer > prev_layer, ts, ".layer: steps must be in increasing layer order, got ",
               st.layer, " after ", prev_layer);
    PARE_CHECK(st.iterations >= 1 && st.iterations <= 1000, ts,
               ".iterations: expected 1..1000, got ", st.iterations);
    prev_layer = st.layer;
    if (is_graph()) {
      // Graphs: nodes leave the global attention only, at a keep rate per graph (src/families/gps.cpp).
      PARE_CHECK(st.keep_rate > 0 && st.keep_rate <= 1, ts,
                 ".keep_rate: expected a share of the attending nodes in (0, 1], got ", st.keep_rate);
      PARE_CHECK(st.similar_rate >= 0 && st.similar_rate <= 1, ts,
                 ".similar_rate: expected 0..1, got ", st.similar_rate);
      PARE_CHECK(st.method == "zero-tprune" || st.method == "random" || st.method == "attention" ||
                     st.method == "learned",
                 ts, ".method: expected zero-tprune, random, attention or learned (graphs have no CLS), got '",
                 st.method, "'");
      PARE_CHECK(st.method != "learned" || st.similar_rate == 0, ts,
                 ".similar_rate: a learned step has no S stage, expected 0, got ", st.similar_rate);
      PARE_CHECK(layers[st.layer].heads > 0, ts, ".layer: layer ", st.layer,
                 " has no attention heads to rank its nodes by");
      continue;
    }
    PARE_CHECK(st.keep > special_tokens() && st.keep <= tokens, ts, ".keep: expected ",
               special_tokens() + 1, "..", tokens, " tokens (", special_tokens(),
               " special token(s) are always kept, ", tokens, " enter layer ", st.layer, "), got ",
               st.keep);
    PARE_CHECK(st.method == "zero-tprune" || st.method == "random" ||
                   st.method == "cls-attention" || st.method == "attention" || st.method == "learned",
               ts, ".method: expected zero-tprune, random, cls-attention, attention or learned, got '",
               st.method, "'");
    PARE_CHECK(layers[st.layer].heads > 0, ts, ".layer: layer ", st.layer,
               " has no attention heads, so its step has no attention to prune in");
    PARE_CHECK(st.method != "learned" || st.similar == 0, ts,
               ".similar: a learned step has no S stage, expected 0, got ", st.similar);
    const int64_t max_similar = std::min(tokens - st.keep, (tokens - special_tokens()) / 2);
    PARE_CHECK(st.similar >= 0 && st.similar <= max_similar, ts, ".similar: expected 0..",
               max_similar, " (at most the tokens dropped at this step and the less important ",
               "half), got ", st.similar);
    tokens = st.keep;
  }
  if (!is_lm() && !is_graph()) {
    if (id2label.empty())
      for (int64_t i = 0; i < num_labels; ++i) id2label.push_back("LABEL_" + std::to_string(i));
    PARE_CHECK(static_cast<int64_t>(id2label.size()) == num_labels, src, ": id2label has ",
               id2label.size(), " entries, expected num_labels = ", num_labels);
  }
  if (family == "vit") {
    if (image_mean.empty()) image_mean.assign(num_channels, 0.5);
    if (image_std.empty()) image_std.assign(num_channels, 0.5);
    for (double v : image_std)
      PARE_CHECK(v > 0, src, ": pare.image_std: expected positive values, got ", v);
    PARE_CHECK(static_cast<int64_t>(image_mean.size()) == num_channels &&
                   static_cast<int64_t>(image_std.size()) == num_channels,
               src, ": image_mean/image_std need num_channels = ", num_channels, " entries");
  }
  PARE_CHECK(quantized.empty() || quant_method == "rtn" || quant_method == "gptq", src,
             ": pare.quantization.method: expected rtn or gptq, got '", quant_method, "'");
  for (const auto& [slot, q] : quantized) {
    const std::string qs = concat(src, ": pare.quantization.slots.", slot);
    PARE_CHECK(q.bits == 4 || q.bits == 8, qs, ".bits: expected 4 or 8, got ", q.bits);
    PARE_CHECK(q.group_size >= 0, qs, ".group_size: expected 0 (per channel) or a positive ",
               "integer, got ", q.group_size);
  }
}

namespace {

template <class T>
void get(const nlohmann::json& j, const char* key, T& out, const std::string& src,
         const char* expected) {
  if (!j.contains(key)) return;
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // nlohmann's get<int> truncates 31.7 to 31, and converting a float beyond T's range is
    // undefined behaviour (fuzz_config_json found 3.2e39): a checkpoint's integers must be
    // integers that fit.
    const nlohmann::json& v = j.at(key);
    using L = std::numeric_limits<T>;
    const double top = std::ldexp(1.0, L::digits);  // 2^63 for int64_t: the first value past max()
    bool fits = true;
    if (v.is_number_float()) {
      const double d = v.get<double>();
      fits = d == std::floor(d) && d >= (L::is_signed ? -top : 0.0) && d < top;
    } else if (v.is_number_unsigned()) {
      fits = v.get<uint64_t>() <= static_cast<uint64_t>(L::max());
    } else if (v.is_number_integer()) {
      const int64_t x = v.get<int64_t>();
      fits = L::is_signed ? (x >= static_cast<int64_t>(L::min()) && x <= static_cast<int64_t>(L::max())) : x >= 0;
    }
    if (!fits) throw InputError(concat(src, ": ", key, ": expected ", expected, ", got ", v.dump()));
  }
  try {
    out = j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw InputError(concat(src, ": ", key, ": expected ", expected, ", got ", j.at(key).dump()));
  }
}

// Calls fn(element, "SRC.key[i]") for every element of the array p[key] (absent: nothing), each
// required to be an object.
template <class F>
void each_object(const nlohmann::json& p, const char* key, const std::string& ps, F fn) {
  if (!p.contains(key)) return;
  PARE_CHECK(p[key].is_array(), ps, ".", key, ": expected an array");
  for (size_t i = 0; i < p[key].size(); ++i) {
    const std::string path = concat(ps, ".", key, "[", i, "]");
    PARE_CHECK(p[key][i].is_object(), path, ": expected an object");
    fn(p[key][i], path);
  }
}

}  // namespace

void ArchConfig::finalize_lm(const std::string& src) {
  PARE_CHECK(vocab_size > 0, src, ": vocab_size: expected a positive integer, got ", vocab_size);
  PARE_CHECK(max_position_embeddings > 0, src,
             ": max_position_embeddings: expected a positive integer, got ",
             max_position_embeddings);
  if (num_key_value_heads == 0) num_key_value_heads = num_attention_heads;
  PARE_CHECK(num_key_value_heads > 0 && num_attention_heads % num_key_value_heads == 0, src,
             ": num_key_value_heads (", num_key_value_heads, ") must divide num_attention_heads (",
             num_attention_heads, ")");
  PARE_CHECK(rope_theta > 0, src, ": rope_theta: expected > 0, got ", rope_theta);
  PARE_CHECK(partial_rotary_factor > 0 && partial_rotary_factor <= 1, src,
             ": partial_rotary_factor: expected (0, 1], got ", partial_rotary_factor);
  if (context_length == 0) context_length = std::min<int64_t>(max_position_embeddings, 256);
  PARE_CHECK(context_length > 0 && context_length <= max_position_embeddings, src,
             ": pare.context_length: expected 1..max_position_embeddings (",
             max_position_embeddings, "), got ", context_length);
  const bool llama_like = family == "llama" || family == "qwen2" || family == "mistral";
  const char* act = llama_like ? "silu" : family == "opt" ? "relu" : "gelu_new";
  PARE_CHECK(hidden_act == act, src, ": hidden_act '", hidden_act, "' is not supported for ",
             family, " (expected ", act, ")");
  PARE_CHECK(norm != "layernorm" || !llama_like, src, ": pare.norm: ", family,
             " uses RMSNorm (rmsnorm_affine or folded rmsnorm), got layernorm");
  PARE_CHECK(norm != "rmsnorm_affine" || llama_like, src, ": pare.norm: ", family,
             " uses LayerNorm (layernorm or folded rmsnorm), got rmsnorm_affine");
  PARE_CHECK(bos_token_id < vocab_size && eos_token_id < vocab_size, src,
             ": bos_token_id/eos_token_id must be below vocab_size (", vocab_size, ")");
}

void ArchConfig::finalize_bert(const std::string& src) {
  PARE_CHECK(vocab_size > 0, src, ": vocab_size: expected a positive integer, got ", vocab_size);
  PARE_CHECK(max_position_embeddings > 0, src,
             ": max_position_embeddings: expected a positive integer, got ",
             max_position_embeddings);
  PARE_CHECK(type_vocab_size > 0, src, ": type_vocab_size: expected a positive integer, got ",
             type_vocab_size);
  PARE_CHECK(pad_token_id >= 0 && pad_token_id < vocab_size, src, ": pad_token_id: expected 0..",
             vocab_size - 1, ", got ", pad_token_id);
  PARE_CHECK(num_labels > 0, src, ": num_labels: expected a positive integer, got ", num_labels);
  PARE_CHECK(hidden_act == "gelu", src, ": hidden_act '", hidden_act,
             "' is not supported for bert (expected gelu)");
  PARE_CHECK(norm == "layernorm", src, ": pare.norm: bert is post-LN with LayerNorm (SliceGPT's ",
             "folding does not apply), got '", norm, "'");
  PARE_CHECK(!shortcuts, src, ": pare.shortcuts: bert has no SliceGPT shortcut matrices");
  PARE_CHECK(!mlm_head || family == "bert", src, ": pare.mlm_head: only bert has a masked-LM head");
  if (context_length == 0) context_length = std::min<int64_t>(max_position_embeddings, 128);
  PARE_CHECK(context_length > 0 && context_length <= max_position_embeddings, src,
             ": pare.context_length: expected 1..max_position_embeddings (",
             max_position_embeddings, "), got ", context_length);
}

void ArchConfig::finalize_gps(const std::string& src) {
  GpsConfig& g = gps;
  const std::string gs = src + ": gps.";
  auto one_of = [&](const std::string& v, std::initializer_list<const char*> ok, const char* key) {
    std::string list;
    for (const char* o : ok) {
      if (v == o) return;
      list += (list.empty() ? "" : ", ") + std::string(o);
    }
    throw InputError(concat(gs, key, ": expected one of ", list, ", got '", v, "'"));
  };
  one_of(g.local_model, {"GINE", "GIN", "CustomGatedGCN", "None"}, "local_model");
  one_of(g.global_model, {"Transformer", "None"}, "global_model");
  PARE_CHECK(g.local_model != "None" || g.global_model != "None", gs,
             "local_model and global_model: at least one must be present (both are None)");
  one_of(g.pooling, {"add", "mean", "max"}, "pooling");
  // A categorical encoder: TypeDict* reads one column, Atom/Bond one per vocabulary entry.
  auto vocab_ok = [&](const std::vector<int64_t>& vocab, bool type_dict, const char* key,
                      const std::string& encoder) {
    PARE_CHECK(!vocab.empty() && (!type_dict || vocab.size() == 1), gs, key, ": ", encoder,
               " needs ", type_dict ? "one category count" : "a category count per column");
    for (int64_t v : vocab) PARE_CHECK(v > 0, gs, key, ": expected positive counts, got ", v);
  };
  one_of(g.node_encoder, {"TypeDictNode", "Atom", "LinearNode"}, "node_encoder");
  if (g.node_encoder == "LinearNode")
    PARE_CHECK(g.node_attr_dims > 0 && g.node_vocab.empty(), gs,
               "node_attr_dims: LinearNode needs a positive number of dense node features (and no ",
               "node_vocab), got ", g.node_attr_dims);
  else
    vocab_ok(g.node_vocab, g.node_encoder == "TypeDictNode", "node_vocab", g.node_encoder);
  one_of(g.edge_encoder, {"TypeDictEdge", "Bond", "None"}, "edge_encoder");
  if (g.edge_encoder == "None") {
    PARE_CHECK(g.edge_vocab.empty(), gs, "edge_vocab: no edge encoder, so no edge vocabulary");
    PARE_CHECK(g.local_model != "GINE" && g.local_model != "CustomGatedGCN", gs, "edge_encoder: ",
               g.local_model, " needs edge features (TypeDictEdge or Bond), got None");
  } else {
    vocab_ok(g.edge_vocab, g.edge_encoder == "TypeDictEdge", "edge_vocab", g.edge_encoder);
  }
  PARE_CHECK(g.rwse_steps >= 0 && g.rwse_dim >= 0 && (g.rwse_steps > 0) == (g.rwse_dim > 0), gs,
             "rwse_steps / rwse_dim: both positive (RWSE) or both 0 (none), got ", g.rwse_steps,
             " / ", g.rwse_dim);
  PARE_CHECK(g.lappe_k >= 0 && g.lappe_dim >= 0 && (g.lappe_k > 0) == (g.lappe_dim > 0), gs,
             "lappe_k / lappe_dim: both positive (LapPE) or both 0 (none), got ", g.lappe_k, " / ",
             g.lappe_dim);
  PARE_CHECK(g.lappe_layers >= 1, gs, "lappe_layers: expected >= 1, got ", g.lappe_layers);
  PARE_CHECK(hidden_size - g.rwse_dim - g.lappe_dim > 0, gs, "rwse_dim + lappe_dim (",
             g.rwse_dim + g.lappe_dim, ") must leave room for the node embedding in hidden_size (",
             hidden_size, ")");
  PARE_CHECK(g.head_layers >= 1 && g.head_layers <= 16 && (hidden_size >> (g.head_layers - 1)) >= 1,
             gs, "head_layers: expected 1.. with hidden_size / 2^(head_layers - 1) >= 1, got ",
             g.head_layers);
  one_of(g.task, {"classification", "binary", "regression"}, "task");
  if (!g.split.empty()) one_of(g.split, {"random", "scaffold", "all"}, "split");
  PARE_CHECK(num_labels > 0, src, ": num_labels (output width): expected a positive integer, got ",
             num_labels);
  PARE_CHECK(g.task != "classification" || num_labels >= 2, src, ": num_labels: classification ",
             "needs >= 2 classes (one logit: task binary), got ", num_labels);
  PARE_CHECK(g.mean_nodes >= 0 && g.mean_edges >= 0 && g.max_nodes >= 0 && g.max_edges >= 0, gs,
             "mean_nodes / mean_edges / max_nodes / max_edges: expected >= 0");
  PARE_CHECK(hidden_act == "relu", src, ": hidden_act '", hidden_act,
             "' is not supported for gps (expected relu)");
  if (intermediate_size == 0) intermediate_size = 2 * hidden_size;
}

namespace {

// HF config.json keys of the decoder-LM families, per ArchConfig field.
struct LmKeys {
  const char* arch;  // "architectures" entry
  const char *hidden, *inter, *layers, *heads, *kv, *eps, *positions;
  bool tie_default;
  const char* norm;  // native norm
};

const LmKeys* lm_keys(const std::string& family) {
  static const LmKeys llama{"LlamaForCausalLM", "hidden_size", "intermediate_size",
                            "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                            "rms_norm_eps", "max_position_embeddings", false, "rmsnorm_affine"};
  static const LmKeys qwen2{"Qwen2ForCausalLM", "hidden_size", "intermediate_size",
                            "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                            "rms_norm_eps", "max_position_embeddings", false, "rmsnorm_affine"};
  static const LmKeys mistral{"MistralForCausalLM", "hidden_size", "intermediate_size",
                              "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                              "rms_norm_eps", "max_position_embeddings", false, "rmsnorm_affine"};
  static const LmKeys opt{"OPTForCausalLM", "hidden_size", "ffn_dim", "num_hidden_layers",
                          "num_attention_heads", nullptr, nullptr, "max_position_embeddings",
                          true, "layernorm"};
  static const LmKeys gpt2{"GPT2LMHeadModel", "n_embd", "n_inner", "n_layer", "n_head", nullptr,
                           "layer_norm_epsilon", "n_positions", true, "layernorm"};
  static const LmKeys phi{"PhiForCausalLM", "hidden_size", "intermediate_size",
                          "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                          "layer_norm_eps", "max_position_embeddings", false, "layernorm"};
  if (family == "llama") return &llama;
  if (family == "qwen2") return &qwen2;
  if (family == "mistral") return &mistral;
  if (family == "opt") return &opt;
  if (family == "gpt2") return &gpt2;
  if (family == "phi") return &phi;
  return nullptr;
}

}  // namespace

namespace {
void read_lm_fields(const nlohmann::json& j, const LmKeys& k, ArchConfig& c, const std::string& src) {
  c.norm = k.norm;
  c.tie_word_embeddings = k.tie_default;
  c.layer_norm_eps = 1e-5;
  get(j, k.hidden, c.hidden_size, src, "an integer");
  if (!(c.family == "gpt2" && j.contains("n_inner") && j["n_inner"].is_null()))
    get(j, k.inter, c.intermediate_size, src, "an integer");
  if (c.family == "gpt2" && c.intermediate_size == 0) c.intermediate_size = 4 * c.hidden_size;
  get(j, k.layers, c.num_hidden_layers, src, "an integer");
  get(j, k.heads, c.num_attention_heads, src, "an integer");
  if (k.kv && !(j.contains(k.kv) && j[k.kv].is_null()))
    get(j, k.kv, c.num_key_value_heads, src, "an integer");
  if (k.eps) get(j, k.eps, c.layer_norm_eps, src, "a number");
  get(j, k.positions, c.max_position_embeddings, src, "an integer");
  get(j, "vocab_size", c.vocab_size, src, "an integer");
  get(j, "tie_word_embeddings", c.tie_word_embeddings, src, "a boolean");
  if (j.contains("bos_token_id") && !j["bos_token_id"].is_null())
    get(j, "bos_token_id", c.bos_token_id, src, "an integer");
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null())
    get(j, "eos_token_id", c.eos_token_id, src, "an integer");
  c.hidden_act = c.family == "opt" ? "relu" : c.family == "gpt2" ? "gelu_new" : "silu";
  if (c.family == "phi") c.hidden_act = "gelu_new";
  get(j, c.family == "opt" || c.family == "gpt2" ? "activation_function" : "hidden_act",
      c.hidden_act, src, "a string");
  if (c.family == "gpt2" && c.hidden_act == "gelu_pytorch_tanh") c.hidden_act = "gelu_new";
  if (c.family == "phi" && c.hidden_act == "gelu_pytorch_tanh") c.hidden_act = "gelu_new";
  get(j, "rope_theta", c.rope_theta, src, "a number");
  get(j, "partial_rotary_factor", c.partial_rotary_factor, src, "a number");
  c.attention_bias = c.family == "qwen2";
  if (c.family == "llama" || c.family == "mistral")
    get(j, "attention_bias", c.attention_bias, src, "a boolean");
  if (j.contains("head_dim") && !j["head_dim"].is_null() && c.num_attention_heads > 0) {
    int64_t hd = 0;
    get(j, "head_dim", hd, src, "an integer");
    PARE_CHECK(hd * c.num_attention_heads == c.hidden_size, src, ": head_dim (", hd,
               ") times num_attention_heads (", c.num_attention_heads,
               ") must equal hidden_size (", c.hidden_size, ")");
  }
  // Features pare does not implement: refused by name rather than computed wrongly.
  auto refuse_unless = [&](const char* key, const nlohmann::json& ok, const char* what) {
    if (j.contains(key) && !j[key].is_null() && j[key] != ok)
      throw InputError(concat(src, ": ", key, " = ", j[key].dump(), " is not supported (", what,
                              ")"));
  };
  refuse_unless("rope_scaling", nullptr, "RoPE scaling");
  if (c.family == "opt") {
    refuse_unless("do_layer_norm_before", true, "post-LN OPT such as OPT-350m");
    refuse_unless("word_embed_proj_dim", c.hidden_size, "OPT projection layers project_in/out");
    refuse_unless("enable_bias", true, "OPT without biases");
    refuse_unless("layer_norm_elementwise_affine", true, "OPT LayerNorm without weights");
  }
  if (c.family == "gpt2") {
    refuse_unless("scale_attn_by_inverse_layer_idx", false, "layer-scaled attention");
    refuse_unless("scale_attn_weights", true, "unscaled attention");
    refuse_unless("add_cross_attention", false, "cross attention");
  }
  if (c.family == "phi") refuse_unless("qk_layernorm", false, "Phi QK LayerNorm");
  if (c.family == "mistral") refuse_unless("sliding_window", nullptr, "sliding-window attention");
  if (c.family == "qwen2" && j.value("use_sliding_window", false))
    throw InputError(concat(src, ": use_sliding_window = true is not supported"));
  static const std::vector<std::string> known = {
      "model_type", "architectures", "vocab_size", "tie_word_embeddings", "bos_token_id",
      "eos_token_id", "hidden_act", "activation_function", "rope_theta", "partial_rotary_factor",
      "attention_bias", "head_dim", "torch_dtype", "transformers_version", "pare"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool used = std::find(known.begin(), known.end(), it.key()) != known.end();
    for (const char* key : {k.hidden, k.inter, k.layers, k.heads, k.kv, k.eps, k.positions})
      used = used || (key && it.key() == key);
    if (!used) c.hf_extra[it.key()] = it.value();
  }
}
}  // namespace

namespace {
// The "gps" object of config.json: GpsConfig's fields under their C++ names; unknown keys are
// refused (a typo would otherwise silently change the model).
void read_gps_fields(const nlohmann::json& j, ArchConfig& c, const std::string& src) {
  PARE_CHECK(j.contains("gps") && j["gps"].is_object(), src,
             ": gps: a gps model needs the \"gps\" object (local_model, node_encoder, ...)");
  const auto& o = j["gps"];
  const std::string gs = src + ": gps";
  GpsConfig& g = c.gps;
  static const char* const kKeys[] = {
      "local_model", "global_model", "pooling", "node_encoder", "node_vocab", "node_attr_dims",
      "edge_encoder", "edge_vocab", "rwse_steps", "rwse_dim", "rwse_raw_norm", "lappe_k",
      "lappe_dim", "lappe_layers", "lappe_raw_norm", "head_layers", "task", "stats_dataset",
      "mean_nodes", "mean_edges", "max_nodes", "max_edges", "split", "split_seed"};
  for (auto it = o.begin(); it != o.end(); ++it)
    PARE_CHECK(std::any_of(std::begin(kKeys), std::end(kKeys),
                           [&](const char* k) { return it.key() == k; }),
               gs, ".", it.key(), ": unknown key");
  get(o, "local_model", g.local_model, gs, "a string");
  get(o, "global_model", g.global_model, gs, "a string");
  get(o, "pooling", g.pooling, gs, "a string");
  get(o, "node_encoder", g.node_encoder, gs, "a string");
  get(o, "node_vocab", g.node_vocab, gs, "a list of integers");
  get(o, "node_attr_dims", g.node_attr_dims, gs, "an integer");
  get(o, "edge_encoder", g.edge_encoder, gs, "a string");
  get(o, "edge_vocab", g.edge_vocab, gs, "a list of integers");
  get(o, "rwse_steps", g.rwse_steps, gs, "an integer");
  get(o, "rwse_dim", g.rwse_dim, gs, "an integer");
  get(o, "rwse_raw_norm", g.rwse_raw_norm, gs, "a boolean");
  get(o, "lappe_k", g.lappe_k, gs, "an integer");
  get(o, "lappe_dim", g.lappe_dim, gs, "an integer");
  get(o, "lappe_layers", g.lappe_layers, gs, "an integer");
  get(o, "lappe_raw_norm", g.lappe_raw_norm, gs, "a boolean");
  get(o, "head_layers", g.head_layers, gs, "an integer");
  get(o, "task", g.task, gs, "a string");
  get(o, "stats_dataset", g.stats_dataset, gs, "a string");
  get(o, "mean_nodes", g.mean_nodes, gs, "a number");
  get(o, "mean_edges", g.mean_edges, gs, "a number");
  get(o, "max_nodes", g.max_nodes, gs, "an integer");
  get(o, "max_edges", g.max_edges, gs, "an integer");
  get(o, "split", g.split, gs, "a string");
  int64_t seed = static_cast<int64_t>(g.split_seed);
  get(o, "split_seed", seed, gs, "an integer");
  PARE_CHECK(seed >= 0, gs, ": split_seed: expected a non-negative integer, got ", seed);
  g.split_seed = static_cast<uint64_t>(seed);
}

nlohmann::ordered_json gps_to_json(const GpsConfig& g) {
  nlohmann::ordered_json o;
  o["local_model"] = g.local_model;
  o["global_model"] = g.global_model;
  o["pooling"] = g.pooling;
  o["node_encoder"] = g.node_encoder;
  o["node_vocab"] = g.node_vocab;
  o["node_attr_dims"] = g.node_attr_dims;
  o["edge_encoder"] = g.edge_encoder;
  o["edge_vocab"] = g.edge_vocab;
  o["rwse_steps"] = g.rwse_steps;
  o["rwse_dim"] = g.rwse_dim;
  o["rwse_raw_norm"] = g.rwse_raw_norm;
  o["lappe_k"] = g.lappe_k;
  o["lappe_dim"] = g.lappe_dim;
  o["lappe_layers"] = g.lappe_layers;
  o["lappe_raw_norm"] = g.lappe_raw_norm;
  o["head_layers"] = g.head_layers;
  o["task"] = g.task;
  o["stats_dataset"] = g.stats_dataset;
  o["mean_nodes"] = g.mean_nodes;
  o["mean_edges"] = g.mean_edges;
  o["max_nodes"] = g.max_nodes;
  o["max_edges"] = g.max_edges;
  if (!g.split.empty()) {
    o["split"] = g.split;
    o["split_seed"] = g.split_seed;
  }
  return o;
}
}  // namespace

namespace {
// id2label {"0": name, ...} (HF classifiers); num_labels from its size when absent.
void read_id2label(const nlohmann::json& j, ArchConfig& c, const std::string& src) {
  if (!j.contains("id2label")) return;
  const auto& m = j["id2label"];
  PARE_CHECK(m.is_object(), src, ": id2label: expected an object {\"0\": name, ...}");
  c.id2label.assign(m.size(), "");
  for (auto it = m.begin(); it != m.end(); ++it) {
    size_t idx = 0;
    try {
      idx = std::stoul(it.key());
    } catch (...) {
      throw InputError(concat(src, ": id2label: key '", it.key(), "' is not an integer"));
    }
    PARE_CHECK(idx < m.size() && it->is_string(), src, ": id2label['", it.key(),
               "']: expected a label name for an index below ", m.size());
    c.id2label[idx] = it->get<std::string>();
  }
  if (c.num_labels == 0) c.num_labels = static_cast<int64_t>(m.size());
}

// Hugging Face BertConfig (BertForSequenceClassification). Absolute positions only; fields pare
// does not interpret (dropouts, initializer_range, classifier_dropout, ...) are kept in hf_extra
// and written back.
void read_bert_fields(const nlohmann::json& j, ArchConfig& c, const std::string& src) {
  c.max_position_embeddings = 512;
  c.type_vocab_size = 2;
  get(j, "vocab_size", c.vocab_size, src, "an integer");
  get(j, "hidden_size", c.hidden_size, src, "an integer");
  get(j, "num_hidden_layers", c.num_hidden_layers, src, "an integer");
  get(j, "num_attention_heads", c.num_attention_heads, src, "an integer");
  get(j, "intermediate_size", c.intermediate_size, src, "an integer");
  get(j, "hidden_act", c.hidden_act, src, "a string");
  get(j, "max_position_embeddings", c.max_position_embeddings, src, "an integer");
  get(j, "type_vocab_size", c.type_vocab_size, src, "an integer");
  get(j, "layer_norm_eps", c.layer_norm_eps, src, "a number");
  if (j.contains("pad_token_id") && !j["pad_token_id"].is_null())
    get(j, "pad_token_id", c.pad_token_id, src, "an integer");
  get(j, "num_labels", c.num_labels, src, "an integer");
  read_id2label(j, c, src);
  if (j.contains("position_embedding_type") && j["position_embedding_type"] != "absolute")
    throw InputError(concat(src, ": position_embedding_type = ", j["position_embedding_type"].dump(),
                            " is not supported (absolute positions only)"));
  if (j.contains("is_decoder") && j["is_decoder"] == true)
    throw InputError(concat(src, ": is_decoder = true is not supported (bert is an encoder)"));
  static const char* const kKnown[] = {
      "model_type", "architectures", "vocab_size", "hidden_size", "num_hidden_layers",
      "num_attention_heads", "intermediate_size", "hidden_act", "max_position_embeddings",
      "type_vocab_size", "layer_norm_eps", "pad_token_id", "num_labels", "id2label", "label2id",
      "position_embedding_type", "pare"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (std::none_of(std::begin(kKnown), std::end(kKnown), [&](const char* k) { return it.key() == k; }))
      c.hf_extra[it.key()] = it.value();
}
}  // namespace

ArchConfig config_from_json(const nlohmann::json& j, const std::string& src) {
  PARE_CHECK(j.is_object(), src, ": expected a JSON object");
  ArchConfig c;
  std::string model_type = "vit";
  get(j, "model_type", model_type, src, "a string");
  c.family = model_type;
  if (c.family == "gps") {  // PyTorch's norm eps, GraphGym's ReLU
    c.norm = "batchnorm";
    c.layer_norm_eps = 1e-5;
    c.hidden_act = "relu";
  }
  if (const LmKeys* k = lm_keys(c.family)) {
    read_lm_fields(j, *k, c, src);
  } else if (c.family == "bert") {
    read_bert_fields(j, c, src);
  } else {
    get(j, "hidden_size", c.hidden_size, src, "an integer");
    get(j, "num_hidden_layers", c.num_hidden_layers, src, "an integer");
    get(j, "num_attention_heads", c.num_attention_heads, src, "an integer");
    get(j, "intermediate_size", c.intermediate_size, src, "an integer");
    get(j, "layer_norm_eps", c.layer_norm_eps, src, "a number");
    get(j, "hidden_act", c.hidden_act, src, "a string");
    get(j, "image_size", c.image_size, src, "an integer");
    get(j, "patch_size", c.patch_size, src, "an integer");
    get(j, "num_channels", c.num_channels, src, "an integer");
    get(j, "num_labels", c.num_labels, src, "an integer");
    PARE_CHECK(!j.contains("qkv_bias") || j["qkv_bias"] == true, src,
               ": qkv_bias: only true is supported");
    read_id2label(j, c, src);
  }
  if (c.family == "gps") read_gps_fields(j, c, src);
  if (j.contains("pare")) {
    const auto& p = j["pare"];
    const std::string ps = src + ": pare";
    PARE_CHECK(p.is_object(), ps, ": expected an object");
    get(p, "family", c.family, ps, "a string");
    PARE_CHECK(!j.contains("model_type") || c.family == model_type, src, ": model_type '", model_type,
               "' disagrees with pare.family '", c.family, "'");
    get(p, "task", c.task, ps, "a string");
    get(p, "norm", c.norm, ps, "a string");
    get(p, "shortcuts", c.shortcuts, ps, "a boolean");
    get(p, "out_dim", c.out_dim, ps, "an integer");
    get(p, "context_length", c.context_length, ps, "an integer");
    get(p, "mlm_head", c.mlm_head, ps, "a boolean");
    get(p, "image_mean", c.image_mean, ps, "a list of numbers");
    get(p, "image_std", c.image_std, ps, "a list of numbers");
    if (p.contains("history")) c.history = p["history"];
    each_object(p, "token_pruning", ps, [&](const nlohmann::json& t, const std::string& ts) {
      PARE_CHECK(t.contains("layer") && (t.contains("keep") || t.contains("keep_rate")), ts,
                 ": expected layer and keep (or keep_rate for graphs)");
      TokenPruneStep st;
      get(t, "layer", st.layer, ts, "an integer");
      get(t, "keep", st.keep, ts, "an integer");
      get(t, "keep_rate", st.keep_rate, ts, "a number");
      get(t, "similar_rate", st.similar_rate, ts, "a number");
      get(t, "method", st.method, ts, "a string");
      get(t, "iterations", st.iterations, ts, "an integer");
      get(t, "similar", st.similar, ts, "an integer");
      get(t, "uniform_init", st.uniform_init, ts, "a boolean");
      get(t, "seed", st.seed, ts, "an integer");
      c.token_pruning.push_back(st);
    });
    each_object(p, "layers", ps, [&](const nlohmann::json& l, const std::string& ls) {
      LayerDims d;
      get(l, "heads", d.heads, ls, "an integer");
      get(l, "kv_heads", d.kv_heads, ls, "an integer");
      get(l, "head_dim", d.head_dim, ls, "an integer");
      get(l, "intermediate_size", d.intermediate_size, ls, "an integer");
      get(l, "attn_in", d.attn_in, ls, "an integer");
      get(l, "mlp_in", d.mlp_in, ls, "an integer");
      get(l, "attention", d.attention, ls, "a boolean");
      get(l, "ffn", d.ffn, ls, "a boolean");
      c.layers.push_back(d);
    });
    if (p.contains("quantization")) {
      const auto& q = p["quantization"];
      const std::string qs = ps + ".quantization";
      PARE_CHECK(q.is_object() && q.contains("slots") && q["slots"].is_object(), qs,
                 ": expected an object {method, slots: {SLOT: {bits, group_size, symmetric}}}");
      get(q, "method", c.quant_method, qs, "a string");
      for (auto it = q["slots"].begin(); it != q["slots"].end(); ++it) {
        const std::string ss = qs + ".slots." + it.key();
        PARE_CHECK(it->is_object() && it->contains("bits"), ss, ": expected an object with bits");
        QuantSlot qslot;
        get(*it, "bits", qslot.bits, ss, "an integer");
        get(*it, "group_size", qslot.group_size, ss, "an integer");
        get(*it, "symmetric", qslot.symmetric, ss, "a boolean");
        c.quantized[it.key()] = qslot;
      }
    }
  }
  c.finalize(src);
  return c;
}

nlohmann::json config_to_json(const ArchConfig& c) {
  nlohmann::ordered_json j;
  if (const LmKeys* k = lm_keys(c.family)) {
    j["architectures"] = {k->arch};
    j["model_type"] = c.family;
    j[k->hidden] = c.hidden_size;
    j[k->inter] = c.intermediate_size;
    j[k->layers] = c.num_hidden_layers;
    j[k->heads] = c.num_attention_heads;
    if (k->kv) j[k->kv] = c.num_key_value_heads;
    if (k->eps) j[k->eps] = c.layer_norm_eps;
    j[k->positions] = c.max_position_embeddings;
    j["vocab_size"] = c.vocab_size;
    j[c.family == "opt" || c.family == "gpt2" ? "activation_function" : "hidden_act"] = c.hidden_act;
    if (c.family != "opt" && c.family != "gpt2") j["rope_theta"] = c.rope_theta;
    if (c.family == "phi") j["partial_rotary_factor"] = c.partial_rotary_factor;
    if (c.family == "llama" || c.family == "mistral") j["attention_bias"] = c.attention_bias;
    j["tie_word_embeddings"] = c.tie_word_embeddings;
    if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
    if (c.eos_token_id >= 0) j["eos_token_id"] = c.eos_token_id;
    for (auto it = c.hf_extra.begin(); it != c.hf_extra.end(); ++it) j[it.key()] = it.value();
  } else if (c.is_text_encoder()) {
    j["architectures"] = {"BertForSequenceClassification"};
    j["model_type"] = "bert";
    j["vocab_size"] = c.vocab_size;
    j["hidden_size"] = c.hidden_size;
    j["num_hidden_layers"] = c.num_hidden_layers;
    j["num_attention_heads"] = c.num_attention_heads;
    j["intermediate_size"] = c.intermediate_size;
    j["hidden_act"] = c.hidden_act;
    j["max_position_embeddings"] = c.max_position_embeddings;
    j["type_vocab_size"] = c.type_vocab_size;
    j["layer_norm_eps"] = c.layer_norm_eps;
    j["pad_token_id"] = c.pad_token_id;
    j["position_embedding_type"] = "absolute";
    for (auto it = c.hf_extra.begin(); it != c.hf_extra.end(); ++it) j[it.key()] = it.value();
  } else {
    // gps (GraphGPS) has no Hugging Face class: it shares the ViT's generic fields.
    j["architectures"] = {c.is_graph() ? "GPSModel" : "ViTForImageClassification"};
    j["model_type"] = c.family;
    j["hidden_size"] = c.hidden_size;
    j["num_hidden_layers"] = c.num_hidden_layers;
    j["num_attention_heads"] = c.num_attention_heads;
    j["intermediate_size"] = c.intermediate_size;
    j["hidden_act"] = c.hidden_act;
    j["layer_norm_eps"] = c.layer_norm_eps;
  }
  if (c.is_graph()) {
    j["num_labels"] = c.num_labels;
    j["gps"] = gps_to_json(c.gps);
  } else if (!c.is_lm()) {
    if (!c.is_text_encoder()) {
      j["image_size"] = c.image_size;
      j["patch_size"] = c.patch_size;
      j["num_channels"] = c.num_channels;
      j["qkv_bias"] = true;
      j["hidden_dropout_prob"] = 0.0;
      j["attention_probs_dropout_prob"] = 0.0;
    }
    j["num_labels"] = c.num_labels;
    nlohmann::ordered_json id2label = nlohmann::ordered_json::object(),
                           label2id = nlohmann::ordered_json::object();
    for (size_t i = 0; i < c.id2label.size(); ++i) {
      id2label[std::to_string(i)] = c.id2label[i];
      label2id[c.id2label[i]] = i;
    }
    j["id2label"] = id2label;
    j["label2id"] = label2id;
  }
  nlohmann::ordered_json p;
  p["family"] = c.family;
  if (!c.task.empty()) p["task"] = c.task;
  p["norm"] = c.norm;
  p["shortcuts"] = c.shortcuts;
  p["out_dim"] = c.out_dim;
  if (c.is_lm() || c.is_text_encoder()) {
    p["context_length"] = c.context_length;
    if (c.mlm_head) p["mlm_head"] = true;
  } else if (!c.is_graph()) {
    p["image_mean"] = c.image_mean;
    p["image_std"] = c.image_std;
  }
  if (!c.quantized.empty()) {
    nlohmann::ordered_json slots = nlohmann::ordered_json::object();
    for (const auto& [slot, q] : c.quantized)
      slots[slot] = {{"bits", q.bits}, {"group_size", q.group_size}, {"symmetric", q.symmetric}};
    p["quantization"] = {{"method", c.quant_method}, {"slots", slots}};
  }
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (const auto& l : c.layers) {
    nlohmann::ordered_json e = {{"heads", l.heads},
                                {"kv_heads", l.kv_heads},
                                {"head_dim", l.head_dim},
                                {"intermediate_size", l.intermediate_size},
                                {"attn_in", l.attn_in},
                                {"mlp_in", l.mlp_in}};
    if (!l.attention) e["attention"] = false;
    if (!l.ffn) e["ffn"] = false;
    layers.push_back(e);
  }
  p["layers"] = layers;
  if (!c.token_pruning.empty()) {
    nlohmann::ordered_json tp = nlohmann::ordered_json::array();
    for (const auto& st : c.token_pruning) {
      nlohmann::ordered_json t = {{"layer", st.layer}};
      if (c.is_graph())
        t["keep_rate"] = st.keep_rate, t["similar_rate"] = st.similar_rate;
      else
        t["keep"] = st.keep;
      t["method"] = st.method;
      t["iterations"] = st.iterations;
      if (!c.is_graph()) t["similar"] = st.similar, t["uniform_init"] = st.uniform_init;
      t["seed"] = st.seed;
      tp.push_back(t);
    }
    p["token_pruning"] = tp;
  }
  p["history"] = c.history;
  j["pare"] = p;
  return nlohmann::json(j);
}

ArchConfig load_config(const std::string& path) {
  std::string text = read_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(concat(path, ": not valid JSON: ", e.what()));
  }
  const bool vit = j.is_object() && j.contains("model_type") && j["model_type"] == "vit";
  const bool has_norm = j.is_object() && j.contains("pare") && j["pare"].is_object() &&
                        (j["pare"].contains("image_mean") || j["pare"].contains("image_std"));
  const std::string pre = (std::filesystem::path(path).parent_path() / "preprocessor_config.json").string();
  if (vit && !has_norm && file_exists(pre)) {
    auto [mean, std] = read_preprocessor_normalization(pre);
    const int64_t channels = j.contains("num_channels") && j["num_channels"].is_number_integer()
                                 ? j["num_channels"].get<int64_t>()
                                 : 3;  // HF ViTConfig's default
    for (auto* v : {&mean, &std}) {
      if (v->size() == 1 && channels > 1) v->assign(channels, v->front());
      PARE_CHECK(static_cast<int64_t>(v->size()) == channels, pre, ": ",
                 v == &mean ? "image_mean" : "image_std", ": expected ", channels,
                 " value(s) (num_channels in config.json), got ", v->size());
    }
    for (double s : std)
      PARE_CHECK(s > 0, pre, ": image_std: expected positive values, got ", s);
    if (!j.contains("pare")) j["pare"] = nlohmann::json::object();
    j["pare"]["image_mean"] = mean;
    j["pare"]["image_std"] = std;
  }
  return config_from_json(j, path);
}

std::pair<std::vector<double>, std::vector<double>> read_preprocessor_normalization(
    const std::string& path) {
  nlohmann::json p;
  try {
    p = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(concat(path, ": not valid JSON: ", e.what()));
  }
  PARE_CHECK(p.is_object(), path, ": expected a JSON object");
  auto flag = [&](const char* key) {
    if (!p.contains(key)) return true;  // ViTImageProcessor's defaults are true
    PARE_CHECK(p[key].is_boolean(), path, ": ", key, ": expected true or false, got ", p[key].dump());
    return p[key].get<bool>();
  };
  PARE_CHECK(flag("do_rescale"), path, ": do_rescale: false is not supported (pare scales uint8 pixels by 1/255)");
  if (p.contains("rescale_factor")) {
    PARE_CHECK(p["rescale_factor"].is_number(), path, ": rescale_factor: expected a number, got ",
               p["rescale_factor"].dump());
    const double r = p["rescale_factor"].get<double>();
    PARE_CHECK(std::abs(r - 1.0 / 255) < 1e-9, path, ": rescale_factor: pare scales uint8 pixels by 1/255, got ", r);
  }
  if (!flag("do_normalize")) return {{0.0}, {1.0}};
  auto list = [&](const char* key) {
    std::vector<double> v;
    if (!p.contains(key)) return std::vector<double>{0.5};  // ViTImageProcessor's default
    if (p[key].is_number()) return std::vector<double>{p[key].get<double>()};  // one for all channels
    PARE_CHECK(p[key].is_array() && !p[key].empty(), path, ": ", key,
               ": expected a list of numbers (one per channel), got ", p[key].dump());
    for (const auto& x : p[key]) {
      PARE_CHECK(x.is_number(), path, ": ", key, ": expected numbers, got ", x.dump());
      v.push_back(x.get<double>());
    }
    return v;
  };
  return {list("image_mean"), list("image_std")};
}

}  // namespace pare
