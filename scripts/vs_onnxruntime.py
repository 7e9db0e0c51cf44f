#!/usr/bin/python3
"""pare's dense ViT forward vs ONNX Runtime (CPU) on the same model, in one benchmark run.

Usage (from the repository root, after scripts/build and scripts/setup, on an idle machine):
    /usr/bin/python3 scripts/vs_onnxruntime.py --threads 2 --rounds 5 \
        --out results/vs-onnxruntime.md --model models/vit-fmnist

`pare bench vit-speed --dump` runs the model on the first 256 Fashion-MNIST test images and dumps
that batch (normalised, as fed to the forward) and pare's logits. scripts/export_vit_onnx.py builds
the same ViT in plain PyTorch (tests/fixtures/make_fixtures.py's independent HF ViT forward, in
float32) with pare's weights, checks its logits against pare's and exports ONNX (dynamic batch)
to a temporary folder. scripts/ort_session.js runs that model in onnxruntime-node (installed by
scripts/setup under ${PARE_CACHE:-~/.cache/pare}/onnxruntime-node) on the dumped batch; its logits
must equal pare's within TOLERANCE × max(1, max |logit|) (the max |difference| and the top-1
agreement go into the table). Then the two sides alternate A B A B for --rounds rounds, each in a
child process: pare (bench vit-speed: the float32 GEMM peak, torch::mm at 1024 and 2048, then the
forward at batch 1 and 256, each the median of --reps runs after 3 warm-ups) and ORT (a fresh
session per round, intraOpNumThreads = --threads, interOpNumThreads 1, sequential, all graph
optimisations; the same medians). The table gives the median over rounds. Model-FLOP utilisation
= FLOPs/image (pare's count: 2 × MACs of every matmul) × batch / time / GEMM peak of the same run.

Refuses (exit 2) when the 1-minute load average is above 1.0 unless --allow-load (--wait-idle S:
first wait up to S seconds for it to fall, as after the benchmarks before it in scripts/bench,
whose load the 1-minute average still shows for a minute or so); the load before
and after goes into the file, which is written atomically (text after <!-- discussion --> kept).

--check-only: only the correctness check (no timing, no file, no load check); exit 0 when ORT's
logits equal pare's, 1 when not, SKIP (77) when node, onnxruntime-node, python3-torch or the data
set is missing. ctest runs it as the test vs_onnxruntime_logits (tests/CMakeLists.txt).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

try:
    import torch
except ImportError:  # reported in main(): --check-only skips, a benchmark run fails
    torch = None
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import export_vit_onnx
    from lm_speed import read_safetensors

SKIP = 77  # ctest's SKIP_RETURN_CODE for vs_onnxruntime_logits
TOLERANCE = 1e-4  # max |ORT - pare| logits, relative to max(1, max |pare logit|)
ORT_JS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ort_session.js")


def fail(msg, code=2):
    print(f"vs_onnxruntime.py: {msg}", file=sys.stderr)
    sys.exit(code)


def run_pare(a, dump=None):
    cmd = [a.pare, "--threads", str(a.threads), "bench", "vit-speed", "--model", a.model,
           "--data", a.data, "--batches", *map(str, a.batches)]
    if dump:  # the correctness run: untimed figures, so as short as it gets
        # --no-timing: not refused where the BLAS runs kernels below the CPU (pare bench refuses
        # to time on those), so --check-only (ctest) still checks the logits there.
        cmd += ["--dump", dump, "--no-timing"]
    else:
        cmd += ["--reps", str(a.reps)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}", 1)
    out = {"gemm": {}, "forward": {}}
    for line in r.stdout.splitlines():
        j = json.loads(line)
        if j["what"] == "model":
            out["model"] = j
        else:
            out[j["what"]][j["n" if j["what"] == "gemm" else "batch"]] = j
    return out


def run_ort(a, onnx, images, shape, outputs):
    cmd = ["node", ORT_JS, "--ort", a.ort, "--model", onnx, "--input", images,
           "--shape", ",".join(map(str, shape)), "--threads", str(a.threads),
           "--batches", ",".join(map(str, a.batches)), "--reps", str(a.reps)]
    if not outputs:
        cmd.append("--no-outputs")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}", 1)
    return json.loads(r.stdout)


def blas_lines(pare):
    """The BLAS / kernel lines of `pare --version` (empty when this build prints none)."""
    try:
        r = subprocess.run([pare, "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return []
    if r.returncode != 0:
        return []
    return [l.strip() for l in r.stdout.splitlines() if any(w in l.lower() for w in ("blas", "kernel"))]


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def write_atomic(path, text):
    old = open(path).read() if os.path.exists(path) else ""
    if "<!-- discussion -->" in old:
        text += "\n" + old[old.index("<!-- discussion -->"):]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pare", default="build/cli/pare")
    p.add_argument("--model", default="models/vit-fmnist")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=20, help="timed runs per measurement and round")
    p.add_argument("--out", default="results/vs-onnxruntime.md")
    p.add_argument("--ort", default=os.path.join(os.environ.get("PARE_CACHE") or
                                                 os.path.expanduser("~/.cache/pare"), "onnxruntime-node"),
                   help="folder scripts/setup installed onnxruntime-node into")
    p.add_argument("--allow-load", action="store_true", help="run even when the machine is busy")
    p.add_argument("--wait-idle", type=float, default=0, metavar="S",
                   help="wait up to S seconds for the 1-minute load average to fall to 1.0")
    p.add_argument("--check-only", action="store_true",
                   help="only check ORT's logits against pare's (exit 77 when something is missing)")
    a = p.parse_args()
    a.batches = [1, 256]
    if a.threads < 1 or a.rounds < 1 or a.reps < 1:
        fail("--threads, --rounds and --reps must be positive")
    deadline = time.monotonic() + a.wait_idle
    while os.getloadavg()[0] > 1.0 and time.monotonic() < deadline and not a.check_only:
        time.sleep(5)
    load_before = os.getloadavg()
    if load_before[0] > 1.0 and not a.allow_load and not a.check_only:
        fail(f"load average {load_before[0]:.2f} > 1.0: run on an idle machine (or --allow-load)")
    missing = fail if not a.check_only else lambda msg: fail(f"skipped: {msg}", SKIP)
    if torch is None:
        missing("python3-torch not found (Debian package python3-torch)")
    if not shutil.which("node"):
        missing("node not found (Debian package nodejs); scripts/setup installs onnxruntime-node with npm")
    if not os.path.exists(os.path.join(a.ort, "node_modules", "onnxruntime-node", "package.json")):
        missing(f"onnxruntime-node not found in {a.ort}: run scripts/setup")
    if not os.path.exists(os.path.join(a.data, "t10k-images-idx3-ubyte.gz")) and \
            not os.path.exists(os.path.join(a.data, "t10k-images-idx3-ubyte")):
        missing(f"Fashion-MNIST test images not found in {a.data}")
    if not os.access(a.pare, os.X_OK):
        fail(f"{a.pare} not found: run scripts/build pare")
    torch.set_num_threads(1)  # this process only exports and checks; the timed work is in children

    with tempfile.TemporaryDirectory(prefix="pare-vs-ort-") as tmp:
        dump = os.path.join(tmp, "pare.safetensors")
        run_pare(a, dump)
        d = read_safetensors(dump)
        images, logits = d["images"], d["logits"]
        model = export_vit_onnx.Vit(a.model).eval()
        torch_diff, _ = export_vit_onnx.check(model, dump)
        onnx = os.path.join(tmp, "vit.onnx")
        export_vit_onnx.export(model, onnx, images[:2])
        raw = os.path.join(tmp, "images.f32")
        images.contiguous().numpy().astype("<f4").tofile(raw)
        o = run_ort(a, onnx, raw, list(images.shape), True)
        got = torch.tensor(o["outputs"], dtype=torch.float32).view(o["output_shape"])
        diff = (got - logits).abs().max().item()
        scale = logits.abs().max().item()
        top1 = (got.argmax(1) == logits.argmax(1)).double().mean().item()
        if not diff <= TOLERANCE * max(1.0, scale):
            fail(f"ORT logits differ from pare's by {diff:.3g} (max |logit| {scale:.3g}, "
                 f"tolerance {TOLERANCE} relative)", 1)
        print(f"correctness: max |ORT - pare| {diff:.3g}, max |PyTorch - pare| {torch_diff:.3g}, "
              f"top-1 agreement {100 * top1:.2f}% on {images.shape[0]} images", file=sys.stderr)
        if a.check_only:
            return

        pare_runs, ort_runs = [], []
        for r in range(a.rounds):
            pare_runs.append(run_pare(a))
            ort_runs.append(run_ort(a, onnx, raw, list(images.shape), False))
            pm = {b: pare_runs[-1]["forward"][b]["median_ms"] for b in a.batches}
            om = {x["batch"]: x["median_ms"] for x in ort_runs[-1]["latency"]}
            print(f"round {r + 1}/{a.rounds}: " + ", ".join(
                f"batch {b}: pare {pm[b]:.3f} ms, ORT {om[b]:.3f} ms" for b in a.batches), file=sys.stderr)
    load_after = os.getloadavg()

    info = pare_runs[0]["model"]
    flops = info["flops_per_image"]
    gemm = {n: statistics.median(run["gemm"][n]["gflops"] for run in pare_runs)
            for n in sorted(pare_runs[0]["gemm"])}
    peak = max(gemm.values())
    ort_version = ort_runs[0]["ort_version"]
    blas = blas_lines(a.pare) or ["TODO: BLAS and kernel line (this `pare --version` prints none)"]
    md = ["# Dense ViT forward: pare vs ONNX Runtime\n",
          f"Written by `scripts/vs_onnxruntime.py` (see scripts/bench): `{a.model}` "
          f"({info['params']} params, {flops / 1e6:.3f} MFLOPs/image = 2 × MACs of every matmul, "
          "pare's count), the first 256 Fashion-MNIST test images. "
          f"{a.threads} intra-op thread(s) on both sides; each side the median of {a.reps} forwards "
          f"after 3 warm-ups per round, in a child process, alternating over {a.rounds} rounds; the "
          "table gives the median over rounds. ONNX model: tests/fixtures/make_fixtures.py's "
          f"independent HF ViT forward in float32, exported by scripts/export_vit_onnx.py (opset "
          f"{export_vit_onnx.OPSET}); ORT session: intraOpNumThreads {a.threads}, interOpNumThreads "
          "1, sequential, graphOptimizationLevel all (a timed run is one `session.run` from "
          "node, output copied out). Model-FLOP utilisation = FLOPs/image × batch / time / the "
          "GEMM peak (pare's process, torch::mm of two N × N float32 matrices, median over rounds).\n",
          f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores; Linux {platform.release()}",
          f"- Threads: {a.threads}",
          *[f"- {line}" for line in blas],
          f"- ONNX Runtime: onnxruntime-node {ort_version} (CPU execution provider)",
          "- GEMM peak (float32): " + ", ".join(f"N = {n}: {g:.1f} GFLOP/s" for n, g in gemm.items()) +
          f"; peak used below {peak:.1f} GFLOP/s",
          f"- Correctness on the 256 images: max |ORT − pare| logits {diff:.2e} (max |logit| "
          f"{scale:.2f}; tolerance {TOLERANCE:g} relative), top-1 agreement {100 * top1:.2f}%; "
          f"max |PyTorch − pare| {torch_diff:.2e}",
          f"- Load average (1, 5, 15 min): before {', '.join(f'{x:.2f}' for x in load_before)}; "
          f"after {', '.join(f'{x:.2f}' for x in load_after)}\n",
          "Each round's pare / ORT ratio is paired (the two ran back to back), so the median of the "
          "ratios is the figure least moved by the host's drift; best = the fastest round of each side.\n",
          "pare MFU (paired) is each round's forward FLOP rate over the GEMM peak measured in the same "
          "process just before it, median [min–max] over rounds: the host's slow and fast phases "
          "move both.\n",
          "| batch | pare ms | ORT ms | pare / ORT (paired, median [min–max]) | pare best | ORT best | "
          "pare images/s | ORT images/s | pare MFU | ORT MFU | pare MFU (paired) | pare MFU best | ORT MFU best |",
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for b in a.batches:
        p_ms = [run["forward"][b]["median_ms"] for run in pare_runs]
        o_ms = [next(x["median_ms"] for x in run["latency"] if x["batch"] == b) for run in ort_runs]
        pm, om = statistics.median(p_ms), statistics.median(o_ms)
        ratios = [x / y for x, y in zip(p_ms, o_ms)]

        def mfu(ms):
            return 100 * flops * b / (ms / 1000) / (peak * 1e9)

        paired = [100 * flops * b / (ms / 1000) / (max(g["gflops"] for g in run["gemm"].values()) * 1e9)
                  for ms, run in zip(p_ms, pare_runs)]
        md.append(f"| {b} | {pm:.3f} | {om:.3f} | {statistics.median(ratios):.2f} [{min(ratios):.2f}–"
                  f"{max(ratios):.2f}] | {min(p_ms):.3f} | {min(o_ms):.3f} | {1000 * b / pm:.0f} | "
                  f"{1000 * b / om:.0f} | {mfu(pm):.1f}% | {mfu(om):.1f}% | "
                  f"{statistics.median(paired):.1f}% [{min(paired):.1f}–{max(paired):.1f}] | "
                  f"{mfu(min(p_ms)):.1f}% | {mfu(min(o_ms)):.1f}% |")
    md.append("\nRounds (ms): " + "; ".join(
        f"batch {b}: pare " + ", ".join(f"{run['forward'][b]['median_ms']:.2f}" for run in pare_runs) +
        " / ORT " + ", ".join(f"{next(x['median_ms'] for x in run['latency'] if x['batch'] == b):.2f}"
                              for run in ort_runs) for b in a.batches))
    text = "\n".join(md) + "\n"
    # The hand-written discussion (from its marker on) of an existing file is kept.
    keep = "<!-- discussion -->\n"
    if os.path.exists(a.out):
        old = open(a.out, encoding="utf-8").read()
        if "<!-- discussion -->" in old:
            keep = old[old.index("<!-- discussion -->"):]
    write_atomic(a.out, text + "\n" + keep)
    print(text)


if __name__ == "__main__":
    main()
