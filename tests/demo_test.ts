/**
 * The demo end to end, shortened (the full run is `deno task demo`, under a minute here): it
 * trains, evaluates at 1x/4x/16x with memory on and off, and writes its report; its verdict
 * follows the numbers.
 */
import { equal, match, ok } from "node:assert/strict";
import { judge } from "../src/cli/demo.ts";
import type { PasskeyResult } from "../src/eval/passkey.ts";
import { cli } from "./_cli.ts";
import { gpuTest } from "./_gpu.ts";

gpuTest("demo: a short run writes the report, the plots and the table", async () => {
  const out = await Deno.makeTempDir({ prefix: "infini-demo-" });
  try {
    const r = await cli("demo", "--steps", "6", "--trials", "10", "--out", out);
    const stdout = r.stdout;
    equal(r.code, 0, r.stderr);
    match(stdout, /exact match \(10 held-out samples per cell/);
    // The training length is the longest of the recipe's phases (8 segments): 16x is 128.
    match(stdout, /16x \(128 segments\): memory on \d\.\d\d, memory off \d\.\d\d/);
    // 6 steps cannot learn the task: the demo must say so rather than claim success.
    match(stdout, /target NOT met/);
    const report = await Deno.readTextFile(`${out}/report.md`);
    match(report, /!\[loss\]\(loss\.svg\)/);
    match(report, /!\[retrieval\]\(retrieval\.svg\)/);
    for (const f of ["loss.svg", "retrieval.svg"]) {
      match(await Deno.readTextFile(`${out}/${f}`), /^<svg/);
    }
    const res = JSON.parse(await Deno.readTextFile(`${out}/retrieval.json`));
    equal(res.cells.length, 6); // 3 lengths x memory on/off
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("demo: the verdict is 'met' only at memory on >= 0.9 at 16x and memory off <= 0.3", () => {
  const cell = (segments: number, variant: "memory" | "off", correct: number) => ({
    segments,
    tokens: segments * 16,
    depth: 0,
    variant,
    correct,
    trials: 100,
    accuracy: correct / 100,
  });
  const res = (on16: number, off16: number, off4 = 10): PasskeyResult => ({
    segmentLength: 16,
    trials: 100,
    seed: 1,
    seconds: 1,
    cells: [
      cell(2, "memory", 100),
      cell(2, "off", 10),
      cell(8, "memory", 90),
      cell(8, "off", off4),
      cell(32, "memory", on16),
      cell(32, "off", off16),
    ],
  });
  ok(judge(res(95, 9), 2, "recall").met);
  ok(judge(res(90, 30, 30), 2, "recall").met);
  ok(!judge(res(89, 9), 2, "recall").met);
  ok(!judge(res(95, 31), 2, "recall").met); // memory off too good: the task leaks locally
  ok(!judge(res(95, 9, 40), 2, "recall").met); // at any length
  const no = judge(res(40, 9), 2, "recall");
  ok(!no.met);
  ok(no.lines.some((l) => /target NOT met/.test(l)));
  ok(no.lines.some((l) => /does work at the training length/.test(l)));
});
