/**
 * A checkpoint directory: `model.safetensors` (F32 tensors with Hugging Face Gemma names, tied
 * embedding, beta as `model.layers.i.self_attn.gate`) and `config.json` (GemmaConfig names
 * plus the Infini fields). Loading checks that the two agree: every tensor the config implies
 * is present with its shape, and nothing else is.
 *
 * Saving writes each file to a temporary name, fsyncs it and renames it over the old one
 * (weights first, then config), so a kill at any moment leaves a readable checkpoint: within a
 * run the config never changes, so either the old or the new weights sit beside an identical
 * config.json. (Saving a *different* config into an existing directory has a window between
 * the two renames; loading then fails with a clear error when the shapes disagree.)
 *
 * Both directions can stream tensor by tensor, so that no flat array of every parameter
 * exists (7.4 GB at seed-2b): `saveCheckpoint` takes the tensors' values as a stream of parts,
 * and `openModelCheckpoint` checks a checkpoint and reads its tensors (or ranges of them) on
 * demand. `loadCheckpoint` reads everything into the flat layout (small models, eval, tests).
 *
 * @example
 * ```ts
 * await saveCheckpoint("runs/a", cfg, params, { step: "100" });
 * const { config, table, params } = await loadCheckpoint("runs/a");
 * const ck = await openModelCheckpoint("runs/a"); // checked; nothing read yet
 * const wq = await ck.read("model.layers.0.self_attn.q_proj.weight"); // Float32Array
 * ```
 */
import { oneLine, UserError } from "../util/errors.ts";
import { configDiff, type ModelConfig } from "./config.ts";
import { fromHfConfig, toHfConfig } from "./hf_config.ts";
import { paramCount, type ParamTable, paramTable } from "./params.ts";
import {
  openSafetensors,
  type SafeTensor,
  type SafetensorsReader,
  writeSafetensorsStream,
} from "./safetensors.ts";
import { isFile, writeFileAtomic } from "../util/files.ts";

export const MODEL_FILE = "model.safetensors";
export const CONFIG_FILE = "config.json";

/** A loaded checkpoint: the config, its table, and the weights in the table's flat layout. */
export interface Checkpoint {
  readonly config: ModelConfig;
  readonly table: ParamTable;
  /** (table.total) f32, padding zero. */
  readonly params: Float32Array;
  /** model.safetensors' __metadata__ (e.g. the step it was saved at). */
  readonly metadata: Record<string, string>;
}

/**
 * The weights to save: the flat layout of the config's table, or the tensors' values in table
 * order (padding excluded) as a stream of f32 parts of any size, e.g. read back from the GPU
 * piece by piece.
 */
export type ParamSource = Float32Array | AsyncIterable<Float32Array>;

/**
 * Saves `params` and the config into `dir` (created if needed). `metadata` values are stored
 * in the safetensors header. A stream that yields more or fewer values than the table holds
 * is an error and leaves the old weights.
 */
export async function saveCheckpoint(
  dir: string,
  config: Readonly<ModelConfig>,
  params: ParamSource,
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  const table = paramTable(config);
  if (params instanceof Float32Array && params.length !== table.total) {
    throw new Error(`saveCheckpoint: ${params.length} parameters, the table needs ${table.total}`);
  }
  await Deno.mkdir(dir, { recursive: true });
  const values = params instanceof Float32Array
    ? (async function* () {
      for (const s of table.specs) yield params.subarray(s.offset, s.offset + s.size);
    })()
    : params;
  // "format": "pt" lets Hugging Face transformers accept the file.
  await writeSafetensorsStream(
    `${dir}/${MODEL_FILE}`,
    table.specs.map((s) => [s.name, { dtype: "F32", shape: s.shape }] as const),
    f32Bytes(values),
    { format: "pt", ...metadata },
  );
  const json = JSON.stringify(toHfConfig(config), null, 2) + "\n";
  await writeFileAtomic(`${dir}/${CONFIG_FILE}`, [new TextEncoder().encode(json)]);
}

/** f32 arrays as their bytes (views, no copy). */
async function* f32Bytes(parts: AsyncIterable<Float32Array>): AsyncGenerator<Uint8Array> {
  for await (const p of parts) yield new Uint8Array(p.buffer, p.byteOffset, p.byteLength);
}

/**
 * Loads `dir`/config.json and `dir`/model.safetensors and checks that they agree. With
 * `expect`, also checks that the stored config equals it (naming the differing fields).
 * Tensors stored as F64, F16 or BF16 are converted to f32.
 */
export async function loadCheckpoint(
  dir: string,
  opts: { expect?: Readonly<ModelConfig> } = {},
): Promise<Checkpoint> {
  const ck = await openModelCheckpoint(dir, opts);
  const params = new Float32Array(ck.table.total);
  const file = await ck.file.open();
  try {
    for (const s of ck.table.specs) params.set(await ck.file.read(s.name, { file }), s.offset);
  } finally {
    file.close();
  }
  return { config: ck.config, table: ck.table, params, metadata: ck.metadata };
}

/**
 * A checkpoint whose config and tensor list have been checked against each other (every
 * check of {@link loadCheckpoint}); the weights are read on demand.
 */
export interface ModelCheckpoint {
  readonly config: ModelConfig;
  readonly table: ParamTable;
  readonly metadata: Record<string, string>;
  /** model.safetensors, header read. */
  readonly file: SafetensorsReader;
  /** Elements [start, start + count) of a tensor (default all of it) as f32. */
  read(name: string, start?: number, count?: number): Promise<Float32Array>;
}

/**
 * Reads `dir`/config.json and the header of `dir`/model.safetensors and checks that they
 * agree, reading no weights (see {@link loadCheckpoint} for the checks and `expect`).
 */
