/**
 * Fused LM head + cross-entropy over the tied embedding, chunked over the vocabulary so that
 * neither the logits nor any binding exceeds the device's storage-binding cap (see
 * kernels/xent.wgsl for the formulas). The full logits (rows, V) never exist: each chunk of Vc
 * vocabulary rows gets its logits (rows, Vc) in one scratch buffer, an online log-sum-exp per
 * row runs across the chunks, and the backward pass walks the chunks again (last chunk first,
 * reusing the logits still in scratch) to form dlogits in place and feed the two matmuls.
 *
 * E larger than one buffer: E and dE may come as row blocks, each in its own buffer
 * (src/ops/row_blocks.ts); `create` takes the blocks' row counts (`blockRows`) and each block
 * is cut into chunks of at most Vc rows, so a chunk never spans two buffers. The online
 * log-sum-exp then runs across more, shorter chunks (the same values summed in another
 * order: equal up to f32 rounding); with one block the chunks are exactly those of one tensor.
 *
 * @example
 * ```ts
 * const xent = await Xent.create(rt, { maxRows: rows, V, C });
 * const rec = rt.record();
 * // ... forward up to the final norm, output x (rows, C) ...
 * xent.recordForwardBackward(rec, { x, E, targets, scale: 1 / count, loss, dx, dE });
 * const lossValue = rec.read(loss);
 * rt.submit(rec);
 * ```
 */
import src from "../../kernels/xent.wgsl" with { type: "text" };
import {
  fmtBytes,
  GpuUnavailableError,
  type Kernel,
  Params,
  type Pipeline,
  type Recorder,
  type Runtime,
  type Tensor,
} from "../gpu/runtime.ts";
import { Add } from "./add.ts";
import { asRowBlocks, type RowBlocks } from "./row_blocks.ts";
import { Matmul } from "./matmul.ts";

export const xentKernel: Kernel = { name: "kernels/xent.wgsl", source: src };

/** How the vocabulary is cut into chunks and how much scratch that takes. */
export interface XentPlan {
  /** Vocabulary rows per chunk (Vc): V itself, or a multiple of 64 when V needs several. */
  chunk: number;
  /** Number of chunks, ceil(V / Vc); the last one may be shorter. */
  chunks: number;
  /**
   * Elements of the chunk-logits scratch, maxRows * Vc (Vc rounded up to 4: a chunk whose
   * length is not a multiple of 4 is stored with padded rows, see `create`).
   */
  logitsElements: number;
  /** All scratch the op holds: chunk logits, row state (4 per row), per-row NLL fallback. */
  scratchBytes: number;
}

/** Shared arguments of the forward and the training paths. */
export interface XentArgs {
  /** Final-norm output, (rows, C). */
  x: Tensor;
  /**
   * Tied embedding, (V, C), or its row blocks (the `blockRows` of `create`); offsets multiples
   * of 256 bytes when V needs several chunks.
   */
  E: Tensor | RowBlocks;
  /**
   * Target ids, (rows) u32; IGNORE_TARGET rows (src/util/targets.ts) take no part; ids >= V
   * give a NaN loss.
   */
  targets: Tensor;
  /** Loss = scale * sum of (weighted) NLL over non-ignored rows; 1 / count gives the mean. */
  scale: number;
  /** Receives the loss at element `lossIndex` (default 0); nothing else is written there. */
  loss: Tensor;
  lossIndex?: number;
  /** Per-row NLL, (rows), 0 on ignored rows; an internal buffer when omitted. */
  nll?: Tensor;
  /** Optional per-row loss weights, (rows) f32: loss = scale * sum_r w_r nll_r. */
  weights?: Tensor;
  /** Rows in this call (default: maxRows). */
  rows?: number;
}

/** The training path also writes the gradients. */
export interface XentTrainArgs extends XentArgs {
  /** Gradient of the loss with respect to x, (rows, C): overwritten. */
  dx: Tensor;
  /**
   * Gradient of the embedding, (V, C), blocked like E: ACCUMULATED (the embedding lookup adds
   * to it too).
   */
  dE: Tensor | RowBlocks;
}

