/**
 * What a machine with one GPU can tell this project, in one run of under 8 minutes, written
 * to one JSON file (DIR/check_gpu.json, rewritten after every phase, so a run cut short keeps
 * what it measured):
 *
 *   1. the adapter, its limits and features (`main.ts info --json`);
 *   2. the kernel and model tests with the GPU tuning profile (INFINI_PROFILE=gpu: the
 *      workgroup-memory matmul and the blocked kernels a real GPU gets), by `deno test`;
 *   3. GFLOPS of each matmul layout at the mini and seed-2b shapes (bench/kernels.ts);
 *   4. a `mini` training step (bench/train.ts);
 *   5. a full 14-layer seed-2b training step, batch 1, at the longest sequence up to the
 *      preset's 32,768 tokens whose plan (src/train/plan.ts) fits the adapter's limits and the
 *      memory budget, with the plan's default chunk (bench/seed.ts --fast-init): tokens/s,
 *      GFLOPS, GPU bytes planned and allocated. What cannot run is recorded with its reason.
 *
 * Every phase is a child process with a time limit taken from what is left of `--budget`; a
 * phase that fails or times out is recorded and the check goes on. Nothing is downloaded:
 * children run with --cached-only, npm packages come from node_modules (docs/seed.md says how
 * to carry Deno and node_modules to a machine without network: scripts/make_gpu_kit.sh).
 *
 * `--quick` is the same check at tiny shapes, for lavapipe in a test (well under a minute): a
 * few kernel tests, the matmul at the passkey model's shapes, a `tiny` step, no seed-2b step.
 *
 * `--memory` is the budget the seed-2b step is planned against (default 40 GB; on a CPU adapter
 * the machine's memory); `--seed-set key=value` (repeatable) changes that model, e.g. to try
 * the phase on a small adapter (`--seed-set numLayers=1 --seed-set segmentLength=16
 * --seed-set seqLength=64`).
 *
 * `--phases` runs only some of tests, kernels, train, seed (the adapter always), e.g. to
 * repeat the seed-2b step alone.
 *
 *   deno task check:gpu --out DIR [--quick] [--budget SECONDS] [--memory BYTES]
 *                       [--seed-set key=value ...] [--phases tests,kernels,train,seed]
 */
import { benchArgs } from "../bench/_util.ts";
import { parseBytes } from "../src/cli/flags.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import { chooseChunk, GPU_MEMORY_DEFAULT, planTraining } from "../src/train/plan.ts";
import { UsageError } from "../src/util/errors.ts";

const values = benchArgs(import.meta.url, {
  out: { type: "string" },
  quick: { type: "boolean" },
  budget: { type: "string" },
  memory: { type: "string" },
  "seed-set": { type: "string", multiple: true },
  phases: { type: "string" },
});
if (!values.out) throw new UsageError("check:gpu: --out DIR is required (the JSON goes there)");
const OUT = values.out;
const QUICK = !!values.quick;
const BUDGET = values.budget === undefined ? (QUICK ? 50 : 470) : Number(values.budget);
if (!(BUDGET > 0)) throw new UsageError(`--budget '${values.budget}': expected seconds > 0`);
const ROOT = new URL("..", import.meta.url).pathname;
const JSON_PATH = `${OUT}/check_gpu.json`;
const PHASES = ["tests", "kernels", "train", "seed"];
const wanted = (values.phases ?? PHASES.join(",")).split(",").map((p) => p.trim());
for (const p of wanted) {
  if (!PHASES.includes(p)) {
    throw new UsageError(`--phases: unknown phase '${p}' (phases: ${PHASES.join(", ")})`);
  }
}
const start = performance.now();
const left = () => BUDGET - (performance.now() - start) / 1000;

/** The kernel and model tests (full), and the quick subset (tiny shapes, a few seconds). */
const KERNEL_TESTS = [
  "add",
  "adamw",
  "attention",
  "embedding",
  "geglu",
  "infini",
  "matmul",
  "rmsnorm",
  "rope",
  "xent",
].map((n) => `tests/${n}_test.ts`);
const MODEL_TESTS = [
  "model",
  "model_ref",
  "model_invariants",
  "model_steps",
  "model_share",
  "chunked",
  "plan",
].map((n) => `tests/${n}_test.ts`);
const QUICK_TESTS = ["add", "rope", "geglu", "rmsnorm", "embedding", "adamw"].map((n) =>
  `tests/${n}_test.ts`
);

interface Phase {
  name: string;
  command: string;
  seconds: number;
  code: number | null;
  timedOut: boolean;
  ok: boolean;
  /** Why it did not run or what went wrong, when it did not succeed. */
  note?: string;
}

