/** `train`: pre-train an Infini-Gemma model on token shards or the built-in passkey task. */
import { Runtime } from "../gpu/runtime.ts";
import { formatConfig, PRESETS } from "../model/config.ts";
import { resolveConfig } from "../model/overrides.ts";
import { paramCount } from "../model/params.ts";
import type { BatchSource } from "../data/batch.ts";
import { PasskeySource, RecallSource } from "../tasks/sources.ts";
import { ShardSource } from "../train/data.ts";
import { runContents } from "../train/checkpoint.ts";
import { train, TRAIN_DEFAULTS, type TrainOptions } from "../train/trainer.ts";
import { UsageError, UserError } from "../util/errors.ts";
import {
  intFlag,
  LIMIT_HELP,
  LIMIT_OPTION,
  limitFlags,
  listFlag,
  numFlag,
  parseBytes,
  parseCommand,
} from "./flags.ts";
import { defaultChunk, planTarget, printPlan } from "./train_plan.ts";
import { SUMMARIES } from "./summaries.ts";

const D = TRAIN_DEFAULTS;
const HELP = `infini train: ${SUMMARIES.train}

Usage: infini train [options]

Model:
  --preset NAME          ${Object.keys(PRESETS).join(", ")} (default tiny)
  --set KEY=VALUE        override a config field, repeatable (e.g. --set numLayers=4
                         --set memoryUpdate=delta --set infiniLayers=last:2); unknown keys
                         are an error naming the closest valid one
  --print-config         print the resolved config and parameter count, allocate nothing
  --plan                 print the memory plan (parameters, gradients, moments,
                         activations, memory state, scratch; the largest buffer and binding
                         against the adapter's limits), whether it fits, and what to reduce
                         if not; reads the adapter's limits, allocates nothing
  --memory BYTES         the memory budget of --plan and of the default chunk (e.g. 80GB,
                         40GiB; default 40 GB on a GPU adapter, since WebGPU reports no
                         device memory: give 80GB on an 80 GB card; the machine's memory on
                         a CPU adapter)
  --json                 with --plan: print one JSON object

Data:
  --data passkey|recall|DIR
                         the built-in synthetic passkey task (default), the small
                         associative-recall task (a quick check that memory learns), or a
                         folder of token shards written by 'infini gen'
  --answer-weight W      passkey: extra loss weight of the 5 answer digits
                         (default (T-1)/5: mean NLL + 1.0 x mean answer NLL)
  --control-share F      passkey: share of samples with the key in the last segment
  --boundary-share F     passkey: share of samples whose key digits start a segment (so
                         local attention cannot see "The pass key is" before them; drawn
                         uniformly that is 1 in S), default 0
  --segments LIST        passkey, recall: training lengths in segments, one drawn per batch (a
                         mixture of lengths, e.g. 3,4,8,16); each must be <= seqLength / S,
                         and validation runs at seqLength (default: seqLength / S only)

Optimisation:
  --steps N              optimizer steps (default ${D.steps})
  --batch B              sequences per micro-batch (default ${D.batch})
  --accum K              micro-batches per step, gradient accumulation (default ${D.accum})
  --chunk K              run each sequence in chunks of K segments: keep one chunk's
                         activations and the memory state between chunks, recompute the
                         rest in the backward (same loss and gradients, about a third more
                         compute). A sequence whose segments K does not divide has its
                         last chunk padded with ignored segments. Default: the whole
                         sequence when its plan fits (see --plan), else the largest K
                         dividing the segments that fits
  --lr X                 peak learning rate (default ${D.lr})
  --warmup N             linear warm-up steps (default ${D.warmup})
  --min-lr-ratio X       final lr / peak lr of the cosine decay (default ${D.minLrRatio})
  --weight-decay X       AdamW decay of matrices and embedding (default ${D.weightDecay};
                         none on norms and gates)
  --beta1 X, --beta2 X   AdamW betas (default ${D.beta1}, ${D.beta2})
  --clip X               global gradient-norm clip, 0 for none (default ${D.clip})
  --seed N               initialisation and data order (default ${D.seed})

Output:
  --out DIR              run directory (default ${D.out}): checkpoint/, log.jsonl, loss.svg
  --log-every N          progress line and log entry every N steps (default ${D.logEvery})
  --eval-every N         validation every N steps, 0 for never (default ${D.evalEvery})
  --eval-batches N       validation batches (default ${D.evalBatches})
  --save-every N         checkpoint every N steps (default ${D.saveEvery}; always at the end)
  --resume               continue from DIR/checkpoint with identical results
  --overwrite            start a new run in a DIR that already holds one, removing its
                         checkpoint and log (without --resume or this, train refuses)
  --init-from CKPT       start from another run's weights (a staged schedule: same model,
                         a longer --set seqLength or segmentLength; fresh optimizer and
                         schedule)
  --stop-after N         stop after step N with a checkpoint (resume later with --resume)
${LIMIT_HELP}
  -h, --help             this help

Ctrl-C saves a checkpoint and stops; a second Ctrl-C quits at once.

Examples:
  deno task train --preset tiny --steps 300 --out runs/tiny
  deno task train --preset tiny --set memoryUpdate=delta --out runs/tiny-delta
  deno task train --preset mini --set vocabSize=151669 --set seqLength=2048 --data train_datasets
  deno task train --preset seed-2b --print-config
  deno task train --out runs/tiny --steps 600 --resume
  deno task train --set seqLength=512 --segments 3,4,8,16 --init-from runs/tiny --out runs/tiny16`;

