/**
 * Token shards: the files `gen` writes and the trainer reads (format in docs/data.md).
 *
 * A split ("train" or "val") is a list of shard files plus manifest.json. Each shard is a
 * 64-byte header followed by whole sequences of `seqLen` tokens, little-endian, 2 or 4 bytes
 * each:
 *
 *   offset  size  field
 *   0       8     magic "INFSHARD"
 *   8       4     u32 format version (1)
 *   12      4     u32 header size in bytes (64)
 *   16      4     u32 token width in bytes (2: uint16, 4: uint32)
 *   20      4     u32 vocabulary size (every token id is smaller)
 *   24      4     u32 sequence length (tokens per sequence)
 *   28      4     u32 reserved (0)
 *   32      8     u64 token count (a multiple of the sequence length)
 *   40      24    reserved (0)
 *   64      ...   tokens
 *
 * @example
 * ```ts
 * const train = await ShardReader.open("train_datasets", "train");
 * const i = rng.int(train.numSequences);
 * const tokens = train.sequence(i); // Uint32Array(train.seqLen)
 * train.close();
 * ```
 */
import { UserError } from "../util/errors.ts";

export const SHARD_MAGIC = "INFSHARD";
export const SHARD_VERSION = 1;
export const HEADER_BYTES = 64;
export const MANIFEST_FILE = "manifest.json";
export const MANIFEST_FORMAT = "infini-token-shards";
export const MANIFEST_VERSION = 1;

export type Split = "train" | "val";
export const SPLITS: readonly Split[] = ["train", "val"];

/** A shard header's fields. */
export interface ShardHeader {
  version: number;
  tokenWidth: 2 | 4;
  vocabSize: number;
  seqLen: number;
  tokenCount: number;
}

/** What manifest.json holds. */
export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  /** The program and version that wrote it ("infini 0.1.0"). */
  program: string;
  tokenizer: { name: string; hash: string; vocabSize: number; eosId: number };
  vocabSize: number;
  tokenWidth: 2 | 4;
  seqLen: number;
  seed: number;
  valFraction: number;
  textField: string;
  /** --limit, when one was given. */
  limit: number | null;
  splits: Record<Split, SplitInfo>;
  sources: SourceInfo[];
  skipped: SkipInfo;
}

export interface SplitInfo {
  documents: number;
  /** Tokens in the shards: sequences x seqLen. */
  tokens: number;
  sequences: number;
  /** Tokens at the end of the split that did not fill a last sequence and were dropped. */
  droppedTokens: number;
  shards: { file: string; sequences: number; bytes: number }[];
}

export interface SourceInfo {
  path: string;
  format: string;
  bytes: number;
  documents: number;
  skipped: number;
  /** Set when --skip-bad skipped the rest of the file after a file-level error. */
  error?: string;
}

export interface SkipInfo {
  /** Records skipped (with --skip-bad), by reason. */
  records: number;
  byReason: Record<string, number>;
  /** Files whose rest was skipped after a file-level error. */
  files: number;
  /** The first few messages, as they were printed. */
  examples: string[];
}

/** Token width for a vocabulary: uint16 while every id fits. */
export function tokenWidthFor(vocabSize: number): 2 | 4 {
  return vocabSize <= 65536 ? 2 : 4;
}

/** The shard file name for a split and index: train_00000.bin. */
export function shardName(split: Split, index: number): string {
  return `${split}_${String(index).padStart(5, "0")}.bin`;
}

/** The 64-byte header. */
export function encodeHeader(h: Omit<ShardHeader, "version">): Uint8Array {
  const b = new Uint8Array(HEADER_BYTES);
  b.set(new TextEncoder().encode(SHARD_MAGIC), 0);
  const v = new DataView(b.buffer);
  v.setUint32(8, SHARD_VERSION, true);
  v.setUint32(12, HEADER_BYTES, true);
  v.setUint32(16, h.tokenWidth, true);
  v.setUint32(20, h.vocabSize, true);
  v.setUint32(24, h.seqLen, true);
  v.setBigUint64(32, BigInt(h.tokenCount), true);
  return b;
}

