/**
 * The training loop. Each optimizer step is recorded and submitted as a whole (one submit per
 * micro-batch); the loss and gradient statistics come back asynchronously and are awaited
 * two steps later, so the GPU never idles waiting for the host and the host never stalls a
 * step on a readback.
 *
 * The run directory holds:
 *   checkpoint/   model.safetensors + config.json (loadable as a Hugging Face Gemma state
 *                 dict), optimizer.safetensors (AdamW moments), trainer.json (step, data
 *                 position, options); replaced atomically as a whole directory
 *   log.jsonl     one JSON object per logged step and per validation
 *   loss.svg      training and validation loss curves
 */
import { UserError } from "../util/errors.ts";
import type { Runtime } from "../gpu/runtime.ts";
import { loadCheckpoint, openCheckpoint, saveCheckpoint } from "../model/checkpoint.ts";
import { configDiff, formatConfig, type ModelConfig, sameConfig } from "../model/config.ts";
import { GATE, InfiniGemma } from "../model/model.ts";
import { initParams } from "../model/params.ts";
import { readSafetensors, writeSafetensors } from "../model/safetensors.ts";
import { writeFileAtomic } from "../util/files.ts";
import type { GateMode } from "../ops/infini.ts";
import { lineChart } from "../ui/svg.ts";
import type { Batch, BatchSource } from "../data/batch.ts";
import { InterruptWatcher } from "./interrupt.ts";

export interface TrainOptions {
  /** Run directory. */
  out: string;
  /** Optimizer steps in all (a resumed run continues up to this). */
  steps: number;
  /** Sequences per micro-batch. */
  batch: number;
  /** Micro-batches per optimizer step (gradient accumulation). */
  accum: number;
  /** Peak learning rate. */
  lr: number;
  /** Final learning rate as a fraction of the peak (cosine decay). */
  minLrRatio: number;
  /** Linear warm-up steps. */
  warmup: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Global gradient-norm clip. */
  clip: number;
  /** Seed of the initialisation and of the data order. */
  seed: number;
  /** Print and log every N steps (losses are read back asynchronously). */
  logEvery: number;
  /** Validate every N steps (0: never). */
  evalEvery: number;
  /** Validation batches per validation. */
  evalBatches: number;
  /** Save a checkpoint every N steps (0: only at the end). */
  saveEvery: number;
  /** Continue from out/checkpoint. */
  resume: boolean;
  /** Stop (saving a checkpoint) after this step, as Ctrl-C would; 0: run to `steps`. */
  stopAfter: number;
  /**
   * Start from this checkpoint's weights (a staged schedule: a longer seqLength, new
   * optimizer state); its config must equal this run's except seqLength.
   */
  initFrom?: string;
}

export const TRAIN_DEFAULTS: TrainOptions = {
  out: "runs/default",
  steps: 1000,
  batch: 16,
  accum: 1,
  lr: 3e-3,
  minLrRatio: 0.1,
  warmup: 100,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  clip: 1.0,
  seed: 1234,
  logEvery: 10,
  evalEvery: 100,
  evalBatches: 4,
  saveEvery: 500,
  resume: false,
  stopAfter: 0,
};

/** Learning rate at optimizer step `step` (1-based): linear warm-up, then cosine decay. */
export function lrAt(
  o: Pick<TrainOptions, "lr" | "warmup" | "steps" | "minLrRatio">,
  step: number,
): number {
  if (step <= o.warmup) return (o.lr * step) / Math.max(1, o.warmup);
  const span = Math.max(1, o.steps - o.warmup);
  const t = Math.min(1, (step - o.warmup) / span);
  const min = o.lr * o.minLrRatio;
  return min + 0.5 * (o.lr - min) * (1 + Math.cos(Math.PI * t));
}

export interface StepLog {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
  elapsedSec: number;
}

export interface ValLog {
  step: number;
  valLoss: number;
  /** Exact-match accuracy of the answers (passkey), teacher-forced = greedy. */
  valExact?: number;
  /** The same with the memory switched off (sigmoid(beta) = 0). */
  valExactMemoryOff?: number;
}

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

