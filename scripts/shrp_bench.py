#!/usr/bin/env python3
"""SHRP benchmark (issue 20): results/shrp.md (tables) and results/shrp.json (every run).

For each shipped model (bert-sst2, vit-fmnist) it runs, through `pare compress` (one process per
run, --threads T), SEEDS seeds of:
  - the dense model fine-tuned with the same loop, batch, learning rate and number of steps as
    SHRP (pass fine-tune, route_epochs + epochs epochs): the row every pruned row is compared with,
    so that what extra fine-tuning gives is not credited to pruning;
  - SHRP at each level keep_heads m (the m most used heads of the model kept, layers left without
    a head removed whole);
  - prune-heads (magnitude, global scope, L2) at 8 and at 4 kept heads, then fine-tune for the same
    number of steps: the head-pruning baseline at equal heads (equal params where SHRP removes no
    layer; it cannot remove layers: every layer keeps one head, so 4 heads is its floor);
  - drop-layers (the top layers removed, Sajjad et al. 2023) keeping 2 and 1 layers, then
    fine-tune for the same number of steps: the whole-layer baseline at SHRP's deepest levels.
Figures: accuracy on the held-out data (bert: SST-2 test and dev; vit: Fashion-MNIST test), the
validation figure of the kept epoch (bert: 10% of train carved off; the image task has none),
params (total and encoder = the blk.* tensors; embeddings, pooler and classifier are the rest),
FLOPs per sample from the report, and throughput measured afterwards in fresh `pare eval`
processes on the seed-0 models, alternating with the dense model (median of REPS).

  scripts/shrp_bench.py [--threads 2] [--seeds 3] [--models bert-sst2 vit-fmnist] [--reps 3]
"""
import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from gtsp_bench import agg  # mean ± sample std of a key over seeds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D = os.path.join(ROOT, "..", "shared", "data")
PARE = os.path.join(ROOT, "build/cli/pare")

MODELS = {
    "bert-sst2": {"data": f"{D}/sst2", "dataset": "sst2", "route_epochs": 2, "epochs": 2, "lr": 3e-4,
                  "limit_train": -1, "eval_batch": 128, "extra_split": "dev"},
    "vit-fmnist": {"data": "/usr/share/datasets/fashion-mnist", "dataset": "fashion-mnist", "route_epochs": 1,
                   "epochs": 1, "lr": 1e-4, "limit_train": 6000, "eval_batch": 256, "extra_split": None},
}
LEVELS = [8, 4, 1]


