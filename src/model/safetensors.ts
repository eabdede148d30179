/**
 * safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
 * length N, N bytes of JSON `{"__metadata__": {str: str}, name: {dtype, shape, data_offsets:
 * [begin, end]}}`, then the data section; offsets are relative to the data section.
 *
 * Reads F64 (to Float64Array) and F32, F16, BF16 (to Float32Array); writes F32 and F64.
 * Everything is validated before any tensor is read: header length against the file size,
 * UTF-8 and JSON, dtype, shape, offsets inside the data section, size = product(shape) *
 * dtype size, and the tensors tiling the data section exactly (no overlap, gap or trailing
 * bytes). Errors are one line naming the file and tensor; I/O errors become such errors too.
 * Writes are atomic: a temporary file in the same directory, fsync, rename, fsync directory.
 *
 * Large files stream: {@link openSafetensors} validates the header and then reads any tensor,
 * or any range of its elements, on demand; {@link writeSafetensorsStream} writes the header
 * from the shapes and then the data as it is produced. Neither holds more than the caller asks
 * for (a model's checkpoint is read and written tensor by tensor, never as one array).
 *
 * @example
 * ```ts
 * await writeSafetensors("w.safetensors", [["w", { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) }]]);
 * const { tensors } = await readSafetensors("w.safetensors");
 * tensors.get("w")!.data; // Float32Array [1, 2]
 * ```
 */
import { oneLine, UserError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/files.ts";

/** Dtypes this reader understands. */
export type SafeDType = "F64" | "F32" | "F16" | "BF16";

const DTYPE_BYTES: Record<SafeDType, number> = { F64: 8, F32: 4, F16: 2, BF16: 2 };

/** Largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;

/** A tensor as read: F64 stays f64, the other dtypes are widened to f32. */
export interface SafeTensor {
  /** Dtype as stored in the file. */
  readonly dtype: SafeDType;
  readonly shape: readonly number[];
  readonly data: Float32Array | Float64Array;
}

/** A tensor to write; `data.length` must equal the product of `shape`. */
export interface TensorToWrite {
  readonly dtype: "F32" | "F64";
  readonly shape: readonly number[];
  readonly data: Float32Array | Float64Array;
}

/** A whole file: tensors in header order, and the string metadata. */
export interface SafetensorsFile {
  readonly tensors: Map<string, SafeTensor>;
  readonly metadata: Record<string, string>;
}

/** A tensor's header entry after validation; offsets relative to the data section. */
interface Entry {
  name: string;
  dtype: SafeDType;
  shape: number[];
  begin: number;
  end: number;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function requireLittleEndian(): void {
  if (!LITTLE_ENDIAN) throw new Error("safetensors: big-endian hosts are not supported");
}

/**
 * Validates the JSON header against a data section of `dataSize` bytes and returns the
 * entries sorted by offset.
 */
function parseHeader(
  headerBytes: Uint8Array,
  dataSize: number,
  source: string,
): { entries: Entry[]; metadata: Record<string, string> } {
  const fail = (msg: string): never => {
    throw new UserError(`${source}: ${msg}`);
  };
  let text = "";
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    fail("the header is not valid UTF-8 (not a safetensors file?)");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(
      `the header is not valid JSON (${oneLine((e as Error).message)}; not a safetensors file?)`,
    );
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    fail("the header is not a JSON object");
  }
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
        fail("__metadata__ is not an object");
      }
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== "string") fail(`__metadata__ '${oneLine(k)}' is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const bad = (msg: string): never => fail(`tensor '${oneLine(name)}': ${msg}`);
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      bad("header entry is not an object");
    }
    const { dtype, shape, data_offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== "string" || !(dtype in DTYPE_BYTES)) {
      bad(`dtype ${JSON.stringify(dtype)} is not supported (expected F64, F32, F16 or BF16)`);
    }
    if (
      !Array.isArray(shape) ||
      shape.some((d) => typeof d !== "number" || !Number.isSafeInteger(d) || d < 0)
    ) {
      bad(`shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    if (
      !Array.isArray(data_offsets) || data_offsets.length !== 2 ||
      data_offsets.some((d) => typeof d !== "number" || !Number.isSafeInteger(d) || d < 0)
    ) {
      bad(`data_offsets ${JSON.stringify(data_offsets)} is not a pair of non-negative integers`);
    }
    const [begin, end] = data_offsets as number[];
    if (begin > end) bad(`data_offsets [${begin}, ${end}] are reversed`);
    if (end > dataSize) {
      bad(
        `data_offsets [${begin}, ${end}] run past the data section (${dataSize} bytes; file truncated?)`,
      );
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    const bytes = elements * DTYPE_BYTES[dtype as SafeDType];
    if (!Number.isSafeInteger(bytes) || bytes !== end - begin) {
      bad(
        `${
          end - begin
        } bytes at [${begin}, ${end}) but shape [${shape}] of ${dtype} needs ${bytes}`,
      );
    }
    entries.push({ name, dtype: dtype as SafeDType, shape: shape as number[], begin, end });
  }
  // The tensors must tile the data section exactly, as the reference implementation requires:
  // a gap or trailing bytes means the header length or an offset is wrong (e.g. a header
  // length cut into the header's padding would otherwise shift every tensor silently).
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (let i = 0; i < sorted.length; i++) {
    const e = sorted[i];
    if (e.begin < at) {
      const prev = sorted[i - 1];
      fail(
        `tensor '${oneLine(e.name)}' [${e.begin}, ${e.end}) overlaps tensor '${
          oneLine(prev.name)
        }' [${prev.begin}, ${prev.end})`,
      );
    }
    if (e.begin > at) {
      fail(
        `tensor '${
          oneLine(e.name)
        }' starts at byte ${e.begin} of the data section, leaving a gap at ${at}`,
      );
    }
    at = e.end;
  }
  if (at !== dataSize) {
    fail(
      `the tensors cover ${at} of the data section's ${dataSize} bytes (wrong header length or trailing bytes?)`,
    );
  }
  return { entries, metadata };
}

