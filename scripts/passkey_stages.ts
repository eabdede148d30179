/**
 * Passkey results, reproducibly: trains the tiny passkey model in stages (a fixed short length
 * first, then mixtures of lengths with a rising maximum, each stage starting from the last
 * one's weights), and after each stage measures exact match at several lengths with the memory
 * on and off, plus the control (key in the final segment). Writes a results folder: results.json,
 * results.md (tables), passkey_stageN.svg heat maps, each stage's run folder (log, loss.svg,
 * checkpoint) and the wall-clock time of every stage.
 *
 *   deno task results:passkey [--stages 4:2500:0.01,16:600:0.003,32:500:0.003,64:400:0.003]
 *                             [--rule linear|delta] [--trials 200] [--eval 4,16,64,128]
 *                             [--control 0] [--boundary 0.2] [--out results/passkey-linear] [--lr 0.01]
 *                             [--warmup 30] [--batch 32] [--seed 1] [--answer-weight 254]
 *                             [--sets hiddenSize=32,intermediateSize=128,headDim=8,initStd=0.1]
 *                             [--init-from RUN] [--first-mixture] [--task passkey|recall]
 *
 * A stage "M:N" trains N steps on lengths drawn per batch from the buckets 3, 4, 6, 8, 12, 16,
 * 24, ... below M segments and M itself (just M for the first stage, unless `--first-mixture`);
 * "M:N:LR" gives it its own peak learning rate (--lr otherwise). The passkey defaults are the
 * recipe that solved 4 segments here: the notes' 39k-parameter model (segments of 32 bytes)
 * initialised N(0, 0.1), batch 32, AdamW 0.9/0.95 without weight decay, 30 warm-up steps (20
 * in later stages) then cosine, clip 1, answer digits weighted 254 (at 4 segments 10x the
 * rest of the sequence together), a fifth of the keys with their digits at a segment start
 * (--boundary), lr 1e-2 for the first stage and 3e-3 for the lengthening ones (the first stage
 * is `demo --task passkey`). The notes' own recipe is `--stages 4:2500 --lr 0.003 --warmup 100
 * --answer-weight 25.4 --boundary 0 --sets hiddenSize=32,intermediateSize=128,headDim=8`.
 * `--task recall` trains the micro model on the recall task (default `--stages 2:200 --lr
 * 0.003 --warmup 100`).
 * `--sets` overrides config fields of the tiny preset (e.g. initStd=0.1); `--eval` lists the
 * lengths (in segments) measured after each stage, `--trials` the keys per length;
 * `--control F` trains on a share F of documents whose key sits in the final segment;
 * `--boundary F` on a share F whose key digits start a segment (the hard case: that segment's
 * local attention cannot see "The pass key is" before them; drawn uniformly it is 1 in 32;
 * default 0.2 for passkey, as `demo --task passkey`).
 * `--init-from` starts the first stage from an earlier run's weights (its stage folder).
 */
import { benchArgs } from "../bench/_util.ts";
import { UsageError } from "../src/util/errors.ts";
import { intFlag, listFlag } from "../src/cli/flags.ts";
import { passkeyHeatMap, passkeyTable } from "../src/cli/eval.ts";
import { evalPasskey, meanAccuracy, type PasskeyResult } from "../src/eval/passkey.ts";
import { Streamer, type Variant } from "../src/eval/stream.ts";
import { Runtime } from "../src/gpu/runtime.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import { writeFileAtomic } from "../src/util/files.ts";
import { DEMO_TASKS, STAGE_DEFAULTS, STAGE_TRAIN, stageLengths } from "../src/tasks/recipes.ts";
import { PasskeySource, RecallSource } from "../src/tasks/sources.ts";
import { fmtDuration, train, TRAIN_DEFAULTS } from "../src/train/trainer.ts";

