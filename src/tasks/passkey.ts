/**
 * The synthetic passkey task (Mohtashami and Jaggi style; see the notes' "Measured: a tiny
 * model on the synthetic passkey task"), in byte tokens (ids 0..255 = UTF-8 bytes):
 *
 *   [filler] The pass key is 07142. Remember it. [filler] What is the pass key? The pass key is 07142.
 *
 * exactly T = segments * S bytes. Filler is the five sentences below, each round in a random
 * order, cut to the exact length needed. The key statement lies wholly inside a chosen range
 * of segments (default: every segment but the last) and ends before the question; its start
 * is at a chosen depth of the allowed range, or uniform. A share of "control" samples puts the
 * key's digits in the last segment instead, where local attention alone can copy them.
 *
 * Keys are the 100,000 strings 00000..99999, split by a fixed hash into train keys (~90%) and
 * held-out eval keys (~10%), so evaluation uses keys never seen in training.
 *
 * Samples are addressed by index: sample i depends only on (seed, i), which makes a data
 * position a single number and resuming exact. `cellSamples` draws the held-out samples of one
 * cell of the evaluation grid (src/eval/passkey.ts); training batches come through
 * ./sources.ts.
 *
 * @example
 * ```ts
 * const task = new PasskeyTask({ segmentLength: 32, segments: 4 }, 1234);
 * const s = task.sample(0); // s.tokens (T), s.targets (T), s.weights (T), s.answerPositions (5)
 * exactMatch(s, predictions); // predictions[t] = the argmax next token at position t
 * ```
 */
import { Rng } from "../util/rng.ts";
import { IGNORE_TARGET } from "../util/targets.ts";

/** The filler sentences of the passkey literature. */
export const FILLER_SENTENCES: readonly string[] = [
  "The grass is green.",
  "The sky is blue.",
  "The sun is yellow.",
  "Here we go.",
  "There and back again.",
];

/** Number of digits of a key. */
export const KEY_DIGITS = 5;

/** The key statement; 36 bytes. */
export function keyStatement(key: string): string {
  return `The pass key is ${key}. Remember it. `;
}

/** The closing question with its answer; 44 bytes, the last 6 being "NNNNN.". */
export function question(key: string): string {
  return `What is the pass key? The pass key is ${key}.`;
}

/** Offset of the digits inside the key statement ("The pass key is " is 16 bytes). */
const DIGITS_IN_STATEMENT = 16;
const STATEMENT_BYTES = keyStatement("00000").length;
const QUESTION_BYTES = question("00000").length;

export interface PasskeyOptions {
  /** S: segment length in tokens (bytes). */
  segmentLength: number;
  /** Segments per sample; T = segments * S. */
  segments: number;
  /**
   * [first, end): the key statement lies wholly inside segments first..end-1 (and before the
   * question). Default [0, segments - 1): anywhere before the last segment.
   */
  keySegments?: readonly [number, number];
  /** Where in the allowed range the statement starts: 0 earliest, 1 latest; default uniform. */
  depth?: number;
  /** Share of samples with the key's digits in the last segment (control); default 0. */
  controlShare?: number;
  /**
   * Share of the other samples whose key digits start a segment (byte k * S, so that the
   * segment's local attention cannot see "The pass key is" before them), the segment drawn
   * uniformly from those allowed; default 0. Drawn uniformly, such positions are 1 in S.
   * Ignored when `depth` is set.
   */
  boundaryShare?: number;
  /** Which keys to draw: "train" (default), held-out "eval", or "all". */
  keys?: "train" | "eval" | "all";
  /**
   * Extra loss weight of the 5 answer-digit targets (their weight is 1 + answerWeight). The
   * default (T - 1) / 5 makes sum(w * nll) / (T - 1), the mean NLL over a sample's T - 1
   * targets, equal the notes' recipe: mean NLL over all tokens + 1.0 x mean NLL of the digits.
   */
  answerWeight?: number;
}

/** One sample; positions index its T tokens. */
export interface PasskeySample {
  /** (T) byte ids. */
  readonly tokens: Uint32Array;
  /** (T) next token; IGNORE_TARGET at T - 1. */
  readonly targets: Uint32Array;
  /** (T) loss weight of each target: 1, 1 + answerWeight for the answer digits, 0 at T - 1. */
  readonly weights: Float32Array;
  /** Positions in `tokens` of the 5 answer digits (T-6..T-2); predicted from position p - 1. */
  readonly answerPositions: readonly number[];
  /** The key, 5 digits. */
  readonly key: string;
  /** Position of the first byte of the key statement; its digits start 16 bytes later. */
  readonly keyStart: number;
  /** Whether this is a control sample (key digits in the last segment). */
  readonly control: boolean;
}

