/**
 * The trainer end to end: a tiny model learns to use its memory, and a resumed run is
 * identical to an uninterrupted one.
 */
import { deepEqual, ok, rejects } from "node:assert/strict";
import { UserError } from "../src/util/errors.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import type { BatchSource } from "../src/data/batch.ts";
import { PasskeySource, RecallSource } from "../src/tasks/sources.ts";
import { validate } from "../src/eval/validate.ts";
import { train, TRAIN_DEFAULTS, type TrainOptions } from "../src/train/trainer.ts";
import { gpuTest } from "./_gpu.ts";

const quiet = { tty: false, info: () => {} };
// The micro preset: C 32, 2 layers, 2 heads / 1 KV head, head dim 16, MLP 64; two segments
// of 16 bytes (the key is in the first, the question in the second). `deno task demo` trains
// the same model with the same settings.
const PRESET = "micro";

gpuTest(
  "train: a tiny model learns to recall a key from an earlier segment through memory",
  async (rt) => {
    const cfg = resolveConfig(PRESET);
    const out = await Deno.makeTempDir({ prefix: "infini-learn-" });
    try {
      const o: TrainOptions = {
        ...TRAIN_DEFAULTS,
        out,
        steps: 160,
        batch: 32,
        lr: 1e-2,
        warmup: 20,
        weightDecay: 0,
        logEvery: 20,
        evalEvery: 0,
        saveEvery: 0,
      };
      const source = new RecallSource(cfg, 7);
      const r = await train(rt, cfg, o, source, quiet);
      // 4 held-out batches = 128 sequences; the key is one of 10 digits, so chance is 0.1.
      const v = await validate(rt, r.model, source, { batch: 32, evalBatches: 4 }, r.steps);
      const on = v.valExact!, off = v.valExactMemoryOff!;
      console.log(
        `exact match: memory on ${on.toFixed(3)}, memory off ${off.toFixed(3)} (chance 0.1)`,
      );
      // Measured: on 1.00 and off ~0.14 by step 150. Memory off cannot beat chance by much:
      // 0.35 is more than 9 binomial standard deviations (0.027) above 0.1.
      ok(on >= 0.9, `memory on: exact match ${on} < 0.9`);
      ok(off <= 0.35, `memory off: exact match ${off} > 0.35 (the task should need memory)`);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
);

// The passkey model of the notes (C 32, 2 layers, 4 heads / 2 KV heads, D 8, MLP 128; 39k
// parameters) on the 5-digit passkey task in two segments of 40 bytes: the key statement fills
// the first, the question ends in the second, so the answer's segment cannot see the digits and
// only the memory can carry them. (The notes' 4 segments of 32 bytes need about 1,500 steps of
// 4,096 tokens.) N(0, 0.2) init: with N(0, 0.1) one seed broke through by step 500 and another
// not by 1,100. With this recipe three seeds measured 1.000 / 0.977 / 1.000 at step 1,400
// (1234 / 2 / 3); the test trains seed 2, the slowest.
const PASSKEY_SETS = [
  "hiddenSize=32",
  "intermediateSize=128",
  "headDim=8",
  "initStd=0.2",
  "segmentLength=40",
  "seqLength=80",
];
const PASSKEY_SEED = 2;

gpuTest(
  "train: the passkey model learns to retrieve a 5-digit key from an earlier segment through memory",
  async (rt) => {
    const cfg = resolveConfig("tiny", PASSKEY_SETS);
    // Answer digits weighted 158: 10x the other 79 targets together, as in the demo's recipe.
    const source = new PasskeySource(cfg, PASSKEY_SEED, { answerWeight: 158 });
    // The premise: in every held-out sample the key's digits are bytes 16-20 of segment 0 and
    // each answer digit is predicted from a position in segment 1.
    const probe = source.valBatch(0, 32);
    for (let i = 0; i < 32; i++) {
      const rows = probe.answerRows![i];
      ok(rows.every((r) => r - i * 80 >= 40), "an answer is predicted from the first segment");
      const digits = [...probe.tokens.subarray(i * 80 + 16, i * 80 + 21)];
      deepEqual(rows.map((r) => probe.tokens[r + 1]), digits, "key digits not at bytes 16-20");
    }
    const out = await Deno.makeTempDir({ prefix: "infini-learn-passkey-" });
    try {
      const o: TrainOptions = {
        ...TRAIN_DEFAULTS,
        out,
        steps: 1500,
        batch: 32,
        lr: 1e-2,
        warmup: 30,
        weightDecay: 0,
        seed: PASSKEY_SEED,
        logEvery: 100,
        evalEvery: 0,
        saveEvery: 0,
      };
      const r = await train(rt, cfg, o, source, quiet);
      // 8 held-out batches: 256 keys never seen in training.
      const v = await validate(rt, r.model, source, { batch: 32, evalBatches: 8 }, r.steps);
      const on = v.valExact!, off = v.valExactMemoryOff!;
      console.log(
        `passkey exact match: memory on ${on.toFixed(3)}, memory off ${
          off.toFixed(3)
        } (chance 1e-5)`,
      );
      // All 5 digits by chance: 1e-5. 0.8 leaves room below the measured 0.98-1.00 for another
      // adapter's rounding; memory off at 0.05 is still 5,000x chance.
      ok(on >= 0.8, `memory on: exact match ${on} < 0.8`);
      ok(off <= 0.05, `memory off: exact match ${off} > 0.05 (the task should need memory)`);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
);

gpuTest(
  "train: 6 steps straight equal 3 steps, save, resume, 3 more (losses bit for bit)",
  async (rt) => {
    const cfg = resolveConfig(PRESET);
    const base = {
      ...TRAIN_DEFAULTS,
      batch: 4,
      lr: 5e-3,
      warmup: 2,
      logEvery: 1,
      evalEvery: 0,
      saveEvery: 0,
    };
    const a = await Deno.makeTempDir({ prefix: "infini-resume-a-" });
    const b = await Deno.makeTempDir({ prefix: "infini-resume-b-" });
    try {
      const straight = await train(
        rt,
        cfg,
        { ...base, out: a, steps: 6 },
        new RecallSource(cfg, 3),
        quiet,
      );
      const first = await train(
        rt,
        cfg,
        { ...base, out: b, steps: 6, stopAfter: 3 },
        new RecallSource(cfg, 3),
        quiet,
      );
      deepEqual(first.steps, 3);
      const resumed = await train(
        rt,
        cfg,
        { ...base, out: b, steps: 6, resume: true },
        new RecallSource(cfg, 3),
        quiet,
      );
      deepEqual(resumed.losses.map((s) => s.loss), straight.losses.map((s) => s.loss));
      deepEqual(resumed.losses.map((s) => s.step), [1, 2, 3, 4, 5, 6]);
      const [pa, pb] = [await straight.model.readParams(), await resumed.model.readParams()];
      deepEqual(pb, pa);
    } finally {
      await Deno.remove(a, { recursive: true });
      await Deno.remove(b, { recursive: true });
    }
  },
);

gpuTest(
  "train: --init-from takes weights across a new seqLength or segmentLength, not a new shape",
  async (rt) => {
    const cfg = resolveConfig(PRESET);
    const base = { ...TRAIN_DEFAULTS, batch: 2, warmup: 1, logEvery: 1, evalEvery: 0 };
    const a = await Deno.makeTempDir({ prefix: "infini-init-a-" });
    const b = await Deno.makeTempDir({ prefix: "infini-init-b-" });
    try {
      const source = new RecallSource(cfg, 3);
      const first = await train(rt, cfg, { ...base, out: a, steps: 1 }, source, quiet);
      const weights = await first.model.readParams();
      // Segments of 8 instead of 16 and a longer sequence: the same tensors, so the same start.
      const cfg2 = resolveConfig(PRESET, ["segmentLength=8", "seqLength=64"]);
      const second = await train(
        rt,
        cfg2,
        { ...base, out: b, steps: 1, lr: 0, initFrom: a },
        new RecallSource(cfg2, 3),
        quiet,
      );
      deepEqual(await second.model.readParams(), weights);
      const wider = resolveConfig(PRESET, ["intermediateSize=128"]);
      await rejects(
        train(
          rt,
          wider,
          { ...base, out: b, steps: 1, initFrom: a },
          new RecallSource(wider, 3),
          quiet,
        ),
        (e: Error) => e instanceof UserError && /intermediateSize/.test(e.message),
      );
    } finally {
      await Deno.remove(a, { recursive: true });
      await Deno.remove(b, { recursive: true });
    }
  },
);

gpuTest(
  "train: --eval-every with an empty validation split says so once at the start",
  async (rt) => {
    const cfg = resolveConfig(PRESET);
    const recall = new RecallSource(cfg, 3);
    // A source with training batches and no validation split (as ShardSource without val shards).
    const source: BatchSource = {
      name: "no-val",
      tokenizer: recall.tokenizer,
      valBatches: 0,
      batch: (i, B) => recall.batch(i, B),
      valBatch: () => {
        throw new Error("there is no validation batch");
      },
      close: () => recall.close(),
    };
    const NOTICE = "validation split is empty: --eval-every has nothing to score";
    const out = await Deno.makeTempDir({ prefix: "infini-noval-" });
    try {
      const base = { ...TRAIN_DEFAULTS, out, steps: 2, batch: 2, warmup: 1, logEvery: 1 };
      for (const evalEvery of [1, 0]) {
        const lines: string[] = [];
        const r = await train(rt, cfg, { ...base, evalEvery }, source, {
          tty: false,
          info: (l) => lines.push(l),
        });
        deepEqual(r.vals, []);
        deepEqual(
          lines.filter((l) => l.includes("validation split is empty")),
          evalEvery ? [NOTICE] : [],
          lines.join("\n"),
        );
      }
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
);