const KINDS = ["uniform", "rw", "read", "read", "rw", "rw", "rw"] as const;
const ALIGN = 64; // chunk granularity in rows of E: Vc * C * 4 bytes is then a multiple of 256
/**
 * Longest reduction one matmul may run: lavapipe (Mesa 22.3) silently ends an invocation's loops
 * after 65535 iterations in total, so a matmul with K above that returns wrong sums. The chunk
 * (K of dx = dl E_c) stays at most this long, and dE_c += dl^T x (K = rows) runs in row blocks
 * of this size. A multiple of 64, so row-block views of the logits and of x stay 256-byte aligned.
 */
export const MAX_REDUCTION = 32768;
/** Longest chunk the one-invocation-per-row log-sum-exp takes (CPU adapters only). */
export const LSE_ROWS_MAX = 1024;

export class Xent {
  private constructor(
    readonly plan: XentPlan,
    readonly maxRows: number,
    readonly V: number,
    readonly C: number,
    private readonly mm: Matmul,
    private readonly pipes: {
      lse: Pipeline;
      /** lse_rows (one invocation per row) for chunks of at most LSE_ROWS_MAX, or null. */
      lseRows: Pipeline | null;
      finish: Pipeline;
      dlogits: Pipeline;
    },
    /** Chunk logits, (maxRows, Vc); dlogits in place during the backward pass. */
    readonly logits: Tensor,
    /** Per row: running max, running sum, target logit, lse. (maxRows, 4) */
    readonly state: Tensor,
    private readonly nllFallback: Tensor,
    private readonly ownsLogits: boolean,
    /**
     * When the last chunk's length n is not a multiple of 4: a copy of its rows of E with zero
     * rows up to n4 = n rounded up to 4, its dE before it is added into the caller's, and the
     * add. Its logits are then stored with rows of n4 (the extra columns are exactly 0), so all
     * three matmuls see widths that are multiples of 4 and take the texture path on CPU
     * adapters (258, the byte vocabulary, otherwise took the scalar kernel for the backward).
     */
    private readonly pad: { E: Tensor; dE: Tensor; add: Add } | null,
    /** Rows of each block of E (one block: [V]). */
    readonly blockRows: readonly number[],
    /** The chunks in vocabulary order: rows [r0, r0 + n) of block `block`, tokens v0.. */
    private readonly chunkList: readonly XentChunk[],
  ) {}