/** B samples laid out as consecutive sequences (rows = B * T). */
export interface PasskeyBatch {
  readonly tokens: Uint32Array; // (B*T)
  readonly targets: Uint32Array; // (B*T)
  readonly weights: Float32Array; // (B*T)
  readonly samples: readonly PasskeySample[];
}

/** Whether a key (0..99999) is held out for evaluation: a fixed integer hash, ~10% of keys. */
export function isEvalKey(key: number): boolean {
  let h = Math.imul(key ^ 0x5bd1e995, 0x9e3779b1) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b) >>> 0;
  h = (h ^ (h >>> 13)) >>> 0;
  return h % 10 === 0;
}

/** The seeded task; see the module comment. */
export class PasskeyTask {
  /** T: tokens per sample. */
  readonly length: number;
  readonly options: Readonly<Required<Omit<PasskeyOptions, "depth">>> & { depth?: number };
  readonly #seed: number;
  /** Allowed [lo, hi] of the key statement's start, for ordinary and control samples. */
  readonly #range: [number, number];
  readonly #controlRange: [number, number] | null;
  /** Statement starts that put the digits at the start of a segment, inside #range. */
  readonly #boundaryStarts: number[];

  constructor(opts: PasskeyOptions, seed: number) {
    const { segmentLength: S, segments } = opts;
    if (!Number.isInteger(S) || S < 1 || !Number.isInteger(segments) || segments < 1) {
      throw new RangeError(`passkey: segmentLength ${S} and segments ${segments} must be >= 1`);
    }
    const T = S * segments;
    this.length = T;
    this.options = {
      segmentLength: S,
      segments,
      keySegments: opts.keySegments ?? [0, Math.max(1, segments - 1)],
      controlShare: opts.controlShare ?? 0,
      boundaryShare: opts.boundaryShare ?? 0,
      keys: opts.keys ?? "train",
      answerWeight: opts.answerWeight ?? (T - 1) / KEY_DIGITS,
      depth: opts.depth,
    };
    const { keySegments: [first, end], controlShare, boundaryShare, depth } = this.options;
    if (!(controlShare >= 0 && controlShare <= 1)) {
      throw new RangeError(`passkey: controlShare ${controlShare} is not in [0, 1]`);
    }
    if (!(boundaryShare >= 0 && boundaryShare <= 1)) {
      throw new RangeError(`passkey: boundaryShare ${boundaryShare} is not in [0, 1]`);
    }
    if (depth !== undefined && !(depth >= 0 && depth <= 1)) {
      throw new RangeError(`passkey: depth ${depth} is not in [0, 1]`);
    }
    if (
      !(Number.isInteger(first) && Number.isInteger(end) && 0 <= first && first < end &&
        end <= segments)
    ) {
      throw new RangeError(
        `passkey: keySegments [${first}, ${end}) is not a range inside 0..${segments}`,
      );
    }
    const latest = T - QUESTION_BYTES - STATEMENT_BYTES; // the statement ends where the question starts
    this.#range = [first * S, Math.min(end * S - STATEMENT_BYTES, latest)];
    if (this.#range[0] > this.#range[1]) {
      throw new RangeError(
        `passkey: the ${STATEMENT_BYTES}-byte key statement does not fit wholly inside segments ` +
          `[${first}, ${end}) of ${S} bytes before the ${QUESTION_BYTES}-byte question (T = ${T})`,
      );
    }
    // Control: the digits lie in the last segment, the statement still before the question.
    const lo = Math.max(0, T - S - DIGITS_IN_STATEMENT);
    this.#controlRange = lo <= latest ? [lo, latest] : null;
    if (controlShare > 0 && this.#controlRange === null) {
      throw new RangeError(
        `passkey: control samples need the key's digits in the last segment before the question, ` +
          `which takes segments of at least ${
            QUESTION_BYTES + STATEMENT_BYTES - DIGITS_IN_STATEMENT
          } bytes (S = ${S})`,
      );
    }
    this.#boundaryStarts = [];
    for (let k = 1; k < segments; k++) {
      const start = k * S - DIGITS_IN_STATEMENT;
      if (start >= this.#range[0] && start <= this.#range[1]) this.#boundaryStarts.push(start);
    }
    if (boundaryShare > 0 && this.#boundaryStarts.length === 0) {
      throw new RangeError(
        `passkey: no allowed key position puts the digits at the start of a segment (S = ${S}, ` +
          `segments ${segments})`,
      );
    }
    this.#seed = seed >>> 0;
  }

  /** Sample `index` (any non-negative integer); deterministic in (seed, index). */
  sample(index: number): PasskeySample {
    const T = this.length;
    const rng = new Rng(mixSeed(this.#seed, index));
    const control = this.options.controlShare > 0 && rng.next() < this.options.controlShare;
    const key = drawKey(rng, this.options.keys);
    const [lo, hi] = control ? this.#controlRange! : this.#range;
    const { depth, boundaryShare } = this.options;
    // (The boundary draw only happens when asked for, so that other samples stay as they were.)
    const boundary = !control && depth === undefined && boundaryShare > 0 &&
      rng.next() < boundaryShare;
    const keyStart = boundary
      ? this.#boundaryStarts[rng.int(this.#boundaryStarts.length)]
      : depth === undefined
      ? lo + rng.int(hi - lo + 1)
      : lo + Math.round(depth * (hi - lo));

    const filler = new FillerStream(rng);
    const text = filler.take(keyStart) + keyStatement(key) +
      filler.take(T - QUESTION_BYTES - keyStart - STATEMENT_BYTES) + question(key);
    const tokens = new Uint32Array(new TextEncoder().encode(text));
    if (tokens.length !== T) throw new Error(`passkey: built ${tokens.length} bytes, not ${T}`);
    const targets = new Uint32Array(T), weights = new Float32Array(T);
    for (let t = 0; t < T - 1; t++) {
      targets[t] = tokens[t + 1];
      weights[t] = 1;
    }
    targets[T - 1] = IGNORE_TARGET;
    const answerPositions = Array.from({ length: KEY_DIGITS }, (_, i) => T - 1 - KEY_DIGITS + i);
    for (const p of answerPositions) weights[p - 1] = 1 + this.options.answerWeight;
    return { tokens, targets, weights, answerPositions, key, keyStart, control };
  }

  /** Samples start..start+count-1 as one batch of consecutive sequences. */
  batch(start: number, count: number): PasskeyBatch {
    const T = this.length;
    const tokens = new Uint32Array(count * T), targets = new Uint32Array(count * T);
    const weights = new Float32Array(count * T);
    const samples: PasskeySample[] = [];
    for (let b = 0; b < count; b++) {
      const s = this.sample(start + b);
      tokens.set(s.tokens, b * T);
      targets.set(s.targets, b * T);
      weights.set(s.weights, b * T);
      samples.push(s);
    }
    return { tokens, targets, weights, samples };
  }
}

/** Filler text: the five sentences in a fresh random order each round, separated by spaces. */
class FillerStream {
  #buf = "";
  constructor(readonly rng: Rng) {}
  take(n: number): string {
    while (this.#buf.length < n) {
      const order = [...FILLER_SENTENCES];
      this.rng.shuffle(order);
      this.#buf += order.join(" ") + " ";
    }
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }
}

function drawKey(rng: Rng, set: "train" | "eval" | "all"): string {
  for (;;) {
    const k = rng.int(100000);
    if (set === "all" || isEvalKey(k) === (set === "eval")) return String(k).padStart(5, "0");
  }
}

function mixSeed(seed: number, index: number): number {
  if (!Number.isSafeInteger(index) || index < 0) {
    throw new RangeError(`passkey: sample index ${index}`);
  }
  let h = (seed ^ Math.imul(index % 0x100000000, 0x9e3779b1) ^ Math.floor(index / 0x100000000)) >>>
    0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** The samples of one grid cell: held-out keys, deterministic in (seed, length, depth). */
export function cellSamples(
  S: number,
  segments: number,
  depth: number | "control",
  trials: number,
  seed: number,
): PasskeySample[] {
  const cellSeed =
    (seed * 1000003 + segments * 7919 + (depth === "control" ? 999 : Math.round(depth * 100))) >>>
    0;
  const task = new PasskeyTask({
    segmentLength: S,
    segments,
    keys: "eval",
    depth: depth === "control" ? undefined : depth,
    controlShare: depth === "control" ? 1 : 0,
  }, cellSeed);
  return Array.from({ length: trials }, (_, i) => task.sample(i));
}

/**
 * Exact match: every answer digit is the model's greedy prediction. `predictions[offset + t]`
 * is the argmax next token at position t of this sample (teacher forcing; for all-or-nothing
 * exact match this equals greedy decoding, since both first go wrong at the same digit).
 */
export function exactMatch(
  sample: PasskeySample,
  predictions: ArrayLike<number>,
  offset = 0,
): boolean {
  return sample.answerPositions.every((p) => predictions[offset + p - 1] === sample.tokens[p]);
}

/** The predicted answer as text (for reports), from the same predictions as {@link exactMatch}. */
export function predictedAnswer(
  sample: PasskeySample,
  predictions: ArrayLike<number>,
  offset = 0,
): string {
  return String.fromCharCode(...sample.answerPositions.map((p) => predictions[offset + p - 1]));
}

/** Row-wise argmax of (rows, V) logits: the greedy next token at each position. */
export function argmaxRows(logits: ArrayLike<number>, rows: number, V: number): Uint32Array {
  const out = new Uint32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[r * V + v] > logits[r * V + best]) best = v;
    out[r] = best;
  }
  return out;
}
