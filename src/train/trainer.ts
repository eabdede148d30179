/**
 * The training loop. Each optimizer step is recorded and submitted as a whole (one submit per
 * micro-batch, with --chunk all its chunks' forward and backward sweeps in that one submit);
 * the loss and gradient statistics come back asynchronously and are awaited two steps later,
 * so the GPU never idles waiting for the host and the host never stalls a step on a readback.
 *
 * The run directory holds:
 *   checkpoint/   the whole training state (./checkpoint.ts): model.safetensors + config.json
 *                 (loadable as a Hugging Face Gemma state dict), optimizer.safetensors (AdamW
 *                 moments), trainer.json (step, data position, options); replaced atomically
 *                 as a whole directory
 *   log.jsonl     one JSON object per logged step and per validation (./log.ts)
 *   loss.svg      training and validation loss curves
 *
 * Around the loop: the optimizer (./optimizer.ts), validation (src/eval/validate.ts).
 */
import { UserError } from "../util/errors.ts";
import { IGNORE_TARGET } from "../util/targets.ts";
import type { Recorder, Runtime } from "../gpu/runtime.ts";
import { type ModelCheckpoint, openCheckpointLazy } from "../model/checkpoint.ts";
import { configDiff, formatConfig, type ModelConfig, sameConfig } from "../model/config.ts";
import { InfiniGemma } from "../model/model.ts";
import type { GradStats } from "../ops/adamw.ts";
import { validate, type ValLog } from "../eval/validate.ts";
import {
  CHECKPOINT_DIR,
  readTrainingCheckpoint,
  removeTrainingCheckpoint,
  restoreTrainingCheckpoint,
  saveTrainingCheckpoint,
  type TrainingCheckpoint,
  uploadWeights,
} from "./checkpoint.ts";
import type { Batch, BatchSource } from "../data/batch.ts";
import { InterruptWatcher } from "./interrupt.ts";
import { fmtDuration, openLog, readLog, type StepLog, writePlot } from "./log.ts";
import { Optimizer } from "./optimizer.ts";
import { lrAt, type TrainOptions } from "./options.ts";

export { lrAt, TRAIN_DEFAULTS, type TrainOptions } from "./options.ts";
export { fmtDuration, type StepLog } from "./log.ts";
export type { ValLog } from "../eval/validate.ts";

export interface TrainResult {
  steps: number;
  finalLoss: number;
  losses: StepLog[];
  vals: ValLog[];
  stoppedBy: "done" | "interrupt";
  seconds: number;
  model: InfiniGemma;
}

export interface TrainIO {
  /** Progress and notes (stderr in the CLI). */
  info(line: string): void;
  /** Whether to redraw a single progress line (a terminal). */
  tty: boolean;
}

/** Where a run starts: a new model, another run's weights, or its own checkpoint. */
type Start =
  | { kind: "new" }
  | { kind: "init"; ck: ModelCheckpoint & { dir: string } }
  | { kind: "resume"; ck: TrainingCheckpoint };

/**
 * Reads and checks what the run starts from, writing nothing: a failed --resume or
 * --init-from must leave no trace (not even an empty --out folder).
 */
async function startFrom(cfg: Readonly<ModelConfig>, o: TrainOptions): Promise<Start> {
  if (o.resume) {
    const ck = await readTrainingCheckpoint(o.out);
    if (!ck) {
      throw new UserError(`${o.out}: nothing to resume (no ${CHECKPOINT_DIR}/ directory)`);
    }
    if (!sameConfig(ck.config, cfg)) {
      throw new UserError(
        `${o.out}/${CHECKPOINT_DIR}: its config differs from this run's; resume without --preset/--set changes`,
      );
    }
    return { kind: "resume", ck };
  }
  if (o.initFrom) {
    const ck = await openCheckpointLazy(o.initFrom);
    // Neither length changes a tensor: a staged schedule lengthens the sequence, and a model
    // may move to longer segments (RoPE positions are relative).
    const diff = configDiff(
      { ...ck.config, seqLength: cfg.seqLength, segmentLength: cfg.segmentLength },
      cfg,
    );
    if (diff.length) {
      throw new UserError(
        `${ck.dir}: --init-from needs the same model (only seqLength and segmentLength may differ): ${
          diff.join("; ")
        }`,
      );
    }
    return { kind: "init", ck };
  }
  return { kind: "new" };
}

/**
 * Runs (or resumes) training. Stops cleanly on SIGINT after saving; a second SIGINT exits.
 * A new run (not `resume`) replaces whatever run `o.out` held: its log at once, its
 * checkpoint with its first save. A resumed run that is already at `o.steps` says so and
 * writes nothing.
 */
