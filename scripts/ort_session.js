#!/usr/bin/env node
// Runs an ONNX model in ONNX Runtime (CPU, onnxruntime-node) on one input batch and prints JSON:
// the outputs on the whole batch (for the caller's correctness check; nothing is checked here) and
// the median latency at each batch size (the first B rows of the input) over --reps runs after
// --warmup untimed ones. Called by scripts/vs_onnxruntime.py.
//
//   node scripts/ort_session.js --model M.onnx --input X.f32 --shape 256,1,28,28 \
//       [--threads 2] [--batches 1,256] [--reps 20] [--warmup 3] [--ort DIR] [--no-outputs]
//
// --input is raw little-endian float32 (row-major, --shape), fed as the model's first input.
// The session: intraOpNumThreads = --threads, interOpNumThreads 1, executionMode 'sequential',
// graphOptimizationLevel 'all'. A timed run is one `await session.run(...)` with the input tensor
// made beforehand; it ends when the output's data is in a JS typed array. onnxruntime-node is
// loaded by absolute path from --ort (default ${PARE_CACHE:-~/.cache/pare}/onnxruntime-node, where
// scripts/setup installs it).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

function parseArgs(argv) {
  const cache = process.env.PARE_CACHE || path.join(os.homedir(), '.cache', 'pare');
  const a = {threads: 1, batches: '1,256', reps: 20, warmup: 3, outputs: true,
             ort: path.join(cache, 'onnxruntime-node')};
  for (let i = 0; i < argv.length; ++i) {
    const k = argv[i];
    if (k === '--no-outputs') { a.outputs = false; continue; }
    if (!k.startsWith('--') || i + 1 >= argv.length) throw new Error(`bad argument ${k}`);
    a[k.slice(2)] = argv[++i];
  }
  for (const k of ['model', 'input', 'shape'])
    if (!(k in a)) throw new Error(`--${k} is required`);
  return a;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const ort = require(path.resolve(a.ort, 'node_modules', 'onnxruntime-node'));
  const shape = a.shape.split(',').map(Number);
  const buf = fs.readFileSync(a.input);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const rowSize = shape.slice(1).reduce((p, q) => p * q, 1);
  if (x.length !== shape[0] * rowSize) throw new Error(`${a.input}: ${x.length} floats, shape ${shape}`);
  const session = await ort.InferenceSession.create(a.model, {
    intraOpNumThreads: Number(a.threads), interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all'});
  const inName = session.inputNames[0], outName = session.outputNames[0];
  const feed = (b) => ({[inName]: new ort.Tensor('float32', x.subarray(0, b * rowSize), [b, ...shape.slice(1)])});
  const out = {ort_version: ort.env.versions.node || ort.env.versions.common,
               threads: Number(a.threads), latency: []};
  if (a.outputs) {
    const y = (await session.run(feed(shape[0])))[outName];
    out.output_shape = y.dims;
    out.outputs = Array.from(y.data);
  }
  for (const b of a.batches.split(',').map(Number)) {
    if (!(b > 0 && b <= shape[0])) throw new Error(`batch ${b} outside 1..${shape[0]}`);
    const f = feed(b);
    const ms = [];
    for (let i = 0; i < Number(a.warmup) + Number(a.reps); ++i) {
      const t0 = process.hrtime.bigint();
      const y = (await session.run(f))[outName];
      void y.data[0];
      const t1 = process.hrtime.bigint();
      if (i >= Number(a.warmup)) ms.push(Number(t1 - t0) / 1e6);
    }
    ms.sort((p, q) => p - q);
    out.latency.push({batch: b, median_ms: ms[Math.floor(ms.length / 2)], reps: ms.length});
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => { process.stderr.write(`ort_session.js: ${e.message}\n`); process.exit(2); });