const CKPT = "checkpoint";
const TRAINER_FILE = "trainer.json";
const OPT_FILE = "optimizer.safetensors";

/** Trainer state stored beside the model in a checkpoint. */
interface TrainerState {
  format: "infini-trainer";
  version: 1;
  /** Optimizer steps completed. */
  step: number;
  /** Batches consumed (the data position). */
  batches: number;
  options: TrainOptions;
  source: string;
}

/** Runs (or resumes) training. Stops cleanly on SIGINT after saving; a second SIGINT exits. */
export async function train(
  rt: Runtime,
  cfg: Readonly<ModelConfig>,
  o: TrainOptions,
  source: BatchSource,
  io: TrainIO,
): Promise<TrainResult> {
  const B = o.batch, T = cfg.seqLength;
  const model = await InfiniGemma.create(rt, cfg, { B, T, train: true });
  await model.createOptimizer({ weightDecay: o.weightDecay });
  // Batches shorter than seqLength (a mixture of lengths) run on models of their length that
  // share the weights and gradients; the optimizer stays with the full-length model.
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
  await Deno.mkdir(o.out, { recursive: true });

  let step = 0, batches = 0;
  const ckptDir = `${o.out}/${CKPT}`;
  if (o.resume) {
    const st = await loadTrainingState(rt, model, o.out);
    if (!st) throw new UserError(`${o.out}: nothing to resume (no ${CKPT}/ directory)`);
    if (!sameConfig(st.config, cfg)) {
      throw new UserError(
        `${ckptDir}: its config differs from this run's; resume without --preset/--set changes`,
      );
    }
    step = st.step;
    batches = st.batches;
    io.info(`resumed from ${ckptDir} at step ${step}`);
  } else if (o.initFrom) {
    const ck = await openCheckpoint(o.initFrom);
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
    model.setParams(ck.params);
    io.info(`initialised from ${ck.dir} (step ${ck.metadata.step ?? "?"})`);
  } else {
    model.setParams(initParams(model.table, cfg, o.seed));
  }
  io.info(formatConfig(cfg, "model", model.table.count));
  io.info(
    `training: ${o.steps} steps x ${B} x ${o.accum} sequences of ${T} tokens, lr ${o.lr}, data ${source.name}`,
  );

  const log = await openLog(`${o.out}/log.jsonl`, step);
  const losses: StepLog[] = log.steps, vals: ValLog[] = log.vals;
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
      stats: ReturnType<InfiniGemma["readStats"]>;
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
              `the update was skipped and training stopped; the last good checkpoint is in ${ckptDir} ` +
              `(try a lower --lr or --clip)`,
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
      let stats: ReturnType<InfiniGemma["readStats"]> | null = null;
      for (let a = 0; a < o.accum; a++) {
        const bt = batchList[a];
        const m = await modelFor(bt.tokens.length);
        // One submit per micro-batch: its batch upload is queue-ordered before it.
        m.setBatch(bt.tokens, bt.targets, { weights: bt.weights, lossDenominator: denom });
        const rec = rt.record(`step ${step}.${a}`);
        m.recordGrads(rec, { clear: a === 0 });
        const l = rec.read(m.loss).then((x) => x[0]);
        const prev = loss;
        loss = Promise.all([prev, l]).then(([p, c]) => p + c);
        if (a === o.accum - 1) {
          model.recordUpdate(rec, {
            step,
            lr,
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
            maxNorm: o.clip > 0 ? o.clip : Infinity,
          });
          stats = model.readStats(rec);
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
        await saveTrainingState(rt, model, cfg, o, source, step, batches);
      }
    }
    await drain(0);
    if (io.tty) io.info("");
    await saveTrainingState(rt, model, cfg, o, source, step, batches);
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
  for (let i = 0; i < b.targets.length; i++) if (b.targets[i] !== 0xffffffff) n++;
  return n;
}