  /**
   * Chooses the chunk size Vc: the whole vocabulary when it fits, otherwise the largest
   * multiple of 64 with Vc * maxRows and Vc * C within the binding cap and Vc <= MAX_REDUCTION.
   * `chunk` forces a size (a multiple of 64, or >= V for one chunk), e.g. to exercise several
   * chunks in tests.
   */
  static plan(
    maxBindingBytes: number,
    maxRows: number,
    V: number,
    C: number,
    chunk?: number,
  ): XentPlan {
    for (const [k, v] of Object.entries({ maxRows, V, C })) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`xent: ${k} must be >= 1, got ${v}`);
    }
    const maxElems = Math.floor(maxBindingBytes / 4);
    const fits = (vc: number) =>
      round4(vc) * maxRows <= maxElems && round4(vc) * C <= maxElems && vc <= MAX_REDUCTION;
    let vc: number;
    if (chunk !== undefined) {
      vc = Math.min(chunk, V);
      if (!Number.isInteger(chunk) || chunk < 1 || (vc < V && vc % ALIGN !== 0)) {
        throw new RangeError(
          `xent: chunk ${chunk} must be a multiple of ${ALIGN} (or >= V ${V})`,
        );
      }
    } else if (fits(V)) {
      vc = V;
    } else {
      const most = Math.min(maxElems / maxRows, maxElems / C, MAX_REDUCTION);
      vc = Math.floor(most / ALIGN) * ALIGN;
    }
    if (vc < 1 || !fits(vc)) {
      // Name the binding that cannot fit even the smallest chunk, and what would shrink it.
      const n = Math.max(vc, ALIGN);
      const cap = `the adapter's maxStorageBufferBindingSize ${fmtBytes(maxBindingBytes)}`;
      throw new GpuUnavailableError(
        n > MAX_REDUCTION
          ? `xent: a vocabulary chunk of ${n} rows is over the ${MAX_REDUCTION}-long reduction ` +
            `limit; use a chunk of at most ${MAX_REDUCTION}`
          : n * C > maxElems
          ? `xent: a ${n} x ${C} slice of the embedding (${fmtBytes(4 * n * C)}) is over ${cap}; ` +
            `reduce hiddenSize`
          : `xent: the logits of ${maxRows} rows (batch x sequence length) for ${n} vocabulary ` +
            `entries (${fmtBytes(4 * n * maxRows)}) are over ${cap}; reduce batch or sequence ` +
            `length`,
      );
    }
    const logitsElements = maxRows * round4(vc);
    return {
      chunk: vc,
      chunks: Math.ceil(V / vc),
      logitsElements,
      scratchBytes: 4 * (logitsElements + 4 * maxRows + maxRows),
    };
  }

  /**
   * Compiles the pipelines and allocates the scratch (or uses `scratch`, at least
   * plan.logitsElements long, for the chunk logits, so that it can be shared with other ops).
   * `rows` chooses lse_rows for chunks of at most LSE_ROWS_MAX (default: on CPU adapters, where
   * it measured several times faster at the byte vocabulary's 258).
   */
  static async create(
    rt: Runtime,
    o: {
      maxRows: number;
      V: number;
      C: number;
      chunk?: number;
      scratch?: Tensor;
      mm?: Matmul;
      rows?: boolean;
      /**
       * E and dE come as row blocks of these many rows (src/ops/row_blocks.ts: every block but
       * the last a multiple of 64 rows); default one block of V.
       */
      blockRows?: readonly number[];
    },
  ): Promise<Xent> {
    const plan = Xent.plan(rt.limits.maxStorageBufferBindingSize, o.maxRows, o.V, o.C, o.chunk);
    const blockRows = o.blockRows ?? [o.V];
    const chunkList = xentChunks(plan.chunk, blockRows, o.V);
    const rows = o.rows ?? rt.profile === "cpu";
    const [mm, lse, lseRows, finish, dlogits] = await Promise.all([
      o.mm ?? Matmul.create(rt),
      rt.pipeline(xentKernel, "lse_chunk", KINDS),
      rows ? rt.pipeline(xentKernel, "lse_rows", KINDS) : null,
      rt.pipeline(xentKernel, "finish", KINDS),
      rt.pipeline(xentKernel, "dlogits", KINDS),
    ]);
    if (o.scratch && o.scratch.length < plan.logitsElements) {
      throw new RangeError(
        `xent: scratch ${o.scratch.label} has ${o.scratch.length} elements, needs ${plan.logitsElements}`,
      );
    }
    const logits = o.scratch ?? rt.tensor("xent.logits", plan.logitsElements);
    const state = rt.tensor("xent.state", 4 * o.maxRows);
    const nll = rt.tensor("xent.nll", o.maxRows);
    const pipes = { lse, lseRows, finish, dlogits };
    // Only the last chunk can have a length that is not a multiple of 4 (xentChunks).
    const last = chunkList[chunkList.length - 1].n;
    const pad = last % 4 === 0 ? null : {
      E: rt.tensor("xent.padE", round4(last) * o.C), // zero-initialised; rows past `last` stay 0
      dE: rt.tensor("xent.paddE", round4(last) * o.C),
      add: await Add.create(rt),
    };
    return new Xent(
      plan,
      o.maxRows,
      o.V,
      o.C,
      mm,
      pipes,
      logits,
      state,
      nll,
      !o.scratch,
      pad,
      blockRows,
      chunkList,
    );
  }

  /** Releases the buffers this op allocated (not a caller-supplied scratch). */
  free(rt: Runtime): void {
    if (this.ownsLogits) rt.free(this.logits);
    rt.free(this.state);
    rt.free(this.nllFallback);
    if (this.pad) { for (const t of [this.pad.E, this.pad.dE]) rt.free(t); }
  }

  /** Records the loss and per-row NLL (evaluation): V/Vc matmuls, V/Vc + 1 small dispatches. */
  recordForward(rec: Recorder, a: XentArgs): void {
    const rows = this.#check(a);
    this.#forward(rec, a, this.#blocks(a.E, "E"), rows);
  }

  /**
   * Records the loss, per-row NLL, dx (overwritten) and dE (accumulated): the forward pass,
   * then the chunks in reverse order, the last one reusing the logits left in scratch.
   */
  recordForwardBackward(rec: Recorder, a: XentTrainArgs): void {
    const rows = this.#check(a);
    const { C } = this;
    need(a.dx, rows * C, "dx");
    if (rows > MAX_REDUCTION && a.x.offset % 256 !== 0) {
      throw new RangeError(`xent: x ${a.x.label} must start at a multiple of 256 bytes`);
    }
    const E = this.#blocks(a.E, "E"), dE = this.#blocks(a.dE, "dE");
    this.#forward(rec, a, E, rows);
    const chunks = this.chunkList.length;
    for (let c = chunks - 1; c >= 0; c--) {
      const { v0, n } = this.chunkList[c];
      // The last chunk's logits are still in scratch (padded to ld columns, if so).
      const { e, ld } = this.#chunkE(rec, E, c, false);
      if (c !== chunks - 1) this.mm.forward(rec, this.logits, a.x, e, rows, ld, C);
      const bind = this.#bindings(a, rows, n, ld, v0, false);
      rec.dispatch(this.pipes.dlogits, bind, rowGrid(rec, rows));
      this.mm.backwardInput(rec, a.dx, this.logits, e, rows, ld, C, c === chunks - 1 ? 0 : 1);
      const de = this.#slice(dE, c);
      // A padded chunk's dE goes to scratch first (ld rows), then its n rows are added.
      const padded = ld !== n;
      for (let r0 = 0; r0 < rows; r0 += MAX_REDUCTION) {
        const len = Math.min(MAX_REDUCTION, rows - r0);
        const whole = len === rows;
        const dl = whole ? this.logits : this.logits.view(r0 * ld, len * ld);
        const x = whole ? a.x : a.x.view(r0 * C, len * C);
        const out = padded ? this.pad!.dE : de;
        this.mm.backwardWeight(rec, out, dl, x, len, ld, C, padded && r0 === 0 ? 0 : 1);
      }
      if (padded) this.pad!.add.record(rec, de, this.pad!.dE, n * C);
    }
  }

  #forward(rec: Recorder, a: XentArgs, E: RowBlocks, rows: number): void {
    for (let c = 0; c < this.chunkList.length; c++) {
      const { e, ld } = this.#chunkE(rec, E, c, true);
      this.mm.forward(rec, this.logits, a.x, e, rows, ld, this.C);
      const { v0, n } = this.chunkList[c];
      const bind = this.#bindings(a, rows, n, ld, v0, c === 0);
      if (this.pipes.lseRows && n <= LSE_ROWS_MAX) {
        rec.dispatch(this.pipes.lseRows, bind, rowGrid(rec, Math.ceil(rows / 64)));
      } else rec.dispatch(this.pipes.lse, bind, rowGrid(rec, rows));
    }
    rec.dispatch(this.pipes.finish, this.#bindings(a, rows, 0, 0, 0, false), [1]);
  }

  /**
   * Chunk c's rows of E for the matmuls and its logits' row stride: the slice itself and n, or
   * for a padded last chunk the zero-padded copy (filled when `fill`) and n rounded up to 4.
   */
  #chunkE(rec: Recorder, E: RowBlocks, c: number, fill: boolean): { e: Tensor; ld: number } {
    const n = this.chunkList[c].n;
    const e = this.#slice(E, c);
    if (!this.pad || c !== this.chunkList.length - 1) return { e, ld: n };
    const len = n * this.C;
    if (fill) rec.copy(e.length === len ? e : e.view(0, len), this.pad.E.view(0, len));
    return { e: this.pad.E, ld: round4(n) };
  }

  /** Chunk c's rows of E (or dE): the tensor itself when it is the only chunk, else a view. */
  #slice(blocks: RowBlocks, c: number): Tensor {
    const { block, r0, n } = this.chunkList[c];
    const t = blocks[block].tensor;
    return this.chunkList.length === 1 ? t : t.view(r0 * this.C, n * this.C);
  }

  /**
   * E or dE as row blocks, checked against the blocks this op was created for; each starts on
   * 256 bytes when the vocabulary is cut into several chunks (their views must bind).
   */
  #blocks(t: Tensor | RowBlocks, what: string): RowBlocks {
    if (!Array.isArray(t)) need(t as Tensor, this.V * this.C, what);
    const blocks = asRowBlocks(t, this.V, this.C, `xent: ${what}`);
    if (
      blocks.length !== this.blockRows.length ||
      blocks.some((b, i) => b.rows !== this.blockRows[i])
    ) {
      throw new RangeError(
        `xent: ${what} comes in blocks of [${blocks.map((b) => b.rows)}] rows, this op was ` +
          `created for [${this.blockRows}]`,
      );
    }
    if (this.chunkList.length > 1) {
      for (const b of blocks) {
        if (b.tensor.offset % 256 !== 0) {
          throw new RangeError(
            `xent: ${what} ${b.tensor.label} must start at a multiple of 256 bytes`,
          );
        }
      }
    }
    return blocks;
  }

  /** Bindings of the xent kernels for a chunk of n columns stored with row stride ld. */
  #bindings(
    a: XentArgs,
    rows: number,
    n: number,
    ld: number,
    v0: number,
    first: boolean,
  ): (Tensor | Params)[] {
    const params = new Params(9).u32(rows).u32(n).u32(v0).u32(this.V).f32(a.scale)
      .u32(a.lossIndex ?? 0).u32(a.weights ? 1 : 0).u32(first ? 1 : 0).u32(ld);
    return [
      params,
      this.logits,
      a.targets,
      a.weights ?? a.targets, // unread when unweighted; any read-only buffer fills the slot
      this.state,
      a.nll ?? this.nllFallback,
      a.loss,
    ];
  }

  #check(a: XentArgs): number {
    const rows = a.rows ?? this.maxRows;
    if (!Number.isInteger(rows) || rows < 1 || rows > this.maxRows) {
      throw new RangeError(`xent: rows ${rows} outside 1..${this.maxRows}`);
    }
    need(a.x, rows * this.C, "x");
    need(a.targets, rows, "targets");
    need(a.loss, (a.lossIndex ?? 0) + 1, "loss");
    if (a.nll) need(a.nll, rows, "nll");
    if (a.weights) need(a.weights, rows, "weights");
    if (!Number.isFinite(a.scale)) throw new RangeError(`xent: scale ${a.scale} is not finite`);
    return rows;
  }
}