/** Reads the header length and checks it against the file size. */
function headerLength(first8: Uint8Array, fileSize: number, source: string): number {
  if (fileSize < 8) {
    throw new UserError(`${source}: ${fileSize} bytes is too short for a safetensors file`);
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(Math.min(MAX_HEADER_BYTES, fileSize - 8))) {
    throw new UserError(
      `${source}: header length ${n} exceeds the ${fileSize}-byte file${
        n > BigInt(MAX_HEADER_BYTES) ? ` or the ${MAX_HEADER_BYTES}-byte limit` : ""
      } (truncated or not a safetensors file?)`,
    );
  }
  return Number(n);
}

/** Widens stored bytes (a fresh, aligned copy) to the in-memory array. */
function decodeData(dtype: SafeDType, bytes: Uint8Array): Float32Array | Float64Array {
  requireLittleEndian();
  const buf = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? bytes.buffer
    : bytes.slice().buffer;
  switch (dtype) {
    case "F64":
      return new Float64Array(buf);
    case "F32":
      return new Float32Array(buf);
    case "BF16": {
      const src = new Uint16Array(buf), bits = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
      return new Float32Array(bits.buffer);
    }
    case "F16": {
      const src = new Uint16Array(buf), out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = halfToFloat(src[i]);
      return out;
    }
  }
}

/** IEEE binary16 bits to a number. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Decodes a whole safetensors file held in memory; `source` names it in errors. */
export function decodeSafetensors(bytes: Uint8Array, source = "safetensors"): SafetensorsFile {
  const n = headerLength(bytes.subarray(0, 8), bytes.length, source);
  const dataStart = 8 + n;
  const { entries, metadata } = parseHeader(
    bytes.subarray(8, dataStart),
    bytes.length - dataStart,
    source,
  );
  const tensors = new Map<string, SafeTensor>();
  for (const e of entries) {
    const data = decodeData(e.dtype, bytes.slice(dataStart + e.begin, dataStart + e.end));
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}

/**
 * Reads a safetensors file tensor by tensor (never the whole file at once), after validating
 * the header against the file's size.
 */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  const r = await openSafetensors(path);
  const file = await r.open();
  try {
    const tensors = new Map<string, SafeTensor>();
    for (const [name, e] of r.entries) {
      tensors.set(name, { dtype: e.dtype, shape: e.shape, data: await r.read(name, { file }) });
    }
    return { tensors, metadata: r.metadata };
  } finally {
    file.close();
  }
}

