/**
 * What the training loop consumes: batches of B token sequences with their next-token targets,
 * numbered so that a source is a pure function of the batch index (a resumed run sees exactly
 * the batches an uninterrupted one would have). Sources: token shards (src/train/data.ts) and
 * the synthetic tasks (src/tasks/sources.ts).
 */

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