export async function run(args: string[]): Promise<number> {
  const parsed = parseCommand({
    name: "train",
    help: HELP,
    options: {
      preset: { type: "string" },
      set: { type: "string", multiple: true, default: [] },
      "print-config": { type: "boolean" },
      plan: { type: "boolean" },
      memory: { type: "string" },
      json: { type: "boolean" },
      data: { type: "string" },
      "answer-weight": { type: "string" },
      "control-share": { type: "string" },
      "boundary-share": { type: "string" },
      segments: { type: "string" },
      "init-from": { type: "string" },
      steps: { type: "string" },
      batch: { type: "string" },
      accum: { type: "string" },
      chunk: { type: "string" },
      lr: { type: "string" },
      warmup: { type: "string" },
      "min-lr-ratio": { type: "string" },
      "weight-decay": { type: "string" },
      beta1: { type: "string" },
      beta2: { type: "string" },
      clip: { type: "string" },
      seed: { type: "string" },
      out: { type: "string" },
      "log-every": { type: "string" },
      "eval-every": { type: "string" },
      "eval-batches": { type: "string" },
      "save-every": { type: "string" },
      resume: { type: "boolean" },
      overwrite: { type: "boolean" },
      "stop-after": { type: "string" },
      ...LIMIT_OPTION,
    },
  }, args);
  if (!parsed) return 0;
  const { values } = parsed;
  const preset = values.preset ?? "tiny";
  const data = values.data ?? "passkey";
  if (!(preset in PRESETS)) {
    throw new UsageError(
      `train: unknown preset '${preset}' (presets: ${Object.keys(PRESETS).join(", ")})`,
    );
  }
  let cfg;
  try {
    cfg = resolveConfig(preset, values.set);
  } catch (e) {
    throw new UsageError(`train: ${e instanceof Error ? e.message : e}`);
  }
  if (values["print-config"]) {
    console.log(formatConfig(cfg, `preset ${preset}`, paramCount(cfg)));
    return 0;
  }
  const o: TrainOptions = {
    out: values.out ?? D.out,
    steps: intFlag("steps", values.steps, D.steps, 1),
    batch: intFlag("batch", values.batch, D.batch, 1),
    accum: intFlag("accum", values.accum, D.accum, 1),
    chunk: values.chunk === undefined
      ? undefined
      : intFlag("chunk", values.chunk, 0, 1, cfg.seqLength / cfg.segmentLength),
    lr: numFlag("lr", values.lr, D.lr),
    warmup: intFlag("warmup", values.warmup, D.warmup, 0),
    minLrRatio: numFlag("min-lr-ratio", values["min-lr-ratio"], D.minLrRatio, { max: 1 }),
    weightDecay: numFlag("weight-decay", values["weight-decay"], D.weightDecay),
    beta1: numFlag("beta1", values.beta1, D.beta1, { below: 1 }),
    beta2: numFlag("beta2", values.beta2, D.beta2, { below: 1 }),
    eps: D.eps,
    clip: numFlag("clip", values.clip, D.clip),
    seed: intFlag("seed", values.seed, D.seed, 0),
    logEvery: intFlag("log-every", values["log-every"], D.logEvery, 1),
    evalEvery: intFlag("eval-every", values["eval-every"], D.evalEvery, 0),
    evalBatches: intFlag("eval-batches", values["eval-batches"], D.evalBatches, 1),
    saveEvery: intFlag("save-every", values["save-every"], D.saveEvery, 0),
    resume: values.resume ?? false,
    stopAfter: intFlag("stop-after", values["stop-after"], 0, 0),
    initFrom: values["init-from"],
  };
  if (o.initFrom && o.resume) {
    throw new UsageError("train: --init-from and --resume exclude each other");
  }
  if (values.overwrite && o.resume) {
    throw new UsageError("train: --overwrite and --resume exclude each other");
  }
  let segments: number[] | undefined;
  if (values.segments !== undefined) {
    if (data !== "passkey" && data !== "recall") {
      throw new UsageError("train: --segments is for --data passkey or recall");
    }
    segments = listFlag("segments", values.segments, true)!;
    if (segments.some((n) => n < 2)) {
      throw new UsageError(`--segments '${values.segments}': every length must be >= 2 segments`);
    }
  }
  const memory = values.memory === undefined ? undefined : parseBytes("memory", values.memory);
  if (values.json && !values.plan) throw new UsageError("train: --json goes with --plan");
  if (values.plan) {
    const target = await planTarget(limitFlags(values.limit));
    const { batch, chunk } = o, json = !!values.json, lengths = segments;
    return printPlan(cfg, { preset, batch, chunk, memory, target, json, lengths });
  }
  if (!o.resume && !values.overwrite) await refuseToReplace(o.out);
  const rt = await Runtime.create({ limits: limitFlags(values.limit) });
  o.chunk ??= defaultChunk(cfg, o.batch, rt, memory, (line) => console.error(line), segments);
  let source: BatchSource;
  if (data === "passkey") {
    source = new PasskeySource(cfg, o.seed, {
      answerWeight: values["answer-weight"] === undefined
        ? undefined
        : numFlag("answer-weight", values["answer-weight"], 0),
      controlShare: numFlag("control-share", values["control-share"], 0, { max: 1 }),
      boundaryShare: numFlag("boundary-share", values["boundary-share"], 0, { max: 1 }),
      segments,
    });
  } else if (data === "recall") {
    source = new RecallSource(cfg, o.seed, {
      phases: segments ? [{ batches: Infinity, segments }] : undefined,
    });
  } else {
    source = await ShardSource.open(data, cfg, o.seed);
  }
  const tty = Deno.stderr.isTerminal();
  const enc = new TextEncoder();
  try {
    await train(rt, cfg, o, source, {
      tty,
      info: (line) => Deno.stderr.writeSync(enc.encode(line.startsWith("\r") ? line : line + "\n")),
    });
  } finally {
    source.close();
    rt.destroy();
  }
  return 0;
}

/**
 * A new run (no --resume) must not silently replace the run that `out` holds: one line naming
 * the folder, what is in it and the ways out.
 */
async function refuseToReplace(out: string): Promise<void> {
  const held = await runContents(out);
  if (!held.checkpoint && !held.log) return;
  const what = [held.checkpoint, held.log].filter(Boolean).join(", ");
  const ways = held.checkpoint
    ? "continue it with --resume, choose another --out, or replace it with --overwrite"
    : "choose another --out, or replace it with --overwrite";
  throw new UserError(`${out}: already holds a run (${what}); ${ways}`);
}
