/**
 * The seed's width on this adapter: `seed-2b` (C 2048, F 16384, H 8 / Hkv 1, D 256, Qwen's
 * vocabulary of 151,936) with fewer layers and shorter segments, trained a few steps end to end
 * on one fixed batch of random tokens (AdamW, lr 1e-4). Prints the loss of every step (it
 * starts near ln V = 11.93), the GPU bytes the plan (src/train/plan.ts) predicts against what
 * the runtime allocated, seconds per step, tokens/s, GFLOPS and the process's peak memory (on a
 * CPU adapter the GPU buffers are host memory too). Also prints the full seed-2b plan at
 * T = 32,768, batch 1, chunk by chunk, against H100 limits and an 80 GB budget (no GPU needed;
 * `--plan-only` stops there). Table + JSON (rewritten after every step, so a run cut short
 * keeps what it measured).
 *
 * `--fast-init` fills the weights from one block of 2^20 N(0, initStd) values, repeated,
 * instead of drawing every weight (1.85B normals take about 90 s on one core): the same work
 * per step, for timing the full model (scripts/check_gpu.ts does), not for its loss.
 *
 *   deno task bench:seed [--layers 2] [--segment 128] [--segments 4] [--batch 1] [--steps 3]
 *                        [--chunk K] [--set key=value ...] [--limit NAME=BYTES ...]
 *                        [--fast-init] [--plan-only] [--out out/bench_seed.json]
 */
import { GpuUnavailableError, Runtime } from "../src/gpu/runtime.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import { InfiniGemma } from "../src/model/model.ts";
import { initTensor } from "../src/model/params.ts";
import { Optimizer } from "../src/train/optimizer.ts";
import {
  chooseChunk,
  fmtSize,
  GPU_MEMORY_DEFAULT,
  H100_LIMITS,
  PLAN_PARTS,
  planByChunk,
  planTraining,
} from "../src/train/plan.ts";
import { intFlag, LIMIT_OPTION, limitFlags } from "../src/cli/flags.ts";
import { IGNORE_TARGET } from "../src/util/targets.ts";
import { Rng } from "../src/util/rng.ts";
import { benchArgs, printTable, writeJson } from "./_util.ts";

const values = benchArgs(import.meta.url, {
  layers: { type: "string", default: "2" },
  segment: { type: "string", default: "128" },
  segments: { type: "string", default: "4" },
  batch: { type: "string", default: "1" },
  steps: { type: "string", default: "3" },
  chunk: { type: "string" },
  set: { type: "string", multiple: true },
  "plan-only": { type: "boolean" },
  "fast-init": { type: "boolean" },
  out: { type: "string", default: "out/bench_seed.json" },
  ...LIMIT_OPTION,
});

// The full seed-2b plan: T 32,768, batch 1, every chunk size, H100 limits, 80 GB.
const seed = resolveConfig("seed-2b", []);
const seedPlans = planByChunk(seed, { batch: 1, limits: H100_LIMITS, memory: GPU_MEMORY_DEFAULT });
const seedDefault = chooseChunk(seed, 1, H100_LIMITS, GPU_MEMORY_DEFAULT);
console.log(
  `seed-2b, batch 1 x 32,768 tokens, against H100 limits (2 GiB - 1 per buffer and binding) ` +
    `and ${fmtSize(GPU_MEMORY_DEFAULT)}; default chunk ${seedDefault}:`,
);
printTable(seedPlans.map((p) => ({
  "chunk (segments)": p.chunkSegments,
  "rows per chunk": p.rowsPerChunk,
  "total bytes": p.totalBytes,
  "total": fmtSize(p.totalBytes),
  "activations": fmtSize(p.parts.activations),
  "largest binding": `${p.largestBinding.label} ${fmtSize(p.largestBinding.bytes)}`,
  "fits": p.fits ? "yes" : "no",
})));
const seedPlanJson = {
  limits: H100_LIMITS,
  memory: GPU_MEMORY_DEFAULT,
  defaultChunk: seedDefault,
  byChunk: seedPlans.map((p) => ({
    chunkSegments: p.chunkSegments,
    totalBytes: p.totalBytes,
    parts: p.parts,
    fits: p.fits,
    problems: p.problems,
  })),
};
if (values["plan-only"]) {
  await writeJson(values.out!, { date: new Date().toISOString(), seed2bPlan: seedPlanJson });
  Deno.exit(0);
}