/**
 * Validation loss over `evalBatches` held-out batches, and for passkey batches the exact-match
 * accuracy with the memory on and off (teacher-forced arg-max of every answer digit, which is
 * exactly what greedy decoding would produce).
 */
export async function validate(
  rt: Runtime,
  model: InfiniGemma,
  source: BatchSource,
  o: Pick<TrainOptions, "batch" | "evalBatches">,
  step: number,
): Promise<ValLog> {
  let lossSum = 0, n = 0;
  const exact = { on: 0, off: 0, total: 0 };
  const nb = Math.min(o.evalBatches, source.valBatches);
  for (let i = 0; i < nb; i++) {
    const bt = source.valBatch(i, o.batch);
    model.setBatch(bt.tokens, bt.targets, { weights: bt.weights });
    for (const gate of bt.answerRows ? [GATE.learned, GATE.off] : [GATE.learned]) {
      const rec = rt.record("validate");
      model.resetMemory(rec);
      model.recordForward(rec, { gate: gate as GateMode });
      const loss = rec.read(model.loss);
      const head = bt.answerRows ? rec.read(model.headState) : null;
      rt.submit(rec);
      if (gate === GATE.learned) {
        lossSum += (await loss)[0];
        n++;
      }
      if (head && bt.answerRows) {
        const hs = await head;
        for (const rows of bt.answerRows) {
          const ok = rows.every((r) => hs[r * 4 + 2] >= hs[r * 4]);
          if (gate === GATE.learned) {
            exact.on += ok ? 1 : 0;
            exact.total++;
          } else exact.off += ok ? 1 : 0;
        }
      }
    }
  }
  const v: ValLog = { step, valLoss: lossSum / Math.max(1, n) };
  if (exact.total > 0) {
    v.valExact = exact.on / exact.total;
    v.valExactMemoryOff = exact.off / exact.total;
  }
  return v;
}

// ------------------------------------------------------------------------------------------
// Checkpoints of the whole training state
// ------------------------------------------------------------------------------------------

/**
 * Writes checkpoint/ as a whole: into checkpoint.tmp/, then checkpoint -> checkpoint.old,
 * checkpoint.tmp -> checkpoint, and checkpoint.old removed. A kill at any point leaves either
 * checkpoint/ or checkpoint.old/ complete; the loader looks at both (checkpoint.tmp/ is never
 * read: it may be half written).
 */
export async function saveTrainingState(
  rt: Runtime,
  model: InfiniGemma,
  cfg: Readonly<ModelConfig>,
  o: TrainOptions,
  source: BatchSource,
  step: number,
  batches: number,
): Promise<void> {
  const dir = `${o.out}/${CKPT}`, tmp = `${dir}.tmp`, old = `${dir}.old`;
  const rec = rt.record("checkpoint");
  const p = rec.read(model.params);
  const m = rec.read(model.moments!.m), v = rec.read(model.moments!.v);
  rt.submit(rec);
  const [params, mm, vv] = await Promise.all([p, m, v]);
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { recursive: true });
  await saveCheckpoint(tmp, cfg, params, { step: String(step), tokenizer: source.tokenizer });
  await writeSafetensors(
    `${tmp}/${OPT_FILE}`,
    [
      ["adam_m", { dtype: "F32", shape: [mm.length], data: mm }],
      ["adam_v", { dtype: "F32", shape: [vv.length], data: vv }],
    ],
    { step: String(step) },
  );
  const state: TrainerState = {
    format: "infini-trainer",
    version: 1,
    step,
    batches,
    options: o,
    source: source.name,
  };
  await writeFileAtomic(`${tmp}/${TRAINER_FILE}`, [
    new TextEncoder().encode(JSON.stringify(state, null, 2) + "\n"),
  ]);
  // checkpoint.old is removed only while checkpoint/ is complete beside it: after a kill
  // between the two renames, old/ is the only good checkpoint (the loader falls back to it)
  // and must survive until the new one is in place.
  if (await exists(dir)) {
    await Deno.remove(old, { recursive: true }).catch(() => {});
    await Deno.rename(dir, old);
  }
  await Deno.rename(tmp, dir);
  await Deno.remove(old, { recursive: true }).catch(() => {});
}