/** A vocabulary chunk: rows [r0, r0 + n) of block `block` of E, which are tokens [v0, v0 + n). */
interface XentChunk {
  block: number;
  r0: number;
  v0: number;
  n: number;
}

/**
 * The chunks of E in row blocks of `blockRows`: each block cut at multiples of Vc from its
 * start. Blocks past the first start at multiples of 64 rows and Vc is a multiple of 64 when
 * it is below V, so every chunk but the last is a multiple of 4 long (only the last may need
 * the padded copy).
 */
function xentChunks(vc: number, blockRows: readonly number[], V: number): XentChunk[] {
  const out: XentChunk[] = [];
  let v0 = 0;
  for (const [block, rows] of blockRows.entries()) {
    if (!Number.isInteger(rows) || rows < 1) throw new RangeError(`xent: block of ${rows} rows`);
    if (block < blockRows.length - 1 && rows % ALIGN !== 0) {
      throw new RangeError(`xent: every row block but the last must be a multiple of ${ALIGN}`);
    }
    for (let r0 = 0; r0 < rows; r0 += vc) {
      const n = Math.min(vc, rows - r0);
      out.push({ block, r0, v0, n });
      v0 += n;
    }
  }
  if (v0 !== V) throw new RangeError(`xent: blocks of [${blockRows}] rows do not make V ${V}`);
  return out;
}

/** One workgroup per row on a 2-D grid (rows may exceed the 65535 per-dimension limit). */
function rowGrid(rec: Recorder, rows: number): [number, number] {
  const x = Math.min(rows, rec.rt.limits.maxComputeWorkgroupsPerDimension);
  return [x, Math.ceil(rows / x)];
}

function round4(n: number): number {
  return Math.ceil(n / 4) * 4;
}

function need(t: Tensor, n: number, what: string): void {
  if (t.length < n) {
    throw new RangeError(`xent: ${what} ${t.label} has ${t.length} elements, needs ${n}`);
  }
}
