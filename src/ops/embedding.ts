/**
 * Token embedding scaled by sqrt(C) (Gemma), forward gather and deterministic backward scatter
 * (see kernels/embedding.wgsl for the formula).
 *
 * Repeated tokens: the host, which holds every batch's tokens when it uploads them, builds a
 * {@link TokenIndex} with {@link Embedding.buildIndex} and uploads its `data` (u32, length
 * {@link Embedding.indexLength}) next to the tokens. Both passes launch one workgroup per
 * distinct token; the backward sums that token's rows in ascending row order, so dE is the same
 * bit for bit on every run, with no float atomics.
 *
 * Large vocabularies: E may exceed the 128 MiB storage-binding cap (V 151936 x C 2048 f32 is
 * 1.24 GB), so both passes bind E in vocabulary chunks of at most `maxChunkBytes` (views whose
 * byte offsets are multiples of 256), one dispatch per chunk that holds a token of the batch.
 * E (and dE) may also exceed one buffer: then it comes as row blocks, each in its own buffer
 * (src/ops/row_blocks.ts), and each block is cut into such chunks; a chunk never spans two
 * blocks. A single tensor is one block, chunked exactly as before.
 *
 * @example
 * ```ts
 * const emb = await Embedding.create(rt);
 * const host = Embedding.buildIndex(tokens);          // tokens: Uint32Array (rows)
 * rt.write(indexTensor, host.data);                   // indexTensor: u32 (3 rows + 1)
 * emb.recordForward(rec, { x, weight, index: indexTensor, host, V, C });
 * emb.recordBackward(rec, { dWeight, dx, index: indexTensor, host, V, C }); // dE +=
 * ```
 */
import src from "../../kernels/embedding.wgsl" with { type: "text" };
import {
  type Kernel,
  Params,
  type Pipeline,
  type Recorder,
  type Runtime,
  type Tensor,
} from "../gpu/runtime.ts";
import { asRowBlocks, type RowBlocks, rowChunks } from "./row_blocks.ts";

export const embeddingKernel: Kernel = { name: "kernels/embedding.wgsl", source: src };

/** A batch's tokens grouped by value, built on the host (see the kernel's header for layout). */
export interface TokenIndex {
  /** Tokens in the batch (B*T). */
  readonly rows: number;
  /** What to upload: u32, length 3 * rows + 1. */
  readonly data: Uint32Array;
  /** The distinct tokens, ascending (a view of `data`); used on the host to plan chunks. */
  readonly distinct: Uint32Array;
}

export interface EmbeddingOptions {
  /** Largest E chunk bound at once, in bytes; defaults to maxStorageBufferBindingSize. */
  maxChunkBytes?: number;
  /**
   * Most occurrences of one token a workgroup handles per dispatch; a token seen more often
   * takes several dispatches (the backward adds them up in a fixed order). lavapipe silently
   * stops a shader after 65535 loop iterations per invocation, so the default keeps the loops
   * below that.
   */
  maxRun?: number;
}

export interface EmbeddingForwardArgs {
  /** Output (rows, C). */
  x: Tensor;
  /** E (V, C), or its row blocks; byte offsets must be multiples of 256. */
  weight: Tensor | RowBlocks;
  /** The uploaded TokenIndex.data, u32 (3 rows + 1). */
  index: Tensor;
  /** The same TokenIndex on the host. */
  host: TokenIndex;
  V: number;
  C: number;
}

export interface EmbeddingBackwardArgs {
  /**
   * dE (V, C) or its row blocks, accumulated into (the tied LM head adds to it too); offsets
   * multiples of 256.
   */
  dWeight: Tensor | RowBlocks;
  /** Gradient of the embedding output (rows, C). */
  dx: Tensor;
  index: Tensor;
  host: TokenIndex;
  V: number;
  C: number;
}

const MAX_GROUPS = 65535;

export class Embedding {
  private constructor(
    private readonly fwd: Pipeline,
    private readonly bwd: Pipeline,
    private readonly maxChunkBytes: number,
    private readonly maxRun: number | undefined,
  ) {}

  static async create(rt: Runtime, opts: EmbeddingOptions = {}): Promise<Embedding> {
    const kinds = ["uniform", "read", "read", "rw"] as const;
    const [fwd, bwd] = await Promise.all([
      rt.pipeline(embeddingKernel, "forward", kinds),
      rt.pipeline(embeddingKernel, "backward", kinds),
    ]);
    const cap = rt.limits.maxStorageBufferBindingSize;
    return new Embedding(fwd, bwd, Math.min(cap, opts.maxChunkBytes ?? cap), opts.maxRun);
  }

  /** u32 elements of an uploaded index for `rows` tokens. */
  static indexLength(rows: number): number {
    return 3 * rows + 1;
  }

