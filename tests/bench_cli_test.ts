/**
 * The bench tasks' command lines fail as the product's does: a bad flag or an impossible task
 * is one line on stderr with exit code 2 (usage) or 1, never a stack trace.
 */
import { equal, match } from "node:assert/strict";
import { runScript } from "./_cli.ts";
import { gpuTest } from "./_gpu.ts";

const STAGES = new URL("../bench/passkey_stages.ts", import.meta.url).pathname;

function stagesScript(...args: string[]) {
  return runScript(STAGES, ...args);
}

Deno.test("results:passkey: a malformed --stages is one line and exit code 2", async () => {
  const r = await stagesScript("--stages", "4:x");
  equal(r.code, 2, r.stderr);
  match(r.stderr, /^error: --stages '4:x'/);
  equal(r.stderr.trim().split("\n").length, 1, r.stderr);
});

gpuTest("results:passkey: a task that cannot be built is one line and exit code 1", async () => {
  const out = await Deno.makeTempDir({ prefix: "infini-benchcli-" });
  try {
    // Two segments of 128 bytes: no allowed key position puts the digits at a segment start.
    const r = await stagesScript(
      "--stages",
      "2:1",
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
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