/** A tensor's header entry: dtype, shape and its bytes [begin, end) in the data section. */
export interface SafeEntry {
  readonly dtype: SafeDType;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

/** A safetensors file whose header has been read and validated; data is read on demand. */
export interface SafetensorsReader {
  readonly path: string;
  /** The tensors in header order (the file's JSON order). */
  readonly entries: ReadonlyMap<string, SafeEntry>;
  readonly metadata: Record<string, string>;
  /**
   * Elements [start, start + count) of a tensor (default all), widened like
   * {@link readSafetensors}. Opens the file for the call unless given `file` (from `open`).
   */
  read(
    name: string,
    range?: { start?: number; count?: number; file?: Deno.FsFile },
  ): Promise<Float32Array | Float64Array>;
  /** The file, opened for several `read`s; the caller closes it. */
  open(): Promise<Deno.FsFile>;
}

/**
 * Opens a safetensors file and validates its header against the file's size (every check of
 * {@link readSafetensors} but reading the data), without keeping the file open: each `read`
 * opens it again and checks that its size has not changed.
 */
export async function openSafetensors(path: string): Promise<SafetensorsReader> {
  const file = await openFile(path);
  let size: number, dataStart: number, parsed: ReturnType<typeof parseHeader>;
  try {
    const st = await file.stat();
    if (!st.isFile) throw new UserError(`${path}: not a file`);
    size = st.size;
    const first8 = new Uint8Array(8);
    if (size >= 8) await readExactAt(file, 0, first8, path);
    const n = headerLength(first8, size, path);
    const header = new Uint8Array(n);
    await readExactAt(file, 8, header, path);
    dataStart = 8 + n;
    parsed = parseHeader(header, size - dataStart, path);
  } finally {
    file.close();
  }
  const entries = new Map<string, SafeEntry>(
    parsed.entries.map((
      e,
    ) => [e.name, { dtype: e.dtype, shape: e.shape, begin: e.begin, end: e.end }]),
  );
  const open = async () => {
    const f = await openFile(path);
    const now = (await f.stat()).size;
    if (now !== size) {
      f.close();
      throw new UserError(`${path}: changed while being read (${size} bytes, now ${now})`);
    }
    return f;
  };
  return {
    path,
    entries,
    metadata: parsed.metadata,
    open,
    async read(name, range = {}) {
      const e = entries.get(name);
      if (!e) throw new Error(`${path}: no tensor '${name}'`);
      const bpe = DTYPE_BYTES[e.dtype], elements = (e.end - e.begin) / bpe;
      const start = range.start ?? 0, count = range.count ?? elements - start;
      if (
        !(Number.isSafeInteger(start) && Number.isSafeInteger(count) && start >= 0 && count >= 0 &&
          start + count <= elements)
      ) {
        throw new RangeError(
          `${path}: elements [${start}, ${start + count}) of '${name}' (${elements})`,
        );
      }
      const f = range.file ?? await open();
      try {
        const bytes = new Uint8Array(count * bpe);
        await readExactAt(
          f,
          dataStart + e.begin + start * bpe,
          bytes,
          `${path}: tensor '${oneLine(name)}'`,
        );
        return decodeData(e.dtype, bytes);
      } finally {
        if (!range.file) f.close();
      }
    },
  };
}

async function openFile(path: string): Promise<Deno.FsFile> {
  try {
    return await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UserError(`${path}: no such file`);
    throw new UserError(`${path}: cannot open (${oneLine(String((e as Error).message ?? e))})`);
  }
}

async function readExactAt(
  file: Deno.FsFile,
  pos: number,
  out: Uint8Array,
  source: string,
): Promise<void> {
  let got = 0;
  try {
    await file.seek(pos, Deno.SeekMode.Start);
    while (got < out.length) {
      const n = await file.read(out.subarray(got));
      if (n === null) break;
      got += n;
    }
  } catch (e) {
    throw new UserError(
      `${source}: read failed at byte ${pos + got} (${oneLine(String((e as Error).message ?? e))})`,
    );
  }
  if (got < out.length) {
    throw new UserError(`${source}: unexpected end of file at byte ${pos + got}`);
  }
}

/** Tensors to write, in the order they are laid out. */
export type TensorList =
  | Iterable<readonly [string, TensorToWrite]>
  | ReadonlyMap<string, TensorToWrite>;

/** The header bytes (length prefix included, padded with spaces to a multiple of 8) and the
 * data chunks in order. */
function layout(
  tensors: TensorList,
  metadata: Readonly<Record<string, string>>,
): { header: Uint8Array; chunks: Uint8Array[] } {
  const chunks: Uint8Array[] = [];
  const shapes: [string, TensorShape][] = [];
  for (const [name, t] of tensors) {
    const elements = t.shape.reduce((a, b) => a * b, 1);
    const want = t.dtype === "F64" ? Float64Array : Float32Array;
    if (!(t.data instanceof want) || t.data.length !== elements) {
      throw new TypeError(
        `tensor '${name}': ${t.data.constructor.name}(${t.data.length}) does not match ${t.dtype} [${t.shape}]`,
      );
    }
    chunks.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    shapes.push([name, t]);
  }
  return { header: headerFor(shapes, metadata).header, chunks };
}

/** A tensor to write, without its data: dtype and shape. */
export interface TensorShape {
  readonly dtype: "F32" | "F64";
  readonly shape: readonly number[];
}

/**
 * The header bytes of a file holding `tensors` back to back in this order (length prefix
 * included, the JSON padded with spaces to a multiple of 8), and the data section's size.
 */
function headerFor(
  tensors: Iterable<readonly [string, TensorShape]>,
  metadata: Readonly<Record<string, string>>,
): { header: Uint8Array; dataBytes: number } {
  requireLittleEndian();
  const json: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new TypeError(`metadata '${k}' must be a string`);
    }
    json.__metadata__ = metadata;
  }
  let at = 0;
  for (const [name, t] of tensors) {
    if (name === "__metadata__" || name in json) {
      throw new TypeError(`tensor name '${name}' is reserved or repeated`);
    }
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    json[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [at, at + bytes] };
    at += bytes;
  }
  let text = JSON.stringify(json);
  const raw = new TextEncoder().encode(text);
  text += " ".repeat((8 - (raw.length % 8)) % 8);
  const body = new TextEncoder().encode(text);
  const header = new Uint8Array(8 + body.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(body.length), true);
  header.set(body, 8);
  return { header, dataBytes: at };
}