/** Loads model, moments and trainer state from out/checkpoint (or .old after a cut swap). */
export async function loadTrainingState(
  rt: Runtime,
  model: InfiniGemma,
  out: string,
): Promise<{ step: number; batches: number; config: ModelConfig } | null> {
  let dir = `${out}/${CKPT}`;
  if (!(await exists(dir))) {
    if (await exists(`${dir}.old`)) dir = `${dir}.old`;
    else return null;
  }
  const ck = await loadCheckpoint(dir);
  const stateText = await Deno.readTextFile(`${dir}/${TRAINER_FILE}`).catch(() => {
    throw new UserError(
      `${dir}: no ${TRAINER_FILE}; this checkpoint cannot be resumed (it can be evaluated)`,
    );
  });
  let state: TrainerState;
  try {
    state = JSON.parse(stateText);
  } catch {
    throw new UserError(`${dir}/${TRAINER_FILE}: not valid JSON`);
  }
  if (
    state.format !== "infini-trainer" || !Number.isInteger(state.step) ||
    !Number.isInteger(state.batches)
  ) {
    throw new UserError(`${dir}/${TRAINER_FILE}: not a trainer state file`);
  }
  const opt = await readSafetensors(`${dir}/${OPT_FILE}`);
  const mm = opt.tensors.get("adam_m"), vv = opt.tensors.get("adam_v");
  const total = model.table.total;
  if (!mm || !vv || mm.data.length !== total || vv.data.length !== total) {
    throw new UserError(`${dir}/${OPT_FILE}: moments missing or not ${total} long`);
  }
  if (ck.metadata.step !== undefined && ck.metadata.step !== String(state.step)) {
    throw new UserError(
      `${dir}: model is from step ${ck.metadata.step}, trainer state from step ${state.step}`,
    );
  }
  model.setParams(Float32Array.from(ck.params));
  rt.write(model.moments!.m, Float32Array.from(mm.data));
  rt.write(model.moments!.v, Float32Array.from(vv.data));
  return { step: state.step, batches: state.batches, config: ck.config };
}

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------------------------------
// Log and plot
// ------------------------------------------------------------------------------------------

async function openLog(path: string, fromStep: number) {
  // On resume, keep the entries up to the checkpoint's step so the log reads as one run.
  const steps: StepLog[] = [], vals: ValLog[] = [];
  const kept: string[] = [];
  if (fromStep > 0) {
    const text = await Deno.readTextFile(path).catch(() => "");
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      try {
        const e = JSON.parse(line);
        if (e.step > fromStep) continue;
        kept.push(line);
        if ("valLoss" in e) vals.push(e);
        else steps.push(e);
      } catch {
        // A line cut by a kill: drop it.
      }
    }
  }
  // Atomic, so that a kill while the log is cut back cannot lose the entries kept.
  await writeFileAtomic(path, [new TextEncoder().encode(kept.map((l) => l + "\n").join(""))]);
  const f = await Deno.open(path, { append: true });
  const enc = new TextEncoder();
  return {
    steps,
    vals,
    async write(e: StepLog | ValLog) {
      await f.write(enc.encode(JSON.stringify(e) + "\n"));
    },
    close() {
      f.close();
    },
  };
}

async function writePlot(out: string, steps: StepLog[], vals: ValLog[]): Promise<void> {
  const series = [{
    name: "train",
    points: steps.map((s) => [s.step, s.loss] as [number, number]),
  }];
  if (vals.length) {
    series.push({
      name: "validation",
      points: vals.map((v) => [v.step, v.valLoss] as [number, number]),
    });
  }
  const svg = lineChart({ title: "Loss", xLabel: "step", yLabel: "loss (nats)", series });
  await writeFileAtomic(`${out}/loss.svg`, [new TextEncoder().encode(svg)]);
}

export function fmtDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
