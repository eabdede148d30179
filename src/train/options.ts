/** The trainer's options, their defaults and the learning-rate schedule they describe. */

export interface TrainOptions {
  /** Run directory. */
  out: string;
  /** Optimizer steps in all (a resumed run continues up to this). */
  steps: number;
  /** Sequences per micro-batch. */
  batch: number;
  /** Micro-batches per optimizer step (gradient accumulation). */
  accum: number;
  /**
   * Segments per chunk: a step runs each sequence in chunks of this many segments, keeping the
   * activations of one chunk (the rest is recomputed; same loss and gradients). Absent: the
   * whole sequence in one call.
   */
  chunk?: number;
  /** Peak learning rate. */
  lr: number;
  /** Final learning rate as a fraction of the peak (cosine decay). */
  minLrRatio: number;
  /** Linear warm-up steps. */
  warmup: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Global gradient-norm clip. */
  clip: number;
  /** Seed of the initialisation and of the data order. */
  seed: number;
  /** Print and log every N steps (losses are read back asynchronously). */
  logEvery: number;
  /** Validate every N steps (0: never). */
  evalEvery: number;
  /** Validation batches per validation. */
  evalBatches: number;
  /** Save a checkpoint every N steps (0: only at the end). */
  saveEvery: number;
  /** Continue from out/checkpoint. */
  resume: boolean;
  /** Stop (saving a checkpoint) after this step, as Ctrl-C would; 0: run to `steps`. */
  stopAfter: number;
  /**
   * Start from this checkpoint's weights (a staged schedule: a longer seqLength, new
   * optimizer state); its config must equal this run's except seqLength.
   */
  initFrom?: string;
}

export const TRAIN_DEFAULTS: TrainOptions = {
  out: "runs/default",
  steps: 1000,
  batch: 16,
  accum: 1,
  lr: 3e-3,
  minLrRatio: 0.1,
  warmup: 100,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  clip: 1.0,
  seed: 1234,
  logEvery: 10,
  evalEvery: 100,
  evalBatches: 4,
  saveEvery: 500,
  resume: false,
  stopAfter: 0,
};

/** Learning rate at optimizer step `step` (1-based): linear warm-up, then cosine decay. */
export function lrAt(
  o: Pick<TrainOptions, "lr" | "warmup" | "steps" | "minLrRatio">,
  step: number,
): number {
  if (step <= o.warmup) return (o.lr * step) / Math.max(1, o.warmup);
  const span = Math.max(1, o.steps - o.warmup);
  const t = Math.min(1, (step - o.warmup) / span);
  const min = o.lr * o.minLrRatio;
  return min + 0.5 * (o.lr - min) * (1 + Math.cos(Math.PI * t));
}
