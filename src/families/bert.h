// Family `bert`: BERT text encoder (Devlin et al., NAACL 2019) as Hugging Face
// BertForSequenceClassification computes it: word + learned absolute position + token-type
// embeddings, LayerNorm; post-LN blocks x = LN(x + Attn(x)), x = LN(x + FFN(x)) with exact (erf)
// GELU; pooler tanh(W·h_CLS + b); linear classifier on the pooled vector. Per-layer heads and
// widths (prune-heads, masks/), whole branches and layers removable (masks/, SHRP).
//
// Checkpoint names are Hugging Face's (bert.embeddings.word_embeddings.weight,
// bert.encoder.layer.N.attention.self.query.weight, ..., bert.pooler.dense, classifier); flat names
// tok_embd, pos_embd, type_embd, embd_norm, blk.N.{attn_q,attn_k,attn_v,attn_o,attn_norm,ffn_up,
// ffn_down,ffn_norm}, pooler, cls_head; with the masked-LM head (pare.mlm_head, pre-training)
// also cls.predictions.{transform.dense, transform.LayerNorm, bias} = mlm_dense, mlm_norm,
// mlm_bias. An old checkpoint's bert.embeddings.position_ids buffer is
// accepted and dropped.
//
// Inputs: token ids int64 [B, T] (T ≤ max_position_embeddings), each row [CLS] … [SEP] followed by
// pad_token_id up to T; segment (token type) 0 for every token — single sentences. A position
// whose id is pad_token_id is padding: no real token attends to it (HF's attention_mask = ids ≠
// pad). Output: logits [B, num_labels].
//
// Layouts (ByteTransformer, Zhai et al., IPDPS 2023, §IV): without autograd the forward is
// padding-free ("packed"): the real tokens of all rows go into one [N, hidden] tensor for every
// linear, norm and FFN, and attention runs per sequence at its own length (the fused kernel,
// families/attention.h), so nothing is computed for padding. With autograd (training) it runs the
// padded layout [B, T, hidden] with an additive key mask, as Hugging Face does. bert_forward()
// picks either explicitly (benchmarks, tests: the two agree per sequence to float32 rounding).
// Hooks see [N, C] tensors in the packed layout and [B, T, C] in the padded one.
#pragma once

#include "families/family.h"

namespace pare {

const Family& bert_family();

enum class BertLayout { kAuto, kPacked, kPadded };

// The logits [B, num_labels] of token ids [B, T] in the chosen layout (kAuto: packed without
// autograd, padded with it). InputError on ids outside [0, vocab_size), T above
// max_position_embeddings or a row starting with padding.
torch::Tensor bert_forward(const Model& m, const torch::Tensor& ids, BertLayout layout = BertLayout::kAuto);

// The last layer's output in the padded layout [B, T, hidden] (masked-language-model training;
// rows at padding positions are what the layers compute there and carry no meaning).
torch::Tensor bert_sequence_output(const Model& m, const torch::Tensor& ids);

// Masked-LM logits [M, vocab_size] of last-layer rows hidden [M, hidden] (HF BertForMaskedLM's
// head: dense, GELU, LayerNorm, then the tied word embeddings plus mlm_bias). InputError when the
// model has no MLM head (pare.mlm_head).
torch::Tensor bert_mlm_logits(const Model& m, const torch::Tensor& hidden);

// The real (non-padding) token count of each row of ids [B, T]: int64 CPU [B].
torch::Tensor bert_lengths(const ArchConfig& c, const torch::Tensor& ids);

// Checkpoint name <-> flat name (Hugging Face BertForSequenceClassification layout); "" when the
// name is not part of it.
std::string bert_hf_name(const std::string& flat);
std::string bert_flat_name(const std::string& hf);

}  // namespace pare