const L = intFlag("layers", values.layers, 2, 1);
const S = intFlag("segment", values.segment, 128, 1);
const nS = intFlag("segments", values.segments, 4, 1);
const B = intFlag("batch", values.batch, 1, 1);
const STEPS = intFlag("steps", values.steps, 3, 1);
const cfg = resolveConfig("seed-2b", [
  `numLayers=${L}`,
  `segmentLength=${S}`,
  `seqLength=${S * nS}`,
  ...(values.set ?? []),
]);
const T = cfg.seqLength;
const rt = await Runtime.create({ limits: limitFlags(values.limit) });
console.log(`\nadapter: ${rt.describe()}`);
const limits = {
  maxBufferSize: rt.limits.maxBufferSize,
  maxStorageBufferBindingSize: rt.limits.maxStorageBufferBindingSize,
};
const memory = rt.profile === "cpu" ? Deno.systemMemoryInfo().total : GPU_MEMORY_DEFAULT;
const K = values.chunk === undefined
  ? chooseChunk(cfg, B, limits, memory) ?? 1
  : intFlag("chunk", values.chunk, 1, 1, T / S);
const nC = Math.ceil(T / S / K), chunked = nC > 1;
const plan = planTraining(cfg, { batch: B, chunk: K, limits, memory });
console.log(
  `model: seed-2b width, ${L} layer${L === 1 ? "" : "s"}, ${B} x ${T} tokens (${nS} segments of ` +
    `${S}), chunk ${K} segment${K === 1 ? "" : "s"}; planned ${fmtSize(plan.totalBytes)} ` +
    `(${plan.fits ? "fits" : `does not fit: ${plan.problems.join("; ")}`})`,
);

const peak = peakMemory();
const result: Record<string, unknown> = {
  adapter: rt.describe(),
  profile: rt.profile,
  date: new Date().toISOString(),
  config: {
    numLayers: L,
    hiddenSize: cfg.hiddenSize,
    intermediateSize: cfg.intermediateSize,
    numHeads: cfg.numHeads,
    numKvHeads: cfg.numKvHeads,
    headDim: cfg.headDim,
    vocabSize: cfg.vocabSize,
    segmentLength: S,
    seqLength: T,
  },
  batch: B,
  chunkSegments: K,
  chunks: nC,
  limits,
  planned: { totalBytes: plan.totalBytes, parts: plan.parts, fits: plan.fits },
  seed2bPlan: seedPlanJson,
};

try {
  await run();
} catch (e) {
  // A buffer or binding the adapter refuses: say which and how large, in the JSON too.
  if (!(e instanceof GpuUnavailableError)) throw e;
  result.error = e.message;
  console.error(`\ncannot run: ${e.message}`);
}
peak.stop();
result.peakRssBytes = peak.hwm();
result.sampledRssMaxBytes = peak.max;
console.log(
  `peak process memory: ${fmtSize(peak.hwm())} (VmHWM); largest sampled RSS ${fmtSize(peak.max)}`,
);
await writeJson(values.out!, result);
rt.destroy();

/** The JSON so far, without the "written to" line (the final write says it). */
async function saveJson(): Promise<void> {
  const path = values.out!, dir = path.substring(0, path.lastIndexOf("/"));
  if (dir) await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(result, null, 2) + "\n");
}

