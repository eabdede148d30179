/** Shared helpers for bench tasks: timing GPU work by whole submits, tables and JSON output. */
import type { ParseArgsConfig } from "node:util";
import { parseCommand } from "../src/cli/flags.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;
import { userErrorExitCode } from "../main.ts";
import { oneLine } from "../src/util/errors.ts";
import type { Recorder, Runtime } from "../src/gpu/runtime.ts";

/**
 * Seconds per call of `record` (which records one call into a recorder): one warm-up submit,
 * then `reps` calls recorded into one submit, timed to completion. The 11 ms GPU-wait tick of
 * lavapipe is amortised over the reps.
 */
export async function timeGpu(
  rt: Runtime,
  record: (rec: Recorder) => void,
  opts: { reps?: number; minSeconds?: number } = {},
): Promise<number> {
  // A benchmark of a rejected dispatch would time nothing: fail loudly instead.
  rt.device.pushErrorScope("validation");
  let rec = rt.record("warmup");
  record(rec);
  rt.submit(rec);
  await rt.sync();
  const err = await rt.device.popErrorScope();
  if (err) {
    throw new Error(`benchmarked work was rejected by WebGPU: ${err.message.split("\n")[0]}`);
  }
  let reps = opts.reps ?? 3;
  for (;;) {
    const t0 = performance.now();
    rec = rt.record("bench");
    for (let i = 0; i < reps; i++) record(rec);
    rt.submit(rec);
    await rt.sync();
    const dt = (performance.now() - t0) / 1000;
    if (dt >= (opts.minSeconds ?? 0.3) || reps >= 1000) return dt / reps;
    reps = Math.min(
      1000,
      Math.ceil(reps * Math.max(2, (opts.minSeconds ?? 0.3) / Math.max(dt, 1e-3))),
    );
  }
}

/** Prints rows as an aligned text table. */
export function printTable(rows: Record<string, string | number>[]): void {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]);
  const cell = (v: string | number) => (typeof v === "number" ? fmtNum(v) : v);
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c] ?? "").length)));
  console.log(cols.map((c, i) => c.padEnd(w[i])).join("  "));
  console.log(w.map((n) => "-".repeat(n)).join("  "));
  for (const r of rows) {
    console.log(
      cols.map((c, i) => {
        const v = r[c] ?? "";
        return typeof v === "number" ? cell(v).padStart(w[i]) : v.padEnd(w[i]);
      }).join("  "),
    );
  }
}

function fmtNum(v: number): string {
  if (Number.isInteger(v)) return String(v);
  if (Math.abs(v) >= 100) return v.toFixed(1);
  if (Math.abs(v) >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

/** Writes a JSON result file and says where. */
export async function writeJson(path: string, data: unknown): Promise<void> {
  const dir = path.substring(0, path.lastIndexOf("/"));
  if (dir) await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(data, null, 2) + "\n");
  console.log(`\nJSON written to ${path}`);
}

/**
 * An error the user can act on (main.ts's userErrorExitCode: a bad flag value, an impossible
 * task shape, a missing checkpoint, no GPU adapter) that escapes a bench script's top level
 * ends it as main.ts does: one line on stderr, its exit code, no stack trace. Anything else
 * keeps Deno's default report.
 */
function reportUserErrors(): void {
  const report = (e: Event, err: unknown) => {
    const code = userErrorExitCode(err);
    if (code === null) return;
    e.preventDefault();
    console.error(`error: ${oneLine((err as Error).message)}`);
    Deno.exit(code);
  };
  globalThis.addEventListener("unhandledrejection", (e) => report(e, e.reason));
  globalThis.addEventListener("error", (e) => report(e, e.error));
}

/**
 * Parses a bench script's flags with the CLI's own convention (src/cli/flags.ts): `--help`
 * prints the script's leading doc comment (its usage) and exits; an unknown or malformed flag
 * is one line on stderr and exit code 2.
 */
export function benchArgs<const O extends Options>(moduleUrl: string, options: O) {
  reportUserErrors();
  const src = Deno.readTextFileSync(new URL(moduleUrl));
  const doc = src.match(/\/\*\*([\s\S]*?)\*\//)?.[1] ?? "";
  const help = doc.split("\n").map((l) => l.replace(/^\s*\* ?/, "")).join("\n").trim();
  const name = new URL(moduleUrl).pathname.split("/").slice(-2).join("/");
  const parsed = parseCommand({ name, help, options }, Deno.args);
  if (!parsed) Deno.exit(0);
  return parsed.values;
}
