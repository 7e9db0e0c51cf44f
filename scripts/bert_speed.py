#!/usr/bin/python3
"""pare's bert forward, packed (padding-free) and padded, vs the same model in PyTorch eager.

Usage (from the repository root, after scripts/build, on an idle machine):
    /usr/bin/python3 scripts/bert_speed.py --threads 2 --model models/bert-sst2 \
        --out results/bert-speed.md

MODEL is a bert folder written by pare (config.json, model.safetensors with Hugging Face
BertForSequenceClassification names, vocab.txt, tokenizer_config.json). `pare bench bert-speed`
tokenises every sentence of --data (SST-2 dev) with the model's WordPiece vocabulary, cuts the
sentences in file order into consecutive batches of B (each padded with [PAD] to its own longest
sentence: the natural length mix, not sorted), and dumps, per batch size, those batches and its
logits in both layouts. This script builds the model in plain PyTorch, the computation of
tests/fixtures/make_bert_fixtures.py (the independent reference pare's bert tests are checked
against: Hugging Face's eager BertForSequenceClassification written out with torch.nn.functional,
attention as matmul + softmax with HF's additive mask (1 - mask) * finfo(float32).min over the
padded [B, T] batch), loads pare's weights into it, and checks that its logits on every dumped
batch equal pare's in both layouts (max |difference| < 1e-4) before anything is timed.

Timing, per batch size, in rounds: `pare bench bert-speed` in a child process (one pass = the
forward of every batch of the dev set back to back; packed and padded passes alternate; the median
of --reps passes after --warmup ones), then this process's eager forward over the same padded
batches under torch.inference_mode() (the same passes and medians); the table gives the median
over --rounds rounds. Tokenising and padding are not timed on either side. tokens/s counts real
tokens (padding excluded) on every side, so the three columns are comparable throughputs of the
same work. Same intra-op threads on both sides (torch.set_num_threads, pare --threads) and the same
BLAS (lm_speed.same_blas_as_pare). Debian's python3-torch (1.13) at /usr/bin/python3; no
transformers needed.

Refuses (exit 2) when the 1-minute load average is above 1.0 unless --allow-load (--wait-idle S:
first wait up to S seconds for it to fall); `uptime` before and after goes into the file, which is
written atomically (text after <!-- discussion --> kept). --check-only: the logit check alone (no
timing, no file, no load check).
"""

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lm_speed import read_safetensors, same_blas_as_pare  # noqa: E402  (floats as float32, integers kept)

TOLERANCE = 1e-4  # max |eager - pare| logits


def fail(msg, code=2):
    print(f"bert_speed.py: {msg}", file=sys.stderr)
    sys.exit(code)


class EagerBert:
    """BertForSequenceClassification in eval mode, as Hugging Face's eager code computes it (the
    conventions of tests/fixtures/make_bert_fixtures.py), with per-layer head counts and widths
    from config.json's pare.layers (pruned models) and branches a pare pass removed."""

    def __init__(self, model_dir):
        c = json.load(open(os.path.join(model_dir, "config.json")))
        if c.get("model_type") != "bert":
            fail(f"{model_dir}: expected a bert model, got model_type {c.get('model_type')}")
        p = c.get("pare") or {}
        if p.get("quantization"):
            fail(f"{model_dir}: quantized weights (pare.quantization); the eager model is float32 dense")
        self.c = c
        self.W = read_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.eps = c.get("layer_norm_eps", 1e-12)
        self.pad = c.get("pad_token_id", 0)
        L, H = c["num_hidden_layers"], c["num_attention_heads"]
        layers = p.get("layers") or [{} for _ in range(L)]
        self.layers = []
        for l, d in enumerate(layers):
            heads = d.get("heads", H)
            self.layers.append({"heads": heads,
                                "head_dim": d.get("head_dim", c["hidden_size"] // H if H else 0),
                                "attention": d.get("attention", True), "ffn": d.get("ffn", True)})

    def lin(self, x, name):
        return F.linear(x, self.W[name + ".weight"], self.W[name + ".bias"])

    def ln(self, x, name):
        return F.layer_norm(x, (x.shape[-1],), self.W[name + ".weight"], self.W[name + ".bias"], eps=self.eps)

    def __call__(self, input_ids):
        W = self.W
        B, T = input_ids.shape
        attention_mask = (input_ids != self.pad).to(torch.int64)  # what the tokenizer returns
        token_type_ids = torch.zeros_like(input_ids)
        position_ids = torch.arange(T).unsqueeze(0)
        e = "bert.embeddings."
        x = (F.embedding(input_ids, W[e + "word_embeddings.weight"])
             + F.embedding(token_type_ids, W[e + "token_type_embeddings.weight"])
             + F.embedding(position_ids, W[e + "position_embeddings.weight"]))
        x = self.ln(x, e + "LayerNorm")
        # get_extended_attention_mask: (1 - mask)[:, None, None, :] * finfo(float32).min
        ext = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(torch.float32).min
        for l, d in enumerate(self.layers):
            b = f"bert.encoder.layer.{l}."
            if d["attention"]:
                H, hd = d["heads"], d["head_dim"]
                if H == 0:
                    y = W[b + "attention.output.dense.bias"].expand(B, T, -1)
                else:
                    def heads(n):  # transpose_for_scores: [B, T, H·hd] -> [B, H, T, hd]
                        return self.lin(x, b + f"attention.self.{n}").view(B, T, H, hd).permute(0, 2, 1, 3)

                    q, k, v = heads("query"), heads("key"), heads("value")
                    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd) + ext
                    probs = F.softmax(scores, dim=-1)
                    ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous().view(B, T, H * hd)
                    y = self.lin(ctx, b + "attention.output.dense")
                x = self.ln(y + x, b + "attention.output.LayerNorm")  # BertSelfOutput (post-LN)
            if d["ffn"]:
                if W[b + "intermediate.dense.weight"].shape[0] == 0:
                    y = W[b + "output.dense.bias"].expand(B, T, -1)
                else:
                    y = self.lin(F.gelu(self.lin(x, b + "intermediate.dense")), b + "output.dense")
                x = self.ln(y + x, b + "output.LayerNorm")  # BertOutput (post-LN)
        pooled = torch.tanh(self.lin(x[:, 0], "bert.pooler.dense"))  # BertPooler
        return self.lin(pooled, "classifier")


