/**
 * The trainer under faults, through the real CLI in a subprocess (`main.ts train` on the micro
 * preset and the recall task, a few steps each):
 *   - Ctrl-C (SIGINT) saves a checkpoint at the step it stopped and exits 0; it is heard at
 *     once even while a step holds the main thread, and a second SIGINT ends the process at
 *     once (status 130), leaving the last good checkpoint loadable;
 *   - kill -9 at random moments and while a checkpoint is being written never leaves the last
 *     good checkpoint unreadable, and --resume then ends with the losses and gradient norms of
 *     an uninterrupted run, bit for bit;
 *   - a non-finite loss or gradient stops training (exit 1) with one line naming the step, and
 *     the checkpoint on disk is left byte for byte as it was;
 *   - a batch or vocabulary too large for the adapter is one line naming the limit and what to
 *     reduce.
 */
import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import {
  CONFIG_FILE,
  loadCheckpoint,
  MODEL_FILE,
  saveCheckpoint,
} from "../src/model/checkpoint.ts";
import { FINAL_NORM, paramTable } from "../src/model/params.ts";
import { readSafetensors } from "../src/model/safetensors.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
/** The micro model on the recall task: about 0.1 s a step on lavapipe, 2 s to start. */
const MICRO = ["--preset", "micro", "--data", "recall", "--log-every", "1", "--eval-every", "0"];

interface Run {
  child: Deno.ChildProcess;
  /** stderr so far (progress lines, messages). */
  stderr(): string;
  /** Resolves when the process has ended and its output is read. */
  done: Promise<{ code: number; signal: Deno.Signal | null; stderr: string; stdout: string }>;
  /** Whether the process has ended. */
  ended(): boolean;
}

/** Starts `main.ts train ...args` with piped output. */
function train(args: string[]): Run {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "train", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let err = "", out = "", ended = false;
  const collect = async (s: ReadableStream<Uint8Array>, add: (t: string) => void) => {
    const dec = new TextDecoder();
    for await (const chunk of s) add(dec.decode(chunk, { stream: true }));
  };
  const done = Promise.all([
    child.status,
    collect(child.stderr, (t) => err += t),
    collect(child.stdout, (t) => out += t),
  ]).then(([st]) => {
    ended = true;
    return { code: st.code, signal: st.signal, stderr: err, stdout: out };
  });
  return { child, stderr: () => err, done, ended: () => ended };
}