const values = benchArgs(import.meta.url, {
  stages: { type: "string" },
  rule: { type: "string", default: "linear" },
  trials: { type: "string", default: "200" },
  eval: { type: "string", default: "4,16,64,128" },
  control: { type: "string", default: "0" },
  boundary: { type: "string" },
  "answer-weight": { type: "string" },
  lr: { type: "string" },
  warmup: { type: "string" },
  batch: { type: "string", default: "32" },
  seed: { type: "string", default: "1" },
  sets: { type: "string", default: DEMO_TASKS.passkey.sets.join(",") },
  out: { type: "string" },
  task: { type: "string", default: "passkey" },
  "init-from": { type: "string" },
  // With --init-from: the first stage already lengthens (a mixture up to its M).
  "first-mixture": { type: "boolean" },
});
const taskName = values.task === "recall" ? "recall" : "passkey";
// Per-task defaults (src/tasks/recipes.ts).
const defaults = STAGE_DEFAULTS[taskName];
values.stages ??= defaults.stages;
values.lr ??= String(defaults.lr);
values.warmup ??= String(defaults.warmup);
if (defaults.answerWeight !== undefined) values["answer-weight"] ??= String(defaults.answerWeight);
values.boundary ??= String(defaults.boundaryShare);
const rule = values.rule;
const out = values.out ?? `results/${taskName}-${rule}`;
// "M:N" or "M:N:LR" (a stage's own peak learning rate; --lr otherwise).
const stages = values.stages.split(",").map((s) => {
  const [m, n, lr] = s.split(":").map(Number);
  if (![m, n].every((v) => Number.isInteger(v) && v > 0) || (lr !== undefined && !(lr > 0))) {
    throw new UsageError(`--stages '${s}': expected M:N or M:N:LR (segments, steps, peak lr)`);
  }
  return [m, n, lr ?? Number(values.lr)] as const;
});
const evalLens = listFlag("eval", values.eval, true)!;
if (evalLens.some((n) => n < 2)) {
  throw new UsageError(`--eval '${values.eval}': a passkey needs at least 2 segments`);
}
const trials = intFlag("trials", values.trials, 200), seed = intFlag("seed", values.seed, 1, 0);
// Every stage's config and data source is built before anything is written or the GPU is
// opened, so an impossible stage fails at once and leaves no --out folder behind.
// recall: the micro model with its own defaults. The segment length is the preset's unless
// --sets gives one (e.g. segmentLength=64, where a control sample fits).
const preset = defaults.preset;
const sets = taskName === "recall" ? [] : values.sets.split(",").filter(Boolean);
const setS = sets.find((kv) => kv.startsWith("segmentLength="))?.split("=")[1];
const S = setS === undefined ? resolveConfig(preset).segmentLength : Number(setS);
const plan = stages.map(([maxSeg, steps, stageLr], i) => {
  const cfg = resolveConfig(preset, [...sets, `memoryUpdate=${rule}`, `seqLength=${maxSeg * S}`]);
  const lengths = stageLengths(maxSeg, i > 0 || values["first-mixture"] === true);
  if (taskName === "recall" && lengths.length > 1) {
    throw new UsageError(`--task recall: one fixed length per stage (stage ${i + 1} mixes)`);
  }
  const source = taskName === "recall"
    ? new RecallSource(cfg, seed + i)
    : new PasskeySource(cfg, seed + i, {
      // Default (T - 1) / 5: mean NLL of all tokens + 1.0 x mean NLL of the digits (the notes).
      answerWeight: values["answer-weight"] === undefined
        ? undefined
        : Number(values["answer-weight"]),
      controlShare: Number(values.control),
      boundaryShare: Number(values.boundary),
      segments: lengths,
    });
  return { maxSeg, steps, stageLr, cfg, lengths, source };
});
await Deno.mkdir(out, { recursive: true });
const rt = await Runtime.create();
const enc = new TextEncoder();
const log = (s: string) => console.error(s);
log(
  `results:passkey on ${rt.describe()}: stages ${values.stages}, rule ${rule}, ${trials} keys per cell`,
);