const result: Record<string, unknown> & { phases: Phase[] } = {
  version: 1,
  date: new Date().toISOString(),
  quick: QUICK,
  deno: Deno.version,
  host: {
    os: Deno.build.os,
    arch: Deno.build.arch,
    memoryBytes: Deno.systemMemoryInfo().total,
  },
  phases: [],
};
await Deno.mkdir(OUT, { recursive: true });

async function save(): Promise<void> {
  result.totalSeconds = (performance.now() - start) / 1000;
  await Deno.writeTextFile(JSON_PATH, JSON.stringify(result, null, 2) + "\n");
}

/**
 * Runs `deno <args>` in the repository with the GPU profile, no colour and no downloads,
 * killed after `seconds`; records the phase and returns its output.
 */
async function child(
  name: string,
  args: string[],
  seconds: number,
): Promise<{ phase: Phase; stdout: string; stderr: string }> {
  const limit = Math.max(1, Math.min(seconds, left() - 2));
  const t0 = performance.now();
  const proc = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: {
      INFINI_PROFILE: "gpu",
      NO_COLOR: "1",
      RUST_BACKTRACE: "0",
      XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      proc.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, limit * 1000);
  const out = await proc.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  const phase: Phase = {
    name,
    command: `deno ${args.join(" ")}`,
    seconds: (performance.now() - t0) / 1000,
    code: out.code,
    timedOut,
    ok: out.success && !timedOut,
  };
  if (timedOut) phase.note = `killed after its ${limit.toFixed(0)} s share of --budget ${BUDGET}`;
  result.phases.push(phase);
  console.error(
    `check:gpu: ${name}: ${phase.ok ? "ok" : timedOut ? "timed out" : `exit ${out.code}`} ` +
      `(${phase.seconds.toFixed(1)} s)`,
  );
  return { phase, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** The last `n` characters of a child's output, for the JSON when something went wrong. */
function tail(text: string, n = 3000): string {
  return text.length > n ? text.slice(-n) : text;
}

async function readJson(path: string): Promise<Record<string, unknown> | null> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch {
    return null;
  }
}

// 1. The adapter (with the GPU profile forced, as everything after it runs).
{
  const { phase, stdout, stderr } = await child(
    "adapter",
    ["run", "-A", "--cached-only", "main.ts", "info", "--json"],
    60,
  );
  const info = phase.ok ? JSON.parse(stdout) : null;
  if (!info) phase.note = tail(stderr);
  result.adapter = info?.adapter ?? null;
  result.profile = info?.profile ?? null;
  result.features = info?.features ?? null;
  const limits: Record<string, number> = {};
  for (const [k, v] of Object.entries(info?.limits ?? {})) {
    limits[k] = (v as { device: number }).device;
  }
  result.limits = info ? limits : null;
  result.adapterLimits = info?.limits ?? null;
  await save();
}

// 2. The tests, with the GPU profile.
if (wanted.includes("tests")) {
  const files = (QUICK ? QUICK_TESTS : [...KERNEL_TESTS, ...MODEL_TESTS])
    .filter((f) => exists(`${ROOT}/${f}`));
  const { phase, stdout, stderr } = await child(
    "tests",
    ["test", "-A", "--cached-only", ...(QUICK ? [] : ["--parallel"]), ...files],
    QUICK ? 40 : 240,
  );
  const text = stdout + "\n" + stderr;
  const count = (what: string) => {
    let n = 0;
    for (const m of text.matchAll(new RegExp(`(\\d+) ${what}`, "g"))) n += Number(m[1]);
    return n;
  };
  // deno test's closing line: "ok | 12 passed | 0 failed | 1 ignored (4s)".
  const summary = text.split("\n").filter((l) => /^(ok|FAILED) \|/.test(l)).join("\n");
  const failures = [...text.matchAll(/^(.+) => \.\/tests\/[^\s]+$/gm)].map((m) => m[0]);
  result.tests = {
    files,
    passed: summary ? count("passed") : 0,
    failed: summary ? count("failed") : 0,
    ignored: summary ? count("ignored") : 0,
    summary,
    failures,
    seconds: phase.seconds,
    code: phase.code,
    ...(phase.ok ? {} : { outputTail: tail(text) }),
  };
  if (!phase.ok && !phase.note) {
    phase.note = failures.length ? failures.join("; ") : tail(text, 500);
  }
  await save();
}

const timings: Record<string, unknown> = {};
result.timings = timings;

// 3. Matmul GFLOPS per layout at the mini and seed-2b shapes (the passkey model's in --quick).
if (wanted.includes("kernels")) {
  const file = `${OUT}/bench_kernels.json`;
  const args = ["run", "-A", "--cached-only", "bench/kernels.ts", "--only", "matmul"];
  args.push(...(QUICK ? ["--quick", "--shapes", "passkey39k"] : ["--shapes", "mini,seed-2b"]));
  const { phase, stderr } = await child("kernels", [...args, "--out", file], QUICK ? 20 : 120);
  const j = await readJson(file);
  timings.kernels = j?.results ?? [];
  if (!phase.ok && !phase.note) phase.note = tail(stderr, 1500);
  await save();
}

// 4. A training step of `mini` (`tiny` in --quick).
if (wanted.includes("train")) {
  const file = `${OUT}/bench_train.json`;
  const args = QUICK
    ? ["--presets", "tiny", "--batch", "2", "--steps", "1", "--rounds", "1"]
    : ["--presets", "mini", "--batch", "4", "--steps", "2", "--rounds", "3"];
  const { phase, stderr } = await child(
    "train step",
    ["run", "-A", "--cached-only", "bench/train.ts", ...args, "--out", file],
    QUICK ? 30 : 90,
  );
  const j = await readJson(file);
  timings.train = j?.results ?? [];
  if (!phase.ok && !phase.note) phase.note = tail(stderr, 1500);
  await save();
}

// 5. The full seed-2b: 14 layers, batch 1, the longest sequence (up to 32,768) that fits.
if (QUICK) {
  timings.seed2b = { skipped: "--quick: no seed-2b step at tiny shapes" };
} else if (wanted.includes("seed")) {
  timings.seed2b = await seedStep();
}
await save();

const failed = result.phases.filter((p) => !p.ok).map((p) => p.name);
console.log(
  `check:gpu: ${result.phases.length - failed.length}/${result.phases.length} phases ok` +
    `${failed.length ? ` (not ok: ${failed.join(", ")})` : ""} in ${
      ((performance.now() - start) / 1000).toFixed(1)
    } s; ${JSON_PATH}`,
);

async function seedStep(): Promise<Record<string, unknown>> {
  const limits = result.limits as Record<string, number> | null;
  if (!limits) return { skipped: "no adapter" };
  // A CPU adapter (lavapipe) keeps its buffers in this machine's memory.
  const adapter = result.adapter as { description?: string; isFallbackAdapter?: boolean };
  const cpu = adapter.isFallbackAdapter === true ||
    /llvmpipe|lavapipe|swiftshader/i.test(adapter.description ?? "");
  const memory = values.memory !== undefined
    ? parseBytes("memory", values.memory)
    : cpu
    ? Deno.systemMemoryInfo().total
    : GPU_MEMORY_DEFAULT;
  const lim = {
    maxBufferSize: limits.maxBufferSize,
    maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
  };
  const sets = values["seed-set"] ?? [];
  const base = resolveConfig("seed-2b", sets);
  const S = base.segmentLength;
  let pick: { nS: number; chunk: number; totalBytes: number } | null = null;
  for (let nS = base.seqLength / S; nS >= 1 && !pick; nS--) {
    const cfg = { ...base, seqLength: nS * S };
    const chunk = chooseChunk(cfg, 1, lim, memory);
    if (chunk !== null) {
      const totalBytes = planTraining(cfg, { batch: 1, chunk, limits: lim, memory }).totalBytes;
      pick = { nS, chunk, totalBytes };
    }
  }
  const plan = { memory, limits: lim, ...pick };
  if (!pick) {
    return { plan, skipped: "no sequence length fits batch 1 (see train --preset seed-2b --plan)" };
  }
  if (left() < 60) return { plan, skipped: `only ${left().toFixed(0)} s of --budget left` };
  const file = `${OUT}/bench_seed_2b.json`;
  const { phase, stderr } = await child("seed-2b step", [
    "run",
    "-A",
    "--cached-only",
    "bench/seed.ts",
    // The shape goes by its own flags; other fields pass through.
    ...sets.filter((kv) => !/^(numLayers|segmentLength|seqLength)=/.test(kv))
      .flatMap((kv) => ["--set", kv]),
    "--layers",
    String(base.numLayers),
    "--segment",
    String(S),
    "--segments",
    String(pick.nS),
    "--chunk",
    String(pick.chunk),
    "--steps",
    "2",
    "--fast-init",
    "--out",
    file,
  ], left() - 5);
  const j = await readJson(file);
  if (!phase.ok && !phase.note) phase.note = tail(stderr, 1500);
  return {
    plan,
    config: { numLayers: base.numLayers, segmentLength: S, sets },
    seqLength: pick.nS * S,
    chunkSegments: pick.chunk,
    plannedBytes: j?.planned ?? null,
    allocatedBytes: j?.allocatedBytes ?? null,
    initSeconds: j?.initSeconds ?? null,
    stepSeconds: j?.stepSeconds ?? [],
    tokensPerSecond: j?.tokensPerSecond ?? null,
    gflops: j?.gflops ?? null,
    losses: j?.losses ?? [],
    error: j?.error ?? (phase.ok ? null : phase.note ?? `exit ${phase.code}`),
  };
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
