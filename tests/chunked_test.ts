/**
 * Chunked training (issue 18): a step that runs each sequence in chunks of K segments, keeping
 * only the memory entering each chunk and recomputing the chunk in the backward sweep with dM,
 * dz carried back, has the loss and every gradient of the step over the whole sequence in one
 * call; the trainer with --chunk follows the same loss curve and resumes exactly.
 *
 * Shapes are small and odd (tests/_model.ts: V 37, C 24, F 40, L 2, H 4, D 8, S 5, T 20 = 4
 * segments) so that each case runs in a few seconds on lavapipe.
 */
import { deepEqual, equal, match, ok as assert } from "node:assert/strict";
import type { Runtime } from "../src/gpu/runtime.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import { InfiniGemma } from "../src/model/model.ts";
import { paramTable } from "../src/model/params.ts";
import { RecallSource } from "../src/tasks/sources.ts";
import { validate } from "../src/eval/validate.ts";
import { train, TRAIN_DEFAULTS } from "../src/train/trainer.ts";
import { IGNORE_TARGET as IGNORE } from "../src/util/targets.ts";
import { Rng } from "../src/util/rng.ts";
import { cli } from "./_cli.ts";
import { gpuTest } from "./_gpu.ts";
import { gpuModel, randomParams, randomTokens, refModel, smallConfig } from "./_model.ts";
import { assertClose } from "./_numeric.ts";
import { modelBackward, modelForward, nextTokenTargets } from "./ref/model.ts";

// Chunked and whole steps are two f32 GPU runs of the same arithmetic grouped differently, as
// in model_invariants_test.ts's one call vs streaming: the memory's prefix scan (and the
// reverse scan of dM, dz) restarts at each chunk boundary from a carried state, the weight
// gradients' sums over rows are added chunk by chunk into the accumulated gradient, and the
// loss is a sum of per-chunk sums. Each regrouping moves a result by a few f32 roundings of
// its partial sums (6e-8 relative each).
// The loss (~4): GPU_TOL of model_invariants_test.ts, 1e-5 absolute plus 1e-6 relative.
const LOSS_TOL = { atol: 1e-5, rtol: 1e-6 };
// Gradients: partial sums of terms up to the size of the tensor's largest entry (and larger,
// where they cancel), so the error is measured against that entry: 1e-5 of it, 10x tighter
// than the f64-reference tolerance of model_invariants_test.ts (1e-4 of the largest entry,
// 1e-3 relative), which also covers the forward's own f32 error; 1e-4 relative for the large
// entries.
const GRAD_REL = 1e-5;
const GRAD_RTOL = 1e-4;

interface MicroBatch {
  tokens: Uint32Array;
  targets: Uint32Array;
  weights: Float32Array;
}

interface StepResult {
  loss: number;
  grads: Float32Array;
}

/** Random micro-batches of B sequences of `len` tokens: weighted rows and an ignored target. */
function microBatches(cfg: ModelConfig, B: number, len: number, n: number, seed: number) {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (): MicroBatch => {
    const tokens = randomTokens(rng, B * len, cfg.vocabSize);
    const targets = nextTokenTargets(tokens, B, len);
    targets[rng.int(B * len)] = IGNORE;
    const weights = Float32Array.from({ length: B * len }, () => 0.5 + rng.next());
    return { tokens, targets, weights };
  });
}

function countTargets(mb: MicroBatch[]): number {
  return mb.reduce((s, b) => s + b.targets.filter((t) => t !== IGNORE).length, 0);
}

/** One step over the whole sequence per call, as the trainer records it (one submit each). */
async function wholeStep(model: InfiniGemma, mb: MicroBatch[]): Promise<StepResult> {
  const rt = model.rt, denom = countTargets(mb);
  const losses: Promise<Float32Array>[] = [];
  mb.forEach((b, a) => {
    model.setBatch(b.tokens, b.targets, { weights: b.weights, lossDenominator: denom });
    const rec = rt.record(`whole ${a}`);
    model.recordGrads(rec, { clear: a === 0 });
    losses.push(rec.read(model.loss));
    rt.submit(rec);
  });
  const loss = (await Promise.all(losses)).reduce((s, x) => s + x[0], 0);
  return { loss, grads: await model.readGrads() };
}

