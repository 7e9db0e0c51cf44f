// Decoder LMs from non-HF files, converted to the Hugging Face Llama layout: the common output
// type (ImportedLm), the llama2.c checkpoint reader, and helpers shared with the GGUF reader
// (gguf.h).
//
// llama2.c legacy (version 0) .bin, as karpathy/llama2.c run.c reads it: 7 int32 (dim,
// hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means an
// untied classifier), then float32 token_embedding_table [V,D], rms_att_weight [L,D], wq [L,D,D],
// wk [L,KV,D], wv [L,KV,D], wo [L,D,D], rms_ffn_weight [L,D], w1 [L,H,D], w2 [L,D,H], w3 [L,H,D],
// rms_final_weight [D], freq_cis_real and freq_cis_imag [seq_len, head_size/2] (skipped), and
// wcls [V,D] only when untied. The file size must match the header exactly.
//
// RoPE layouts. llama2.c (and Meta's checkpoints, and llama.cpp's GGUF llama tensors) rotate
// adjacent pairs (x[2i], x[2i+1]) of each head; HF Llama rotates (x[i], x[i + head_dim/2]) with
// the same frequency base^(-2i/head_dim). The readers reorder the output rows of q_proj and
// k_proj within each head so that HF row j*(head_dim/2) + i is interleaved row 2i + j
// (j = 0, 1): first the even rows, then the odd ones. This is HF's
// convert_llama_weights_to_hf.py `permute` and the inverse of llama2.c export.py's
// `permute_reverse`; attention scores q·k are unchanged.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace pare {

// A decoder LM imported from a non-HF file, converted to the Hugging Face Llama layout.
struct ImportedLm {
  // HF LlamaConfig fields: model_type "llama", architectures ["LlamaForCausalLM"], hidden_size,
  // intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, vocab_size,
  // max_position_embeddings, rms_norm_eps, rope_theta, tie_word_embeddings, bos_token_id,
  // eos_token_id, hidden_act "silu", torch_dtype "float32".
  nlohmann::json config;
  // HF names: model.embed_tokens.weight [V, D], model.layers.N.self_attn.{q,k,v,o}_proj.weight,
  // model.layers.N.mlp.{gate,up,down}_proj.weight,
  // model.layers.N.{input,post_attention}_layernorm.weight, model.norm.weight, lm_head.weight
  // (only when untied). Float32, contiguous, owning memory.
  std::map<std::string, torch::Tensor> tensors;
  // Tokenizer vocabulary when the file has one (GGUF: tokenizer.ggml.tokens / scores /
  // token_type); empty for llama2.c .bin (its tokenizer is a separate tokenizer.bin).
  std::vector<std::string> vocab;
  std::vector<float> scores;
  std::vector<int32_t> token_types;
};

// Reads a llama2.c legacy (version 0) checkpoint. rms_norm_eps 1e-5, rope_theta 10000,
// max_position_embeddings = seq_len, bos 1, eos 2 (llama2.c's fixed ids). Throws
// InputError("FILE: ...") naming the header field or the short section.
ImportedLm read_llama2c(const std::string& path);

// ---- shared by the llama2.c and GGUF readers ----

// The dimensions of a Llama model, as both formats give them.
struct LlamaDims {
  int64_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, vocab = 0;
  int64_t max_positions = 0;
  double rms_norm_eps = 1e-5, rope_theta = 10000.0;
  bool tied = true;
  int64_t bos = 1, eos = 2;
};

// The HF LlamaConfig JSON for `d` (fields listed at ImportedLm::config).
nlohmann::json llama_hf_config(const LlamaDims& d);

// HF name of layer `layer`'s tensor `suffix` ("self_attn.q_proj"): model.layers.N.SUFFIX.weight.
std::string llama_hf_layer_name(int64_t layer, const std::string& suffix);

// Rows of a q or k projection [n_heads * head_dim, in] from the interleaved RoPE layout to the
// HF rotate_half layout (see the top of this file). Returns a new contiguous tensor.
torch::Tensor interleaved_to_hf_rope_rows(const torch::Tensor& w, int64_t n_heads);

namespace detail {

// A read-only memory map of a whole file (empty files map to nullptr / 0).
class MappedFile {
 public:
  // Throws InputError("PATH: cannot open ...") when missing or unreadable.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const char* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  const char* data_ = nullptr;
  uint64_t size_ = 0;
};

// A new tensor of `shape` and `dtype` owning a copy of the bytes at `src` (numel × element size).
torch::Tensor tensor_from_bytes(const char* src, const std::vector<int64_t>& shape,
                                torch::ScalarType dtype);

// "[2, 3]".
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace detail
}  // namespace pare