const summary: {
  stage: number;
  maxSegments: number;
  lengths: number[];
  steps: number;
  lr: number;
  trainSeconds: number;
  evalSeconds: number;
  result: PasskeyResult;
}[] = [];
// A first stage may continue from an earlier run's weights (e.g. more steps at 4 segments).
let prev: string | undefined = values["init-from"];
for (const [i, { maxSeg, steps, stageLr, cfg, lengths, source }] of plan.entries()) {
  const dir = `${out}/stage${i + 1}`;
  log(
    `stage ${i + 1}: ${steps} steps on lengths ${lengths.join(",")} segments${
      prev ? `, from ${prev}` : ""
    }`,
  );
  const t0 = performance.now();
  const r = await train(
    rt,
    cfg,
    {
      ...TRAIN_DEFAULTS,
      out: dir,
      steps,
      batch: Number(values.batch),
      lr: stageLr,
      warmup: i === 0 ? Number(values.warmup) : STAGE_TRAIN.laterWarmup,
      weightDecay: STAGE_TRAIN.weightDecay,
      seed: seed + i,
      logEvery: STAGE_TRAIN.logEvery,
      evalEvery: STAGE_TRAIN.evalEvery,
      evalBatches: STAGE_TRAIN.evalBatches,
      saveEvery: STAGE_TRAIN.saveEvery,
      initFrom: prev,
    },
    source,
    { tty: false, info: log },
  );
  const trainSeconds = (performance.now() - t0) / 1000;
  prev = dir;
  const t1 = performance.now();
  const params = await r.model.readParams();
  const streamer = await Streamer.create(rt, cfg, params, { batch: 25, chunkSegments: 4 });
  const result = await evalPasskey(
    streamer,
    {
      segments: evalLens,
      depths: [0, 0.5, 1],
      trials: taskName === "recall" ? trials : Math.ceil(trials / 3),
      seed: 99,
      variants: ["memory", "off", "zero-read"],
      control: true,
      task: taskName,
    },
    (c) =>
      log(`  ${c.segments} segments, depth ${c.depth}, ${c.variant}: ${c.accuracy.toFixed(3)}`),
  );
  const evalSeconds = (performance.now() - t1) / 1000;
  summary.push({
    stage: i + 1,
    maxSegments: maxSeg,
    lengths,
    steps,
    lr: stageLr,
    trainSeconds,
    evalSeconds,
    result,
  });
  await writeFileAtomic(`${out}/passkey_stage${i + 1}.svg`, [enc.encode(passkeyHeatMap(result))]);
  await writeFileAtomic(`${out}/results.json`, [
    enc.encode(
      JSON.stringify({ adapter: rt.describe(), rule, args: Deno.args, summary }, null, 2) + "\n",
    ),
  ]);
  await writeFileAtomic(`${out}/results.md`, [enc.encode(markdown())]);
  log(passkeyTable(result));
  log(
    `stage ${i + 1}: training ${fmtDuration(trainSeconds)}, evaluation ${fmtDuration(evalSeconds)}`,
  );
}
rt.destroy();

/** Per stage: accuracy at each evaluated length (mean over depths), memory on / off / control. */
function markdown(): string {
  const lines = [
    `# ${taskName} results (${rule} memory), ${rt.describe()}`,
    "",
    `Command: \`deno task results:passkey ${Deno.args.join(" ")}\``,
    "",
    taskName === "recall"
      ? `Exact match of the key digit, greedy, ${trials} held-out sequences per length (chance 0.1).`
      : `Exact match of all 5 digits, greedy, held-out keys (${
        3 * Math.ceil(trials / 3)
      } per length: 3 depths x ${Math.ceil(trials / 3)}).`,
    "",
    `| stage | trained lengths | steps | peak lr | train time | ${
      evalLens.map((n) => `${n} seg on / off / zero-read`).join(" | ")
    } | control (${evalLens[0]} seg) |`,
    `| --- | --- | --- | --- | --- | ${evalLens.map(() => "---").join(" | ")} | --- |`,
  ];
  for (const s of summary) {
    const acc = (n: number, v: Variant) => meanAccuracy(s.result, n, v).toFixed(3);
    const ctrl = s.result.cells.find((x) =>
      x.segments === evalLens[0] && x.variant === "memory" && x.depth === "control"
    );
    lines.push(
      `| ${s.stage} | ${
        s.lengths.length > 1 ? `${s.lengths[0]}-${s.maxSegments}` : s.maxSegments
      } | ${s.steps} | ${s.lr} | ${fmtDuration(s.trainSeconds)} | ${
        evalLens.map((n) => `${acc(n, "memory")} / ${acc(n, "off")} / ${acc(n, "zero-read")}`).join(
          " | ",
        )
      } | ${ctrl ? ctrl.accuracy.toFixed(3) : "-"} |`,
    );
  }
  return lines.join("\n") + "\n";
}
