#!/usr/bin/python3
"""pare's dense decoder-LM forward vs the same model in PyTorch eager, in one benchmark run.

Usage (from the repository root, after scripts/build):
    /usr/bin/python3 scripts/lm_speed.py --threads 2 --out results/lm-speed.md \
        NAME=MODEL_DIR [NAME=MODEL_DIR ...]

MODEL_DIR is a Hugging Face folder (config.json + model.safetensors) of family llama or gpt2;
`pare convert` writes one from a .gguf or llama2.c .bin. For each model and each setting
(batch 1 x 256 tokens, batch 16 x 256 tokens) the two sides alternate A B A B: `pare bench
lm-speed` in a child process, then this process's PyTorch eager forward, each timing `reps`
forward passes after 3 warm-up passes and reporting the median; the table gives the median of
the rounds. Both sides use the same number of intra-op threads (torch.set_num_threads here,
pare --threads there) and float32 weights. The eager forward is written as Hugging Face's
modeling code computes it (F.linear, rotate_half RoPE, repeat_kv, softmax attention with a causal
mask, RMSNorm/LayerNorm, SwiGLU or GELU-tanh), under torch.inference_mode(), with the conventions
of tests/fixtures/make_lm_fixtures.py, whose reference logits pare's forward matches in the tests.

Debian's python3-torch (1.13) at /usr/bin/python3; no transformers needed.
"""

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
          "I64": torch.int64, "U8": torch.uint8}


OPENBLAS_OPENMP = "/usr/lib/x86_64-linux-gnu/openblas-openmp"


