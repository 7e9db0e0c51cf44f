// GGUF reader (https://github.com/ggerganov/ggml/blob/master/docs/gguf.md), versions 2 and 3,
// for the "llama" architecture, converted to the Hugging Face Llama layout (ImportedLm, see
// llama2c.h).
//
// Layout: magic "GGUF", uint32 version, uint64 tensor_count, uint64 kv_count, kv_count metadata
// entries (string key, uint32 value type, value; arrays are element type + uint64 count +
// values), tensor_count tensor infos (string name, uint32 n_dims, uint64 ne[n_dims] with ne[0]
// the fastest-varying dimension, so a torch [rows, cols] tensor has ne = [cols, rows]; uint32
// ggml type; uint64 offset into the data section), then the data section, aligned to
// general.alignment (default 32). Strings are uint64 length + bytes.
//
// Only F32 and F16 tensors are read (F16 is widened to float32); quantized types are refused.
// Every read is bounds-checked and errors are InputError("FILE: ...") naming the byte offset,
// metadata key or tensor. llama.cpp stores q/k in the interleaved RoPE layout; they are reordered
// as llama2.c's are (llama2c.h). An output.weight that is bit-identical to token_embd.weight (as
// llama.cpp's llama2.c converter writes for tied models) counts as tied and is dropped.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "io/llama2c.h"

namespace pare {

// Reads a llama GGUF. Metadata used: general.architecture ("llama"), llama.embedding_length,
// llama.feed_forward_length, llama.block_count, llama.attention.head_count,
// llama.attention.head_count_kv (default head_count), llama.context_length,
// llama.attention.layer_norm_rms_epsilon, llama.rope.freq_base (default 10000),
// tokenizer.ggml.bos_token_id / eos_token_id (default 1 / 2), tokenizer.ggml.tokens / scores /
// token_type. Tensors: token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output,
// ffn_norm, ffn_gate, ffn_up, ffn_down}, output_norm, output (absent = tied); all ".weight".
ImportedLm read_gguf(const std::string& path);

// GGUF metadata only (for `pare inspect`): key -> JSON value, plus "GGUF.version",
// "GGUF.tensor_count" and "GGUF.kv_count". FLOAT32 values become the shortest decimal that reads
// back as the same float (1e-05, not 9.999999747378752e-06). Arrays longer than 16 are
// summarised as {"array": ELEMENT_TYPE, "count": N, "first": [the first 16 values]}. Strings are
// the file's bytes (dump with nlohmann::json::error_handler_t::replace if they may not be UTF-8).
nlohmann::json read_gguf_metadata(const std::string& path);

}  // namespace pare
