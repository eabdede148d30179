/**
 * The demo across seeds: runs `demo` (its default recall recipe, or --task passkey) once per
 * seed and prints, for each length (1x, 4x, 16x the training length), the min / median / max
 * exact match with the memory on and off, and how many seeds meet the demo's target (memory on
 * >= 0.9 at 16x, memory off <= 0.3). One line per seed as it finishes; a table and JSON at the end.
 *
 *   deno task bench:demo [--seeds 1-10] [--task recall|passkey] [--steps N] [--out out/bench_demo.json]
 */
import { benchArgs, printTable, writeJson } from "./_util.ts";
import { meanAccuracy, type PasskeyResult } from "../src/eval/passkey.ts";
import { DEMO_TARGET } from "../src/tasks/recipes.ts";
import { UsageError } from "../src/util/errors.ts";

const values = benchArgs(import.meta.url, {
  seeds: { type: "string", default: "1-10" },
  task: { type: "string", default: "recall" },
  steps: { type: "string" },
  out: { type: "string", default: "out/bench_demo.json" },
});

/** "1-10" or "1,5,7" -> seeds. */
function parseSeeds(v: string): number[] {
  const out: number[] = [];
  for (const part of v.split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+))?\s*$/.exec(part);
    if (!m) throw new UsageError(`--seeds '${v}': expected e.g. 1-10 or 1,5,7`);
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    for (let s = a; s <= b; s++) out.push(s);
  }
  if (!out.length) throw new UsageError(`--seeds '${v}': no seeds`);
  return out;
}

const seeds = parseSeeds(values.seeds);
const main = new URL("../main.ts", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "infini-demo-seeds-" });

interface SeedRow {
  seed: number;
  seconds: number;
  on: number[];
  off: number[];
  met: boolean;
}
const rows: SeedRow[] = [];
try {
  for (const seed of seeds) {
    const out = `${tmp}/seed${seed}`;
    const t0 = performance.now();
    const args = ["run", "-A", main, "demo", "--task", values.task, "--seed", String(seed)];
    if (values.steps) args.push("--steps", values.steps);
    args.push("--out", out);
    const r = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
      .output();
    if (r.code !== 0) {
      throw new Error(`demo --seed ${seed} failed: ${new TextDecoder().decode(r.stderr).trim()}`);
    }
    const res: PasskeyResult = JSON.parse(await Deno.readTextFile(`${out}/retrieval.json`));
    const lengths = [...new Set(res.cells.map((c) => c.segments))].sort((a, b) => a - b);
    const on = lengths.map((n) => meanAccuracy(res, n, "memory"));
    const off = lengths.map((n) => meanAccuracy(res, n, "off"));
    const met = on[2] >= DEMO_TARGET.on16 && off.every((x) => x <= DEMO_TARGET.off);
    const row = { seed, seconds: (performance.now() - t0) / 1000, on, off, met };
    rows.push(row);
    console.log(
      `seed ${seed}: memory on ${on.map((x) => x.toFixed(2)).join(" / ")}, off ${
        off.map((x) => x.toFixed(2)).join(" / ")
      } at 1x / 4x / 16x; ${met ? "met" : "NOT met"} (${row.seconds.toFixed(0)} s)`,
    );
  }
} finally {
  await Deno.remove(tmp, { recursive: true });
}

const quantiles = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return { min: s[0], median: mid, max: s[s.length - 1] };
};
const table = ["1x", "4x", "16x"].map((len, i) => {
  const on = quantiles(rows.map((r) => r.on[i])), off = quantiles(rows.map((r) => r.off[i]));
  return {
    length: len,
    "on min": on.min.toFixed(2),
    "on median": on.median.toFixed(2),
    "on max": on.max.toFixed(2),
    "off min": off.min.toFixed(2),
    "off median": off.median.toFixed(2),
    "off max": off.max.toFixed(2),
  };
});
const met = rows.filter((r) => r.met).length;
console.log("");
printTable(table);
console.log(
  `\ntarget (memory on >= ${DEMO_TARGET.on16} at 16x, memory off <= ${DEMO_TARGET.off}) met by ${met} of ${rows.length} seeds; ` +
    `${(rows.reduce((s, r) => s + r.seconds, 0) / rows.length).toFixed(0)} s per demo on average`,
);
await writeJson(values.out, {
  task: values.task,
  steps: values.steps ?? null,
  target: DEMO_TARGET,
  seeds: rows,
  table,
  met,
});