export async function openModelCheckpoint(
  dir: string,
  opts: { expect?: Readonly<ModelConfig> } = {},
): Promise<ModelCheckpoint> {
  const configPath = `${dir}/${CONFIG_FILE}`;
  let text: string;
  try {
    text = await Deno.readTextFile(configPath);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UserError(`${dir}: no ${CONFIG_FILE} (not a checkpoint directory?)`);
    }
    throw new UserError(`${configPath}: cannot read (${oneLine((e as Error).message)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${configPath}: not valid JSON (${oneLine((e as Error).message)})`);
  }
  const config = fromHfConfig(json, configPath);
  if (opts.expect) {
    const diff = configDiff(opts.expect, config);
    if (diff.length > 0) {
      throw new UserError(`${configPath}: differs from the expected config (${diff.join("; ")})`);
    }
  }
  const modelPath = `${dir}/${MODEL_FILE}`;
  // Before the table is built: weights that cannot fit the file (at 2 bytes each, the
  // smallest dtype read) mean a damaged config or one for other weights, and building the
  // table of, say, 10^15 layers would never finish. (Files under 8 bytes are left to the
  // reader, which says they are too short.)
  const count = paramCount(config);
  const size = await fileSize(modelPath);
  if (size >= 8 && count * 2 > size) {
    throw new UserError(
      `${modelPath}: ${size} bytes cannot hold the ${count} parameters that ${CONFIG_FILE} ` +
        `describes; the config does not belong to these weights`,
    );
  }
  const table = paramTable(config);
  const file = await openSafetensors(modelPath);
  checkTensors(table, file.entries, `${modelPath} (with ${CONFIG_FILE})`);
  return {
    config,
    table,
    metadata: file.metadata,
    file,
    async read(name: string, start?: number, count?: number) {
      const data = await file.read(name, { start, count });
      return data instanceof Float32Array ? data : Float32Array.from(data);
    },
  };
}

/** A file's size; a one-line UserError when it is missing or not a file. */
async function fileSize(path: string): Promise<number> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UserError(`${path}: no such file`);
    throw new UserError(`${path}: cannot read (${oneLine((e as Error).message)})`);
  }
  if (!st.isFile) throw new UserError(`${path}: not a file`);
  return st.size;
}

/**
 * Copies named tensors into a flat array in the table's layout, checking that every tensor of
 * the table is present with its shape and that no other tensor is (one-line errors naming the
 * tensor). `out` is a Float32Array (weights) or Float64Array (e.g. reference gradients).
 */
export function tensorsToFlat<A extends Float32Array | Float64Array>(
  table: ParamTable,
  tensors: ReadonlyMap<string, SafeTensor>,
  out: A,
  source: string,
): A {
  if (out.length !== table.total) {
    throw new Error(`tensorsToFlat: output has ${out.length} elements, table needs ${table.total}`);
  }
  checkTensors(table, tensors, source);
  for (const s of table.specs) out.set(tensors.get(s.name)!.data, s.offset);
  return out;
}

/**
 * Checks that every tensor of the table is present with its shape and that no other tensor
 * is (one-line errors naming the tensor).
 */
function checkTensors(
  table: ParamTable,
  tensors: ReadonlyMap<string, { readonly shape: readonly number[] }>,
  source: string,
): void {
  for (const s of table.specs) {
    const t = tensors.get(s.name);
    if (!t) {
      throw new UserError(
        `${source}: missing tensor '${s.name}' [${s.shape}] that the config requires`,
      );
    }
    if (t.shape.length !== s.shape.length || t.shape.some((d, i) => d !== s.shape[i])) {
      throw new UserError(
        `${source}: tensor '${s.name}' has shape [${t.shape}], the config requires [${s.shape}]`,
      );
    }
  }
  const extra = [...tensors.keys()].filter((n) => !table.has(n));
  if (extra.length > 0) {
    throw new UserError(
      `${source}: unexpected tensor '${oneLine(extra[0])}'${
        extra.length > 1 ? ` (and ${extra.length - 1} more)` : ""
      } that the config does not describe`,
    );
  }
}

/**
 * Loads a checkpoint from `path`: a checkpoint folder (config.json + model.safetensors), or a
 * run folder written by `train` (its checkpoint/, or checkpoint.old/ after a cut save).
 */
export async function openCheckpoint(path: string): Promise<Checkpoint & { dir: string }> {
  const dir = await findCheckpoint(path);
  return { ...(await loadCheckpoint(dir)), dir };
}

/** {@link openCheckpoint} without reading the weights: checked, read on demand. */
export async function openCheckpointLazy(path: string): Promise<ModelCheckpoint & { dir: string }> {
  const dir = await findCheckpoint(path);
  return Object.assign(await openModelCheckpoint(dir), { dir });
}

/** The checkpoint folder `path` names: itself, or a run folder's checkpoint/ (or .old/). */
export async function findCheckpoint(path: string): Promise<string> {
  for (const dir of [path, `${path}/checkpoint`, `${path}/checkpoint.old`]) {
    if (await isFile(`${dir}/${CONFIG_FILE}`)) {
      if (!(await isFile(`${dir}/${MODEL_FILE}`))) {
        throw new UserError(`${dir}: has ${CONFIG_FILE} but no ${MODEL_FILE}`);
      }
      return dir;
    }
  }
  let exists = false;
  try {
    exists = (await Deno.stat(path)).isDirectory;
  } catch { /* reported below */ }
  throw new UserError(
    exists
      ? `${path}: not a checkpoint (no ${CONFIG_FILE} in it, nor in ${path}/checkpoint)`
      : `${path}: no such checkpoint folder`,
  );
}
