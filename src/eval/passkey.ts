/**
 * Passkey retrieval (Mohtashami and Jaggi style) over a grid of lengths (in segments) x depths
 * of the key, with held-out keys and a fixed seed, memory on vs off on the same samples.
 *
 * The answer is scored as greedy decoding would produce it: a sample is right when, at each of
 * the 5 answer positions, the correct digit is the arg-max given the correct digits before it.
 * That is exactly "greedy decoding outputs the key": if every step's arg-max is the true digit,
 * greedy reproduces the key; at the first step where it is not, greedy emits a wrong digit. (A
 * test checks it against the generator token by token.) Ties count as right.
 */
import { cellSamples, type PasskeySample } from "../tasks/passkey.ts";
import { recallSamples } from "../tasks/recall.ts";
import type { Streamer, Variant } from "./stream.ts";

export interface PasskeyGrid {
  /** Total lengths, in segments. */
  segments: number[];
  /** Depths of the key statement in [0, 1] (0 = earliest, 1 = latest before the last segment). */
  depths: number[];
  trials: number;
  seed: number;
  variants: Variant[];
  /** Also run the control (key in the final segment) at each length. */
  control: boolean;
  /**
   * "passkey" (default), or "recall": the small associative-recall task (a 1-digit key after
   * 'K' in the first segment, '?' and the key at the end; depth and control do not apply).
   */
  task?: "passkey" | "recall";
}

/** A sample as the grid scores it: the rows whose greedy prediction must be right. */
interface GridSample {
  tokens: Uint32Array;
  targets: Uint32Array;
  rows: number[];
}

export interface PasskeyCell {
  segments: number;
  tokens: number;
  /** Depth in [0, 1], or "control" for key-in-the-last-segment samples. */
  depth: number | "control";
  variant: Variant;
  correct: number;
  trials: number;
  accuracy: number;
}

export interface PasskeyResult {
  segmentLength: number;
  trials: number;
  seed: number;
  cells: PasskeyCell[];
  /** Why the control could not be built (segments too short for key and question), if so. */
  controlSkipped?: string;
  seconds: number;
}

/** Whether the greedy prediction is right at every one of `rows` (unscored rows count as wrong). */
export function allGreedy(
  rows: readonly number[],
  greedy: Map<number, boolean> | undefined,
): boolean {
  return rows.every((r) => greedy?.get(r) === true);
}

/** Whether every answer digit of a sample is the greedy prediction. */
export function sampleCorrect(s: PasskeySample, greedy: Map<number, boolean> | undefined): boolean {
  return allGreedy(s.answerPositions.map((p) => p - 1), greedy);
}

/** Where a grid run is: cell `cell` of `cells` (1-based), chunk `chunk` of its `chunks`. */
export interface GridProgress {
  cell: number;
  cells: number;
  chunk: number;
  chunks: number;
  segments: number;
  depth: number | "control";
  variant: Variant;
}

export async function evalPasskey(
  streamer: Streamer,
  grid: PasskeyGrid,
  onCell?: (cell: PasskeyCell) => void,
  onProgress?: (p: GridProgress) => void,
): Promise<PasskeyResult> {
  const S = streamer.cfg.segmentLength;
  const t0 = performance.now();
  const cells: PasskeyCell[] = [];
  let controlSkipped: string | undefined;
  const recall = grid.task === "recall";
  const perLength = (recall ? 1 : grid.depths.length + (grid.control ? 1 : 0)) *
    grid.variants.length;
  const nCells = grid.segments.length * perLength;
  let cellNo = 0;
  for (const n of grid.segments) {
    const depths: (number | "control")[] = recall ? [0] : [...grid.depths];
    if (grid.control && !recall) depths.push("control");
    for (const d of depths) {
      let samples: GridSample[];
      try {
        samples = recall
          ? recallSamples(S, n, grid.trials, grid.seed)
          : cellSamples(S, n, d, grid.trials, grid.seed).map((s) => ({
            tokens: s.tokens,
            targets: s.targets,
            rows: s.answerPositions.map((p) => p - 1),
          }));
      } catch (e) {
        if (d !== "control" || !(e instanceof RangeError)) throw e;
        controlSkipped = e.message;
        cellNo += grid.variants.length;
        continue;
      }
      for (const v of grid.variants) {
        cellNo++;
        const scored = await streamer.score(samples, v, {
          greedyRows: (i) => samples[i].rows,
          onChunk: (chunk, chunks) =>
            onProgress?.({
              cell: cellNo,
              cells: nCells,
              chunk,
              chunks,
              segments: n,
              depth: d,
              variant: v,
            }),
        });
        const correct = samples.filter((s, i) => allGreedy(s.rows, scored[i].greedy)).length;
        const cell: PasskeyCell = {
          segments: n,
          tokens: n * S,
          depth: d,
          variant: v,
          correct,
          trials: samples.length,
          accuracy: correct / samples.length,
        };
        cells.push(cell);
        onCell?.(cell);
      }
    }
  }
  return {
    segmentLength: S,
    trials: grid.trials,
    seed: grid.seed,
    cells,
    controlSkipped,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** Accuracy of a variant at a length, pooled over the depths (the control excluded). */
export function meanAccuracy(res: PasskeyResult, segments: number, variant: Variant): number {
  const c = res.cells.filter((x) =>
    x.segments === segments && x.variant === variant && x.depth !== "control"
  );
  return c.reduce((s, x) => s + x.correct, 0) / Math.max(1, c.reduce((s, x) => s + x.trials, 0));
}