/** Parses and checks a header; errors name the file and say what is wrong. */
export function decodeHeader(b: Uint8Array, file: string): ShardHeader {
  if (b.length < HEADER_BYTES) {
    throw new UserError(`${file}: too short for a shard header (${b.length} bytes, need 64)`);
  }
  const magic = new TextDecoder().decode(b.subarray(0, 8));
  if (magic !== SHARD_MAGIC) {
    throw new UserError(`${file}: not a token shard (magic ${JSON.stringify(magic)})`);
  }
  const v = new DataView(b.buffer, b.byteOffset, HEADER_BYTES);
  const version = v.getUint32(8, true);
  if (version !== SHARD_VERSION) {
    throw new UserError(
      `${file}: shard format version ${version}, this program reads ${SHARD_VERSION}; run gen again`,
    );
  }
  const headerBytes = v.getUint32(12, true);
  const tokenWidth = v.getUint32(16, true);
  const vocabSize = v.getUint32(20, true);
  const seqLen = v.getUint32(24, true);
  const tokenCount = Number(v.getBigUint64(32, true));
  if (headerBytes !== HEADER_BYTES) {
    throw new UserError(`${file}: header size ${headerBytes}, not 64`);
  }
  if (tokenWidth !== 2 && tokenWidth !== 4) {
    throw new UserError(`${file}: token width ${tokenWidth} (must be 2 or 4)`);
  }
  if (vocabSize < 1 || (tokenWidth === 2 && vocabSize > 65536)) {
    throw new UserError(
      `${file}: vocabulary size ${vocabSize} does not fit ${tokenWidth}-byte tokens`,
    );
  }
  if (seqLen < 1) throw new UserError(`${file}: sequence length 0`);
  if (tokenCount % seqLen !== 0) {
    throw new UserError(
      `${file}: ${tokenCount} tokens is not a whole number of ${seqLen}-token sequences`,
    );
  }
  return { version, tokenWidth, vocabSize, seqLen, tokenCount };
}

