/** `train`: pre-train an Infini-Gemma model on token shards or the built-in passkey task. */
import { parseArgs } from "node:util";
import { Runtime } from "../gpu/runtime.ts";
import { formatConfig, PRESETS, resolveConfig } from "../model/config.ts";
import { paramCount } from "../model/params.ts";
import { type BatchSource, PasskeySource, RecallSource, ShardSource } from "../train/data.ts";
import { train, TRAIN_DEFAULTS, type TrainOptions } from "../train/trainer.ts";
import { usage, UsageError } from "./errors.ts";

export const summary = "pre-train a model on token shards or the built-in passkey task";

const D = TRAIN_DEFAULTS;
const HELP = `infini train: ${summary}

Usage: infini train [options]

Model:
  --preset NAME          ${Object.keys(PRESETS).join(", ")} (default tiny)
  --set KEY=VALUE        override a config field, repeatable (e.g. --set numLayers=4
                         --set memoryUpdate=delta --set infiniLayers=last:2); unknown keys
                         are an error naming the closest valid one
  --print-config         print the resolved config and parameter count, allocate nothing

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
  --segments LIST        passkey: training lengths in segments, one drawn per batch (a
                         mixture of lengths, e.g. 3,4,8,16); each must be <= seqLength / S,
                         and validation runs at seqLength (default: seqLength / S only)

Optimisation:
  --steps N              optimizer steps (default ${D.steps})
  --batch B              sequences per micro-batch (default ${D.batch})
  --accum K              micro-batches per step, gradient accumulation (default ${D.accum})
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
  --init-from CKPT       start from another run's weights (a staged schedule: same model,
                         a longer --set seqLength or segmentLength; fresh optimizer and
                         schedule)
  --stop-after N         stop after step N with a checkpoint (resume later with --resume)
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
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      options: {
        preset: { type: "string", default: "tiny" },
        set: { type: "string", multiple: true, default: [] },
        "print-config": { type: "boolean" },
        data: { type: "string", default: "passkey" },
        "answer-weight": { type: "string" },
        "control-share": { type: "string" },
        "boundary-share": { type: "string" },
        segments: { type: "string" },
        "init-from": { type: "string" },
        steps: { type: "string" },
        batch: { type: "string" },
        accum: { type: "string" },
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
        "stop-after": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    usage(e, "train");
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (!(values.preset in PRESETS)) {
    throw new UsageError(
      `train: unknown preset '${values.preset}' (presets: ${Object.keys(PRESETS).join(", ")})`,
    );
  }
  let cfg;
  try {
    cfg = resolveConfig(values.preset, values.set);
  } catch (e) {
    throw new UsageError(`train: ${e instanceof Error ? e.message : e}`);
  }
  if (values["print-config"]) {
    console.log(formatConfig(cfg, `preset ${values.preset}`, paramCount(cfg)));
    return 0;
  }
  const num = (flag: string, v: string | undefined, def: number, int: boolean, min = 0): number => {
    if (v === undefined) return def;
    const x = Number(v);
    if (!Number.isFinite(x) || (int && !Number.isInteger(x)) || x < min) {
      throw new UsageError(
        `train: --${flag} must be ${int ? "an integer" : "a number"} >= ${min}, got '${v}'`,
      );
    }
    return x;
  };
  const o: TrainOptions = {
    out: values.out ?? D.out,
    steps: num("steps", values.steps, D.steps, true, 1),
    batch: num("batch", values.batch, D.batch, true, 1),
    accum: num("accum", values.accum, D.accum, true, 1),
    lr: num("lr", values.lr, D.lr, false),
    warmup: num("warmup", values.warmup, D.warmup, true),
    minLrRatio: num("min-lr-ratio", values["min-lr-ratio"], D.minLrRatio, false),
    weightDecay: num("weight-decay", values["weight-decay"], D.weightDecay, false),
    beta1: num("beta1", values.beta1, D.beta1, false),
    beta2: num("beta2", values.beta2, D.beta2, false),
    eps: D.eps,
    clip: num("clip", values.clip, D.clip, false),
    seed: num("seed", values.seed, D.seed, true),
    logEvery: num("log-every", values["log-every"], D.logEvery, true, 1),
    evalEvery: num("eval-every", values["eval-every"], D.evalEvery, true),
    evalBatches: num("eval-batches", values["eval-batches"], D.evalBatches, true, 1),
    saveEvery: num("save-every", values["save-every"], D.saveEvery, true),
    resume: values.resume ?? false,
    stopAfter: num("stop-after", values["stop-after"], 0, true),
    initFrom: values["init-from"],
  };
  if (o.initFrom && o.resume) {
    throw new UsageError("train: --init-from and --resume exclude each other");
  }
  let segments: number[] | undefined;
  if (values.segments !== undefined) {
    if (values.data !== "passkey") throw new UsageError("train: --segments is for --data passkey");
    segments = values.segments.split(",").map((x) => Number(x.trim()));
    if (segments.some((n) => !Number.isInteger(n) || n < 2)) {
      throw new UsageError(
        `--segments '${values.segments}': expected integers >= 2, comma-separated`,
      );
    }
  }
  if (o.beta1 >= 1 || o.beta2 >= 1) {
    throw new UsageError("train: --beta1 and --beta2 must be below 1");
  }
  const rt = await Runtime.create();
  let source: BatchSource;
  if (values.data === "passkey") {
    source = new PasskeySource(cfg, o.seed, {
      answerWeight: values["answer-weight"] === undefined
        ? undefined
        : num("answer-weight", values["answer-weight"], 0, false),
      controlShare: num("control-share", values["control-share"], 0, false),
      boundaryShare: num("boundary-share", values["boundary-share"], 0, false),
      segments,
    });
  } else if (values.data === "recall") {
    source = new RecallSource(cfg, o.seed);
  } else {
    source = await ShardSource.open(values.data, cfg, o.seed);
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
