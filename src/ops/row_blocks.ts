/**
 * A matrix too large for one GPU buffer, held as blocks of whole rows, each block in its own
 * buffer: the tied embedding E (V, C) of a large vocabulary when the adapter's maxBufferSize is
 * smaller than V * C * 4 bytes (src/model/params.ts's page layout decides the blocks). The ops
 * that touch such a matrix (embedding gather and scatter, the LM head and its backward, the
 * logits of one row) take `Tensor | RowBlocks`; a plain tensor is one block.
 *
 * Contract of a {@link RowBlocks} for a (rows, rowLen) matrix:
 *   - the blocks are in row order and tile [0, rows): block 0 starts at row 0 and each next
 *     block starts where the previous one ends;
 *   - each block's tensor holds at least `rows * rowLen` elements (its rows, row-major);
 *   - every block but the first starts at a row that is a multiple of {@link ROW_BLOCK_ALIGN}
 *     (so every block but the last holds a multiple of 64 rows), and when there are several
 *     blocks each tensor starts on a 256-byte boundary (it is bound, or cut into views, on its
 *     own).
 * The ops then cut each block further into chunks that fit one storage binding
 * ({@link rowChunks}), so a chunk never spans two buffers. With one block the chunks are
 * exactly those of the unsplit matrix, so results are bit for bit those of a single buffer.
 */
import type { Tensor } from "../gpu/runtime.ts";

/** Rows [row0, row0 + rows) of a matrix, stored from element 0 of `tensor`. */
export interface RowBlock {
  readonly tensor: Tensor;
  readonly row0: number;
  readonly rows: number;
}

/** A matrix as blocks of whole rows; see the module comment for the contract. */
export type RowBlocks = readonly RowBlock[];

/** Block starts are multiples of this many rows (a 64-row view of any row length is 256-byte
 * aligned, and 64 is a multiple of every chunk alignment the ops use). */
export const ROW_BLOCK_ALIGN = 64;

/**
 * `t` as row blocks of a (rows, rowLen) matrix, checked against the contract: a tensor becomes
 * one block. Throws a RangeError naming `what` when the blocks do not tile the rows.
 */
export function asRowBlocks(
  t: Tensor | RowBlocks,
  rows: number,
  rowLen: number,
  what: string,
): RowBlocks {
  const blocks: RowBlocks = isRowBlocks(t) ? t : [{ tensor: t, row0: 0, rows }];
  if (blocks.length === 0) throw new RangeError(`${what}: no row blocks`);
  let at = 0;
  for (const b of blocks) {
    const label = `${what}: block ${b.tensor.label} [${b.row0}, ${b.row0 + b.rows})`;
    if (b.row0 !== at || !Number.isInteger(b.rows) || b.rows < 1) {
      throw new RangeError(`${label} does not continue the blocks at row ${at}`);
    }
    if (b.tensor.length < b.rows * rowLen) {
      throw new RangeError(`${label} has ${b.tensor.length} < ${b.rows * rowLen} elements`);
    }
    if (blocks.length > 1 && (b.row0 % ROW_BLOCK_ALIGN !== 0 || b.tensor.offset % 256 !== 0)) {
      throw new RangeError(
        `${label} must start at a multiple of ${ROW_BLOCK_ALIGN} rows and of 256 bytes`,
      );
    }
    at += b.rows;
  }
  if (at !== rows) throw new RangeError(`${what}: the blocks cover ${at} rows, expected ${rows}`);
  return blocks;
}

/** Whether `t` is a list of row blocks (rather than one tensor). */
export function isRowBlocks(t: Tensor | RowBlocks): t is RowBlocks {
  return Array.isArray(t);
}

/** One bindable piece of a row-blocked matrix: rows [row0, row0 + rows) as a view. */
export interface RowChunk {
  /** Exactly `rows * rowLen` elements: the block's tensor itself, or a view of it. */
  readonly tensor: Tensor;
  readonly row0: number;
  readonly rows: number;
}

/**
 * Cuts each block into chunks of at most `maxRows` rows (block-relative starts at multiples
 * of `maxRows`); a block that fits is one chunk whose tensor is the block's own when it has
 * exactly its rows (not a view). Chunks never span two blocks. `maxRows` must keep chunk
 * starts 256-byte aligned (maxRows * rowLen * 4 a multiple of 256) when a block is cut.
 */
export function rowChunks(blocks: RowBlocks, rowLen: number, maxRows: number): RowChunk[] {
  if (!Number.isInteger(maxRows) || maxRows < 1) throw new RangeError(`maxRows ${maxRows}`);
  const out: RowChunk[] = [];
  for (const b of blocks) {
    if (b.rows <= maxRows) {
      const len = b.rows * rowLen;
      const tensor = b.tensor.length === len ? b.tensor : b.tensor.view(0, len);
      out.push({ tensor, row0: b.row0, rows: b.rows });
      continue;
    }
    if ((maxRows * rowLen) % 64 !== 0 || b.tensor.offset % 256 !== 0) {
      throw new RangeError(
        `${b.tensor.label}: chunks of ${maxRows} rows of ${rowLen} would not start on 256 bytes`,
      );
    }
    for (let r = 0; r < b.rows; r += maxRows) {
      const n = Math.min(maxRows, b.rows - r);
      out.push({ tensor: b.tensor.view(r * rowLen, n * rowLen), row0: b.row0 + r, rows: n });
    }
  }
  return out;
}
