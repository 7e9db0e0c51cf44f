#!/usr/bin/python3
"""Writes a randomly initialised Llama-architecture checkpoint (HF config.json + model.safetensors)
for the SliceGPT memory benchmark (scripts/bench -> results/slicegpt-memory.md).

Its weights are random (N(0, 0.02), norms 1): it measures memory, never quality. The default
shape is a ~245 M-parameter model (hidden 1024, 16 layers, 16 heads / 4 kv-heads, intermediate
2816, vocab 32000, untied head): ~0.98 GB of float32, far larger than LibTorch's own resident
libraries, so the peak RSS of slicing is dominated by the model and not by the process baseline.

Usage: scripts/make_synthetic_llama.py OUT_DIR [--hidden 1024] [--layers 16] ...
Tensors are written one at a time (the whole model is never in memory at once).
"""
import argparse
import json
import os
import struct

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=2816)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--positions", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    d, hd = a.hidden, a.hidden // a.heads
    shapes = {"model.embed_tokens.weight": [a.vocab, d], "model.norm.weight": [d],
              "lm_head.weight": [a.vocab, d]}
    for l in range(a.layers):
        b = f"model.layers.{l}."
        shapes.update({
            b + "input_layernorm.weight": [d], b + "post_attention_layernorm.weight": [d],
            b + "self_attn.q_proj.weight": [a.heads * hd, d],
            b + "self_attn.k_proj.weight": [a.kv_heads * hd, d],
            b + "self_attn.v_proj.weight": [a.kv_heads * hd, d],
            b + "self_attn.o_proj.weight": [d, a.heads * hd],
            b + "mlp.gate_proj.weight": [a.intermediate, d],
            b + "mlp.up_proj.weight": [a.intermediate, d],
            b + "mlp.down_proj.weight": [d, a.intermediate]})
    header, off = {}, 0
    for name in sorted(shapes):
        n = 4
        for s in shapes[name]:
            n *= s
        header[name] = {"dtype": "F32", "shape": shapes[name], "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    os.makedirs(a.out, exist_ok=True)
    g = torch.Generator().manual_seed(a.seed)
    tmp = os.path.join(a.out, "model.safetensors.tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name in sorted(shapes):
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                t = torch.ones(shapes[name])
            else:
                t = torch.randn(shapes[name], generator=g) * 0.02
            f.write(t.contiguous().numpy().tobytes())
    os.replace(tmp, os.path.join(a.out, "model.safetensors"))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": d,
           "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
           "num_key_value_heads": a.kv_heads, "intermediate_size": a.intermediate,
           "vocab_size": a.vocab, "max_position_embeddings": a.positions, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
           "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    print(f"{a.out}: {sum(v['data_offsets'][1] - v['data_offsets'][0] for v in header.values())} bytes")


if __name__ == "__main__":
    main()
