/**
 * Training-step benchmark for `tiny` and `mini`: tokens/s; the step time with Infini-attention
 * in every layer divided by the same model with the memory path off (no Infini layer); the
 * step's achieved FLOP/s as a fraction of the best matmul GFLOPS measured in the same run on
 * the same adapter; and GPU waits per step (the trainer awaits one readback per step, two
 * steps late). Prints a table and writes JSON.
 *
 * The two models and the matmul are timed in `--rounds` interleaved rounds of `--steps` steps
 * each, and every figure is the median over the rounds ("ratio range" gives the lowest and
 * highest round's ratio): on a shared, noisy machine a slow spell then falls on both sides of
 * the ratio instead of on one.
 *
 * `--profile` also times every dispatch of one Infini step on its own and prints where the
 * step's time goes, per kernel entry point.
 *
 *   deno task bench:train [--steps 4] [--rounds 5] [--presets tiny,mini] [--batch B]
 *                         [--set key=value ...] [--profile] [--out out/bench_train.json]
 *                         [--limit NAME=BYTES ...]
 */
import { Runtime } from "../src/gpu/runtime.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import { InfiniGemma } from "../src/model/model.ts";
import { initParams } from "../src/model/params.ts";
import { Matmul } from "../src/ops/matmul.ts";
import { Optimizer } from "../src/train/optimizer.ts";
import { Rng } from "../src/util/rng.ts";
import type { Params, Pipeline, Recorder } from "../src/gpu/runtime.ts";
import { LIMIT_OPTION, limitFlags } from "../src/cli/flags.ts";
import { benchArgs, printTable, timeGpu, writeJson } from "./_util.ts";

const values = benchArgs(import.meta.url, {
  steps: { type: "string", default: "4" },
  rounds: { type: "string", default: "5" },
  presets: { type: "string", default: "tiny,mini" },
  batch: { type: "string" },
  set: { type: "string", multiple: true },
  profile: { type: "boolean" },
  out: { type: "string", default: "out/bench_train.json" },
  ...LIMIT_OPTION,
});
const STEPS = Number(values.steps);
const ROUNDS = Number(values.rounds);
for (const [flag, v] of [["steps", STEPS], ["rounds", ROUNDS]] as const) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`error: --${flag} must be an integer >= 1, got '${values[flag]}'`);
    Deno.exit(2);
  }
}
const rt = await Runtime.create({ limits: limitFlags(values.limit) });
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

type Dispatch = Parameters<Recorder["dispatch"]>;

