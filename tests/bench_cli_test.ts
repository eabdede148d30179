/**
 * The bench tasks' command lines fail as the product's does: a bad flag or an impossible task
 * is one line on stderr with exit code 2 (usage) or 1, never a stack trace.
 */
import { equal, match } from "node:assert/strict";
import { runScript } from "./_cli.ts";
import { existsSync } from "node:fs";

const STAGES = new URL("../scripts/passkey_stages.ts", import.meta.url).pathname;

function stagesScript(...args: string[]) {
  return runScript(STAGES, ...args);
}

Deno.test("results:passkey: a malformed --stages is one line and exit code 2", async () => {
  const r = await stagesScript("--stages", "4:x");
  equal(r.code, 2, r.stderr);
  match(r.stderr, /^error: --stages '4:x'/);
  equal(r.stderr.trim().split("\n").length, 1, r.stderr);
});

Deno.test("results:passkey: a task that cannot be built is one line, exit code 1, no --out", async () => {
  const parent = await Deno.makeTempDir({ prefix: "infini-benchcli-" });
  const out = `${parent}/results`;
  try {
    // Two segments of 128 bytes: no allowed key position puts the digits at a segment start.
    // Stage 1 is fine; stage 2 cannot be built, and is rejected before stage 1 trains.
    const r = await stagesScript(
      "--stages",
      "4:1,2:1",
      "--first-mixture",
      "--boundary",
      "0.5",
      "--sets",
      "hiddenSize=32,intermediateSize=128,headDim=8,segmentLength=128",
      "--out",
      out,
    );
    equal(r.code, 1, r.stderr);
    match(r.stderr.trim().split("\n").at(-1)!, /^error: passkey: no allowed key position/);
    equal(r.stderr.match(/error|at file:/g)?.length, 1, r.stderr);
    equal(existsSync(out), false, "a rejected run left its --out folder behind");
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("results:passkey: a bad --eval or --trials is a usage error", async () => {
  for (
    const [flag, value, why] of [
      ["--eval", "4,x", "expected a comma-separated list of positive integers"],
      ["--eval", "1", "a passkey needs at least 2 segments"],
      ["--trials", "0", "expected an integer >= 1"],
    ]
  ) {
    const r = await stagesScript(flag, value);
    equal(r.code, 2, r.stderr);
    equal(r.stderr.trim(), `error: ${flag} '${value}': ${why}`);
  }
});