export async function train(
  rt: Runtime,
  cfg: Readonly<ModelConfig>,
  o: TrainOptions,
  source: BatchSource,
  io: TrainIO,
): Promise<TrainResult> {
  const B = o.batch, T = cfg.seqLength, S = cfg.segmentLength;
  const ckptDir = `${o.out}/${CHECKPOINT_DIR}`;
  // Chunks of K segments: a model of K x S tokens per sequence runs each step chunk by chunk
  // (all lengths of a mixture through it); K = the whole sequence is one call, as always.
  const nS = T / S, K = o.chunk ?? nS;
  if (!Number.isInteger(K) || K < 1 || K > nS) {
    throw new UserError(`--chunk ${K}: expected whole segments in [1, ${nS}] (seqLength / S)`);
  }
  const chunks = Math.ceil(nS / K), chunked = K < nS;
  const start = await startFrom(cfg, o);
  const model = await InfiniGemma.create(rt, cfg, {
    B,
    T: chunked ? K * S : T,
    train: true,
    chunks,
  });
  const optimizer = await Optimizer.create(model, { weightDecay: o.weightDecay });
  // Batches shorter than seqLength (a mixture of lengths) run on models of their length that
  // share the weights and gradients; the optimizer stays with the full-length model. (Chunked,
  // every length runs on `model`, its last chunk padded when K does not divide it.)
  const byLength = new Map<number, InfiniGemma>([[T, model]]);
  const modelFor = async (rows: number): Promise<InfiniGemma> => {
    const t = rows / B;
    let m = byLength.get(t);
    if (!m) {
      if (!Number.isInteger(t / cfg.segmentLength) || t > T) {
        throw new Error(`batch of ${rows} rows is not B x whole segments up to seqLength`);
      }
      m = await InfiniGemma.create(rt, cfg, { B, T: t, train: true, share: model });
      byLength.set(t, m);
    }
    return m;
  };

  let step = 0, batches = 0;
  if (start.kind === "resume") {
    await restoreTrainingCheckpoint(model, optimizer, start.ck);
    step = start.ck.step;
    batches = start.ck.batches;
    if (step >= o.steps) {
      io.info(
        `${o.out}: already at step ${step} of ${o.steps}; nothing to do (raise --steps to continue)`,
      );
      const logged = await readLog(o.out, step);
      return {
        steps: step,
        finalLoss: logged.steps.at(-1)?.loss ?? NaN,
        losses: logged.steps,
        vals: logged.vals,
        stoppedBy: "done",
        seconds: 0,
        model,
      };
    }
    io.info(`resumed from ${ckptDir} at step ${step}`);
  } else if (start.kind === "init") {
    await uploadWeights(model, start.ck);
    io.info(`initialised from ${start.ck.dir} (step ${start.ck.metadata.step ?? "?"})`);
  } else {
    await model.initParams(o.seed);
  }
  await Deno.mkdir(o.out, { recursive: true });
  // A new run's log starts empty (openLog); its checkpoint must not outlive it either.
  if (start.kind !== "resume") await removeTrainingCheckpoint(o.out);
  io.info(formatConfig(cfg, "model", model.table.count));
  const pad = chunks * K - nS;
  io.info(
    `training: ${o.steps} steps x ${B} x ${o.accum} sequences of ${T} tokens in chunks of ${K} ` +
      `segment${K === 1 ? "" : "s"} (${chunks} per sequence${
        pad ? `, the last padded with ${pad} ignored segment${pad === 1 ? "" : "s"}` : ""
      }), lr ${o.lr}, data ${source.name}`,
  );

  if (o.evalEvery > 0 && source.valBatches === 0) {
    io.info("validation split is empty: --eval-every has nothing to score");
  }

  const log = await openLog(o.out, step);
  const losses: StepLog[] = log.steps, vals: ValLog[] = log.vals;
  // Whether out/checkpoint holds this run's state (a new run removed the old one's).
  let saved = start.kind === "resume";
  const save = async () => {
    await saveTrainingCheckpoint(rt, o.out, model, optimizer, {
      config: cfg,
      options: o,
      source,
      step,
      batches,
    });
    saved = true;
  };
  let stop = "done" as "done" | "interrupt";
  // Ctrl-C: the first stops after the current step with a checkpoint, the second ends the
  // process at once (exit status 130); both act even while a submit holds this thread.
  const ctrlC = await InterruptWatcher.start({
    notice: "\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to quit now)\n",
    second: "\nsecond interrupt: exiting without saving\n",
  });
  try {
    const t0 = performance.now();
    let tokensThisRun = 0;
    // Steps whose loss is still in flight: awaited two steps later.
    const pending: {
      step: number;
      lr: number;
      loss: Promise<number>;
      stats: Promise<GradStats>;
    }[] = [];
    let lastLoss = NaN;
    let stepsThisRun = 0;
    let waits = 0;

    const drain = async (keep: number) => {
      while (pending.length > keep) {
        const p = pending.shift()!;
        const [loss, stats] = await Promise.all([p.loss, p.stats]);
        waits++;
        if (stats.skipped || !Number.isFinite(loss)) {
          const what = [
            ...(Number.isFinite(loss) ? [] : [`loss (${loss})`]),
            ...(stats.skipped ? [`gradient norm (${stats.norm})`] : []),
          ];
          throw new UserError(
            `step ${p.step}: non-finite ${what.join(" and ")}; ` +
              `the update was skipped and training stopped; ${
                saved ? `the last good checkpoint is in ${ckptDir}` : "no checkpoint was saved"
              } (try a lower --lr or --clip)`,
          );
        }
        lastLoss = loss;
        const elapsed = (performance.now() - t0) / 1000;
        const entry: StepLog = {
          step: p.step,
          loss,
          lr: p.lr,
          gradNorm: stats.norm,
          tokensPerSec: tokensThisRun / Math.max(elapsed, 1e-9),
          elapsedSec: elapsed,
        };
        if (p.step % o.logEvery === 0 || p.step === o.steps) {
          losses.push(entry);
          await log.write(entry);
          const eta = ((o.steps - p.step) * elapsed) / Math.max(1, stepsThisRun);
          const line =
            `step ${p.step}/${o.steps}  loss ${loss.toFixed(4)}  lr ${p.lr.toExponential(2)}  ` +
            `|g| ${stats.norm.toFixed(3)}  ${Math.round(entry.tokensPerSec)} tok/s  ETA ${
              fmtDuration(eta)
            }`;
          if (io.tty) io.info(`\r\x1b[2K${line}`);
          else io.info(line);
        }
      }
    };

    while (step < o.steps) {
      if (ctrlC.interrupted) stop = "interrupt";
      if (stop !== "done") break;
      step++;
      const lr = lrAt(o, step);
      const batchList: Batch[] = [];
      for (let a = 0; a < o.accum; a++) batchList.push(source.batch(batches + a, B));
      const denom = batchList.reduce((s, b) => s + countTargets(b), 0);
      let loss: Promise<number> = Promise.resolve(0);
      let stats: Promise<GradStats> | null = null;
      for (let a = 0; a < o.accum; a++) {
        const bt = batchList[a];
        // One submit per micro-batch: its batch upload is queue-ordered before it.
        const opts = { weights: bt.weights, lossDenominator: denom };
        let rec: Recorder, l: Promise<number>;
        if (chunked) {
          // The whole micro-batch, both sweeps over all its chunks, in this one submit.
          model.setChunkedBatch(bt.tokens, bt.targets, opts);
          rec = rt.record(`step ${step}.${a}`);
          model.recordChunkedGrads(rec, { clear: a === 0 });
          l = model.readChunkedLoss(rec);
        } else {
          const m = await modelFor(bt.tokens.length);
          m.setBatch(bt.tokens, bt.targets, opts);
          rec = rt.record(`step ${step}.${a}`);
          m.recordGrads(rec, { clear: a === 0 });
          l = rec.read(m.loss).then((x) => x[0]);
        }
        const prev = loss;
        loss = Promise.all([prev, l]).then(([p, c]) => p + c);
        if (a === o.accum - 1) {
          optimizer.recordStep(rec, {
            step,
            lr,
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
            maxNorm: o.clip > 0 ? o.clip : Infinity,
          });
          stats = optimizer.readStats(rec);
        }
        rt.submit(rec);
      }
      batches += o.accum;
      stepsThisRun++;
      tokensThisRun += batchList.reduce((s, b) => s + b.tokens.length, 0);
      if (o.stopAfter > 0 && step >= o.stopAfter) stop = "interrupt";
      pending.push({ step, lr, loss, stats: stats! });
      await drain(2);

      if (o.evalEvery > 0 && step % o.evalEvery === 0 && source.valBatches > 0) {
        await drain(0);
        const v = await validate(rt, model, source, o, step);
        vals.push(v);
        await log.write(v);
        io.info(
          `${io.tty ? "\n" : ""}val step ${step}: loss ${v.valLoss.toFixed(4)}` +
            (v.valExact !== undefined
              ? `  exact ${v.valExact.toFixed(3)} (memory off ${v.valExactMemoryOff!.toFixed(3)})`
              : ""),
        );
        await writePlot(o.out, losses, vals);
      }
      if (o.saveEvery > 0 && step % o.saveEvery === 0 && step < o.steps) {
        await drain(0);
        await save();
      }
    }
    await drain(0);
    if (io.tty) io.info("");
    await save();
    await writePlot(o.out, losses, vals);
    const seconds = (performance.now() - t0) / 1000;
    io.info(
      `${stop === "interrupt" ? "interrupted" : "done"} at step ${step}: loss ${
        lastLoss.toFixed(4)
      }, ` +
        `${fmtDuration(seconds)}, ${
          (waits / Math.max(1, stepsThisRun)).toFixed(2)
        } GPU waits per step; ` +
        `checkpoint in ${ckptDir}`,
    );
    return { steps: step, finalLoss: lastLoss, losses, vals, stoppedBy: stop, seconds, model };
  } finally {
    ctrlC.stop();
    log.close();
  }
}

function countTargets(b: Batch): number {
  let n = 0;
  for (let i = 0; i < b.targets.length; i++) if (b.targets[i] !== IGNORE_TARGET) n++;
  return n;
}
