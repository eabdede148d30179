/**
 * A training checkpoint: the whole state a run resumes from, in `out`/checkpoint/:
 *   model.safetensors, config.json   the model (src/model/checkpoint.ts), loadable on its own
 *                                    by evaluation, generation and Hugging Face
 *   optimizer.safetensors            the AdamW moments `adam_m`, `adam_v` (flat, table layout)
 *   trainer.json                     step, data position (batches consumed), options, source
 *
 * The directory is replaced as a whole: written into checkpoint.tmp/, then checkpoint ->
 * checkpoint.old, checkpoint.tmp -> checkpoint, and checkpoint.old removed. A kill at any
 * point leaves either checkpoint/ or checkpoint.old/ complete; the reader looks at both
 * (checkpoint.tmp/ is never read: it may be half written).
 */
import type { Runtime } from "../gpu/runtime.ts";
import { loadCheckpoint, saveCheckpoint } from "../model/checkpoint.ts";
import type { ModelConfig } from "../model/config.ts";
import type { InfiniGemma } from "../model/model.ts";
import { readSafetensors, writeSafetensors } from "../model/safetensors.ts";
import { UserError } from "../util/errors.ts";
import { exists, writeTextAtomic } from "../util/files.ts";
import { LOG_FILE } from "./log.ts";
import type { Moments, Optimizer } from "./optimizer.ts";
import type { TrainOptions } from "./options.ts";

export const CHECKPOINT_DIR = "checkpoint";
export const TRAINER_FILE = "trainer.json";
export const OPTIMIZER_FILE = "optimizer.safetensors";

/** trainer.json: the trainer's state stored beside the model. */
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

/** What a checkpoint holds besides the GPU buffers. */
export interface TrainingInfo {
  config: Readonly<ModelConfig>;
  options: TrainOptions;
  /** The data source: its name (trainer.json) and tokenizer (the model's metadata). */
  source: { name: string; tokenizer: string };
  /** Optimizer steps completed. */
  step: number;
  /** Batches consumed. */
  batches: number;
}

/** A training checkpoint read from disk, ready to upload. */
export interface TrainingCheckpoint {
  /** The directory it was read from (checkpoint/, or checkpoint.old/ after a cut swap). */
  dir: string;
  config: ModelConfig;
  /** Flat, in the table layout of `config`. */
  params: Float32Array;
  moments: Moments;
  step: number;
  batches: number;
}

/**
 * Saves the whole training state of `model` and `optimizer` into `out`/checkpoint/, replacing
 * the one there as a whole.
 */
export async function saveTrainingCheckpoint(
  rt: Runtime,
  out: string,
  model: InfiniGemma,
  optimizer: Optimizer,
  info: TrainingInfo,
): Promise<void> {
  const dir = `${out}/${CHECKPOINT_DIR}`, tmp = `${dir}.tmp`, old = `${dir}.old`;
  const rec = rt.record("checkpoint");
  const p = model.params.read(rec);
  const moments = optimizer.readMoments(rec);
  rt.submit(rec);
  const [params, { m, v }] = await Promise.all([p, moments]);
  const step = String(info.step);
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { recursive: true });
  await saveCheckpoint(tmp, info.config, params, { step, tokenizer: info.source.tokenizer });
  await writeSafetensors(
    `${tmp}/${OPTIMIZER_FILE}`,
    [
      ["adam_m", { dtype: "F32", shape: [m.length], data: m }],
      ["adam_v", { dtype: "F32", shape: [v.length], data: v }],
    ],
    { step },
  );
  const state: TrainerState = {
    format: "infini-trainer",
    version: 1,
    step: info.step,
    batches: info.batches,
    options: info.options,
    source: info.source.name,
  };
  await writeTextAtomic(`${tmp}/${TRAINER_FILE}`, JSON.stringify(state, null, 2) + "\n");
  // checkpoint.old is removed only while checkpoint/ is complete beside it: after a kill
  // between the two renames, old/ is the only good checkpoint (the reader falls back to it)
  // and must survive until the new one is in place.
  if (await exists(dir)) {
    await Deno.remove(old, { recursive: true }).catch(() => {});
    await Deno.rename(dir, old);
  }
  await Deno.rename(tmp, dir);
  await Deno.remove(old, { recursive: true }).catch(() => {});
}

/**
 * Reads the training checkpoint of the run in `out` (checkpoint/, or checkpoint.old/ after a
 * cut swap) and checks that its parts agree; null when there is none. Writes nothing.
 */
export async function readTrainingCheckpoint(out: string): Promise<TrainingCheckpoint | null> {
  let dir = `${out}/${CHECKPOINT_DIR}`;
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
  const opt = await readSafetensors(`${dir}/${OPTIMIZER_FILE}`);
  const mm = opt.tensors.get("adam_m"), vv = opt.tensors.get("adam_v");
  const total = ck.table.total;
  if (!mm || !vv || mm.data.length !== total || vv.data.length !== total) {
    throw new UserError(`${dir}/${OPTIMIZER_FILE}: moments missing or not ${total} long`);
  }
  if (ck.metadata.step !== undefined && ck.metadata.step !== String(state.step)) {
    throw new UserError(
      `${dir}: model is from step ${ck.metadata.step}, trainer state from step ${state.step}`,
    );
  }
  return {
    dir,
    config: ck.config,
    params: ck.params,
    moments: { m: Float32Array.from(mm.data), v: Float32Array.from(vv.data) },
    step: state.step,
    batches: state.batches,
  };
}

/** Uploads a checkpoint read by `readTrainingCheckpoint` into the model and its optimizer. */
export function restoreTrainingCheckpoint(
  model: InfiniGemma,
  optimizer: Optimizer,
  ck: TrainingCheckpoint,
): void {
  model.setParams(ck.params);
  optimizer.setMoments(ck.moments);
}

/**
 * What of a run `out` holds: its checkpoint (checkpoint/, or checkpoint.old/ after a cut
 * swap: what --resume continues) and its log.jsonl. Empty for a new or empty folder.
 */
export async function runContents(out: string): Promise<{ checkpoint?: string; log?: string }> {
  const found: { checkpoint?: string; log?: string } = {};
  for (const d of [CHECKPOINT_DIR, `${CHECKPOINT_DIR}.old`]) {
    if (await exists(`${out}/${d}`)) {
      found.checkpoint = `${d}/`;
      break;
    }
  }
  if (await exists(`${out}/${LOG_FILE}`)) found.log = LOG_FILE;
  return found;
}

/**
 * Removes the training checkpoint of `out` (checkpoint/ and what a cut save leaves beside it):
 * a new run in the folder replaces the old one's checkpoint along with its log, so that a
 * later --resume can never continue the old run under the new one's log.
 */
export async function removeTrainingCheckpoint(out: string): Promise<void> {
  for (const d of [CHECKPOINT_DIR, `${CHECKPOINT_DIR}.old`, `${CHECKPOINT_DIR}.tmp`]) {
    await Deno.remove(`${out}/${d}`, { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }
}
