#!/usr/bin/python3
"""pare's gps (GraphGPS) forward vs the same layer stack in PyTorch eager, in one benchmark run.

Usage (from the repository root, after scripts/build):
    /usr/bin/python3 scripts/gps_speed.py --threads 2 --out results/gps-speed.md \
        NAME=MODEL_DIR:DATA [NAME=MODEL_DIR:DATA ...]

For each model, `pare bench gps-speed` evaluates the first --batch-size graphs of the data set's
test split and dumps that batch (PyG layout: concatenated nodes, edge_index, batch vector, RWSE /
LapPE) and its logits. This script builds the GraphGPS model in plain PyTorch from
tests/fixtures/make_gps_fixtures.py (the independent reference pare's gps tests are checked
against; GraphGym state_dict names), loads pare's model.safetensors into it, checks that its
logits on the dumped batch equal pare's, then the two sides alternate A B A B: pare in a child
process, eager here under torch.inference_mode(), each the median of `reps` forwards after 3
warm-up passes; the table gives the median over rounds. Same intra-op threads on both sides.
Collation is not timed on either side. Debian's python3-torch (1.13) at /usr/bin/python3.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures"))
import make_gps_fixtures as ref  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lm_speed import read_safetensors, same_blas_as_pare  # noqa: E402  (floats as float32, integers kept)

def build(model_dir):
    c = json.load(open(os.path.join(model_dir, "config.json")))
    g = c["gps"]
    layers = c["pare"]["layers"] if "pare" in c and "layers" in c["pare"] else None
    spec = {"d": c["hidden_size"], "heads": c["num_attention_heads"], "layers": c["num_hidden_layers"],
            "local": g["local_model"], "layer_norm": c.get("pare", {}).get("norm") == "graph_layernorm",
            "node": g["node_encoder"], "edge": g["edge_encoder"], "out": c["num_labels"],
            "pooling": g["pooling"]}
    if g["node_encoder"] == "TypeDictNode":
        spec["node_types"] = g["node_vocab"][0]
    if g["node_encoder"] == "LinearNode":
        spec["node_attr_dims"] = g["node_attr_dims"]
    if g["edge_encoder"] == "TypeDictEdge":
        spec["edge_types"] = g["edge_vocab"][0]
    if g.get("rwse_steps"):
        spec["rwse_k"], spec["rwse_dim"] = g["rwse_steps"], g["rwse_dim"]
    if g.get("lappe_k"):
        spec["lap_k"], spec["lap_dim"] = g["lappe_k"], g["lappe_dim"]
    if layers and any(l["heads"] != spec["heads"] for l in layers):
        sys.exit(f"gps_speed.py: {model_dir} has per-layer head counts (pruned); the eager model is dense")
    model = ref.GPSModel(spec)
    W = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    names = set(model.state_dict().keys())
    if not any(k.startswith("encoder.node_encoder.encoder1") for k in W):  # bare node encoder
        W = {k.replace("encoder.node_encoder.", "encoder.node_encoder.inner.", 1)
             if k.startswith("encoder.node_encoder.") else k: v for k, v in W.items()}
    missing, unexpected = model.load_state_dict(W, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"gps_speed.py: {model_dir}: state_dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), spec


def run_pare(pare, threads, model_dir, data, batch, reps, dump):
    cmd = [pare, "--threads", str(threads), "bench", "gps-speed", "--model", model_dir, "--data", data,
           "--batch-size", str(batch), "--reps", str(reps)]
    if dump:
        cmd += ["--dump", dump]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def time_eager(model, b, reps):
    with torch.inference_mode():
        for _ in range(3):
            model(b)
        ms = []
        for _ in range(reps):
            t0 = time.perf_counter()
            model(b)
            ms.append(1000 * (time.perf_counter() - t0))
    return statistics.median(ms)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="+", help="NAME=MODEL_DIR:DATA")
    p.add_argument("--pare", default="build/cli/pare")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="results/gps-speed.md")
    a = p.parse_args()
    blas = same_blas_as_pare()
    torch.set_num_threads(a.threads)
    rows = []
    for item in a.models:
        name, rest = item.split("=", 1)
        model_dir, data = rest.split(":", 1)
        model, spec = build(model_dir)
        dump = os.path.join("build", f"gps-speed-{name}.safetensors")
        info = run_pare(a.pare, a.threads, model_dir, data, a.batch_size, 1, dump)
        b = read_safetensors(dump)
        with torch.inference_mode():
            got = model(b)
        diff = (got - b["logits"]).abs().max().item()
        scale = b["logits"].abs().max().item()
        if not diff <= 1e-4 * max(1.0, scale):
            sys.exit(f"gps_speed.py: {name}: eager logits differ from pare's by {diff} (scale {scale})")
        pare_ms, eager_ms = [], []
        for _ in range(a.rounds):
            pare_ms.append(run_pare(a.pare, a.threads, model_dir, data, a.batch_size, a.reps, None)["median_ms"])
            eager_ms.append(time_eager(model, b, a.reps))
        pm, em = statistics.median(pare_ms), statistics.median(eager_ms)
        G = info["graphs"]
        rows.append((name, info, spec, diff, pm, em, 1000 * G / pm, 1000 * G / em))
        print(f"{name}: pare {1000 * G / pm:.0f} graphs/s, eager {1000 * G / em:.0f} graphs/s, ratio {em / pm:.2f}")
    md = ["# gps forward: pare vs PyTorch eager\n",
          "Written by `scripts/gps_speed.py` (see scripts/bench). One batch of real test graphs per model, "
          f"{a.threads} intra-op thread(s) on both sides, median of {a.reps} forwards per round, "
          f"median over {a.rounds} alternating rounds; collation not timed. The eager model is "
          "tests/fixtures/make_gps_fixtures.py's GraphGPS (plain torch, index_add scatters, "
          "nn.MultiheadAttention over to_dense_batch) with pare's weights; its logits are checked "
          "against pare's on the same batch before timing. "
          f"BLAS on both sides: OpenBLAS from {blas} (README, \"Threads\").\n",
          "| model | data | graphs | nodes | edges | max |Δ logits| | pare ms | eager ms | pare graphs/s | eager graphs/s | pare / eager |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, info, spec, diff, pm, em, pg, eg in rows:
        md.append(f"| {name} | {info['data']} | {info['graphs']} | {info['nodes']} | {info['edges']} | "
                  f"{diff:.1e} | {pm:.2f} | {em:.2f} | {pg:.0f} | {eg:.0f} | {pg / eg:.2f}x |")
    text = "\n".join(md) + "\n"
    old = open(a.out).read() if os.path.exists(a.out) else ""
    if "<!-- discussion -->" in old:
        text += "\n" + old[old.index("<!-- discussion -->"):]
    tmp = a.out + ".tmp"
    open(tmp, "w").write(text)
    os.replace(tmp, a.out)
    print(text)


if __name__ == "__main__":
    main()