/** Sends a signal unless the process has already ended. */
function signal(r: Run, sig: Deno.Signal): void {
  if (r.ended()) return;
  try {
    r.child.kill(sig);
  } catch (e) {
    // It ended between the check and the kill.
    if (!(e instanceof TypeError || e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Awaits `p`; if it throws, kills the run (so no process outlives the test) and rethrows. */
async function orKill<T>(r: Run, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    signal(r, "SIGKILL");
    await r.done;
    throw e;
  }
}

/** Runs `main.ts train ...args` to the end (at most `limitMs`). */
async function trainToEnd(args: string[], limitMs = 120_000) {
  const r = train(args);
  const timer = setTimeout(() => signal(r, "SIGKILL"), limitMs);
  try {
    return await r.done;
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `pred` every `everyMs` until it holds; throws after `limitMs`. */
async function waitFor(pred: () => boolean | Promise<boolean>, what: string, limitMs = 60_000) {
  const t0 = performance.now();
  while (!(await pred())) {
    if (performance.now() - t0 > limitMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

interface LogStep {
  step: number;
  loss: number;
  gradNorm: number;
  /** Seconds since training started (after start-up). */
  elapsedSec: number;
}

/** The step entries of a run's log.jsonl (validation entries left out). */
async function readLog(out: string): Promise<LogStep[]> {
  const text = await Deno.readTextFile(`${out}/log.jsonl`).catch(() => "");
  return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l)).filter((e) =>
    "loss" in e
  );
}

/** The error line of a failed run: stderr's last line, the only one starting "error:". */
function errorLine(stderr: string): string {
  const lines = stderr.split("\n").filter((l) => l.trim() !== "");
  const errors = lines.filter((l) => l.startsWith("error:"));
  equal(errors.length, 1, `expected one error line in:\n${stderr}`);
  equal(lines.at(-1), errors[0], `the error is not the last line:\n${stderr}`);
  ok(!/^\s+at /m.test(stderr), `a stack trace was printed:\n${stderr}`);
  return errors[0];
}

/** What `readTrainingCheckpoint` resumes from: checkpoint/, else checkpoint.old/, else nothing. */
function resumableDir(out: string): string | null {
  if (exists(`${out}/checkpoint`)) return `${out}/checkpoint`;
  if (exists(`${out}/checkpoint.old`)) return `${out}/checkpoint.old`;
  return null;
}

/**
 * Loads a checkpoint the way a resume would read it (model, config, trainer.json and the
 * AdamW moments) and returns its step; throws if any part is unreadable or inconsistent.
 */
async function checkpointStep(dir: string): Promise<number> {
  const ck = await loadCheckpoint(dir);
  const state = JSON.parse(await Deno.readTextFile(`${dir}/trainer.json`));
  equal(ck.metadata.step, String(state.step), `${dir}: model and trainer.json disagree`);
  const opt = await readSafetensors(`${dir}/optimizer.safetensors`);
  for (const name of ["adam_m", "adam_v"]) {
    equal(opt.tensors.get(name)?.data.length, ck.table.total, `${dir}: ${name}`);
  }
  return state.step;
}

async function fileBytes(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(dir)) out.set(e.name, await Deno.readFile(`${dir}/${e.name}`));
  return out;
}

async function withTempDir(prefix: string, fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

gpuTest("reliability: Ctrl-C saves a checkpoint at the step it stopped and exits 0", async () => {
  await withTempDir("infini-sigint-", async (out) => {
    const r = train([
      ...MICRO,
      "--steps",
      "100000",
      "--batch",
      "4",
      "--save-every",
      "0",
      "--out",
      out,
    ]);
    await orKill(r, waitFor(async () => (await readLog(out)).length >= 5 || r.ended(), "5 steps"));
    signal(r, "SIGINT");
    const res = await r.done;
    equal(res.code, 0, res.stderr);
    match(res.stderr, /interrupt: finishing this step and saving a checkpoint/);
    const n = Number(/interrupted at step (\d+)/.exec(res.stderr)?.[1]);
    ok(n >= 5, `stopped at step ${n}`);
    equal(await checkpointStep(`${out}/checkpoint`), n);
    const log = await readLog(out);
    deepStrictEqual(log.map((e) => e.step), Array.from({ length: n }, (_, i) => i + 1));
    ok(!exists(`${out}/checkpoint.tmp`) && !exists(`${out}/checkpoint.old`));
  });
});

gpuTest(
  "reliability: Ctrl-C is heard at once even mid-step; a second one ends the process at once (130)",
  async () => {
    await withTempDir("infini-sigint2-", async (out) => {
      // Batch 1024: a step takes about 2.5 s on 2 idle cores (more under load), and on lavapipe
      // the main thread spends it inside queue.submit, where no listener of its own could run.
      // Both interrupts must still act within a second, and both land early in step 3 (step 2's
      // checkpoint is written just before it starts), long before it could finish and save.
      const r = train([
        ...MICRO,
        ...["--steps", "100000", "--batch", "1024", "--save-every", "2", "--out", out],
      ]);
      await orKill(
        r,
        waitFor(() => exists(`${out}/checkpoint/trainer.json`) || r.ended(), "a checkpoint"),
      );
      await sleep(100);
      const t0 = performance.now();
      signal(r, "SIGINT");
      await orKill(
        r,
        waitFor(() => /interrupt: finishing/.test(r.stderr()) || r.ended(), "the first notice"),
      );
      const noticeMs = performance.now() - t0;
      await sleep(100);
      const t1 = performance.now();
      signal(r, "SIGINT");
      const res = await r.done;
      const exitMs = performance.now() - t1;
      ok(res.signal === "SIGINT" || res.code === 130, `status ${res.code} ${res.signal}`);
      match(res.stderr, /second interrupt: exiting without saving/);
      ok(!/interrupted at step/.test(res.stderr), "it finished saving instead of exiting");
      ok(noticeMs < 1000, `the first interrupt was noticed after ${noticeMs.toFixed(0)} ms`);
      ok(exitMs < 1000, `exited ${exitMs.toFixed(0)} ms after the second interrupt`);
      const dir = resumableDir(out);
      ok(dir, "no checkpoint left");
      const step = await checkpointStep(dir);
      ok(step >= 2 && step % 2 === 0, `checkpoint at step ${step}`);
      console.log(
        `first interrupt noticed after ${noticeMs.toFixed(0)} ms; second: exit ${res.code} ` +
          `after ${exitMs.toFixed(0)} ms; checkpoint at step ${step}`,
      );
    });
  },
);

gpuTest(
  "reliability: kill -9 at random moments and mid-save; --resume ends bit-identical to an uninterrupted run",
  async () => {
    const STEPS = 60;
    const flags = [
      ...MICRO,
      ...["--steps", String(STEPS), "--batch", "4", "--save-every", "1"],
      ...["--lr", "5e-3", "--warmup", "2", "--seed", "11"],
    ];
    await withTempDir("infini-kill-", async (root) => {
      const tRef = performance.now();
      const ref = await trainToEnd([...flags, "--out", `${root}/ref`]);
      const wallSec = (performance.now() - tRef) / 1000;
      equal(ref.code, 0, ref.stderr);
      const want = await readLog(`${root}/ref`);
      equal(want.length, STEPS);
      // Kill times follow this machine's speed (measured by the uninterrupted run): start-up,
      // then 4-16% of the run's training time, so that the kills land mid-run and leave work for
      // the final resume whether the cores are idle or busy.
      const trainSec = want[STEPS - 1].elapsedSec;
      const startSec = Math.max(0, wallSec - trainSec);

      const out = `${root}/killed`;
      const rng = new Rng(2024);
      // Kill at a random time after the start (start-up, resume, training or saving), or as soon
      // as a checkpoint write is seen in progress (checkpoint.tmp/ being filled, or the swap
      // that leaves checkpoint.old/).
      const plan = [
        "random",
        "checkpoint.tmp",
        "random",
        "checkpoint.old",
        "checkpoint.tmp",
        "random",
      ];
      let best = 0;
      const notes: string[] = [];
      for (const [i, how] of plan.entries()) {
        const resume = resumableDir(out) !== null;
        // Without a checkpoint, a fresh start replaces what the kill left (a log, a cut save).
        const r = train([...flags, "--out", out, resume ? "--resume" : "--overwrite"]);
        const t0 = performance.now();
        if (how === "random") {
          await sleep(1000 * (startSec + trainSec * (0.04 + 0.12 * rng.next())));
        } else {
          // Poll as fast as the event loop allows; give up after 8 s (then kill anyway).
          await waitFor(() => exists(`${out}/${how}`) || r.ended(), how, 8000).catch(() => {});
        }
        signal(r, "SIGKILL");
        const res = await r.done;
        const left = ["checkpoint", "checkpoint.old", "checkpoint.tmp"].filter((d) =>
          exists(`${out}/${d}`)
        );
        const dir = resumableDir(out);
        // The last good checkpoint survives every kill: one is readable as soon as one was
        // written, and its step never goes back.
        const step = dir === null ? 0 : await checkpointStep(dir);
        ok(step >= best, `kill ${i + 1}: checkpoint went back from step ${best} to ${step}`);
        if (best > 0) ok(dir !== null, `kill ${i + 1}: the checkpoint of step ${best} is gone`);
        best = step;
        notes.push(
          `kill ${i + 1} (${how}, ${((performance.now() - t0) / 1000).toFixed(2)} s${
            resume ? ", resumed run" : ""
          }): ${res.signal === "SIGKILL" ? "killed" : `ended with ${res.code}`}; left ${
            left.join(" + ") || "nothing"
          }; resumable step ${step}`,
        );
        if (res.signal !== "SIGKILL") equal(res.code, 0, res.stderr);
      }
      console.log(notes.join("\n"));
      ok(best > 0 && best < STEPS, `the kills left step ${best}; the final resume must do work`);

      const fin = await trainToEnd([...flags, "--out", out, "--resume"]);
      equal(fin.code, 0, fin.stderr);
      match(fin.stderr, new RegExp(`resumed from .* at step ${best}`));
      const got = await readLog(out);
      // Every step once, in order, with the uninterrupted run's loss and gradient norm exactly.
      deepStrictEqual(
        got.map((e) => [e.step, e.loss, e.gradNorm]),
        want.map((e) => [e.step, e.loss, e.gradNorm]),
      );
      equal(await checkpointStep(`${out}/checkpoint`), STEPS);
    });
  },
);

gpuTest(
  "reliability: a non-finite gradient or loss stops training naming the step; the checkpoint is kept as it was",
  async () => {
    await withTempDir("infini-nan-", async (out) => {
      const flags = [...MICRO, "--batch", "4", "--save-every", "0", "--out", out];
      const first = await trainToEnd([...flags, "--steps", "3"]);
      equal(first.code, 0, first.stderr);
      const ckpt = `${out}/checkpoint`;
      const before = await fileBytes(ckpt);

      // A learning rate of 1e30 (honest AdamW arithmetic): the first update makes the weights
      // huge, and a later step's gradient or loss overflows.
      const blowUp = await trainToEnd([...flags, "--steps", "10", "--resume", "--lr", "1e30"]);
      equal(blowUp.code, 1, blowUp.stderr);
      const line = errorLine(blowUp.stderr);
      const m = /^error: step (\d+): non-finite (loss|gradient norm)/.exec(line);
      ok(m, `unexpected message: ${line}`);
      const n = Number(m[1]);
      ok(n > 3 && n <= 10, line);
      ok(line.includes(ckpt), `the message does not point at the checkpoint: ${line}`);
      // Every step before it was finite and logged; none from it on.
      const log = await readLog(out);
      deepStrictEqual(log.map((e) => e.step), Array.from({ length: n - 1 }, (_, i) => i + 1));
      ok(log.every((e) => Number.isFinite(e.loss) && Number.isFinite(e.gradNorm)));
      deepStrictEqual(await fileBytes(ckpt), before);
      equal(await checkpointStep(ckpt), 3);

      // A NaN weight (the final norm) makes the very next step's loss non-finite.
      const ck = await loadCheckpoint(ckpt);
      const params = ck.params.slice();
      params[paramTable(ck.config).get(FINAL_NORM).offset] = NaN;
      await saveCheckpoint(ckpt, ck.config, params, ck.metadata);
      const poisoned = await fileBytes(ckpt);
      const nan = await trainToEnd([...flags, "--steps", "10", "--resume"]);
      equal(nan.code, 1, nan.stderr);
      match(errorLine(nan.stderr), /^error: step 4: non-finite loss \(NaN\)/);
      deepStrictEqual(await fileBytes(ckpt), poisoned);
      deepStrictEqual([...poisoned.keys()].sort(), [...before.keys()].sort());
      ok(poisoned.has(MODEL_FILE) && poisoned.has(CONFIG_FILE));
    });
  },
);

gpuTest(
  "reliability: a buffer over the adapter's limits is one line naming the limit and what to reduce",
  async () => {
    await withTempDir("infini-limits-", async (out) => {
      const cases: [string[], RegExp, RegExp][] = [
        [
          ["--batch", "100000000"],
          /maxStorageBufferBindingSize/,
          /reduce batch or sequence length/,
        ],
        // A weight other than the embedding over maxBufferSize (a 2.4 GiB MLP matrix against
        // lavapipe's 2 GiB): the embedding itself would be split across buffers in row blocks.
        [["--set", "intermediateSize=20000000"], /maxBufferSize/, /reduce .*model's size/],
      ];
      for (const [args, limit, advice] of cases) {
        const res = await trainToEnd([...MICRO, "--steps", "1", ...args, "--out", out]);
        equal(res.code, 1, res.stderr);
        const line = errorLine(res.stderr);
        equal(res.stderr.trim(), line, "more than the error was printed");
        match(line, limit);
        match(line, advice);
      }
    });
  },
);
