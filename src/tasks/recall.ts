/**
 * A small associative-recall task that only a working memory can solve, sized to train in a
 * minute or two: a key of `digits` digits follows a marker 'K' somewhere in the FIRST
 * segment, random filler letters fill the rest, and the sequence ends with '?' and the key
 * again. The key is never inside the last segment, so local attention cannot see it: the
 * answer must come through the compressive memory. The loss counts the answer digits only.
 *
 * It is the passkey task stripped to its core (no sentences to learn), used by the learning
 * test and for quick checks; `train --data recall` runs it (through ./sources.ts), and
 * `recallSamples` draws the held-out sequences the evaluation grid scores.
 */
import { UserError } from "../util/errors.ts";
import { Rng } from "../util/rng.ts";
import { IGNORE_TARGET } from "../util/targets.ts";

const K = 75, Q = 63, ZERO = 48, FILLER_A = 97, FILLER_N = 8; // 'K', '?', '0', 'a'..'h'

export interface RecallOptions {
  segmentLength: number;
  segments: number;
  /** Digits in a key (default 1: ten keys, chance 0.1). */
  digits?: number;
}

export interface RecallBatch {
  tokens: Uint32Array;
  targets: Uint32Array;
  weights: Float32Array;
  /** Per sequence, the rows whose predictions are the answer digits. */
  answerRows: number[][];
}

/** One held-out sequence as the evaluation grid scores it. */
export interface RecallSample {
  tokens: Uint32Array;
  targets: Uint32Array;
  /** Positions whose greedy prediction must be right (they predict the answer digits). */
  rows: number[];
}

export class RecallTask {
  readonly length: number;
  readonly digits: number;

  constructor(readonly o: RecallOptions, readonly seed: number) {
    this.digits = o.digits ?? 1;
    this.length = o.segmentLength * o.segments;
    if (o.segments < 2) {
      throw new UserError(
        `recall: needs at least 2 segments per sequence (the key in one, the question in a later one); got ${o.segments}`,
      );
    }
    if (o.segmentLength < this.digits + 2) {
      throw new UserError(
        `recall: segment length ${o.segmentLength} cannot hold 'K' and ${this.digits} digits`,
      );
    }
    if (this.digits + 1 > o.segmentLength) {
      throw new RangeError("recall: the question must fit in the last segment");
    }
  }

  /** Sequences [start, start + B) of the stream `split` ("train" or "eval": different draws). */
  batch(start: number, B: number, split: "train" | "eval" = "train"): RecallBatch {
    const T = this.length, S = this.o.segmentLength, n = this.digits;
    const tokens = new Uint32Array(B * T), targets = new Uint32Array(B * T).fill(IGNORE_TARGET);
    const weights = new Float32Array(B * T);
    const answerRows: number[][] = [];
    for (let b = 0; b < B; b++) {
      const rng = new Rng(
        (this.seed * 1000003 + (start + b) * 2 + (split === "eval" ? 1 : 0)) >>> 0,
      );
      const o = b * T;
      for (let t = 0; t < T; t++) tokens[o + t] = FILLER_A + rng.int(FILLER_N);
      const key = Array.from({ length: n }, () => ZERO + rng.int(10));
      const at = rng.int(S - n); // 'K' and the digits lie inside segment 0
      tokens[o + at] = K;
      key.forEach((d, i) => (tokens[o + at + 1 + i] = d));
      tokens[o + T - n - 1] = Q;
      const rows: number[] = [];
      key.forEach((d, i) => {
        tokens[o + T - n + i] = d;
        const r = o + T - n - 1 + i; // predicts digit i
        targets[r] = d;
        weights[r] = 1;
        rows.push(r);
      });
      answerRows.push(rows);
    }
    return { tokens, targets, weights, answerRows };
  }
}

/** Held-out recall samples (the "eval" stream of the task), deterministic in the seed. */
export function recallSamples(
  S: number,
  segments: number,
  trials: number,
  seed: number,
): RecallSample[] {
  const T = S * segments;
  const b = new RecallTask({ segmentLength: S, segments }, (seed * 7919 + segments) >>> 0)
    .batch(0, trials, "eval");
  return b.answerRows.map((rows, i) => ({
    tokens: b.tokens.slice(i * T, i * T + T),
    targets: b.targets.slice(i * T, i * T + T),
    rows: rows.map((r) => r - i * T),
  }));
}
