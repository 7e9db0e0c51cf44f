// Decoder-only language models: families `llama` (also `qwen2`, `mistral`), `opt`, `gpt2`, `phi`,
// as Hugging Face transformers computes them (LlamaForCausalLM, Qwen2ForCausalLM,
// MistralForCausalLM without sliding window, OPTForCausalLM with pre-LN, GPT2LMHeadModel,
// PhiForCausalLM).
//
// One forward covers the four: token embedding (+ learned positions: OPT with offset 2, GPT-2),
// per layer a norm, causal multi-head attention (grouped-query when kv_heads < heads; RoPE with
// rotate_half on the first partial_rotary_factor·head_dim dims for llama and phi), a residual
// add, a norm and an MLP (llama: down(silu(gate(x))·up(x)); opt: ReLU; gpt2/phi: GELU-tanh);
// phi runs attention and MLP in parallel on one norm (x + attn(ln x) + mlp(ln x)). Final norm and
// lm_head (tied to the embedding when tie_word_embeddings). After SliceGPT: folded RMSNorm and
// residual shortcut matrices, as in family `vit`.
//
// Canonical slots: tok_embd [vocab, d], pos_embd [positions, d] (opt, gpt2), blk.N.attn_norm,
// blk.N.attn_q|k|v|o, blk.N.ffn_norm (not phi), blk.N.ffn_gate (llama), blk.N.ffn_up,
// blk.N.ffn_down, out_norm, lm_head (absent when tied).
//
// Inputs: token ids [B, T] int64 (T <= max_position_embeddings for learned positions). Output:
// logits [B, T, vocab_size]. Ids outside [0, vocab_size) are an InputError.
#pragma once

#include "families/family.h"

namespace pare {

const Family& decoder_family(const std::string& name);  // llama, qwen2, mistral, opt, gpt2, phi
bool is_decoder_family(const std::string& name);

// Checkpoint name <-> flat name for a family's HF layout ("model.layers.3.self_attn.q_proj.weight"
// <-> "blk.3.attn_q.weight" for llama). pare-only tensors (shortcuts, quantized parts HF cannot
// name) are "pare." + flat name. GPT-2's fused c_attn is handled by the family's checkpoint io,
// not here. Returns "" when the flat name has no checkpoint name.
std::string decoder_hf_name(const std::string& family, const std::string& flat);

}  // namespace pare
