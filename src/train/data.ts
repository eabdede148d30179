/**
 * Token shards written by `gen` as a training batch source: a seeded permutation of the
 * training sequences, epoch after epoch, checked against the model's sequence length and
 * vocabulary. (The synthetic tasks' sources are in src/tasks/sources.ts.)
 */
import type { Batch, BatchSource } from "../data/batch.ts";
import { ShardReader, type Split } from "../data/shards.ts";
import type { ModelConfig } from "../model/config.ts";
import { UserError } from "../util/errors.ts";
import { permutation } from "../util/rng.ts";
import { IGNORE_TARGET } from "../util/targets.ts";

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
