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

/** The only line of stderr, which must be the error. */
function errorLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  equal(lines.length, 1, `one line expected, got:\n${stderr}`);
  ok(lines[0].startsWith("error: "), stderr);
  return lines[0];
}

async function stepsLogged(out: string): Promise<number[]> {
  const text = await Deno.readTextFile(`${out}/log.jsonl`);
  return text.trim().split("\n").map((l) => JSON.parse(l).step);
}

Deno.test("train CLI: a new run refuses an --out holding a run's log or checkpoint, before touching anything", async () => {
  await withTempDir(async (root) => {
    // Only a log (a run killed before its first checkpoint): nothing to resume.
    const logOnly = `${root}/log-only`;
    await Deno.mkdir(logOnly);
    await Deno.writeTextFile(`${logOnly}/log.jsonl`, '{"step":1,"loss":2}\n');
    const before = await snapshot(logOnly);
    const r = await cli("train", ...MICRO, "--steps", "1", "--out", logOnly);
    equal(r.code, 1, r.stderr);
    equal(
      errorLine(r.stderr),
      `error: ${logOnly}: already holds a run (log.jsonl); choose another --out, or replace it with --overwrite`,
    );
    deepEqual(await snapshot(logOnly), before);

    // checkpoint.old/ alone (a save cut between its renames) is what --resume continues.
    const cut = `${root}/cut`;
    await Deno.mkdir(`${cut}/checkpoint.old`, { recursive: true });
    const r2 = await cli("train", ...MICRO, "--steps", "1", "--out", cut, "--init-from", root);
    equal(r2.code, 1, r2.stderr);
    equal(
      errorLine(r2.stderr),
      `error: ${cut}: already holds a run (checkpoint.old/); continue it with --resume, choose another --out, or replace it with --overwrite`,
    );

    const both = await cli("train", ...MICRO, "--out", cut, "--resume", "--overwrite");
    equal(both.code, 2, both.stderr);
    match(errorLine(both.stderr), /--overwrite and --resume exclude each other/);
  });
});

gpuTest(
  "train CLI: resuming a finished run says so and writes nothing; a new run there needs --overwrite",
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

      const fresh = await cli("train", ...MICRO, "--steps", "1", "--out", out);
      equal(fresh.code, 1, fresh.stderr);
      equal(
        errorLine(fresh.stderr),
        `error: ${out}: already holds a run (checkpoint/, log.jsonl); continue it with --resume, choose another --out, or replace it with --overwrite`,
      );
      deepEqual(await snapshot(out), before, "a refused run wrote to the folder");

      // --overwrite replaces the run from its start: a new run that fails before its first
      // save leaves no checkpoint of the old one for a --resume to continue under its log.
      const blowUp = await cli(
        ...["train", ...MICRO, "--steps", "20", "--lr", "1e30", "--out", out, "--overwrite"],
      );
      equal(blowUp.code, 1, blowUp.stderr);
      match(blowUp.stderr.trim().split("\n").at(-1)!, /non-finite .*; no checkpoint was saved/);
      equal(await exists(`${out}/checkpoint`), false, "the old run's checkpoint is still there");

      // --overwrite replaces the run: its log and checkpoint are the new run's alone.
      const over = await cli("train", ...MICRO, "--steps", "1", "--out", out, "--overwrite");
      equal(over.code, 0, over.stderr);
      deepEqual(await stepsLogged(out), [1]);
      const state = JSON.parse(await Deno.readTextFile(`${out}/checkpoint/trainer.json`));
      equal(state.step, 1);
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
