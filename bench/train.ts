/**
 * Training-step benchmark for `tiny` and `mini`: tokens/s; the step time with Infini-attention
 * in every layer divided by the same model with the memory path off (no Infini layer); the
 * step's achieved FLOP/s as a fraction of the best matmul GFLOPS measured in the same run on
 * the same adapter; and GPU waits per step (the trainer awaits one readback per step, two
 * steps late). Prints a table and writes JSON.
 *
 *   deno task bench:train [--steps 4] [--presets tiny,mini] [--out out/bench_train.json]
 */
import { parseArgs } from "node:util";
import { Runtime } from "../src/gpu/runtime.ts";
import { type ModelConfig, resolveConfig } from "../src/model/config.ts";
import { InfiniGemma } from "../src/model/model.ts";
import { initParams } from "../src/model/params.ts";
import { Matmul } from "../src/ops/matmul.ts";
import { Rng } from "../src/util/rng.ts";
import { printTable, timeGpu, writeJson } from "./_util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string", default: "4" },
    presets: { type: "string", default: "tiny,mini" },
    batch: { type: "string" },
    out: { type: "string", default: "out/bench_train.json" },
  },
});
const STEPS = Number(values.steps);
const rt = await Runtime.create();
console.log(`adapter: ${rt.describe()}`);

/** Matmul FLOPs of one training step (forward + backward = 3x forward), attention included. */
function stepFlops(cfg: ModelConfig, B: number): number {
  const { hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: Hkv, headDim: D } = cfg;
  const rows = B * cfg.seqLength, S = cfg.segmentLength;
  const perLayer = 2 * rows * C * (H * D + 2 * Hkv * D) + 2 * rows * H * D * C +
    2 * rows * C * F * 3 +
    2 * rows * H * D * S; // QK^T and PV, causal half of 2 * 2 * rows * S * D per head
  const head = 2 * rows * C * cfg.vocabSize;
  return 3 * (cfg.numLayers * perLayer + head);
}

async function timeSteps(cfg: ModelConfig, B: number): Promise<{ sec: number; waits: number }> {
  const model = await InfiniGemma.create(rt, cfg, { B, T: cfg.seqLength, train: true });
  await model.createOptimizer({ weightDecay: 0.1 });
  model.setParams(initParams(model.table, cfg, 1));
  const rng = new Rng(2);
  const rows = B * cfg.seqLength;
  const tokens = new Uint32Array(rows).map(() => rng.int(cfg.vocabSize));
  model.setBatch(tokens, tokens);
  const step = (i: number) => {
    const rec = rt.record();
    model.recordGrads(rec);
    model.recordUpdate(rec, {
      step: i + 1,
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.95,
      eps: 1e-8,
      maxNorm: 1,
    });
    const loss = rec.read(model.loss);
    rt.submit(rec);
    return loss;
  };
  await step(0); // warm-up: first-use costs
  const pending: Promise<Float32Array>[] = [];
  let waits = 0;
  const t0 = performance.now();
  for (let i = 1; i <= STEPS; i++) {
    pending.push(step(i));
    if (pending.length > 2) {
      await pending.shift();
      waits++;
    }
  }
  while (pending.length) {
    await pending.shift();
    waits++;
  }
  const sec = (performance.now() - t0) / 1000 / STEPS;
  rt.free(model.params);
  return { sec, waits: waits / STEPS };
}

const rows: Record<string, string | number>[] = [];
const results: Record<string, unknown>[] = [];
for (const preset of values.presets!.split(",")) {
  const cfg = resolveConfig(preset);
  const B = Number(values.batch ?? (preset === "tiny" ? 16 : 4));
  const off = resolveConfig(preset, ["infiniLayers=none"]);
  const infini = await timeSteps(cfg, B);
  const plain = await timeSteps(off, B);
  // Best matmul on this adapter, at this model's MLP shape.
  const mm = await Matmul.create(rt);
  const M = B * cfg.seqLength, N = cfg.intermediateSize, K = cfg.hiddenSize;
  const a = rt.tensor("a", M * K, rng32(M * K)), w = rt.tensor("w", N * K, rng32(N * K));
  const y = rt.tensor("y", M * N);
  const mmSec = await timeGpu(rt, (rec) => mm.forward(rec, y, a, w, M, N, K));
  const bestGflops = (2 * M * N * K) / mmSec / 1e9;
  for (const t of [a, w, y]) rt.free(t);
  const flops = stepFlops(cfg, B);
  const r = {
    preset,
    batch: `${B}x${cfg.seqLength}`,
    "step ms": infini.sec * 1000,
    "tokens/s": (B * cfg.seqLength) / infini.sec,
    "plain step ms": plain.sec * 1000,
    "infini/plain": infini.sec / plain.sec,
    "step GFLOPS": flops / infini.sec / 1e9,
    "matmul GFLOPS": bestGflops,
    "fraction": flops / infini.sec / 1e9 / bestGflops,
    "waits/step": infini.waits,
  };
  rows.push(r);
  results.push(r);
  console.error(`  ${preset}: ${JSON.stringify(r)}`);
}
console.log();
printTable(rows);
await writeJson(values.out!, {
  adapter: rt.describe(),
  date: new Date().toISOString(),
  steps: STEPS,
  results,
});
rt.destroy();

function rng32(n: number): Float32Array {
  return new Rng(n).normals(n, 0.5);
}
