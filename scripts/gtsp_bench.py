#!/usr/bin/env python3
"""GTSP benchmark (issue 19): results/gtsp.md.

For each shipped model (gps-nci1, gps-molhiv, vit-fmnist) it runs, through `pare compress` with
recipes/gtsp.yaml (one process per row, --threads T):
  - the dense model fine-tuned with the same loop, steps and seeds (gtsp with the heads axis at
    target_flops 1.0: every mask stays open, so nothing is removed) -- the row every GTSP row is
    compared with, so that gains from extra fine-tuning are not credited to pruning;
  - GTSP with all structural axes combined (nodes + heads + layers) at each FLOPs target;
  - each axis alone at the middle target (weights: sparsity = 1 - target, stored dense);
  - the post-training baselines at matched FLOPs: prune-heads (per-layer sparsity with the FLOPs
    nearest the target) and zero-tprune (keep rate solved to the target), no fine-tuning.
Every GTSP and dense-fine-tuned row runs SEEDS seeds; the table gives mean +- std (sample std).
Metric: the model's test split (what the recipe measures), and the validation figure of the
kept epoch (graphs; the ViT data set has no validation split). Throughput: what `pare compress`
measures on the test data at eval batch 128 (graphs: graphs/s over the test split) or 256
(images: 256 / the median latency at batch 256), in the same process as the
dense baseline row (its first stage): speedup s = throughput / baseline throughput of that run;
FLOPs promise p = dense FLOPs / FLOPs.

  scripts/gtsp_bench.py [--threads 2] [--seeds 3] [--models gps-nci1 ...] [--out results/gtsp.md]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D = os.path.join(ROOT, "..", "shared", "data")

MODELS = {
    "gps-nci1": {"data": f"{D}/tudatasets/NCI1", "metric": "accuracy", "sets": ["pipeline.0.epochs=3"],
                 "dataset": "graph", "zt_layers": [0, 1, 2]},
    "gps-molhiv": {"data": f"{D}/moleculenet/HIV.csv", "metric": "rocauc",
                   "sets": ["pipeline.0.epochs=1", "pipeline.0.limit_train=8000"], "dataset": "graph",
                   "zt_layers": [0, 1]},
    "vit-fmnist": {"data": "/usr/share/datasets/fashion-mnist", "metric": "accuracy",
                   "sets": ["pipeline.0.epochs=1", "pipeline.0.limit_train=6000", "pipeline.0.lr=0.0001"],
                   "dataset": "fashion-mnist", "zt_layers": [0, 1, 2]},
}
TARGETS = [0.85, 0.7, 0.55]


def run(args, cwd):
    t = time.time()
    p = subprocess.run(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode not in (0, 1):
        sys.exit(f"failed ({p.returncode}): {' '.join(args)}\n{p.stderr[-3000:]}")
    return time.time() - t


def recipe_for(model, tmp):
    m = MODELS[model]
    path = os.path.join(tmp, f"{model}.yaml")
    eval_bs = 128 if m["dataset"] == "graph" else 256
    with open(path, "w") as f:
        f.write("pipeline:\n  - pass: gtsp\n")
        f.write(f"data:\n  dataset: {m['dataset']}\n  path: {m['data']}\n")
        f.write(f"eval:\n  batch_size: {eval_bs}\n")
    return path


def compress(model, recipe, sets, threads, tmp, tag, keep=None):
    out = os.path.join(tmp, tag)
    args = [os.path.join(ROOT, "build/cli/pare"), "--threads", str(threads), "compress", "--quiet",
            "--model", os.path.join(ROOT, "models", model), "--recipe", recipe, "--out", out]
    for s in sets:
        args += ["--set", s]
    secs = run(args, ROOT)
    rep = json.load(open(os.path.join(out, "report.json")))
    st = rep["stages"]
    base, last = st[0], st[-1]
    metric = MODELS[model]["metric"]
    notes = last.get("notes", {})
    ft = notes.get("fine_tuning", {})
    valid = None
    if ft.get("epochs_log") and ft.get("best_epoch"):
        e = ft["epochs_log"][ft["best_epoch"] - 1]
        valid = e.get(f"valid_{metric}")
    def thr(stage):
        t = stage.get("throughput")
        if isinstance(t, dict):
            return t.get("value")
        lat = stage.get("latency_ms_median") or {}
        return 256 / lat["256"] * 1000 if "256" in lat else None

    row = {"metric": last["metrics"][metric], "base_metric": base["metrics"][metric], "valid": valid,
           "params": last["params"], "flops": last["flops"], "base_flops": base["flops"],
           "thr": thr(last), "base_thr": thr(base),
           "ft_seconds": ft.get("seconds"), "steps": ft.get("steps"), "wall": secs, "notes": notes}
    import shutil
    if keep:
        shutil.rmtree(keep, ignore_errors=True)
        shutil.move(out, keep)
    else:
        shutil.rmtree(out, ignore_errors=True)
    return row


def speed(model_dir, model, threads, tmp):
    """Throughput of a saved model in a fresh `pare eval`: graphs/s over the train split at batch
    128 (more graphs than the test split, so the timing is steadier; the metric is not used), or
    images/s at batch 256 from the median latency of `pare eval`'s latency runs."""
    m = MODELS[model]
    js = os.path.join(tmp, "speed.json")
    args = [os.path.join(ROOT, "build/cli/pare"), "--threads", str(threads), "eval", "--model", model_dir,
            "--data", m["data"], "--json", js]
    if m["dataset"] == "graph":
        args += ["--split", "train", "--batch-size", "128", "--latency-batches", "1"]
    else:
        args += ["--limit", "512", "--latency-batches", "256"]
    run(args, ROOT)
    e = json.load(open(js))
    if m["dataset"] == "graph":
        return e["throughput"]["value"]
    return 256 / e["latency_ms_median"]["256"] * 1000