  /** Groups a batch's tokens (rows) by value: sorted by (token, row), see {@link TokenIndex}. */
  static buildIndex(tokens: ArrayLike<number>): TokenIndex {
    const rows = tokens.length;
    if (rows >= 2 ** 21) throw new RangeError(`Embedding index: ${rows} rows is too many`);
    // token * 2^21 + row < 2^53: exact in f64, and a numeric sort orders by (token, row).
    const keys = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      const t = tokens[r];
      if (!Number.isInteger(t) || t < 0 || t > 0xffffffff) {
        throw new RangeError(`Embedding index: token ${t} at row ${r} is not a u32`);
      }
      keys[r] = t * 2 ** 21 + r;
    }
    keys.sort();
    const data = new Uint32Array(3 * rows + 1);
    let nd = 0;
    for (let j = 0; j < rows; j++) {
      const t = Math.floor(keys[j] / 2 ** 21);
      if (nd === 0 || data[nd - 1] !== t) {
        data[nd] = t;
        data[rows + nd] = j;
        nd++;
      }
      data[2 * rows + 1 + j] = keys[j] - t * 2 ** 21;
    }
    data[rows + nd] = rows;
    return { rows, data, distinct: data.subarray(0, nd) };
  }

  /** The vocabulary chunks [v0, v0 + count) bound one at a time for an E of (V, C). */
  chunks(V: number, C: number): { v0: number; count: number }[] {
    const per = this.#perChunk(V, C);
    const out = [];
    for (let v0 = 0; v0 < V; v0 += per) out.push({ v0, count: Math.min(per, V - v0) });
    return out;
  }

  /** Rows of E per chunk: all V when they fit one chunk. */
  #perChunk(V: number, C: number): number {
    const rowBytes = C * 4;
    if (V * rowBytes <= this.maxChunkBytes) return V;
    // Chunk starts v0 * C * 4 bytes in must be multiples of 256: v0 a multiple of 64 / gcd(C, 64).
    const align = 64 / gcd(C, 64);
    const per = Math.floor(Math.floor(this.maxChunkBytes / rowBytes) / align) * align;
    if (per === 0) {
      throw new RangeError(
        `Embedding: one aligned chunk of ${align} rows of C ${C} exceeds ${this.maxChunkBytes} bytes`,
      );
    }
    return per;
  }

  /** Records x (rows, C) = sqrt(C) * E[token, :]: one dispatch per chunk holding a token. */
  recordForward(rec: Recorder, a: EmbeddingForwardArgs): void {
    const table = this.#check(a.weight, a.x, a.index, a.host, a.V, a.C, "forward");
    this.#dispatchChunks(rec, true, table, a.x, a.index, a.host, a.V, a.C);
  }

  /** Records dE (V, C) += sqrt(C) * sum of dx rows per token, deterministic. */
  recordBackward(rec: Recorder, a: EmbeddingBackwardArgs): void {
    const table = this.#check(a.dWeight, a.dx, a.index, a.host, a.V, a.C, "backward");
    this.#dispatchChunks(rec, false, table, a.dx, a.index, a.host, a.V, a.C);
  }

  #dispatchChunks(
    rec: Recorder,
    forward: boolean,
    table: RowBlocks,
    rowsTensor: Tensor,
    index: Tensor,
    host: TokenIndex,
    V: number,
    C: number,
  ): void {
    const scale = Math.sqrt(C);
    const ds = host.distinct, rows = host.rows;
    // The cap counts nested loop entries too: measured, a run of ~21.8k occurrences (3 x 21.8k
    // = 65.5k) is where the forward stopped; 16384 per dispatch x ceil(C / 64) stays below.
    const R = this.maxRun ?? Math.floor(16384 / Math.ceil(C / 64));
    for (const { tensor, row0: v0, rows: count } of rowChunks(table, C, this.#perChunk(V, C))) {
      const d0 = lowerBound(ds, v0), d1 = lowerBound(ds, v0 + count);
      const n = d1 - d0;
      if (n === 0) continue;
      let longest = 0;
      for (let d = d0; d < d1; d++) {
        longest = Math.max(longest, host.data[rows + d + 1] - host.data[rows + d]);
      }
      const gx = Math.min(n, MAX_GROUPS), gy = Math.ceil(n / gx);
      const chunk = tensor; // (count, C), 256-byte aligned
      for (let piece = 0; piece * R < longest; piece++) {
        const params = new Params(9).u32(rows).u32(C).u32(v0).u32(d0).u32(n).u32(gx)
          .f32(scale).u32(piece * R).u32(R);
        if (forward) rec.dispatch(this.fwd, [params, index, chunk, rowsTensor], [gx, gy]);
        else rec.dispatch(this.bwd, [params, index, rowsTensor, chunk], [gx, gy]);
      }
    }
  }

  #check(
    weight: Tensor | RowBlocks,
    rowsTensor: Tensor,
    index: Tensor,
    host: TokenIndex,
    V: number,
    C: number,
    what: string,
  ): RowBlocks {
    const rows = host.rows;
    const table = asRowBlocks(weight, V, C, `Embedding ${what}`);
    for (const { tensor } of table) {
      if (tensor.offset % 256 !== 0) {
        throw new RangeError(
          `Embedding ${what}: ${tensor.label} must start on a 256-byte boundary`,
        );
      }
    }
    if (rowsTensor.length < rows * C) {
      throw new RangeError(
        `Embedding ${what}: ${rowsTensor.label} has ${rowsTensor.length} < rows*C ${rows * C}`,
      );
    }
    if (index.length < Embedding.indexLength(rows)) {
      throw new RangeError(
        `Embedding ${what}: index ${index.label} has ${index.length} < ${
          Embedding.indexLength(rows)
        }`,
      );
    }
    const nd = host.distinct.length;
    if (nd > 0 && host.distinct[nd - 1] >= V) {
      throw new RangeError(`Embedding ${what}: token ${host.distinct[nd - 1]} >= vocabulary ${V}`);
    }
    return table;
  }
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** First i with xs[i] >= v (xs ascending). */
function lowerBound(xs: Uint32Array, v: number): number {
  let lo = 0, hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
