/**
 * Where training batches come from: the built-in synthetic passkey task (no download) or token
 * shards written by `gen`. A source is a pure function of the batch index, so a resumed run
 * sees exactly the batches an uninterrupted one would have.
 */
import { UserError } from "../util/errors.ts";
import { PasskeyTask } from "../data/passkey.ts";
import { RecallTask } from "../data/recall.ts";
import { ShardReader, type Split } from "../data/shards.ts";
import type { ModelConfig } from "../model/config.ts";
import { permutation, Rng } from "../util/rng.ts";
import { IGNORE_TARGET } from "../util/targets.ts";

/** One batch of B sequences laid out consecutively (rows = B * T). */
export interface Batch {
  tokens: Uint32Array;
  targets: Uint32Array;
  /** Per-row loss weights (rows); all 1 when absent. */
  weights?: Float32Array;
  /** Rows whose prediction must be right for a sample to count as exact (passkey). */
  answerRows?: number[][];
}

export interface BatchSource {
  readonly name: string;
  /** The tokenizer the tokens come from ("bytes", "qwen" or "file:PATH"); kept in checkpoints. */
  readonly tokenizer: string;
  /** Batch number `index` (deterministic). */
  batch(index: number, B: number): Batch;
  /** Number of distinct validation batches (Infinity for synthetic). */
  readonly valBatches: number;
  /** Validation batch number `index`. */
  valBatch(index: number, B: number): Batch;
  close(): void;
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
    const n = this.#lengths.length === 1
      ? this.#lengths[0]
      : this.#lengths[new Rng((this.#seed * 7919 + index) >>> 0).int(this.#lengths.length)];
    return this.#make(this.#train.get(n)!, index * B, B);
  }

  valBatch(index: number, B: number): Batch {
    return this.#make(this.#val, index * B, B);
  }

  close(): void {}
}

/** The small associative-recall task (src/data/recall.ts): answers come only from memory. */
export class RecallSource implements BatchSource {
  readonly name = "recall";
  readonly tokenizer = "bytes";
  readonly valBatches = Infinity;
  #task: RecallTask;

  constructor(cfg: Readonly<ModelConfig>, seed: number, digits = 1) {
    if (cfg.vocabSize < 128) {
      throw new UserError(`the recall task needs byte tokens: vocabSize ${cfg.vocabSize}`);
    }
    this.#task = new RecallTask({
      segmentLength: cfg.segmentLength,
      segments: cfg.seqLength / cfg.segmentLength,
      digits,
    }, seed);
  }

  batch(index: number, B: number): Batch {
    return this.#task.batch(index * B, B, "train");
  }

  valBatch(index: number, B: number): Batch {
    return this.#task.batch(index * B, B, "eval");
  }

  close(): void {}
}

/** Token shards: a seeded permutation of the training sequences, epoch after epoch. */
export class ShardSource implements BatchSource {
  readonly name: string;
  readonly tokenizer: string;
  #train: ShardReader;
  #val: ShardReader | null;
  #seed: number;
  #perm: Uint32Array | null = null;
  #epoch = -1;

  private constructor(dir: string, train: ShardReader, val: ShardReader | null, seed: number) {
    this.name = `shards:${dir}`;
    this.tokenizer = train.manifest.tokenizer.name;
    this.#train = train;
    this.#val = val;
    this.#seed = seed;
  }

  static async open(dir: string, cfg: Readonly<ModelConfig>, seed: number): Promise<ShardSource> {
    const train = await ShardReader.open(dir, "train" satisfies Split);
    const fail = (msg: string) => {
      train.close();
      throw new UserError(`${dir}: ${msg}`);
    };
    if (train.seqLen !== cfg.seqLength) {
      fail(
        `shards hold sequences of ${train.seqLen} tokens, the model's seqLength is ${cfg.seqLength} (pass --set seqLength=${train.seqLen} or run gen with --seq-len ${cfg.seqLength})`,
      );
    }
    if (train.vocabSize > cfg.vocabSize) {
      fail(
        `the shards' vocabulary (${train.vocabSize}) is larger than the model's vocabSize ${cfg.vocabSize} (pass --set vocabSize=${train.vocabSize})`,
      );
    }
    if (train.numSequences === 0) fail("the training split is empty");
    let val: ShardReader | null = null;
    try {
      val = await ShardReader.open(dir, "val");
      if (val.numSequences === 0) {
        val.close();
        val = null;
      }
    } catch {
      val = null;
    }
    return new ShardSource(dir, train, val, seed);
  }

  get valBatches(): number {
    return this.#val ? Math.max(1, Math.floor(this.#val.numSequences)) : 0;
  }

  #shifted(tokens: Uint32Array, B: number, T: number): Batch {
    const targets = new Uint32Array(B * T);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        targets[b * T + t] = t + 1 < T ? tokens[b * T + t + 1] : IGNORE_TARGET;
      }
    }
    return { tokens, targets };
  }

  batch(index: number, B: number): Batch {
    const n = this.#train.numSequences;
    const idx: number[] = [];
    for (let j = 0; j < B; j++) {
      const k = index * B + j;
      const epoch = Math.floor(k / n);
      if (epoch !== this.#epoch) {
        this.#perm = permutation(n, this.#seed + epoch * 7919);
        this.#epoch = epoch;
      }
      idx.push(this.#perm![k % n]);
    }
    return this.#shifted(this.#train.batch(idx), B, this.#train.seqLen);
  }

  valBatch(index: number, B: number): Batch {
    const r = this.#val ?? this.#train;
    const idx = Array.from({ length: B }, (_, j) => (index * B + j) % r.numSequences);
    return this.#shifted(r.batch(idx), B, r.seqLen);
  }

  close(): void {
    this.#train.close();
    this.#val?.close();
  }
}