def agg(rows, key, scale=1.0):
    v = [r[key] * scale for r in rows if r.get(key) is not None]
    if not v:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.2f}"
    return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--out", default=os.path.join(ROOT, "results/gtsp.md"))
    ap.add_argument("--combined-only", action="store_true",
                    help="with --structural-only: only the combined rows")
    ap.add_argument("--structural-only", action="store_true",
                    help="only the rows that close heads or branches (combined, nodes, heads, layers) and "
                         "the speed table: for re-measuring after a change to the unit selection")
    a = ap.parse_args()
    lines = []
    t_all = time.time()
    with tempfile.TemporaryDirectory(prefix="gtsp_bench_") as tmp:
        for model in a.models:
            m = MODELS[model]
            recipe = recipe_for(model, tmp)
            table = []

            kept = []  # (label, folder of the seed-0 model) for the speed section

            def gtsp_rows(label, sets):
                rows = []
                for seed in range(a.seeds):
                    tag = f"{model}-{len(table)}-{seed}"
                    keep = os.path.join(tmp, f"keep-{model}-{len(table)}") if seed == 0 else None
                    rows.append(compress(model, recipe, m["sets"] + sets + [f"pipeline.0.seed={seed}"],
                                         a.threads, tmp, tag, keep))
                    if keep:
                        kept.append((label, keep, rows[-1]["flops"] / rows[-1]["base_flops"]))
                    print(f"{model} {label} seed {seed}: {rows[-1]['metric']:.4f} flops {rows[-1]['flops']}"
                          f" thr {rows[-1]['thr']} ({rows[-1]['wall']:.0f} s)", file=sys.stderr, flush=True)
                table.append((label, rows))

            if not a.structural_only:
                gtsp_rows("dense, fine-tuned (same loop and steps)", ["pipeline.0.heads=true", "pipeline.0.target_flops=1.0"])
            for t in TARGETS:
                gtsp_rows(f"GTSP nodes+heads+layers, target {t}",
                          ["pipeline.0.nodes=true", "pipeline.0.heads=true", "pipeline.0.layers=true",
                           f"pipeline.0.target_flops={t}"])
            mid = TARGETS[1]
            for axis in ([] if a.combined_only else ["nodes", "heads", "layers"]):
                gtsp_rows(f"GTSP {axis} alone, target {mid}", [f"pipeline.0.{axis}=true", f"pipeline.0.target_flops={mid}"])
            if not a.structural_only:
                gtsp_rows(f"GTSP weights alone, sparsity {1 - mid:.2f} (stored dense)",
                          ["pipeline.0.weights=true", f"pipeline.0.sparsity={1 - mid:.2f}"])
            # Post-training baselines at matched FLOPs (no fine-tuning, one run each).
            base_rows = []
            dense_flops = table[0][1][0]["base_flops"]
            for t in ([] if a.structural_only else TARGETS):
                best = None
                for sp in [0.25, 0.5, 0.75]:
                    path = os.path.join(tmp, "ph.yaml")
                    with open(path, "w") as f:
                        f.write(f"pipeline:\n  - pass: prune-heads\n    sparsity: {sp}\n")
                        f.write(f"data:\n  dataset: {m['dataset']}\n  path: {m['data']}\n")
                        f.write(f"eval:\n  batch_size: {128 if m['dataset'] == 'graph' else 256}\n")
                    r = compress(model, path, [], a.threads, tmp, "ph")
                    if best is None or abs(r["flops"] / dense_flops - t) < abs(best[1]["flops"] / dense_flops - t):
                        best = (sp, r)
                base_rows.append((f"prune-heads sparsity {best[0]} (nearest FLOPs to {t})", [best[1]]))
                # zero-tprune: bisection on the keep rate/share over the configured layers.
                lo, hi, found = 0.05, 1.0, None
                for _ in range(7):
                    mid_r = 0.5 * (lo + hi)
                    path = os.path.join(tmp, "zt.yaml")
                    with open(path, "w") as f:
                        f.write("pipeline:\n  - pass: zero-tprune\n")
                        f.write(f"    layers: {m['zt_layers']}\n")
                        f.write(f"    keep_rate: [{mid_r:.4f}]\n")
                        f.write("    iterations: [1]\n    similar: 1\n")
                        f.write(f"data:\n  dataset: {m['dataset']}\n  path: {m['data']}\n")
                        f.write(f"eval:\n  batch_size: {128 if m['dataset'] == 'graph' else 256}\n")
                    try:
                        r = compress(model, path, [], a.threads, tmp, "zt")
                    except SystemExit as e:
                        print(f"zero-tprune failed: {e}", file=sys.stderr)
                        break
                    found = (mid_r, r)
                    if r["flops"] / dense_flops > t:
                        hi = mid_r
                    else:
                        lo = mid_r
                if found:
                    base_rows.append((f"zero-tprune rate {found[0]:.3f} layers {m['zt_layers']} (FLOPs to {t})", [found[1]]))
            metric = m["metric"]
            dense_ft = table[0][1]  # the first row (dense fine-tuned, or the first GTSP row)
            lines.append(f"## {model}\n")
            lines.append(f"Data: `{os.path.relpath(m['data'], ROOT)}`; fine-tuning settings: {', '.join(m['sets'])} "
                         f"(batch 32, lr as the recipe unless set), {a.threads} threads.\n")
            lines.append(f"| row | test {metric} % | valid {metric} % (kept epoch) | params | FLOPs / dense | "
                         f"throughput / baseline (s) | FLOPs promise p | s − 1 ≥ 0.7 (p − 1)? | fine-tuning s |")
            lines.append("|---|---:|---:|---:|---:|---:|---:|---|---:|")
            dense_thr_ratio = None
            for label, rows in table + base_rows:
                fl = statistics.mean(r["flops"] / r["base_flops"] for r in rows)
                s = statistics.mean(r["thr"] / r["base_thr"] for r in rows if r["thr"] and r["base_thr"])
                p = 1.0 / fl
                ok = "yes" if (s - 1) >= 0.7 * (p - 1) and p > 1.001 else ("-" if p <= 1.001 else "no")
                lines.append(f"| {label} | {agg(rows, 'metric', 100)} | {agg(rows, 'valid', 100)} | "
                             f"{int(statistics.mean(r['params'] for r in rows))} | {fl:.3f} | {s:.2f} | {p:.2f} | {ok} | "
                             f"{agg(rows, 'ft_seconds')} |")
            lines.append(f"\nUnfine-tuned dense model: test {metric} {100 * dense_ft[0]['base_metric']:.2f} %, "
                         f"{dense_ft[0]['base_flops']} FLOPs per sample. The throughput column above comes "
                         f"from each run's own short test-split timing (noisy on small test sets); the "
                         f"speed table below is the one to read.\n")
            # Speed: the dense model and each seed-0 model, alternating, 3 rounds, median.
            dense_dir = os.path.join(ROOT, "models", model)
            import statistics as st
            rounds = {"dense": []}
            for label, d, _ in kept:
                rounds[label] = []
            for _ in range(3):
                rounds["dense"].append(speed(dense_dir, model, a.threads, tmp))
                for label, d, _ in kept:
                    rounds[label].append(speed(d, model, a.threads, tmp))
            unit = "graphs/s at batch 128 (train split)" if m["dataset"] == "graph" else "images/s at batch 256"
            dense_thr = st.median(rounds["dense"])
            lines.append(f"Speed ({unit}; median of 3 fresh `pare eval` runs, dense and compressed alternating; "
                         f"seed-0 models):\n")
            lines.append("| model | throughput | speedup s | FLOPs promise p | s − 1 ≥ 0.7 (p − 1)? |")
            lines.append("|---|---:|---:|---:|---|")
            lines.append(f"| dense | {dense_thr:.0f} | 1.00 | 1.00 | - |")
            for label, d, share in kept:
                if share > 0.999:
                    continue
                thr = st.median(rounds[label])
                s_ = thr / dense_thr
                p_ = 1 / share
                lines.append(f"| {label} | {thr:.0f} | {s_:.2f} | {p_:.2f} | "
                             f"{'yes' if s_ - 1 >= 0.7 * (p_ - 1) else 'no'} |")
            lines.append("")
            with open(a.out + ".partial", "w") as f:
                f.write("\n".join(lines))
    head = [
        "# GTSP on the shipped models (issue 19)",
        "",
        f"Generated by `scripts/gtsp_bench.py --threads {a.threads} --seeds {a.seeds}` in "
        f"{(time.time() - t_all) / 60:.0f} min ({os.uname().machine}, {a.threads} LibTorch threads).",
        "Every GTSP and dense-fine-tuned row: mean ± sample std over seeds 0..{}. Baselines: one run, "
        "no fine-tuning.".format(a.seeds - 1),
        "Throughput: measured by `pare compress` on the test data at eval batch 128 (graphs) or 256 "
        "(images), relative to the same run's baseline stage (the unmodified model): s. "
        "p = dense FLOPs / FLOPs.",
        "",
    ]
    with open(a.out, "w") as f:
        f.write("\n".join(head + lines) + "\n")
    if os.path.exists(a.out + ".partial"):
        os.remove(a.out + ".partial")


if __name__ == "__main__":
    main()
