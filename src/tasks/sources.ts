/**
 * The synthetic tasks as training batch sources (no download): the passkey task, train keys for
 * training and held-out keys for validation, optionally on a mixture of lengths; and the small
 * associative-recall task. Each is a pure function of the batch index.
 */
import type { Batch, BatchSource } from "../data/batch.ts";
import type { ModelConfig } from "../model/config.ts";
import { UserError } from "../util/errors.ts";
import { Rng } from "../util/rng.ts";
import { PasskeyTask } from "./passkey.ts";
import { RecallTask } from "./recall.ts";

/** A mixture's length for batch `index`: one of `lengths`, a function of the seed and index. */
function drawLength(lengths: readonly number[], seed: number, index: number): number {
  return lengths.length === 1
    ? lengths[0]
    : lengths[new Rng((seed * 7919 + index) >>> 0).int(lengths.length)];
}

export interface PasskeySourceOptions {
  answerWeight?: number;
  controlShare?: number;
  /** Share of training samples whose key digits start a segment (PasskeyOptions). */
  boundaryShare?: number;
  /**
   * Training lengths in segments: each batch draws one of them (a mixture of lengths, seeded
   * by the batch index). Default: the config's seqLength / segmentLength only. Validation
   * always uses the config's length.
   */
  segments?: readonly number[];
}

/** The synthetic passkey task: train keys for training, held-out keys for validation. */
export class PasskeySource implements BatchSource {
  readonly name = "passkey";
  readonly tokenizer = "bytes";
  readonly valBatches = Infinity;
  #train = new Map<number, PasskeyTask>();
  #lengths: readonly number[];
  #seed: number;
  #val: PasskeyTask;

  constructor(cfg: Readonly<ModelConfig>, seed: number, o: PasskeySourceOptions = {}) {
    if (cfg.vocabSize < 256) {
      throw new UserError(`the passkey task needs byte tokens: vocabSize ${cfg.vocabSize} < 256`);
    }
    const nS = cfg.seqLength / cfg.segmentLength;
    const base = {
      segmentLength: cfg.segmentLength,
      segments: nS,
      answerWeight: o.answerWeight,
      controlShare: o.controlShare ?? 0,
    };
    this.#lengths = o.segments?.length ? [...o.segments] : [nS];
    const train = { ...base, keys: "train" as const, boundaryShare: o.boundaryShare ?? 0 };
    for (const n of this.#lengths) {
      if (!Number.isInteger(n) || n < 2 || n > nS) {
        throw new UserError(
          `passkey: training length ${n} segments is not in 2..${nS} (seqLength / segmentLength)`,
        );
      }
    }
    this.#seed = seed;
    try {
      for (const n of this.#lengths) {
        this.#train.set(
          n,
          new PasskeyTask(
            { ...train, segments: n },
            this.#lengths.length > 1 ? seed + n : seed,
          ),
        );
      }
      this.#val = new PasskeyTask({ ...base, keys: "eval" }, seed ^ 0x5eed);
    } catch (e) {
      if (e instanceof RangeError) throw new UserError(e.message);
      throw e;
    }
  }

  /** Training lengths in segments. */
  get lengths(): readonly number[] {
    return this.#lengths;
  }

  #make(task: PasskeyTask, start: number, B: number): Batch {
    const b = task.batch(start, B);
    const T = task.length;
    return {
      tokens: b.tokens,
      targets: b.targets,
      weights: b.weights,
      answerRows: b.samples.map((s, i) => s.answerPositions.map((p) => i * T + p - 1)),
    };
  }

  batch(index: number, B: number): Batch {
    const n = drawLength(this.#lengths, this.#seed, index);
    return this.#make(this.#train.get(n)!, index * B, B);
  }

  valBatch(index: number, B: number): Batch {
    return this.#make(this.#val, index * B, B);
  }

  close(): void {}
}

/** One phase of recall training: its first `batches` batches draw their lengths from `segments`. */
export interface RecallPhase {
  /** Batches in the phase (Infinity for the last). */
  batches: number;
  /** Training lengths in segments, one drawn per batch (seeded by the batch index). */
  segments: readonly number[];
}

export interface RecallSourceOptions {
  /** Digits in a key (default 1). */
  digits?: number;
  /**
   * Training lengths over time: each phase in turn for its number of batches, the last one for
   * the rest. Default: one phase at the config's seqLength / segmentLength. Validation always
   * uses the config's length.
   */
  phases?: readonly RecallPhase[];
}

/** The small associative-recall task (./recall.ts): answers come only from memory. */
export class RecallSource implements BatchSource {
  readonly name = "recall";
  readonly tokenizer = "bytes";
  readonly valBatches = Infinity;
  #tasks = new Map<number, RecallTask>();
  #phases: RecallPhase[];
  #val: RecallTask;
  #seed: number;

  constructor(cfg: Readonly<ModelConfig>, seed: number, o: RecallSourceOptions = {}) {
    if (cfg.vocabSize < 128) {
      throw new UserError(`the recall task needs byte tokens: vocabSize ${cfg.vocabSize}`);
    }
    const nS = cfg.seqLength / cfg.segmentLength;
    const S = cfg.segmentLength, digits = o.digits ?? 1;
    this.#phases = o.phases?.length
      ? o.phases.map((p) => ({ batches: p.batches, segments: [...p.segments] }))
      : [{ batches: Infinity, segments: [nS] }];
    const lengths = new Set(this.#phases.flatMap((p) => p.segments));
    for (const p of this.#phases) {
      if (!p.segments.length || !(p.batches >= 0)) {
        throw new UserError(`recall: a phase needs a length and a number of batches >= 0`);
      }
    }
    for (const n of lengths) {
      if (!Number.isInteger(n) || n < 2 || n > nS) {
        throw new UserError(
          `recall: training length ${n} segments is not in 2..${nS} (seqLength / segmentLength)`,
        );
      }
    }
    // One length alone keeps the task's original stream (bit for bit the single-length source).
    const mixed = lengths.size > 1;
    for (const n of lengths) {
      this.#tasks.set(
        n,
        new RecallTask({ segmentLength: S, segments: n, digits }, mixed ? seed + n : seed),
      );
    }
    this.#val = new RecallTask({ segmentLength: S, segments: nS, digits }, seed);
    this.#seed = seed;
  }

  /** The length, in segments, of training batch `index`. */
  lengthAt(index: number): number {
    let left = index;
    for (const p of this.#phases) {
      if (left < p.batches || p === this.#phases[this.#phases.length - 1]) {
        return drawLength(p.segments, this.#seed, index);
      }
      left -= p.batches;
    }
    throw new Error("unreachable");
  }

  batch(index: number, B: number): Batch {
    return this.#tasks.get(this.lengthAt(index))!.batch(index * B, B, "train");
  }

  valBatch(index: number, B: number): Batch {
    return this.#val.batch(index * B, B, "eval");
  }

  close(): void {}
}
