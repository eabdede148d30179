/**
 * Packing one split's token stream into sequences and shards.
 *
 * Documents arrive in input order, each followed by the end-of-text token; the stream is cut
 * every `seqLen` tokens, whatever the document boundaries (a sequence may hold the end of one
 * document and the start of the next; the tokens left at the very end, fewer than seqLen, are
 * dropped and counted). Pass 1 appends whole sequences to a spill file; pass 2 draws a
 * permutation from the seed and writes the shards in that order. Memory stays at a few
 * buffers plus the permutation (4 bytes per sequence), whatever the corpus size.
 */
import { permutation } from "../util/rng.ts";
import { encodeHeader, HEADER_BYTES, shardName, type Split, type SplitInfo } from "./shards.ts";

export interface PackOptions {
  dir: string;
  split: Split;
  seqLen: number;
  tokenWidth: 2 | 4;
  vocabSize: number;
  /** Largest shard file, in bytes (header excluded); at least one sequence per shard. */
  shardBytes: number;
}

const SPILL_BYTES = 4 << 20;
const WINDOW_BYTES = 8 << 20;

export class SplitWriter {
  documents = 0;
  #o: PackOptions;
  #spillPath: string;
  #spill?: Deno.FsFile;
  /** Tokens buffered for the spill file; its first `#fill` are valid. */
  #buf: Uint16Array | Uint32Array;
  #fill = 0;
  #sequences = 0;

  constructor(o: PackOptions) {
    this.#o = o;
    this.#spillPath = `${o.dir}/${o.split}.spill`;
    const cap = Math.max(1, Math.floor(SPILL_BYTES / (o.seqLen * o.tokenWidth))) * o.seqLen;
    this.#buf = o.tokenWidth === 2 ? new Uint16Array(cap) : new Uint32Array(cap);
  }

  /** Tokens emitted so far in whole sequences. */
  get sequences(): number {
    return this.#sequences + Math.floor(this.#fill / this.#o.seqLen);
  }

  /** Appends one document's tokens and the end-of-text token. */
  async addDocument(tokens: Uint32Array, eosId: number): Promise<void> {
    this.documents++;
    let i = 0;
    while (i < tokens.length) {
      const n = Math.min(tokens.length - i, this.#buf.length - this.#fill);
      this.#buf.set(tokens.subarray(i, i + n), this.#fill);
      this.#fill += n;
      i += n;
      if (this.#fill === this.#buf.length) await this.#flush();
    }
    this.#buf[this.#fill++] = eosId;
    if (this.#fill === this.#buf.length) await this.#flush();
  }

  /** Writes the whole sequences in the buffer to the spill file; keeps the partial tail. */
  async #flush(): Promise<void> {
    const whole = Math.floor(this.#fill / this.#o.seqLen) * this.#o.seqLen;
    if (whole === 0) return;
    this.#spill ??= await Deno.open(this.#spillPath, { write: true, create: true, truncate: true });
    const bytes = new Uint8Array(this.#buf.buffer, 0, whole * this.#o.tokenWidth);
    await writeAll(this.#spill, bytes);
    this.#sequences += whole / this.#o.seqLen;
    this.#buf.copyWithin(0, whole, this.#fill);
    this.#fill -= whole;
  }

  /**
   * Pass 2: shuffles the sequences with `seed` (a seeded permutation, src/util/rng.ts) and
   * writes the shards; removes the spill file. Returns the split's entry for the manifest.
   */
  async finish(seed: number): Promise<SplitInfo> {
    const o = this.#o;
    await this.#flush();
    const dropped = this.#fill;
    this.#spill?.close();
    this.#spill = undefined;
    const n = this.#sequences;
    const seqBytes = o.seqLen * o.tokenWidth;
    // The shuffle: position j of the shards holds sequence perm[j] of the packed stream.
    const perm = permutation(n, seed);
    const perShard = Math.max(1, Math.floor(o.shardBytes / seqBytes));
    // Shards are filled a window at a time, so memory does not grow with the shard size.
    const window = Math.max(1, Math.floor(WINDOW_BYTES / seqBytes));
    const buf = new Uint8Array(Math.min(window, Math.max(n, 1)) * seqBytes);
    const shards: SplitInfo["shards"] = [];
    if (n > 0) {
      using spill = await Deno.open(this.#spillPath, { read: true });
      for (let k = 0; k * perShard < n; k++) {
        const start = k * perShard;
        const end = Math.min(n, start + perShard);
        const name = shardName(o.split, k);
        using f = await Deno.open(`${o.dir}/${name}`, { write: true, createNew: true });
        await writeAll(f, encodeHeader({ ...o, tokenCount: (end - start) * o.seqLen }));
        for (let w = start; w < end; w += window) {
          const slots = perm.subarray(w, Math.min(end, w + window));
          readPermuted(spill, slots, seqBytes, buf);
          await writeAll(f, buf.subarray(0, slots.length * seqBytes));
        }
        await f.sync();
        shards.push({
          file: name,
          sequences: end - start,
          bytes: HEADER_BYTES + (end - start) * seqBytes,
        });
      }
    }
    await Deno.remove(this.#spillPath).catch(() => {});
    return {
      documents: this.documents,
      tokens: n * o.seqLen,
      sequences: n,
      droppedTokens: dropped,
      shards,
    };
  }

  /** Closes and removes the spill file (after a failure). */
  discard(): void {
    this.#spill?.close();
    this.#spill = undefined;
  }
}

/** The shuffle seed of a split, derived from --seed. */
export function splitSeed(seed: number, split: Split): number {
  return split === "train" ? seed >>> 0 : (seed ^ 0x5bd1e995) >>> 0;
}

/**
 * Fills out[slot * seqBytes ...] with spill sequence idx[slot], for every slot, reading the
 * spill file in ascending order and in runs of consecutive sequences.
 */
function readPermuted(spill: Deno.FsFile, idx: Uint32Array, seqBytes: number, out: Uint8Array) {
  const order = Array.from(idx.keys()).sort((a, b) => idx[a] - idx[b]);
  const maxRun = Math.max(1, Math.floor((4 << 20) / seqBytes));
  const tmp = new Uint8Array(maxRun * seqBytes);
  let r = 0;
  while (r < order.length) {
    let len = 1;
    while (r + len < order.length && len < maxRun && idx[order[r + len]] === idx[order[r]] + len) {
      len++;
    }
    spill.seekSync(idx[order[r]] * seqBytes, Deno.SeekMode.Start);
    const want = tmp.subarray(0, len * seqBytes);
    let got = 0;
    while (got < want.length) {
      const m = spill.readSync(want.subarray(got));
      if (m === null) throw new Error("spill file ended early");
      got += m;
    }
    for (let k = 0; k < len; k++) {
      out.set(want.subarray(k * seqBytes, (k + 1) * seqBytes), order[r + k] * seqBytes);
    }
    r += len;
  }
}

export async function writeAll(f: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await f.write(bytes.subarray(off));
}