/** Reads and checks `dir`/manifest.json. */
export async function readManifest(dir: string): Promise<Manifest> {
  const path = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UserError(
        `${path}: not found; '${dir}' holds no complete token shards (run 'infini gen')`,
      );
    }
    throw new UserError(`${path}: cannot read (${firstLine(e)})`);
  }
  let m: Manifest;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path}: not valid JSON (${firstLine(e)})`);
  }
  const bad = (what: string): never => {
    throw new UserError(`${path}: ${what}`);
  };
  if (typeof m !== "object" || m === null || m.format !== MANIFEST_FORMAT) {
    bad(`not a token-shard manifest (format is not "${MANIFEST_FORMAT}")`);
  }
  if (m.version !== MANIFEST_VERSION) {
    bad(`manifest version ${m.version}, this program reads ${MANIFEST_VERSION}; run gen again`);
  }
  const posInt = (v: unknown) => Number.isSafeInteger(v) && (v as number) > 0;
  const natInt = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  if (!posInt(m.seqLen)) bad("'seqLen' is not a positive integer");
  if (!posInt(m.vocabSize)) bad("'vocabSize' is not a positive integer");
  if (m.tokenWidth !== 2 && m.tokenWidth !== 4) bad("'tokenWidth' is not 2 or 4");
  if (typeof m.tokenizer !== "object" || typeof m.tokenizer?.hash !== "string") {
    bad("'tokenizer' is missing its name and hash");
  }
  for (const split of SPLITS) {
    const s = m.splits?.[split];
    if (typeof s !== "object" || !Array.isArray(s?.shards)) bad(`'splits.${split}' is missing`);
    if (!natInt(s.sequences)) bad(`'splits.${split}.sequences' is not an integer`);
    let n = 0;
    for (const [i, sh] of s.shards.entries()) {
      if (typeof sh?.file !== "string" || !/^[\w.-]+$/.test(sh.file) || !natInt(sh.sequences)) {
        bad(`'splits.${split}.shards[${i}]' needs a plain file name and a sequence count`);
      }
      n += sh.sequences;
    }
    if (n !== s.sequences) {
      bad(`'splits.${split}': shard sequences add up to ${n}, not ${s.sequences}`);
    }
  }
  return m;
}

/**
 * Random access to the sequences of one split. Opening checks every shard's header and size
 * against the manifest; `sequence(i)` reads one sequence from disk (nothing is held in
 * memory but one read buffer) and checks its tokens against the vocabulary.
 */
export class ShardReader {
  readonly numSequences: number;
  readonly seqLen: number;
  readonly vocabSize: number;
  readonly tokenWidth: 2 | 4;
  #files: Deno.FsFile[];
  #names: string[];
  /** starts[k]: index of the first sequence of shard k; starts[last] = numSequences. */
  #starts: number[];
  #buf: Uint8Array;

  private constructor(
    readonly manifest: Manifest,
    readonly split: Split,
    files: Deno.FsFile[],
    names: string[],
    starts: number[],
  ) {
    this.seqLen = manifest.seqLen;
    this.vocabSize = manifest.vocabSize;
    this.tokenWidth = manifest.tokenWidth;
    this.numSequences = starts[starts.length - 1];
    this.#files = files;
    this.#names = names;
    this.#starts = starts;
    this.#buf = new Uint8Array(this.seqLen * this.tokenWidth);
  }

  /** Opens `dir`'s split, validating the manifest and every shard's header and size. */
  static async open(dir: string, split: Split): Promise<ShardReader> {
    const m = await readManifest(dir);
    const files: Deno.FsFile[] = [];
    const names: string[] = [];
    const starts = [0];
    try {
      for (const sh of m.splits[split].shards) {
        const path = join(dir, sh.file);
        let f: Deno.FsFile;
        try {
          f = await Deno.open(path);
        } catch (e) {
          throw new UserError(`${path}: cannot open (${firstLine(e)}); run gen again`);
        }
        files.push(f);
        names.push(path);
        const head = new Uint8Array(HEADER_BYTES);
        const n = await readFull(f, head);
        const h = decodeHeader(head.subarray(0, n), path);
        const want = { tokenWidth: m.tokenWidth, vocabSize: m.vocabSize, seqLen: m.seqLen };
        for (const [k, v] of Object.entries(want)) {
          const got = h[k as keyof typeof want];
          if (got !== v) {
            throw new UserError(`${path}: ${k} ${got} in the header, ${v} in the manifest`);
          }
        }
        if (h.tokenCount !== sh.sequences * m.seqLen) {
          throw new UserError(
            `${path}: ${h.tokenCount} tokens in the header, the manifest says ${sh.sequences} sequences of ${m.seqLen}`,
          );
        }
        const size = (await f.stat()).size;
        const expect = HEADER_BYTES + h.tokenCount * h.tokenWidth;
        if (size !== expect) {
          throw new UserError(
            `${path}: ${size} bytes, expected ${expect} (64-byte header + ${h.tokenCount} tokens x ${h.tokenWidth}); the file is truncated or damaged`,
          );
        }
        starts.push(starts[starts.length - 1] + sh.sequences);
      }
    } catch (e) {
      for (const f of files) f.close();
      throw e;
    }
    return new ShardReader(m, split, files, names, starts);
  }

  /** Sequence i (0 <= i < numSequences) as a fresh Uint32Array of seqLen tokens. */
  sequence(i: number): Uint32Array {
    const out = new Uint32Array(this.seqLen);
    this.readInto(i, out);
    return out;
  }

  /** Sequences at `indices`, one after another: (B, T) row-major, B = indices.length. */
  batch(indices: ArrayLike<number>): Uint32Array {
    const out = new Uint32Array(indices.length * this.seqLen);
    for (let b = 0; b < indices.length; b++) {
      this.readInto(indices[b], out.subarray(b * this.seqLen, (b + 1) * this.seqLen));
    }
    return out;
  }

  /** Reads sequence i into `out` (length seqLen). */
  readInto(i: number, out: Uint32Array): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.numSequences) {
      throw new RangeError(`sequence ${i} is outside 0..${this.numSequences - 1} (${this.split})`);
    }
    let lo = 0;
    let hi = this.#starts.length - 2;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#starts[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    const f = this.#files[lo];
    const local = i - this.#starts[lo];
    f.seekSync(HEADER_BYTES + local * this.#buf.length, Deno.SeekMode.Start);
    let off = 0;
    while (off < this.#buf.length) {
      const n = f.readSync(this.#buf.subarray(off));
      if (n === null) {
        throw new UserError(`${this.#names[lo]}: ends inside sequence ${local}; run gen again`);
      }
      off += n;
    }
    const src = this.tokenWidth === 2
      ? new Uint16Array(this.#buf.buffer, 0, this.seqLen)
      : new Uint32Array(this.#buf.buffer, 0, this.seqLen);
    let max = 0;
    for (let t = 0; t < this.seqLen; t++) {
      const v = src[t];
      out[t] = v;
      if (v > max) max = v;
    }
    if (max >= this.vocabSize) {
      throw new UserError(
        `${
          this.#names[lo]
        }: sequence ${local} holds token ${max}, not below the vocabulary size ${this.vocabSize}; the shard is damaged (run gen again)`,
      );
    }
  }

  close(): void {
    for (const f of this.#files) f.close();
    this.#files = [];
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

async function readFull(f: Deno.FsFile, buf: Uint8Array): Promise<number> {
  let off = 0;
  while (off < buf.length) {
    const n = await f.read(buf.subarray(off));
    if (n === null) break;
    off += n;
  }
  return off;
}

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}