def pare_gemm_kernel(pare="build/cli/pare"):
    """The OpenBLAS kernel set pare's executables run on (`pare --version`'s "GEMM kernel:" line:
    OpenBLAS's own choice, or the better one pare re-executes onto where OpenBLAS fell back; README
    "Threads and kernels"), or None when pare does not say."""
    try:
        out = subprocess.run([pare, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        if line.startswith("GEMM kernel: "):
            return line[len("GEMM kernel: "):].split()[0]
    return None


def same_blas_as_pare():
    """Re-run this script with the BLAS pare's executables use (CMakeLists.txt): Debian's OpenMP
    build of OpenBLAS, so that PyTorch eager also has one thread pool instead of libgomp's and
    OpenBLAS's pthreads fighting over the cores (3-4x slower at 2 threads here), and with the same
    GEMM kernels as pare (OPENBLAS_CORETYPE from `pare --version`: where OpenBLAS falls back to its
    generic kernels, pare re-executes itself onto better ones, and eager must too). The loader and
    OpenBLAS read these only at start, hence the exec. Returns the BLAS folder used, or "system"."""
    if not os.path.exists(os.path.join(OPENBLAS_OPENMP, "libopenblas.so.0")):
        return "system"
    kernel = pare_gemm_kernel()
    if OPENBLAS_OPENMP not in os.environ.get("LD_LIBRARY_PATH", "").split(":") or (
            kernel and os.environ.get("OPENBLAS_CORETYPE") != kernel):
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = ":".join(x for x in [OPENBLAS_OPENMP, env.get("LD_LIBRARY_PATH")] if x)
        if kernel:
            env["OPENBLAS_CORETYPE"] = kernel
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    return OPENBLAS_OPENMP + (" (kernel %s)" % os.environ["OPENBLAS_CORETYPE"]
                              if os.environ.get("OPENBLAS_CORETYPE") else "")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = t.to(torch.float32) if t.is_floating_point() else t  # floats as float32
    return out


def rotate_half(x):
    d = x.shape[-1] // 2
    return torch.cat([-x[..., d:], x[..., :d]], dim=-1)


def attention(q, k, v, mask):
    s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) + mask
    return torch.matmul(torch.softmax(s, dim=-1), v)


class Llama:
    def __init__(self, c, W):
        self.c, self.W = c, W
        self.H, self.KV = c["num_attention_heads"], c.get("num_key_value_heads") or c["num_attention_heads"]
        self.hd = c["hidden_size"] // self.H
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta", 10000.0)

    def norm(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def __call__(self, ids):
        W, H, KV, hd = self.W, self.H, self.KV, self.hd
        B, T = ids.shape
        x = F.embedding(ids, W["model.embed_tokens.weight"])
        inv = 1.0 / (self.theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        fr = torch.outer(torch.arange(T, dtype=torch.float32), inv)
        emb = torch.cat([fr, fr], -1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((T, T), float("-inf")).triu(1)
        for l in range(self.c["num_hidden_layers"]):
            p = f"model.layers.{l}."
            h = self.norm(x, W[p + "input_layernorm.weight"])
            q = F.linear(h, W[p + "self_attn.q_proj.weight"]).view(B, T, H, hd).transpose(1, 2)
            k = F.linear(h, W[p + "self_attn.k_proj.weight"]).view(B, T, KV, hd).transpose(1, 2)
            v = F.linear(h, W[p + "self_attn.v_proj.weight"]).view(B, T, KV, hd).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if KV != H:
                k = k[:, :, None].expand(B, KV, H // KV, T, hd).reshape(B, H, T, hd)
                v = v[:, :, None].expand(B, KV, H // KV, T, hd).reshape(B, H, T, hd)
            a = attention(q, k, v, mask).transpose(1, 2).reshape(B, T, H * hd)
            x = x + F.linear(a, W[p + "self_attn.o_proj.weight"])
            h = self.norm(x, W[p + "post_attention_layernorm.weight"])
            x = x + F.linear(F.silu(F.linear(h, W[p + "mlp.gate_proj.weight"])) * F.linear(h, W[p + "mlp.up_proj.weight"]),
                             W[p + "mlp.down_proj.weight"])
        x = self.norm(x, W["model.norm.weight"])
        return F.linear(x, W.get("lm_head.weight", W["model.embed_tokens.weight"]))


class Gpt2:
    def __init__(self, c, W):
        self.c, self.W = c, W
        self.H = c["n_head"]
        self.eps = c.get("layer_norm_epsilon", 1e-5)

    def __call__(self, ids):
        W, H = self.W, self.H
        B, T = ids.shape
        D = W["transformer.wte.weight"].shape[1]
        hd = D // H
        x = F.embedding(ids, W["transformer.wte.weight"]) + W["transformer.wpe.weight"][:T]
        mask = torch.full((T, T), float("-inf")).triu(1)
        for l in range(self.c["n_layer"]):
            p = f"transformer.h.{l}."
            h = F.layer_norm(x, (D,), W[p + "ln_1.weight"], W[p + "ln_1.bias"], self.eps)
            qkv = torch.addmm(W[p + "attn.c_attn.bias"], h.reshape(-1, D), W[p + "attn.c_attn.weight"]).view(B, T, 3 * D)
            q, k, v = [t.view(B, T, H, hd).transpose(1, 2) for t in qkv.split(D, dim=2)]
            a = attention(q, k, v, mask).transpose(1, 2).reshape(B * T, D)
            x = x + torch.addmm(W[p + "attn.c_proj.bias"], a, W[p + "attn.c_proj.weight"]).view(B, T, D)
            h = F.layer_norm(x, (D,), W[p + "ln_2.weight"], W[p + "ln_2.bias"], self.eps)
            m = F.gelu(torch.addmm(W[p + "mlp.c_fc.bias"], h.reshape(-1, D), W[p + "mlp.c_fc.weight"]), approximate="tanh")
            x = x + torch.addmm(W[p + "mlp.c_proj.bias"], m, W[p + "mlp.c_proj.weight"]).view(B, T, D)
        x = F.layer_norm(x, (D,), W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], self.eps)
        return F.linear(x, W.get("lm_head.weight", W["transformer.wte.weight"]))


def load(model_dir):
    c = json.load(open(os.path.join(model_dir, "config.json")))
    W = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    fam = c["model_type"]
    if fam == "llama":
        return c, Llama(c, W)
    if fam == "gpt2":
        return c, Gpt2(c, W)
    sys.exit(f"lm_speed.py: family {fam} has no eager forward here (llama, gpt2)")


def time_eager(model, vocab, batch, seq_len, reps):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(vocab, (batch, seq_len), generator=g)
    with torch.inference_mode():
        for _ in range(3):
            model(ids)
        ms = []
        for _ in range(reps):
            t0 = time.perf_counter()
            model(ids)
            ms.append(1000 * (time.perf_counter() - t0))
    ms.sort()
    return ms[len(ms) // 2]


def time_pare(pare, model_dir, threads, batch, seq_len, reps):
    out = subprocess.run([pare, "--threads", str(threads), "bench", "lm-speed", "--model", model_dir,
                          "--batches", str(batch), "--seq-len", str(seq_len), "--reps", str(reps)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["batches"][str(batch)]["median_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", help="NAME=MODEL_DIR")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--pare", default="build/cli/pare")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="results/lm-speed.md")
    a = ap.parse_args()
    blas = same_blas_as_pare()
    torch.set_num_threads(a.threads)
    rows = []
    for spec in a.models:
        name, model_dir = spec.split("=", 1)
        c, model = load(model_dir)
        vocab = c["vocab_size"]
        # Sequences no longer than the model's position table (the pare-trained models have 128).
        T = min(a.seq_len, c.get("max_position_embeddings") or c.get("n_positions") or a.seq_len)
        for b in [int(x) for x in a.batches.split(",")]:
            reps = 20 if b == 1 else 5
            p_ms, e_ms = [], []
            for _ in range(a.rounds):  # A B A B ...
                p_ms.append(time_pare(a.pare, model_dir, a.threads, b, T, reps))
                e_ms.append(time_eager(model, vocab, b, T, reps))
            p, e = sorted(p_ms)[len(p_ms) // 2], sorted(e_ms)[len(e_ms) // 2]
            tok = b * T
            rows.append((name, b, T, p, e, 1000 * tok / p, 1000 * tok / e, e / p))
            print(f"{name} b{b}: pare {p:.2f} ms, eager {e:.2f} ms, pare/eager throughput {e / p:.2f}x", file=sys.stderr)
    md = ["# Decoder LM forward: pare vs PyTorch eager", "",
          f"Written by `scripts/lm_speed.py` (one run): {a.threads} intra-op thread(s) on both sides, float32, "
          f"sequences of {a.seq_len} random token ids (or the model's position limit when smaller), no KV cache (one full forward per call, logits for every "
          f"position). Each cell is the median over {a.rounds} alternating rounds (pare, eager, pare, eager, ...) "
          "of the median of 20 (batch 1) or 5 (batch 16) timed forwards after 3 warm-up ones. PyTorch eager: "
          f"Debian python3-torch {torch.__version__}, the Hugging Face computation written out with torch.nn.functional "
          "under inference_mode (scripts/lm_speed.py). pare: `pare bench lm-speed` (LibTorch 1.13, no autograd). "
          f"BLAS on both sides: OpenBLAS from {blas} (README, \"Threads\").", "",
          "| model | batch × tokens | pare ms | eager ms | pare tokens/s | eager tokens/s | pare / eager throughput |",
          "|---|---|---:|---:|---:|---:|---:|"]
    for name, b, T, p, e, pt, et, r in rows:
        md.append(f"| {name} | {b} × {T} | {p:.2f} | {e:.2f} | {pt:.0f} | {et:.0f} | {r:.2f}× |")
    old = open(a.out).read() if os.path.exists(a.out) else ""
    disc = old[old.find("<!-- discussion -->"):] if "<!-- discussion -->" in old else "<!-- discussion -->\n"
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(md) + "\n\n" + disc)
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
