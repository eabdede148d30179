/**
 * Recipes for the synthetic tasks, as data: the demo's two (`demo --task recall|passkey`) and the
 * defaults of staged passkey training (scripts/passkey_stages.ts), whose first stage is the
 * demo's passkey recipe and whose later stages lengthen the training sequences.
 *
 * @example
 * ```ts
 * const r = DEMO_TASKS.passkey;
 * const cfg = resolveConfig(r.preset, r.sets);
 * const o = { ...TRAIN_DEFAULTS, ...r.train, out: "runs/demo" };
 * ```
 */

import type { RecallPhase } from "./sources.ts";

/** Training options a recipe sets; the names and meanings of src/train's TrainOptions. */
export interface TrainRecipe {
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  logEvery: number;
  evalEvery: number;
  evalBatches: number;
  saveEvery: number;
}

/** A demo task: the model, how it trains, and how it is measured and described. */
export interface DemoTask {
  /** Model preset and `--set` overrides. */
  preset: string;
  sets: string[];
  train: TrainRecipe;
  /** Held-out samples per cell of the retrieval grid (passkey: per depth), by default. */
  trials: number;
  /** What the task is, for the report ("... of <describe>"). */
  describe: string;
  /**
   * Recall: the training lengths over time, each phase a share of the steps (the last takes the
   * rest); default: the config's length throughout.
   */
  phases?: readonly DemoPhase[];
}

/** A share of a demo's training steps and the lengths (segments) its batches draw from. */
export interface DemoPhase {
  share: number;
  segments: readonly number[];
}

/**
 * The demo's target, shared by its verdict and `bench:demo`: exact match with the memory on
 * at least `on16` at 16x the training length, and with the memory off at most `off` at every
 * length.
 */
export const DEMO_TARGET = { on16: 0.9, off: 0.3 } as const;

/** A recipe's phases for a run of `steps` steps, in batches (the last phase open-ended). */
export function phaseBatches(phases: readonly DemoPhase[], steps: number): RecallPhase[] {
  return phases.map((p, i) => ({
    batches: i === phases.length - 1 ? Infinity : Math.round(p.share * steps),
    segments: p.segments,
  }));
}

export const DEMO_TASKS: Record<"recall" | "passkey", DemoTask> = {
  // The micro model (26k parameters), segments of 16 bytes: a third of the steps on 2 segments
  // (the key in one, the question in the next: learned fast), then a mixture of 2, 4 and 8, so
  // that the read is trained against many segments of filler (docs/results.md, The demo across
  // seeds: on 2 segments only, 6 of 10 seeds carried the key to 16x).
  recall: {
    preset: "micro",
    sets: ["seqLength=128"],
    train: {
      steps: 200,
      batch: 64,
      lr: 1e-2,
      warmup: 20,
      weightDecay: 0,
      logEvery: 20,
      evalEvery: 50,
      evalBatches: 4,
      saveEvery: 0,
    },
    phases: [{ share: 1 / 3, segments: [2] }, { share: 2 / 3, segments: [2, 4, 8] }],
    trials: 100,
    describe: `the associative-recall task: a 1-digit key follows the marker 'K' somewhere in
the first segment, random letters fill the rest, and the sequence ends with '?' and the key
again; only the answer digit is scored (chance 0.1). The first third of the steps trains on 2
segments, the rest on a mixture of 2, 4 and 8 segments (one length per batch)`,
  },
  // The notes' 39k-parameter passkey model, 4 segments of 32 bytes.
  passkey: {
    preset: "tiny",
    // N(0, 0.1) init: at N(0, 0.02) this recipe stayed at chance for 2,500 steps (README).
    sets: ["hiddenSize=32", "intermediateSize=128", "headDim=8", "initStd=0.1"],
    train: {
      steps: 2500,
      batch: 32,
      lr: 1e-2,
      warmup: 30,
      weightDecay: 0,
      logEvery: 25,
      evalEvery: 100,
      evalBatches: 2,
      saveEvery: 0,
    },
    trials: 20,
    describe: `the passkey task: filler sentences, "The pass key is NNNNN. Remember it."
somewhere before the last segment, and "What is the pass key? The pass key is NNNNN." at the
end; all 5 digits must be right`,
  },
};
/** Passkey: loss weight of the answer digits, 10x the rest of the sequence together. */
export const DEMO_ANSWER_WEIGHT = 254;
/**
 * Passkey: share of training keys whose digits start a segment. Drawn uniformly that is 1 in
 * 32, and those keys stayed the model's weak spot (README, Results).
 */
export const DEMO_BOUNDARY_SHARE = 0.2;

/** Staged training's defaults for one task (each is a flag of scripts/passkey_stages.ts). */
export interface StageDefaults {
  /** Model preset; passkey takes `--sets` overrides on top, recall none. */
  preset: string;
  /** `--stages`: "M:N" or "M:N:LR" per stage (segments, steps, peak learning rate). */
  stages: string;
  /** `--lr`: peak learning rate of a stage that gives none. */
  lr: number;
  /** `--warmup`: warm-up steps of the first stage (later stages: STAGE_TRAIN.laterWarmup). */
  warmup: number;
  /** `--answer-weight`; undefined: the task's own default. */
  answerWeight?: number;
  /** `--boundary`: share of training keys whose digits start a segment. */
  boundaryShare: number;
}

const demoPasskey = DEMO_TASKS.passkey.train;

/**
 * Passkey: the demo's recipe, which solved 4 segments here (README, Results), for the first
 * stage, then three lengthening stages at lr 3e-3; the notes' recipe (lr 3e-3, 100 warm-up
 * steps, answer weight (T-1)/5, N(0, 0.02) init) stayed at chance for 2,500 steps here.
 * Recall: the micro model's short run.
 */
export const STAGE_DEFAULTS: Record<"passkey" | "recall", StageDefaults> = {
  passkey: {
    preset: DEMO_TASKS.passkey.preset,
    stages: `4:${demoPasskey.steps}:${demoPasskey.lr},16:600:0.003,32:500:0.003,64:400:0.003`,
    lr: demoPasskey.lr,
    warmup: demoPasskey.warmup,
    answerWeight: DEMO_ANSWER_WEIGHT,
    boundaryShare: DEMO_BOUNDARY_SHARE,
  },
  recall: {
    preset: DEMO_TASKS.recall.preset,
    stages: "2:200",
    lr: 0.003,
    warmup: 100,
    boundaryShare: 0,
  },
};

/** Training options of every stage that no flag sets. */
export const STAGE_TRAIN = {
  /** Warm-up steps of every stage after the first (which starts from trained weights). */
  laterWarmup: 20,
  weightDecay: 0,
  logEvery: 25,
  evalEvery: 100,
  evalBatches: 1,
  saveEvery: 100,
} as const;

/** Lengths, in segments, that a lengthening stage mixes below its maximum. */
export const STAGE_BUCKETS: readonly number[] = [3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128];

/**
 * The training lengths of a stage up to `maxSegments`: that length alone, or for a mixture
 * the buckets below it and the maximum itself (which need not be a bucket).
 */
export function stageLengths(maxSegments: number, mixture: boolean): number[] {
  return mixture ? [...STAGE_BUCKETS.filter((b) => b < maxSegments), maxSegments] : [maxSegments];
}