def run(args):
    t = time.time()
    p = subprocess.run(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode not in (0, 1):
        sys.exit(f"failed ({p.returncode}): {' '.join(args)}\n{p.stderr[-3000:]}")
    return time.time() - t, p


def encoder_params(model_dir):
    """numel of the blk.* tensors, from the safetensors header (no torch needed)."""
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    total = 0
    for k, v in header.items():
        if k.startswith("blk.") or ".layer." in k:
            c = 1
            for s in v["shape"]:
                c *= s
            total += c
    return total


def recipe(model, tmp, stages):
    m = MODELS[model]
    path = os.path.join(tmp, f"{model}.yaml")
    with open(path, "w") as f:
        f.write("pipeline:\n")
        for st in stages:
            f.write(f"  - pass: {st['pass']}\n")
            for k, v in st.items():
                if k != "pass":
                    f.write(f"    {k}: {v}\n")
        f.write(f"data:\n  dataset: {m['dataset']}\n  path: {m['data']}\n")
        if m["dataset"] == "sst2":
            f.write("  eval_split: test\n")
        f.write(f"eval:\n  batch_size: {m['eval_batch']}\n")
    return path


def train_opts(model, seed):
    m = MODELS[model]
    return {"batch_size": 32, "lr": m["lr"], "limit_train": m["limit_train"], "seed": seed}


def compress(model, stages, threads, tmp, keep):
    out = os.path.join(tmp, "out")
    shutil.rmtree(out, ignore_errors=True)
    args = [PARE, "--threads", str(threads), "compress", "--quiet", "--model", os.path.join(ROOT, "models", model),
            "--recipe", recipe(model, tmp, stages), "--out", out]
    secs, _ = run(args)
    rep = json.load(open(os.path.join(out, "report.json")))
    st = rep["stages"]
    last = st[-1]
    notes = [s.get("notes", {}) for s in st[1:]]
    # The last fine-tuning of the run and its kept epoch's validation figure.
    ft = None
    for n in notes:
        ft = n.get("fine_tuning") or n.get("fixed_phase") or ft
    valid = None
    if ft and ft.get("best_epoch") and ft.get("epochs_log"):
        valid = ft["epochs_log"][ft["best_epoch"] - 1].get("valid_accuracy")
    row = {"metric": last["metrics"]["accuracy"], "base_metric": st[0]["metrics"]["accuracy"], "valid": valid,
           "params": last["params"], "encoder_params": encoder_params(out), "flops": last["flops"],
           "base_flops": st[0]["flops"], "base_params": st[0]["params"],
           "base_encoder_params": encoder_params(os.path.join(ROOT, "models", model)), "wall": secs,
           "steps": sum((n.get("fine_tuning") or {}).get("steps", 0) + (n.get("routed_phase") or {}).get("steps", 0) +
                        (n.get("fixed_phase") or {}).get("steps", 0) for n in notes),
           "notes": notes[-1] if stages[0]["pass"] == "shrp" else None}
    extra = MODELS[model]["extra_split"]
    if extra:
        js = os.path.join(tmp, "extra.json")
        run([PARE, "--threads", str(threads), "eval", "--model", out, "--data", MODELS[model]["data"], "--split", extra,
             "--json", js])
        row[f"{extra}_metric"] = json.load(open(js))["metrics"]["accuracy"]
    if keep:
        shutil.rmtree(keep, ignore_errors=True)
        shutil.move(out, keep)
    return row


def speed(model_dir, model, threads, tmp):
    m = MODELS[model]
    js = os.path.join(tmp, "speed.json")
    args = [PARE, "--threads", str(threads), "eval", "--model", model_dir, "--data", m["data"], "--json", js]
    if m["dataset"] == "sst2":
        args += ["--batch-size", "128", "--latency-batches", "1"]
        run(args)
        return json.load(open(js))["throughput"]["value"]
    args += ["--limit", "512", "--latency-batches", "256"]
    run(args)
    return 256 / json.load(open(js))["latency_ms_median"]["256"] * 1000


def mean(rows, key):
    v = [r[key] for r in rows if r.get(key) is not None]
    return statistics.mean(v) if v else None


def layers_heads(r):
    n = r.get("notes")
    if not n:
        return "-"
    f = n["final"]
    return f"{f['layers']} / {f['heads']}"


def render(raw, out):
    L = ["# SHRP on the shipped models (issue 20)", "",
         "Generated by `scripts/shrp_bench.py --threads 2 --seeds 3` (raw runs: results/shrp.json) on this 2-vCPU AMD EPYC",
         "(Zen 4) VM, 2 LibTorch threads, one `pare compress` process per run, nothing else running.", "",
         "What each row is:",
         "- **dense, fine-tuned**: pass `fine-tune` for as many epochs as SHRP trains in all (routed + fixed), same batch 32,",
         "  learning rate and seeds: the comparison for every pruned row (extra fine-tuning is not credited to pruning).",
         "- **SHRP keep_heads m**: `shrp` keeping the m most used heads of the model (stage-2 Top-1 usage); layers left",
         "  without a head are removed whole (attention and FFN). Routed phase (stage 1 soft gates + Switch balance loss",
         "  for half its steps, stage 2 Top-1), then the pruned model fine-tuned with routing fixed.",
         "- **prune-heads + fine-tune**: magnitude head pruning (global scope, L2) to 8 or 4 heads, then `fine-tune` for",
         "  the same epochs. prune-heads keeps one head in every layer, so 4 heads is as far as it goes, and it never",
         "  removes an FFN: at SHRP's 2- and 1-head levels there is no prune-heads model with as few parameters.",
         "- Accuracy: mean ± sample std over seeds 0, 1, 2 (the seed drives the shuffles and the routers' training).",
         "  bert-sst2: SST-2 test (1,821 sentences) and dev (872); the validation column is the 10% of train carved off",
         "  (seed 0) on which the kept epoch is chosen. vit-fmnist: Fashion-MNIST test (10,000); the image task has no",
         "  validation split, so the last epoch is kept and no choice reads test data.",
         "- Params: total, and encoder (the blk.* tensors: attention + FFN + their norms); embeddings, pooler and",
         "  classifier are the rest (bert-sst2: embeddings are 49% of the total).",
         "- Throughput: fresh `pare eval` runs of each seed-0 model alternating with the dense model (median of 3);",
         "  bert: sentences/s over SST-2 dev at batch 128 (packed forward); vit: images/s from the median latency at batch 256.",
         "  Short runs: the dense fine-tuned model and the shipped one have the same shapes, and their figures differ by up to",
         "  10% (bert dense runs spread 1,796-2,582/s), so read throughput ratios as ±10%; FLOPs are exact.",
         ""]
    for model, rows in raw.items():
        m = MODELS[model]
        labels = [k for k in rows if k != "speed"]
        if not labels:
            continue
        dense_label = labels[0]
        dense = rows[dense_label]
        base = dense[0]
        sp = rows.get("speed", {})
        sp_dense = statistics.median(sp["dense"]) if sp.get("dense") else None
        L.append(f"## {model}")
        L.append("")
        L.append(f"Shipped model: {base['base_metric'] * 100:.2f}% on the evaluated split, {base['base_params']:,} params "
                 f"({base['base_encoder_params']:,} encoder), {base['base_flops'] / 1e6:.2f} MFLOPs per sample. "
                 f"Training budget per run: {m['route_epochs'] + m['epochs']} epochs of "
                 f"{'all training sentences' if m['limit_train'] < 0 else str(m['limit_train']) + ' training images'}, "
                 f"batch 32, lr {m['lr']}; SHRP: {m['route_epochs']} routed + {m['epochs']} fixed.")
        L.append("")
        extra = m["extra_split"]
        hdr = "| row | test % |" + (f" {extra} % |" if extra else "") + " valid % | params | encoder params (share of dense) | FLOPs (share) | throughput/s (× dense) | layers / heads (seed 0) | % of dense-fine-tuned test |"
        L.append(hdr)
        L.append("|" + "---|" * (hdr.count("|") - 1))
        d_acc = mean(dense, "metric")
        for label in labels:
            rs = rows[label]
            enc = mean(rs, "encoder_params")
            fl = mean(rs, "flops")
            thr = f"{statistics.median(sp[label]):.0f} ({statistics.median(sp[label]) / sp_dense:.2f}×)" if sp.get(label) and sp_dense else "-"
            cells = [label, agg(rs, "metric", 100.0)]
            if extra:
                cells.append(agg(rs, f"{extra}_metric", 100.0))
            cells += [agg(rs, "valid", 100.0), f"{mean(rs, 'params'):,.0f}",
                      f"{enc:,.0f} ({enc / base['base_encoder_params']:.2f})",
                      f"{fl / 1e6:.2f} M ({fl / base['base_flops']:.2f})", thr, layers_heads(rs[0]),
                      f"{100 * mean(rs, 'metric') / d_acc:.1f}%"]
            L.append("| " + " | ".join(cells) + " |")
        L.append("")
        if sp_dense:
            L.append(f"Dense throughput (shipped model): {sp_dense:.0f}/s (runs: " + ", ".join(f"{v:.0f}" for v in sp["dense"]) + ").")
            L.append("")
        # Paired differences (same seed) against prune-heads at equal heads.
        for k in (8, 4):
            a_l, b_l = f"SHRP keep_heads {k}", next((x for x in labels if x.startswith(f"prune-heads global, {k} heads")), None)
            if a_l in rows and b_l:
                diffs = [100 * (x["metric"] - y["metric"]) for x, y in zip(rows[a_l], rows[b_l])]
                s = f"{statistics.mean(diffs):+.2f}" + (f" ± {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else "")
                L.append(f"- SHRP − prune-heads at {k} heads, paired by seed (test points): {s} "
                         f"(per seed: {', '.join(f'{d:+.2f}' for d in diffs)}).")
        # The deepest SHRP levels against top-layer dropping at about the same depth.
        for lv, k in ((4, 2), (1, 1)):
            a_l = f"SHRP keep_heads {lv}"
            d_l = next((x for x in labels if x.startswith(f"drop-layers, bottom {k} kept")), None)
            if a_l in rows and d_l:
                diffs = [100 * (x["metric"] - y["metric"]) for x, y in zip(rows[a_l], rows[d_l])]
                s = f"{statistics.mean(diffs):+.2f}" + (f" ± {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else "")
                L.append(f"- {a_l} − drop-layers keeping {k} (encoder params {mean(rows[a_l], 'encoder_params'):,.0f} vs "
                         f"{mean(rows[d_l], 'encoder_params'):,.0f}), paired by seed (test points): {s} "
                         f"(per seed: {', '.join(f'{d:+.2f}' for d in diffs)}).")
        L.append("")
        L.append("Against the issue's target (≥ 93% of the dense model's accuracy with ≥ 45% fewer encoder parameters; the "
                 "dense model is the one fine-tuned for the same steps):")
        L.append("")
        for label in [x for x in labels if x.startswith("SHRP")]:
            rs = rows[label]
            red = 1 - mean(rs, "encoder_params") / base["base_encoder_params"]
            red_total = 1 - mean(rs, "params") / base["base_params"]
            ratio = mean(rs, "metric") / d_acc
            met = ratio >= 0.93 and red >= 0.45
            L.append(f"- {label}: {100 * ratio:.1f}% of dense accuracy, {100 * red:.0f}% fewer encoder params "
                     f"({100 * red_total:.0f}% fewer in all): {'**met**' if met else '**not met**'}.")
        L.append("")
        # Usage of the seed-0 SHRP runs: which heads were kept.
        for label in labels:
            r0 = rows[label][0]
            if r0.get("notes"):
                us = "; ".join(f"L{u['layer']}: " + "/".join(f"{v:.2f}" for v in u["usage"]) + f" → kept {u['kept']}"
                               for u in r0["notes"]["usage"])
                L.append(f"- {label}, seed 0, stage-2 usage per head: {us}")
        L.append("")
    open(out, "w").write("\n".join(L) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--levels", nargs="+", type=int, default=LEVELS)
    ap.add_argument("--out", default=os.path.join(ROOT, "results/shrp.md"))
    ap.add_argument("--report-only", action="store_true", help="only write the markdown from results/shrp.json")
    a = ap.parse_args()
    raw_path = os.path.splitext(a.out)[0] + ".json"
    raw = json.load(open(raw_path)) if os.path.exists(raw_path) and a.report_only else {}
    if a.report_only:
        render(raw, a.out)
        return
    t_all = time.time()
    with tempfile.TemporaryDirectory(prefix="shrp_bench_") as tmp:
        for model in a.models:
            m = MODELS[model]
            total_epochs = m["route_epochs"] + m["epochs"]
            rows = {}
            kept = {"dense": os.path.join(ROOT, "models", model)}

            def do(label, make):
                rows[label] = []
                for seed in range(a.seeds):
                    keep = os.path.join(tmp, f"keep-{model}-{len(rows)}") if seed == 0 else None
                    r = compress(model, make(seed), a.threads, tmp, keep)
                    rows[label].append(r)
                    if keep:
                        kept[label] = keep
                    print(f"{model} | {label} | seed {seed}: acc {r['metric']:.4f} enc {r['encoder_params']} "
                          f"flops {r['flops']} ({r['wall']:.0f} s)", file=sys.stderr, flush=True)
                raw.setdefault(model, {})[label] = rows[label]
                json.dump(raw, open(raw_path, "w"), indent=1)

            do(f"dense, fine-tuned {total_epochs} epochs",
               lambda s: [dict({"pass": "fine-tune", "epochs": total_epochs}, **train_opts(model, s))])
            for lv in a.levels:
                do(f"SHRP keep_heads {lv}",
                   lambda s, lv=lv: [dict({"pass": "shrp", "keep_heads": lv, "route_epochs": m["route_epochs"],
                                           "epochs": m["epochs"]}, **train_opts(model, s))])
            for keep in (2, 1):
                do(f"drop-layers, bottom {keep} kept, + fine-tune {total_epochs} epochs",
                   lambda s, keep=keep: [{"pass": "drop-layers", "keep": keep},
                                         dict({"pass": "fine-tune", "epochs": total_epochs}, **train_opts(model, s))])
            for sp, k in [(0.5, 8), (0.75, 4)]:
                do(f"prune-heads global, {k} heads kept, + fine-tune {total_epochs} epochs",
                   lambda s, sp=sp: [{"pass": "prune-heads", "sparsity": sp, "scope": "global"},
                                     dict({"pass": "fine-tune", "epochs": total_epochs}, **train_opts(model, s))])
            # Throughput of the seed-0 models, alternating with the dense model.
            sp = {label: [] for label in kept}
            for _ in range(a.reps):
                for label, d in kept.items():
                    sp[label].append(speed(d, model, a.threads, tmp))
            raw[model]["speed"] = {k: v for k, v in sp.items()}
            json.dump(raw, open(raw_path, "w"), indent=1)
    render(raw, a.out)
    print(f"done in {time.time() - t_all:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
