/**
 * A flat array in the parameter table's layout (the parameters, their gradients, an AdamW
 * moment) held on the GPU as the pages of a {@link PageLayout}: one buffer per page, none over
 * the adapter's maxBufferSize. Because a page is a window of the flat layout, element i of the
 * flat array is element i - page.start of its page, and the four arrays of a model, paged
 * alike, put each optimizer slot at the same (page, offset).
 *
 * Tensors are reached as views into their page (`view`), or, for a tensor larger than a page
 * (the tied embedding of a large vocabulary), as row blocks (`rowBlocks`) that the embedding,
 * LM head and optimizer ops take. Host transfers go by flat ranges (`write`, `read`,
 * {@link readRanges}), split at page boundaries, so a checkpoint can stream tensor by tensor.
 *
 * @example
 * ```ts
 * const layout = pageLayout(paramTable(cfg), rt.limits.maxBufferSize);
 * const params = ParamBuffers.create(rt, layout, "params");
 * params.write(rt, initParams(layout.table, cfg, 1)); // flat, table layout
 * const wq = params.view("model.layers.0.self_attn.q_proj.weight", "p");
 * const E = params.rowBlocks("model.embed_tokens.weight", "p"); // [{ tensor, row0, rows }]
 * ```
 */
import {
  fmtBytes,
  GpuUnavailableError,
  type Recorder,
  type Runtime,
  type Tensor,
} from "../gpu/runtime.ts";
import type { RowBlocks } from "../ops/row_blocks.ts";
import type { PageLayout } from "./params.ts";

/** Most bytes one submit of {@link readRanges} reads back (two such batches are in flight). */
export const STREAM_BYTES = 64 * 2 ** 20;

export class ParamBuffers {
  private constructor(
    readonly layout: PageLayout,
    /** One tensor per page, exactly as long as the page. */
    readonly pages: readonly Tensor[],
  ) {}

  /** Allocates the pages (zeroed); a single page is labelled `label` itself. */
  static create(rt: Runtime, layout: PageLayout, label: string): ParamBuffers {
    const n = layout.pages.length;
    return new ParamBuffers(
      layout,
      layout.pages.map((p, i) => rt.tensor(n === 1 ? label : `${label}.page${i}`, p.length)),
    );
  }

  /** Length of the flat array (the table's total). */
  get total(): number {
    return this.layout.table.total;
  }

  /**
   * The tensor `name` as one view labelled `${tag}:${name}`; a tensor split across pages has
   * no single view (an error naming it: take its `rowBlocks`).
   */
  view(name: string, tag: string): Tensor {
    const b = this.layout.blocks(name);
    if (b.length !== 1) {
      throw new GpuUnavailableError(
        `${name} spans ${b.length} buffers (it is over maxBufferSize ${
          fmtBytes(4 * this.layout.pageElements)
        }) and has no single view; reduce the model's size`,
      );
    }
    return this.pages[b[0].page].view(b[0].offset, b[0].size, `${tag}:${name}`);
  }

  /** The tensor `name` as row blocks of its first axis, each a view into its page. */
  rowBlocks(name: string, tag: string): RowBlocks {
    const list = this.layout.blocks(name);
    return list.map((b) => ({
      tensor: this.pages[b.page].view(
        b.offset,
        b.size,
        list.length === 1 ? `${tag}:${name}` : `${tag}:${name}[${b.row0}:${b.row0 + b.rows}]`,
      ),
      row0: b.row0,
      rows: b.rows,
    }));
  }

  /** Flat range [start, start + length) as views of the pages it crosses, in order. */
  pieces(start: number, length: number): Tensor[] {
    if (!(start >= 0 && length >= 0 && start + length <= this.total)) {
      throw new RangeError(`range [${start}, ${start + length}) outside 0..${this.total}`);
    }
    const out: Tensor[] = [];
    const pages = this.layout.pages;
    for (let i = 0; i < pages.length && length > 0; i++) {
      const p = pages[i];
      if (start >= p.start + p.length) continue;
      const n = Math.min(length, p.start + p.length - start);
      const t = this.pages[i];
      out.push(start === p.start && n === p.length ? t : t.view(start - p.start, n));
      start += n;
      length -= n;
    }
    return out;
  }

  /** Records a fill of every page with zeros. */
  clear(rec: Recorder): void {
    for (const p of this.pages) rec.clear(p);
  }

  /** Uploads `data` as flat elements [at, at + data.length) (queue-ordered, no wait). */
  write(rt: Runtime, data: Float32Array, at = 0): void {
    let i = 0;
    for (const t of this.pieces(at, data.length)) {
      rt.write(t, data.subarray(i, i + t.length));
      i += t.length;
    }
  }

  /** Records a read of flat elements [start, start + length), by default all of them. */
  read(rec: Recorder, start = 0, length = this.total - start): Promise<Float32Array> {
    const parts = this.pieces(start, length).map((t) => rec.read(t));
    if (parts.length === 1) return parts[0];
    return Promise.all(parts).then((xs) => {
      const out = new Float32Array(length);
      let at = 0;
      for (const x of xs) {
        out.set(x, at);
        at += x.length;
      }
      return out;
    });
  }

  /** Releases every page. */
  free(rt: Runtime): void {
    for (const p of this.pages) rt.free(p);
  }
}

/**
 * Reads flat ranges of `bufs` in order and yields their values, a range larger than
 * `budgetBytes` in several consecutive parts: at most `budgetBytes` per submit, and the next
 * batch in flight while the caller consumes one, so host memory stays near 2 x budgetBytes
 * whatever the model's size. Each yielded array is fresh (the caller may keep it).
 */
export async function* readRanges(
  rt: Runtime,
  bufs: ParamBuffers,
  ranges: Iterable<{ start: number; length: number }>,
  budgetBytes = STREAM_BYTES,
): AsyncGenerator<Float32Array> {
  const budget = Math.max(64, Math.floor(budgetBytes / 4 / 64) * 64);
  // Parts of at most `budget` elements, grouped into batches of at most `budget` elements.
  const batches: { start: number; length: number }[][] = [[]];
  let inBatch = 0;
  for (const r of ranges) {
    for (let s = r.start; s < r.start + r.length; s += budget) {
      const n = Math.min(budget, r.start + r.length - s);
      if (inBatch + n > budget && inBatch > 0) {
        batches.push([]);
        inBatch = 0;
      }
      batches[batches.length - 1].push({ start: s, length: n });
      inBatch += n;
    }
  }
  const submit = (batch: { start: number; length: number }[]) => {
    const rec = rt.record("stream");
    const reads = batch.map((p) => bufs.read(rec, p.start, p.length));
    rt.submit(rec);
    return reads;
  };
  let next = submit(batches[0]);
  for (let b = 0; b < batches.length; b++) {
    const current = next;
    if (b + 1 < batches.length) next = submit(batches[b + 1]);
    for (const p of current) yield await p;
  }
}

/**
 * Uploads consecutive parts, each `data` at flat element `start`, and lets the queue catch up
 * after every `budgetBytes` (a submit and a wait), so that the uploads staged by the driver
 * stay bounded however large the model is.
 */
export async function writeRanges(
  rt: Runtime,
  bufs: ParamBuffers,
  parts: AsyncIterable<{ start: number; data: Float32Array }>,
  budgetBytes = STREAM_BYTES,
): Promise<void> {
  let staged = 0;
  for await (const { start, data } of parts) {
    bufs.write(rt, data, start);
    staged += data.byteLength;
    if (staged >= budgetBytes) {
      rt.submit(rt.record("upload"));
      await rt.sync();
      staged = 0;
    }
  }
}