/** The same step chunk by chunk (one submit per micro-batch). */
async function chunkedStep(model: InfiniGemma, mb: MicroBatch[]): Promise<StepResult> {
  const rt = model.rt, denom = countTargets(mb);
  const losses: Promise<number>[] = [];
  mb.forEach((b, a) => {
    model.setChunkedBatch(b.tokens, b.targets, { weights: b.weights, lossDenominator: denom });
    const rec = rt.record(`chunked ${a}`);
    model.recordChunkedGrads(rec, { clear: a === 0 });
    losses.push(model.readChunkedLoss(rec));
    rt.submit(rec);
  });
  const loss = (await Promise.all(losses)).reduce((s, x) => s + x, 0);
  return { loss, grads: await model.readGrads() };
}

/** A chunked training model: K segments per call, up to `chunks` per sequence. */
async function chunkedModel(
  rt: Runtime,
  cfg: ModelConfig,
  params: Float32Array,
  B: number,
  K: number,
  chunks: number,
): Promise<InfiniGemma> {
  const m = await InfiniGemma.create(rt, cfg, {
    B,
    T: K * cfg.segmentLength,
    train: true,
    chunks,
  });
  m.setParams(params);
  return m;
}

/**
 * Asserts the chunked step's loss and every gradient tensor equal the whole step's within the
 * tolerances above; returns the largest differences (gradients relative to their tensor's
 * largest entry) for the log.
 */
function assertSameStep(cfg: ModelConfig, got: StepResult, want: StepResult, what: string) {
  assertClose([got.loss], [want.loss], { ...LOSS_TOL, what: `${what}: loss` });
  let worst = 0;
  for (const s of paramTable(cfg).specs) {
    const w = want.grads.subarray(s.offset, s.offset + s.size);
    const g = got.grads.subarray(s.offset, s.offset + s.size);
    const scale = Math.max(...Array.from(w, Math.abs));
    assert(scale > 0, `${what}: the whole step's gradient of ${s.name} is zero`);
    assertClose(g, w, { atol: GRAD_REL * scale, rtol: GRAD_RTOL, what: `${what}: ${s.name}` });
    for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(g[i] - w[i]) / scale);
  }
  const lossDiff = Math.abs(got.loss - want.loss);
  console.log(
    `${what}: |loss diff| ${lossDiff.toExponential(2)}, ` +
      `max |grad diff| / tensor max ${worst.toExponential(2)}`,
  );
  return { lossDiff, worst };
}

const CASES = [
  // Grouped-query (4 heads / 2 KV heads), both layers Infini, linear rule.
  { name: "linear, GQA 4/2, all Infini", sets: ["memoryUpdate=linear"], seed: 11 },
  // Multi-query, delta rule, layer 0 plain (segment-local) and layer 1 Infini.
  {
    name: "delta, MQA 4/1, infiniLayers=last:1",
    sets: ["memoryUpdate=delta", "numKvHeads=1", "infiniLayers=last:1"],
    seed: 12,
  },
  // The list form: only layer 0 Infini, so the forward sweep stops inside the first layer.
  {
    name: "linear, GQA 4/2, infiniLayers=0",
    sets: ["memoryUpdate=linear", "infiniLayers=0"],
    seed: 13,
  },
  // Delta rule with every layer Infini (the sequential state kernel restarting per chunk).
  { name: "delta, GQA 4/2, all Infini", sets: ["memoryUpdate=delta"], seed: 14 },
  // Head dim 6: the memory's blocked kernels instead of lavapipe's row kernels (D % 4 != 0).
  { name: "linear, GQA 4/2, D 6, all Infini", sets: ["headDim=6"], seed: 15 },
] as const;

for (const c of CASES) {
  gpuTest(
    `chunked: ${c.name}: K = 1 and K = 2 of 4 segments, accum 2, give the whole step's loss ` +
      `and gradients`,
    async (rt) => {
      const cfg = smallConfig(c.sets); // S 5, T 20: 4 segments
      const params = randomParams(paramTable(cfg), c.seed);
      const B = 2, T = cfg.seqLength, S = cfg.segmentLength;
      const mb = microBatches(cfg, B, T, 2, c.seed + 100);
      const whole = await wholeStep(await gpuModel(rt, cfg, params, { B, T, train: true }), mb);
      for (const K of [1, 2]) {
        const m = await chunkedModel(rt, cfg, params, B, K, T / S / K);
        assertSameStep(cfg, await chunkedStep(m, mb), whole, `${c.name}, K ${K}`);
      }
    },
  );
}

