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
 *
 * Saving and restoring stream: the parameters tensor by tensor and the moments in flat ranges,
 * each in parts of at most STREAM_BYTES read back from (or uploaded to) the GPU pages, so the
 * host never holds a flat copy of the model (7.4 GB per array at seed-2b). The files are the
 * same bytes a flat write gives.
 */
import type { Runtime } from "../gpu/runtime.ts";
import { type ModelCheckpoint, openModelCheckpoint, saveCheckpoint } from "../model/checkpoint.ts";
import type { ModelConfig } from "../model/config.ts";
import type { InfiniGemma } from "../model/model.ts";
import { readRanges, STREAM_BYTES, writeRanges } from "../model/param_buffers.ts";
import {
  openSafetensors,
  type SafetensorsReader,
  writeSafetensorsStream,
} from "../model/safetensors.ts";
import { UserError } from "../util/errors.ts";
import { exists, writeTextAtomic } from "../util/files.ts";
import { LOG_FILE } from "./log.ts";
import type { Optimizer } from "./optimizer.ts";
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

/**
 * A training checkpoint found on disk and checked (config, tensor shapes, moment lengths,
 * trainer state), ready to upload; the weights and moments are read while uploading.
 */
export interface TrainingCheckpoint {
  /** The directory it was read from (checkpoint/, or checkpoint.old/ after a cut swap). */
  dir: string;
  config: ModelConfig;
  /** model.safetensors and config.json, checked against each other. */
  model: ModelCheckpoint;
  /** optimizer.safetensors: `adam_m` and `adam_v`, each flat in the table layout of `config`. */
  optimizer: SafetensorsReader;
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
  const step = String(info.step);
  const { table } = model;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { recursive: true });
  // The weights tensor by tensor (padding left out), the moments as their flat arrays.
  const ranges = table.specs.map((s) => ({ start: s.offset, length: s.size }));
  await saveCheckpoint(tmp, info.config, readRanges(rt, model.params, ranges), {
    step,
    tokenizer: info.source.tokenizer,
  });
  const all = [{ start: 0, length: table.total }];
  await writeSafetensorsStream(
    `${tmp}/${OPTIMIZER_FILE}`,
    [
      ["adam_m", { dtype: "F32", shape: [table.total] }],
      ["adam_v", { dtype: "F32", shape: [table.total] }],
    ],
    bytesOf([readRanges(rt, optimizer.m, all), readRanges(rt, optimizer.v, all)]),
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
  const ck = await openModelCheckpoint(dir);
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
  const opt = await openSafetensors(`${dir}/${OPTIMIZER_FILE}`);
  const mm = opt.entries.get("adam_m"), vv = opt.entries.get("adam_v");
  const total = ck.table.total;
  const length = (e: typeof mm) => e ? e.shape.reduce((a, b) => a * b, 1) : -1;
  if (length(mm) !== total || length(vv) !== total) {
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
    model: ck,
    optimizer: opt,
    step: state.step,
    batches: state.batches,
  };
}

/**
 * Uploads a checkpoint found by `readTrainingCheckpoint` into the model and its optimizer,
 * streaming: each tensor, then each moment, in parts of at most STREAM_BYTES. Padding
 * between tensors is left as the model holds it (zero); the moments' padding is uploaded as
 * stored.
 */
export async function restoreTrainingCheckpoint(
  model: InfiniGemma,
  optimizer: Optimizer,
  ck: TrainingCheckpoint,
): Promise<void> {
  await uploadWeights(model, ck.model);
  const total = model.table.total;
  for (const [name, bufs] of [["adam_m", optimizer.m], ["adam_v", optimizer.v]] as const) {
    await writeRanges(
      model.rt,
      bufs,
      parts(total, async (start, count) => {
        const data = await ck.optimizer.read(name, { start, count });
        return data instanceof Float32Array ? data : Float32Array.from(data);
      }),
    );
  }
}

/**
 * Uploads a model checkpoint's weights (checked against the model's config by the caller)
 * into `model`, tensor by tensor, each in parts of at most STREAM_BYTES.
 */
export async function uploadWeights(model: InfiniGemma, ck: ModelCheckpoint): Promise<void> {
  const specs = model.table.specs;
  await writeRanges(
    model.rt,
    model.params,
    (async function* () {
      for (const s of specs) {
        yield* parts(s.size, (start, count) => ck.read(s.name, start, count), s.offset);
      }
    })(),
  );
}

/**
 * Elements [0, n) in consecutive parts of at most STREAM_BYTES, each fetched by `read` and
 * placed at flat element `at` + its start.
 */
async function* parts(
  n: number,
  read: (start: number, count: number) => Promise<Float32Array>,
  at = 0,
): AsyncGenerator<{ start: number; data: Float32Array }> {
  const per = STREAM_BYTES / 4;
  for (let s = 0; s < n; s += per) {
    yield { start: at + s, data: await read(s, Math.min(per, n - s)) };
  }
}

/** Streams of f32 values, one after another, as bytes (views, no copy). */
async function* bytesOf(streams: AsyncIterable<Float32Array>[]): AsyncGenerator<Uint8Array> {
  for (const s of streams) {
    for await (const p of s) yield new Uint8Array(p.buffer, p.byteOffset, p.byteLength);
  }
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