/** One model set up for timing training steps; `run(n)` gives seconds per step over n steps. */
async function stepper(cfg: ModelConfig, B: number) {
  const model = await InfiniGemma.create(rt, cfg, { B, T: cfg.seqLength, train: true });
  const opt = await Optimizer.create(model, { weightDecay: 0.1 });
  model.setParams(initParams(model.table, cfg, 1));
  const rng = new Rng(2);
  const rows = B * cfg.seqLength;
  const tokens = new Uint32Array(rows).map(() => rng.int(cfg.vocabSize));
  let captured: Dispatch[] | undefined;
  let stepNo = 0;
  const step = () => {
    const rec = rt.record();
    if (captured) {
      const list = captured, orig = rec.dispatch.bind(rec);
      rec.dispatch = (...d: Dispatch) => {
        list.push(d);
        orig(...d);
      };
    }
    model.recordGrads(rec);
    opt.recordStep(rec, {
      step: ++stepNo,
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
  model.setBatch(tokens, tokens);
  await step(); // warm-up: first-use costs
  let waits = 0, counted = 0;
  return {
    /** Seconds per step over n steps, submitted as the trainer does (readback two steps late). */
    async run(n: number): Promise<number> {
      const pending: Promise<Float32Array>[] = [];
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        pending.push(step());
        if (pending.length > 2) {
          await pending.shift();
          waits++;
        }
      }
      while (pending.length) {
        await pending.shift();
        waits++;
      }
      counted += n;
      return (performance.now() - t0) / 1000 / n;
    },
    /** GPU waits per step so far. */
    waits: () => waits / counted,
    /** Each dispatch of one step timed on its own, summed per kernel entry (and matmul shape). */
    async profile(): Promise<Record<string, string | number>[]> {
      captured = [];
      await step();
      const list = captured;
      captured = undefined;
      const per = new Map<string, { n: number; sec: number }>();
      for (const d of list) {
        const p = d[0] as Pipeline;
        let key = `${p.kernel.replace(/^kernels\//, "")}#${p.entry}`;
        if (p.kernel.includes("matmul")) {
          // Params M, N, K first: matmuls are told apart by shape.
          const u = new Uint32Array((d[1][0] as Params).bytes.buffer, 0, 3);
          key += ` ${u[0]}x${u[1]}x${u[2]}`;
        }
        // Values in the buffers drift as accumulating dispatches repeat; the cost does not.
        // Enough repetitions in one submission that the ~11 ms wait is a small part.
        const t = await timeGpu(rt, (rec) => rec.dispatch(...d), { reps: 4, minSeconds: 0.15 });
        const e = per.get(key) ?? { n: 0, sec: 0 };
        per.set(key, { n: e.n + 1, sec: e.sec + t });
      }
      const total = [...per.values()].reduce((a, e) => a + e.sec, 0);
      const table: Record<string, string | number>[] = [...per.entries()]
        .sort((a, b) => b[1].sec - a[1].sec)
        .map(([k, e]) => ({
          entry: k,
          dispatches: e.n,
          "ms/step": e.sec * 1000,
          share: `${(100 * e.sec / total).toFixed(1)}%`,
        }));
      table.push({
        entry: "sum of dispatches alone",
        dispatches: list.length,
        "ms/step": total * 1000,
        share: "",
      });
      return table;
    },
    free: () => model.params.free(rt),
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const rows: Record<string, string | number>[] = [];
const results: Record<string, unknown>[] = [];
for (const preset of values.presets!.split(",")) {
  const sets = values.set ?? [];
  const cfg = resolveConfig(preset, sets);
  const B = Number(values.batch ?? (preset === "tiny" ? 16 : 4));
  const off = resolveConfig(preset, [...sets, "infiniLayers=none"]);
  const infini = await stepper(cfg, B);
  if (values.profile) {
    console.log(`\nwhere one ${preset} step's time goes (each dispatch timed alone):`);
    printTable(await infini.profile());
    console.log();
  }
  const plain = await stepper(off, B);
  // Best matmul on this adapter, at this model's MLP shape.
  const mm = await Matmul.create(rt);
  const M = B * cfg.seqLength, N = cfg.intermediateSize, K = cfg.hiddenSize;
  const a = rt.tensor("a", M * K, rng32(M * K)), w = rt.tensor("w", N * K, rng32(N * K));
  const y = rt.tensor("y", M * N);
  // Rounds interleave the two models and the matmul, so that a slow spell of a shared machine
  // falls on all of them; each figure is its median over the rounds.
  const ti: number[] = [], tp: number[] = [], tm: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    ti.push(await infini.run(STEPS));
    tp.push(await plain.run(STEPS));
    tm.push(await timeGpu(rt, (rec) => mm.forward(rec, y, a, w, M, N, K)));
    console.error(
      `  ${preset} round ${r + 1}/${ROUNDS}: infini ${(ti[r] * 1000).toFixed(1)} ms, plain ${
        (tp[r] * 1000).toFixed(1)
      } ms, ratio ${(ti[r] / tp[r]).toFixed(3)}`,
    );
  }
  for (const t of [a, w, y]) rt.free(t);
  infini.free();
  plain.free();
  const sec = median(ti), plainSec = median(tp);
  const bestGflops = (2 * M * N * K) / median(tm) / 1e9;
  const ratios = ti.map((t, i) => t / tp[i]);
  const flops = stepFlops(cfg, B);
  const r = {
    preset,
    batch: `${B}x${cfg.seqLength}`,
    "step ms": sec * 1000,
    "tokens/s": (B * cfg.seqLength) / sec,
    "plain step ms": plainSec * 1000,
    "infini/plain": sec / plainSec,
    "ratio range": `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}`,
    "step GFLOPS": flops / sec / 1e9,
    "matmul GFLOPS": bestGflops,
    "fraction": flops / sec / 1e9 / bestGflops,
    "waits/step": infini.waits(),
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
  rounds: ROUNDS,
  results,
});
rt.destroy();

function rng32(n: number): Float32Array {
  return new Rng(n).normals(n, 0.5);
}