/** Encodes tensors and metadata as one safetensors byte array (small files and tests). */
export function encodeSafetensors(
  tensors: TensorList,
  metadata: Readonly<Record<string, string>> = {},
): Uint8Array {
  const { header, chunks } = layout(tensors, metadata);
  const out = new Uint8Array(header.length + chunks.reduce((a, c) => a + c.length, 0));
  out.set(header, 0);
  let at = header.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Writes a safetensors file atomically, streaming each tensor's bytes (no full copy). */
export async function writeSafetensors(
  path: string,
  tensors: TensorList,
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  const { header, chunks } = layout(tensors, metadata);
  await writeFileAtomic(path, [header, ...chunks]);
}

/**
 * Writes a safetensors file atomically from the tensors' shapes and their data as a stream:
 * `data` yields the bytes of every tensor, in the order of `tensors`, in parts of any size
 * (e.g. one part per piece read back from the GPU). The file is the one
 * {@link writeSafetensors} writes for the same values; when `data` yields more or fewer bytes
 * than the shapes need, nothing is written (the temporary file is removed) and it throws.
 */
export async function writeSafetensorsStream(
  path: string,
  tensors: Iterable<readonly [string, TensorShape]>,
  data: AsyncIterable<Uint8Array>,
  metadata: Readonly<Record<string, string>> = {},
): Promise<void> {
  const { header, dataBytes } = headerFor(tensors, metadata);
  async function* all(): AsyncGenerator<Uint8Array> {
    yield header;
    let n = 0;
    for await (const part of data) {
      n += part.length;
      if (n > dataBytes) break;
      yield part;
    }
    if (n !== dataBytes) {
      throw new Error(
        `${path}: the tensors' data is ${n > dataBytes ? "over" : n} bytes, ` +
          `the header says ${dataBytes}`,
      );
    }
  }
  await writeFileAtomic(path, all());
}
