/**
 * A run's log: `log.jsonl` (one JSON object per logged step and per validation, appended as
 * training goes) and `loss.svg` (the training and validation loss curves, rewritten whole).
 * On resume the log is cut back to the checkpoint's step, so that it reads as one run.
 */
import type { ValLog } from "../eval/validate.ts";
import { lineChart } from "../ui/svg.ts";
import { writeFileAtomic, writeTextAtomic } from "../util/files.ts";

export const LOG_FILE = "log.jsonl";
export const PLOT_FILE = "loss.svg";

export interface StepLog {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
  elapsedSec: number;
}

/** The entries of a log up to a step, as logged. */
export interface LogEntries {
  steps: StepLog[];
  vals: ValLog[];
}

/** An open log: the entries so far and an appender. */
export interface RunLog extends LogEntries {
  write(e: StepLog | ValLog): Promise<void>;
  close(): void;
}

/**
 * Reads `out`/log.jsonl's entries up to step `upTo` (none when there is no log), with their
 * lines; writes nothing. A line cut by a kill is dropped.
 */
export async function readLog(
  out: string,
  upTo: number,
): Promise<LogEntries & { lines: string[] }> {
  const steps: StepLog[] = [], vals: ValLog[] = [], lines: string[] = [];
  const text = await Deno.readTextFile(`${out}/${LOG_FILE}`).catch(() => "");
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const e = JSON.parse(line);
      if (e.step > upTo) continue;
      lines.push(line);
      if ("valLoss" in e) vals.push(e);
      else steps.push(e);
    } catch {
      // A line cut by a kill: drop it.
    }
  }
  return { steps, vals, lines };
}

/**
 * Opens `out`/log.jsonl for a run at step `fromStep`: a new run (0) starts an empty log, a
 * resumed one keeps the entries up to its checkpoint's step and drops the later ones.
 */
export async function openLog(out: string, fromStep: number): Promise<RunLog> {
  const path = `${out}/${LOG_FILE}`;
  const kept = fromStep > 0 ? await readLog(out, fromStep) : { steps: [], vals: [], lines: [] };
  // Atomic, so that a kill while the log is cut back cannot lose the entries kept.
  await writeTextAtomic(path, kept.lines.map((l) => l + "\n").join(""));
  const f = await Deno.open(path, { append: true });
  const enc = new TextEncoder();
  return {
    steps: kept.steps,
    vals: kept.vals,
    async write(e: StepLog | ValLog) {
      await f.write(enc.encode(JSON.stringify(e) + "\n"));
    },
    close() {
      f.close();
    },
  };
}

/** Writes `out`/loss.svg: the training loss and, when there are any, the validation losses. */
export async function writePlot(out: string, steps: StepLog[], vals: ValLog[]): Promise<void> {
  const series = [{
    name: "train",
    points: steps.map((s) => [s.step, s.loss] as [number, number]),
  }];
  if (vals.length) {
    series.push({
      name: "validation",
      points: vals.map((v) => [v.step, v.valLoss] as [number, number]),
    });
  }
  const svg = lineChart({ title: "Loss", xLabel: "step", yLabel: "loss (nats)", series });
  await writeFileAtomic(`${out}/${PLOT_FILE}`, [new TextEncoder().encode(svg)]);
}

/** A duration for progress lines: 42s, 3m07s, 2h05m; "?" when unknown. */
export function fmtDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