async function run(): Promise<void> {
  const before = rt.allocatedBytes;
  let t0 = performance.now();
  const model = await InfiniGemma.create(rt, cfg, {
    B,
    T: chunked ? K * S : T,
    train: true,
    chunks: nC,
  });
  const opt = await Optimizer.create(model, { weightDecay: 0.1 });
  const allocated = rt.allocatedBytes - before;
  result.createSeconds = (performance.now() - t0) / 1000;
  result.allocatedBytes = allocated;
  console.log(
    `GPU bytes: planned ${plan.totalBytes}, allocated ${allocated} (${
      allocated === plan.totalBytes
        ? "equal"
        : `${(100 * (plan.totalBytes - allocated) / allocated).toFixed(3)}%`
    })`,
  );
  // N(0, initStd) weights, tensor by tensor (no flat copy of all parameters on the host).
  t0 = performance.now();
  const block = values["fast-init"] ? new Rng(1).normals(2 ** 20, cfg.initStd) : null;
  for (const s of model.table.specs) {
    let w: Float32Array;
    if (block && s.init === "normal") {
      w = new Float32Array(s.size);
      for (let at = 0; at < s.size; at += block.length) {
        w.set(block.subarray(0, Math.min(block.length, s.size - at)), at);
      }
    } else w = initTensor(s, cfg, 1);
    model.params.write(rt, w, s.offset);
  }
  await rt.sync();
  result.initSeconds = (performance.now() - t0) / 1000;
  result.init = block
    ? "fast: one block of 2^20 normals, repeated"
    : "initParams (every weight drawn)";
  await saveJson();

  const rng = new Rng(2);
  const tokens = new Uint32Array(B * T).map(() => rng.int(cfg.vocabSize));
  const targets = new Uint32Array(B * T);
  for (let i = 0; i < B * T; i++) {
    targets[i] = (i + 1) % T === 0 ? IGNORE_TARGET : tokens[i + 1];
  }
  if (chunked) model.setChunkedBatch(tokens, targets);
  else model.setBatch(tokens, targets);
  const rows: Record<string, string | number>[] = [];
  const secs: number[] = [], losses: number[] = [];
  for (let step = 1; step <= STEPS; step++) {
    t0 = performance.now();
    const rec = rt.record(`seed step ${step}`);
    let loss: Promise<number>;
    if (chunked) {
      model.recordChunkedGrads(rec);
      loss = model.readChunkedLoss(rec);
    } else {
      model.recordGrads(rec);
      loss = rec.read(model.loss).then((x) => x[0]);
    }
    opt.recordStep(rec, { step, lr: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, maxNorm: 1 });
    const stats = opt.readStats(rec);
    rt.submit(rec);
    const [l, st] = await Promise.all([loss, stats]);
    const sec = (performance.now() - t0) / 1000;
    secs.push(sec);
    losses.push(l);
    const row = {
      step,
      loss: l,
      "|g|": st.norm,
      "seconds": sec,
      "tokens/s": (B * T) / sec,
      "GFLOPS": stepFlops(cfg, B) / sec / 1e9,
      "RSS GB": Deno.memoryUsage().rss / 1e9,
    };
    rows.push(row);
    console.error(`  step ${step}: ${JSON.stringify(row)}`);
    Object.assign(result, { losses, stepSeconds: secs });
    await saveJson();
  }
  console.log();
  printTable(rows);
  const later = secs.length > 1 ? secs.slice(1) : secs;
  const mean = later.reduce((a, b) => a + b, 0) / later.length;
  Object.assign(result, {
    steps: STEPS,
    lnV: Math.log(cfg.vocabSize),
    losses,
    stepSeconds: secs,
    meanStepSeconds: mean,
    meanOver: secs.length > 1 ? "steps 2.." : "step 1",
    tokensPerSecond: (B * T) / mean,
    modelFlopsPerStep: stepFlops(cfg, B),
    gflops: stepFlops(cfg, B) / mean / 1e9,
  });
  console.log(
    `\nln V = ${Math.log(cfg.vocabSize).toFixed(3)}; ${
      mean.toFixed(2)
    } s per step after the first; ${((B * T) / mean).toFixed(1)} tokens/s; ${
      (stepFlops(cfg, B) / mean / 1e9).toFixed(2)
    } GFLOPS (model FLOPs, the recomputation of chunked training not counted)`,
  );
  console.log(
    `parts planned: ${PLAN_PARTS.map((p) => `${p} ${fmtSize(plan.parts[p])}`).join(", ")}`,
  );
}

/**
 * Matmul FLOPs of one training step (forward + backward = 3 x forward; attention's causal half
 * included), as bench/train.ts counts them.
 */
function stepFlops(c: ModelConfig, b: number): number {
  const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: Hkv, headDim: D } = c;
  const rows = b * c.seqLength, seg = c.segmentLength;
  const perLayer = 2 * rows * C * (H * D + 2 * Hkv * D) + 2 * rows * H * D * C +
    2 * rows * C * F * 3 + 2 * rows * H * D * seg;
  return 3 * (c.numLayers * perLayer + 2 * rows * C * c.vocabSize);
}

/**
 * The process's peak resident memory: `hwm()` reads VmHWM from /proc (the sampled maximum
 * where there is no /proc), `max` is RSS sampled every 200 ms until `stop()`.
 */
function peakMemory() {
  const state = { max: 0 };
  const sample = () => {
    state.max = Math.max(state.max, Deno.memoryUsage().rss);
  };
  sample();
  const timer = setInterval(sample, 200);
  return {
    get max() {
      return state.max;
    },
    stop() {
      clearInterval(timer);
      sample();
    },
    hwm(): number {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
        if (m) return Number(m[1]) * 1024;
      } catch {
        // not Linux
      }
      return state.max;
    },
  };
}