gpuTest(
  "chunked: the chunked step matches the f64 reference's loss and gradients (linear, GQA)",
  async (rt) => {
    const cfg = smallConfig(["memoryUpdate=linear"]);
    const params = randomParams(paramTable(cfg), 21);
    const B = 2, T = cfg.seqLength;
    const [b] = microBatches(cfg, B, T, 1, 22);
    const got = await chunkedStep(await chunkedModel(rt, cfg, params, B, 1, 4), [b]);
    const ref = refModel(cfg, params);
    const fwd = modelForward(ref, { tokens: b.tokens, targets: b.targets, B, weights: b.weights });
    const want = modelBackward(ref, fwd);
    // The tolerances of model_invariants_test.ts's f64 comparisons.
    assertClose([got.loss], [fwd.loss], { atol: 1e-5, rtol: 1e-6, what: "loss vs f64" });
    for (const s of paramTable(cfg).specs) {
      const w = want.subarray(s.offset, s.offset + s.size);
      const scale = Math.max(...Array.from(w, Math.abs));
      assertClose(got.grads.subarray(s.offset, s.offset + s.size), w, {
        atol: 1e-4 * scale,
        rtol: 1e-3,
        what: `grad ${s.name} vs f64`,
      });
    }
  },
);

gpuTest(
  "chunked: K = 3 of 4 segments pads the last chunk, and a mixture's shorter sequence (3 " +
    "segments, K = 2) runs on the same model: both equal the whole step",
  async (rt) => {
    const cfg = smallConfig(["memoryUpdate=delta"]);
    const params = randomParams(paramTable(cfg), 31);
    const B = 2, T = cfg.seqLength, S = cfg.segmentLength;
    // 4 segments in chunks of 3: chunk 1 holds segment 3 and two padded segments.
    const mb = microBatches(cfg, B, T, 1, 32);
    const whole = await wholeStep(await gpuModel(rt, cfg, params, { B, T, train: true }), mb);
    const k3 = await chunkedModel(rt, cfg, params, B, 3, 2);
    assertSameStep(cfg, await chunkedStep(k3, mb), whole, "K 3 of 4 (padded)");
    // A model for 4 segments in chunks of 2 takes a 3-segment batch as 2 chunks, the second
    // padded; the reference is a whole model of 3 segments.
    const short = microBatches(cfg, B, 3 * S, 1, 33);
    const whole3 = await wholeStep(
      await gpuModel(rt, cfg, params, { B, T: 3 * S, train: true }),
      short,
    );
    const k2 = await chunkedModel(rt, cfg, params, B, 2, 2);
    assertSameStep(cfg, await chunkedStep(k2, short), whole3, "3 segments, K 2 (padded)");
    // And the full length again on the same model: nothing of the short step stays behind.
    assertSameStep(cfg, await chunkedStep(k2, mb), whole, "4 segments, K 2, after 3");
  },
);

gpuTest(
  "chunked: evaluation on a chunked model (loss, every row's head state, validation) equals " +
    "the whole-sequence model's",
  async (rt) => {
    const cfg = resolveConfig("micro"); // 2 segments of 16: chunks of 1 segment, 2 per sequence
    const params = randomParams(paramTable(cfg), 41, { normal: 0.1, norm: 0.3, beta: 1.5 });
    const source = new RecallSource(cfg, 5);
    const B = 4, T = cfg.seqLength;
    const whole = await gpuModel(rt, cfg, params, { B, T, train: true });
    const chunked = await chunkedModel(rt, cfg, params, B, 1, 2);
    // The head state of every row, in the batch's layout: (max, sum, target logit, lse); the
    // sum is over V = 258 terms <= 1 each.
    const bt = source.valBatch(0, B);
    whole.setBatch(bt.tokens, bt.targets, { weights: bt.weights });
    chunked.setChunkedBatch(bt.tokens, bt.targets, { weights: bt.weights });
    const evals = [whole, chunked].map((m) => {
      const rec = rt.record("eval");
      const r = m.recordEvalForward(rec, { headState: true });
      rt.submit(rec);
      return Promise.all([r.loss, r.headState!]);
    });
    const [[wl, wh], [cl, ch]] = await Promise.all(evals);
    assertClose([cl], [wl], { ...LOSS_TOL, what: "eval loss" });
    deepEqual(ch.length, B * T * 4);
    assertClose(ch, wh, { ...LOSS_TOL, what: "head state" });
    const o = { batch: B, evalBatches: 2 };
    const [w, c] = [
      await validate(rt, whole, source, o, 0),
      await validate(rt, chunked, source, o, 0),
    ];
    assertClose([c.valLoss], [w.valLoss], { ...LOSS_TOL, what: "validation loss" });
    deepEqual([c.valExact, c.valExactMemoryOff], [w.valExact, w.valExactMemoryOff]);
  },
);

