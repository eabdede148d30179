/**
 * `train` and the run folder, through the real command line: what a user hits when --out
 * already holds a run (finished, or to be replaced) or when a --resume / --init-from fails.
 */
import { deepEqual, equal, match, ok } from "node:assert/strict";
import { exists } from "../src/util/files.ts";
import { cli } from "./_cli.ts";
import { gpuTest } from "./_gpu.ts";

/** The micro model on the recall task, 2 sequences a step: a few seconds a run. */
const MICRO = [
  ...["--preset", "micro", "--data", "recall", "--batch", "2"],
  ...["--log-every", "1", "--eval-every", "0"],
];

/**
 * Every entry under `dir` with what a write would change: inode (an atomic replace makes a new
 * file or folder), modification time and size.
 */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(`${dir}/${rel}`)) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      const st = await Deno.stat(`${dir}/${path}`);
      out[path] = `${st.ino} ${st.mtime?.getTime()} ${st.isDirectory ? "dir" : st.size}`;
      if (st.isDirectory) await walk(path);
    }
  };
  await walk("");
  return out;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "infini-train-cli-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

gpuTest(
  "train CLI: resuming a finished run says so and writes nothing",
  async () => {
    await withTempDir(async (root) => {
      const out = `${root}/run`;
      const first = await cli("train", ...MICRO, "--steps", "2", "--out", out);
      equal(first.code, 0, first.stderr);
      const before = await snapshot(out);
      ok(before["checkpoint/trainer.json"] && before["log.jsonl"], Object.keys(before).join());

      for (const steps of ["2", "1"]) {
        const again = await cli("train", ...MICRO, "--steps", steps, "--out", out, "--resume");
        equal(again.code, 0, again.stderr);
        equal(
          again.stderr.trim().split("\n").at(-1),
          `${out}: already at step 2 of ${steps}; nothing to do (raise --steps to continue)`,
        );
        ok(!/NaN|done at step|resumed from/.test(again.stderr), again.stderr);
        deepEqual(await snapshot(out), before, "resuming a finished run wrote to its folder");
      }
    });
  },
);

gpuTest(
  "train CLI: a failed --resume or --init-from leaves no --out folder behind",
  async () => {
    await withTempDir(async (root) => {
      const out = `${root}/new`;
      const cases: [string[], RegExp][] = [
        [["--resume"], /nothing to resume/],
        [["--init-from", `${root}/nowhere`], /no such checkpoint folder/],
      ];
      for (const [extra, why] of cases) {
        const r = await cli("train", ...MICRO, "--steps", "1", "--out", out, ...extra);
        equal(r.code, 1, r.stderr);
        match(r.stderr.trim().split("\n").at(-1)!, why);
        equal(await exists(out), false, `${extra[0]}: left ${out} behind`);
      }
    });
  },
);