def batches_of(dump, b):
    """The padded batches pare timed at batch size b: int64 [rows, T] tensors in order."""
    flat, shapes = dump[f"b{b}.ids"], dump[f"b{b}.shapes"].tolist()
    out, at = [], 0
    for rows, T in shapes:
        out.append(flat[at:at + rows * T].view(rows, T).clone())
        at += rows * T
    if at != flat.numel():
        fail(f"dump: b{b}.ids holds {flat.numel()} ids, its shapes {at}", 1)
    return out


def run_pare(a, dump=None):
    cmd = [a.pare, "--threads", str(a.threads), "bench", "bert-speed", "--model", a.model, "--data", a.data,
           "--batches", ",".join(map(str, a.batches)), "--b1-limit", str(a.b1_limit)]
    if dump:  # the correctness run: no timing (not refused on a generic BLAS either)
        cmd += ["--dump", dump, "--no-timing"]
    else:
        cmd += ["--reps", str(a.reps), "--warmup", str(a.warmup)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}", 1)
    out = {"batches": {}, "forward": {}}
    for line in r.stdout.splitlines():
        j = json.loads(line)
        if j["what"] in ("model", "data"):
            out[j["what"]] = j
        elif j["what"] == "batches":
            out["batches"][j["batch"]] = j
        else:
            out["forward"][(j["layout"], j["batch"])] = j
    return out


def time_eager(model, batches, reps, warmup):
    """Median ms of `reps` passes over `batches` after `warmup` untimed ones."""
    with torch.inference_mode():
        for _ in range(warmup):
            for ids in batches:
                model(ids)
        ms = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for ids in batches:
                model(ids)
            ms.append(1000 * (time.perf_counter() - t0))
    return statistics.median(ms)


def uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def blas_lines(pare):
    try:
        r = subprocess.run([pare, "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return []
    return [l.strip() for l in r.stdout.splitlines() if any(w in l.lower() for w in ("blas", "kernel"))] \
        if r.returncode == 0 else []


def write_atomic(path, text):
    keep = "<!-- discussion -->\n"
    if os.path.exists(path):
        old = open(path, encoding="utf-8").read()
        if "<!-- discussion -->" in old:
            keep = old[old.index("<!-- discussion -->"):]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text + "\n" + keep)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pare", default="build/cli/pare")
    p.add_argument("--model", default="models/bert-sst2")
    p.add_argument("--data", default="../shared/data/sst2/stsa.binary.dev")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default="1,32,128")
    p.add_argument("--b1-limit", type=int, default=0, help="at batch 1, time only the first K sentences (0: all)")
    p.add_argument("--reps", type=int, default=5, help="timed passes per measurement and round")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes first")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="results/bert-speed.md")
    p.add_argument("--allow-load", action="store_true", help="run even when the machine is busy")
    p.add_argument("--wait-idle", type=float, default=0, metavar="S",
                   help="wait up to S seconds for the 1-minute load average to fall to 1.0")
    p.add_argument("--check-only", action="store_true", help="only check eager's logits against pare's")
    a = p.parse_args()
    a.batches = [int(x) for x in a.batches.split(",")]
    if a.threads < 1 or a.rounds < 1 or a.reps < 1 or a.warmup < 0 or any(b < 1 for b in a.batches):
        fail("--threads, --rounds, --reps and --batches must be positive, --warmup >= 0")
    if not os.access(a.pare, os.X_OK):
        fail(f"{a.pare} not found: run scripts/build pare")
    blas = same_blas_as_pare()  # may re-execute this script
    deadline = time.monotonic() + a.wait_idle
    while os.getloadavg()[0] > 1.0 and time.monotonic() < deadline and not a.check_only:
        time.sleep(5)
    load_before = os.getloadavg()
    uptime_before = uptime()
    if load_before[0] > 1.0 and not a.allow_load and not a.check_only:
        fail(f"load average {load_before[0]:.2f} > 1.0: run on an idle machine (or --allow-load)")
    torch.set_num_threads(a.threads)
    model = EagerBert(a.model)

    with tempfile.TemporaryDirectory(prefix="pare-bert-speed-") as tmp:
        dump_path = os.path.join(tmp, "pare.safetensors")
        info = run_pare(a, dump_path)
        dump = read_safetensors(dump_path)
    batches, diffs = {}, {}
    with torch.inference_mode():
        for b in a.batches:
            batches[b] = batches_of(dump, b)
            got = torch.cat([model(ids) for ids in batches[b]])
            d = {lay: (got - dump[f"b{b}.logits_{lay}"]).abs().max().item() for lay in ("packed", "padded")}
            diffs[b] = max(d.values())
            print(f"batch {b}: max |eager - pare| logits: packed {d['packed']:.2e}, padded {d['padded']:.2e} "
                  f"({len(batches[b])} batches, max |logit| {got.abs().max().item():.3g})", file=sys.stderr)
            if not diffs[b] < TOLERANCE:
                fail(f"batch {b}: eager logits differ from pare's by {diffs[b]:.3g} (tolerance {TOLERANCE})", 1)
    if a.check_only:
        return

    rounds = []
    for r in range(a.rounds):
        pr = run_pare(a)
        er = {b: time_eager(model, batches[b], a.reps, a.warmup) for b in a.batches}
        rounds.append((pr, er))
        print(f"round {r + 1}/{a.rounds}: " + "; ".join(
            f"batch {b}: packed {pr['forward'][('packed', b)]['pass_ms']:.1f} ms, padded "
            f"{pr['forward'][('padded', b)]['pass_ms']:.1f} ms, eager {er[b]:.1f} ms" for b in a.batches),
            file=sys.stderr)
    uptime_after = uptime()

    rows = []
    for b in a.batches:
        bi = info["batches"][b]
        packed = statistics.median(pr["forward"][("packed", b)]["pass_ms"] for pr, _ in rounds)
        padded = statistics.median(pr["forward"][("padded", b)]["pass_ms"] for pr, _ in rounds)
        eager = statistics.median(er[b] for _, er in rounds)
        tps = {k: bi["real_tokens"] / (v / 1000) for k, v in
               (("packed", packed), ("padded", padded), ("eager", eager))}
        rows.append((b, bi, packed, padded, eager, tps))

    m, d = info["model"], info["data"]
    full = all(info["batches"][b]["full_pass"] for b in a.batches)
    row128 = next((r for r in rows if r[0] == 128), None)
    t1 = (f"packed ≥ 1.5× padded at batch 128: **{'met' if row128[3] / row128[2] >= 1.5 else 'not met'}** "
          f"({row128[3] / row128[2]:.2f}×)") if row128 else "packed ≥ 1.5× padded at batch 128: not measured"
    met = [r[0] for r in rows if r[4] / r[2] >= 1.2]
    missed = [f"{r[0]} ({r[4] / r[2]:.2f}×)" for r in rows if r[4] / r[2] < 1.2]
    t2 = ("pare (packed) ≥ 1.2× eager: **met at every batch size**" if not missed else
          f"pare (packed) ≥ 1.2× eager: **not met** at batch {', '.join(missed)}"
          + (f"; met at {', '.join(map(str, met))}" if met else ""))
    limit_note = (f" At batch 1 only the first {info['batches'][1]['sentences']} sentences are timed "
                  "(--b1-limit)." if 1 in info["batches"] and not info["batches"][1]["full_pass"] else "")
    blas_info = blas_lines(a.pare) or [f"BLAS: OpenBLAS from {blas}"]
    md = ["# bert forward: packed vs padded, pare vs PyTorch eager\n",
          f"Written by `scripts/bert_speed.py` (see scripts/bench) on {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}: "
          f"`{a.model}` ({m['params']} params, {m['layers']} layers × {m['hidden_size']}) on "
          f"`{a.data}` ({d['sentences']} sentences, {d['tokens']} tokens with [CLS]/[SEP], mean "
          f"{d['mean_tokens']:.1f}; {d['truncated']} cut to the model's positions), tokenised with the "
          f"model's WordPiece vocabulary ({'uncased' if d['lowercase'] else 'cased'}). Per batch size B the "
          "sentences are cut in file order into consecutive batches of B (the last one smaller), each "
          "padded with [PAD] to its own longest sentence (the natural length mix, not sorted). A pass is "
          "the forward of every batch back to back" + (" (a full pass over the file)" if full else "") +
          f"; each figure is the median of {a.reps} passes after {a.warmup} warm-up pass(es), and the "
          f"table gives the median over {a.rounds} rounds (pare in a child process, then eager here). "
          "Tokenising and padding are not timed. tokens/s = real tokens (padding excluded) / pass time, on "
          "every side." + limit_note + "\n",
          "- pare packed: `bert_forward(..., BertLayout::kPacked)`, no autograd (torch::NoGradGuard): the "
          "real tokens of the batch in one [N, hidden] tensor for every linear, norm and FFN, attention "
          "per sentence at its own length (families/bert.h).",
          "- pare padded: `BertLayout::kPadded`: every linear, norm and FFN over all B × T positions, "
          "padding included; without autograd the attention still runs per row at its real length (the "
          "fused kernel, families/bert.cpp), so the packed/padded gap is the dense work on padding.",
          f"- PyTorch eager: Debian python3-torch {torch.__version__}, Hugging Face's eager "
          "BertForSequenceClassification written out with torch.nn.functional (tests/fixtures/"
          "make_bert_fixtures.py's computation: [B, T] batches, attention over all T keys with the "
          "additive mask (1 − mask) · finfo(float32).min), under torch.inference_mode(), pare's weights.",
          "- Correctness before timing: max |eager − pare| logits over every dumped batch (both pare "
          "layouts; tolerance 1e-4): " + ", ".join(f"batch {b}: {diffs[b]:.1e}" for b in a.batches) +
          "; max |packed − padded| inside pare: " + ", ".join(
              f"batch {b}: {info['batches'][b]['max_abs_diff_packed_padded']:.1e}" for b in a.batches) + ".",
          f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores; Linux {platform.release()}",
          f"- Threads: {a.threads} intra-op thread(s) on both sides (pare --threads, torch.set_num_threads)",
          *[f"- {line}" for line in blas_info],
          f"- Load before: `{uptime_before}`",
          f"- Load after: `{uptime_after}`\n",
          "| batch | pare packed (tokens/s) | pare padded (tokens/s) | eager padded (tokens/s) | packed/padded | pare packed/eager |",
          "|---:|---:|---:|---:|---:|---:|"]
    for b, bi, packed, padded, eager, tps in rows:
        md.append(f"| {b} | {tps['packed']:.0f} | {tps['padded']:.0f} | {tps['eager']:.0f} | "
                  f"{padded / packed:.2f}× | {eager / packed:.2f}× |")
    md += ["", "| batch | batches | sentences | real tokens | padding share | pare packed ms/batch | "
           "pare padded ms/batch | eager ms/batch | pare packed sentences/s | pare padded sentences/s | "
           "eager sentences/s |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for b, bi, packed, padded, eager, tps in rows:
        n, s = bi["batches"], bi["sentences"]
        md.append(f"| {b} | {n} | {s} | {bi['real_tokens']} | {100 * bi['padding_share']:.1f}% | "
                  f"{packed / n:.3f} | {padded / n:.3f} | {eager / n:.3f} | {1000 * s / packed:.0f} | "
                  f"{1000 * s / padded:.0f} | {1000 * s / eager:.0f} |")
    md.append("\nRounds (pass ms, packed / padded / eager): " + "; ".join(
        f"batch {b}: " + ", ".join(f"{pr['forward'][('packed', b)]['pass_ms']:.1f} / "
                                    f"{pr['forward'][('padded', b)]['pass_ms']:.1f} / {er[b]:.1f}"
                                    for pr, er in rounds) for b in a.batches))
    md.append(f"\nTargets (issue 20): {t1}; {t2}."
              + (f" The 1-minute load average before the run was {load_before[0]:.2f} (--allow-load): "
                 "other work shared the cores, so the figures may be off." if load_before[0] > 1.0 else ""))
    text = "\n".join(md) + "\n"
    write_atomic(a.out, text)
    print(text)


if __name__ == "__main__":
    main()