gpuTest(
  "chunked: train --chunk 1 follows the whole-sequence loss curve, and 2 steps, save, resume, " +
    "2 more equal 4 straight (bit for bit)",
  async (rt) => {
    const cfg = resolveConfig("micro"); // 2 segments of 16: chunks of 1 segment, 2 per sequence
    const base = {
      ...TRAIN_DEFAULTS,
      batch: 4,
      accum: 2,
      lr: 5e-3,
      warmup: 2,
      logEvery: 1,
      evalEvery: 0,
      saveEvery: 0,
      steps: 4,
    };
    const dirs = await Promise.all(
      ["whole", "chunked", "resumed"].map((p) => Deno.makeTempDir({ prefix: `infini-${p}-` })),
    );
    try {
      const lines: string[] = [];
      const run = (out: string, o: Partial<typeof base> & { chunk?: number; resume?: boolean }) =>
        train(rt, cfg, { ...base, out, ...o }, new RecallSource(cfg, 3), {
          tty: false,
          info: (l) => lines.push(l),
        });
      const whole = await run(dirs[0], {});
      const chunked = await run(dirs[1], { chunk: 1 });
      assert(
        lines.some((l) => l.includes("in chunks of 1 segment (2 per sequence)")),
        lines.join("\n"),
      );
      const first = await run(dirs[2], { chunk: 1, stopAfter: 2 });
      deepEqual(first.steps, 2);
      const resumed = await run(dirs[2], { chunk: 1, resume: true });
      const curve = (r: typeof whole) => r.losses.map((s) => s.loss);
      deepEqual(resumed.losses.map((s) => s.step), [1, 2, 3, 4]);
      deepEqual(curve(resumed), curve(chunked));
      deepEqual(await resumed.model.readParams(), await chunked.model.readParams());
      // Chunked vs whole: the same run up to summation order. Each step's loss before its
      // update; the updates themselves are nearly invariant to the gradients' scale (AdamW),
      // so parameters that moved by 4 steps of lr ~5e-3 differ by rounding-level amounts.
      assertClose(curve(chunked), curve(whole), { ...LOSS_TOL, what: "loss curve" });
      const d = Math.max(...curve(chunked).map((l, i) => Math.abs(l - curve(whole)[i])));
      console.log(`loss curve, chunked vs whole: max |diff| ${d.toExponential(2)}`);
    } finally {
      for (const d of dirs) await Deno.remove(d, { recursive: true });
    }
  },
);

gpuTest(
  "chunked: train --chunk through the command line: a mixture of lengths (3 and 4 segments, " +
    "chunks of 2) with validation runs and says its chunks; a chunk longer than the sequence " +
    "is a usage error",
  async () => {
    const out = await Deno.makeTempDir({ prefix: "infini-chunk-cli-" });
    try {
      // tiny: 4 segments of 32; passkey batches of 3 or 4 segments, chunks of 2 segments.
      const r = await cli(
        ...["train", "--preset", "tiny", "--data", "passkey", "--segments", "3,4"],
        ...["--chunk", "2", "--batch", "2", "--steps", "4", "--log-every", "1"],
        ...["--eval-every", "4", "--eval-batches", "1", "--out", out, "--overwrite"],
      );
      equal(r.code, 0, r.stderr);
      match(r.stderr, /sequences of 128 tokens in chunks of 2 segments \(2 per sequence\)/);
      match(r.stderr, /val step 4: loss \d/);
      const log = (await Deno.readTextFile(`${out}/log.jsonl`)).trim().split("\n")
        .map((l) => JSON.parse(l));
      const losses = log.filter((e) => "loss" in e).map((e) => e.loss);
      deepEqual(losses.length, 4);
      assert(losses.every(Number.isFinite), `losses ${losses}`);
      const bad = await cli("train", "--preset", "tiny", "--chunk", "5", "--out", out);
      equal(bad.code, 2, bad.stderr);
      match(bad.stderr, /--chunk '5': expected an integer in \[1, 4\]/);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
);
