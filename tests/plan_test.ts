/**
 * The training memory plan (src/train/plan.ts) against what the runtime really allocates, and
 * the seed-2b plan against an 80 GB GPU with H100 limits.
 *
 * The plan walks the buffers model.ts and optimizer.ts create without creating them; here the
 * training model and its optimizer are created on the GPU as the trainer creates them, and
 * rt.allocatedBytes grows by exactly the plan's total on shapes that exercise every
 * branch: the byte vocabulary (a padded last LM-head chunk), Qwen's vocabulary at a small width
 * (several LM-head chunks under lavapipe's 128 MiB binding cap), and an odd shape with grouped
 * KV heads, the delta rule and a plain layer among Infini ones. The plan claims to walk the
 * same buffers, so the check is to the byte: a 5% tolerance let a dropped (rows x F) backward
 * buffer pass at tiny's shape (4.4% of its total).
 */
import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { Runtime } from "../src/gpu/runtime.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { InfiniGemma } from "../src/model/model.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import { paramTable } from "../src/model/params.ts";
import { Optimizer } from "../src/train/optimizer.ts";
import {
  advice,
  chooseChunk,
  chunkChoices,
  GPU_MEMORY_DEFAULT,
  H100_LIMITS,
  LAVAPIPE_LIMITS,
  PLAN_PARTS,
  planByChunk,
  type PlanLimits,
  planTraining,
  trainingBuffers,
} from "../src/train/plan.ts";
import { parseBytes } from "../src/cli/flags.ts";
import { cli } from "./_cli.ts";
import { gpuTest } from "./_gpu.ts";

const GB = 1e9;

/** The runtime's limits as a plan sees them. */
function limitsOf(rt: Runtime): PlanLimits {
  return {
    maxBufferSize: rt.limits.maxBufferSize,
    maxStorageBufferBindingSize: rt.limits.maxStorageBufferBindingSize,
  };
}

/**
 * Bytes the runtime allocates for a training model of `cfg` (batch B, chunks of K segments,
 * default the whole sequence) and its optimizer, created as src/train/trainer.ts creates them.
 */
async function allocated(rt: Runtime, cfg: ModelConfig, B: number, K?: number): Promise<number> {
  const before = rt.allocatedBytes;
  const S = cfg.segmentLength, nS = cfg.seqLength / S, k = K ?? nS;
  const chunks = Math.ceil(nS / k), chunked = k < nS;
  const model = await InfiniGemma.create(rt, cfg, {
    B,
    T: chunked ? k * S : cfg.seqLength,
    train: true,
    chunks,
  });
  await Optimizer.create(model, { weightDecay: 0.1 });
  return rt.allocatedBytes - before;
}

/** The odd shape: grouped KV heads, the delta rule, a plain layer before two Infini ones. */
const ODD = [
  "vocabSize=37",
  "hiddenSize=24",
  "intermediateSize=40",
  "numLayers=3",
  "numHeads=4",
  "numKvHeads=2",
  "headDim=8",
  "segmentLength=5",
  "memoryUpdate=delta",
  "infiniLayers=1,2",
];

const SHAPES: { name: string; cfg: () => ModelConfig; B: number; chunk?: number }[] = [
  { name: "tiny", cfg: () => resolveConfig("tiny", []), B: 4 },
  { name: "tiny, chunks of 1 segment", cfg: () => resolveConfig("tiny", []), B: 4, chunk: 1 },
  {
    name: "micro, vocabSize 151936",
    cfg: () => resolveConfig("micro", ["vocabSize=151936"]),
    B: 2,
  },
  {
    name: "odd: V 37, C 24, H 4 / Hkv 2, D 8, S 5, delta, layer 0 plain",
    cfg: () => resolveConfig("tiny", [...ODD, "seqLength=20"]),
    B: 3,
  },
  {
    name: "odd, 8 segments in chunks of 3 (the last padded)",
    cfg: () => resolveConfig("tiny", [...ODD, "seqLength=40"]),
    B: 2,
    chunk: 3,
  },
];

for (const s of SHAPES) {
  gpuTest(`plan: the plan's total is what training allocates (${s.name})`, async (rt) => {
    const cfg = s.cfg();
    const req = { batch: s.B, chunk: s.chunk, limits: limitsOf(rt), memory: 1e15 };
    const plan = planTraining(cfg, req);
    ok(plan.fits, plan.problems.join("; "));
    const real = await allocated(rt, cfg, s.B, s.chunk);
    const rel = Math.abs(plan.totalBytes - real) / real;
    console.log(
      `  ${s.name}: planned ${plan.totalBytes} bytes, allocated ${real} (${
        (100 * rel).toFixed(3)
      }%)`,
    );
    equal(plan.totalBytes, real, `planned ${plan.totalBytes} bytes, the runtime allocated ${real}`);
  });
}

gpuTest(
  "plan: the plan's total is what training allocates with parameters in pages (4 MiB buffers, 1 MiB bindings)",
  async () => {
    // micro with a vocabulary of 151,931: the 19.4 MB embedding spans five 4 MiB pages as row blocks,
    // the LM head runs in chunks of 1 MiB bindings within each block.
    const limits = { maxBufferSize: 4 * 2 ** 20, maxStorageBufferBindingSize: 2 ** 20 };
    const rt = await Runtime.create({ limits });
    try {
      const cfg = resolveConfig("micro", ["vocabSize=151931"]); // odd: the last chunk is padded
      const plan = planTraining(cfg, { batch: 2, limits, memory: 1e15 });
      ok(plan.fits, plan.problems.join("; "));
      ok(
        trainingBuffers(cfg, { batch: 2, limits, memory: 1e15 }).filter((b) =>
          b.part === "parameters"
        ).length > 1,
      );
      const real = await allocated(rt, cfg, 2);
      equal(
        plan.totalBytes,
        real,
        `planned ${plan.totalBytes} bytes, the runtime allocated ${real}`,
      );
    } finally {
      rt.destroy();
    }
  },
);

gpuTest(
  "plan: a mixture of lengths without chunks adds a model per shorter length (train --segments)",
  async (rt) => {
    const cfg = resolveConfig("tiny", []); // 4 segments of 32
    const B = 3, lengths = [2, 3, 4, 3];
    const plan = planTraining(cfg, { batch: B, limits: limitsOf(rt), memory: 1e15, lengths });
    const before = rt.allocatedBytes;
    // As the trainer does: the full-length model and its optimizer, then one model per shorter
    // length sharing the weights and gradients.
    const model = await InfiniGemma.create(rt, cfg, { B, T: cfg.seqLength, train: true });
    await Optimizer.create(model, { weightDecay: 0.1 });
    for (const n of [2, 3]) {
      await InfiniGemma.create(rt, cfg, { B, T: n * cfg.segmentLength, train: true, share: model });
    }
    const real = rt.allocatedBytes - before;
    equal(plan.totalBytes, real, `planned ${plan.totalBytes} bytes, the runtime allocated ${real}`);
    // In chunks, every length runs through the one chunked model: no extra models.
    const chunked = planTraining(cfg, {
      batch: B,
      chunk: 2,
      limits: limitsOf(rt),
      memory: 1e15,
      lengths,
    });
    equal(
      chunked.totalBytes,
      planTraining(cfg, { batch: B, chunk: 2, limits: limitsOf(rt), memory: 1e15 }).totalBytes,
    );
  },
);

Deno.test("plan: the parts add up to the total, and parameters, gradients, moments are 16 bytes per table entry", () => {
  const cfg = resolveConfig("seed-2b", []);
  const table = paramTable(cfg);
  for (const chunk of chunkChoices(cfg)) {
    const p = planTraining(cfg, { batch: 1, chunk, limits: H100_LIMITS, memory: 80 * GB });
    equal(PLAN_PARTS.reduce((a, k) => a + p.parts[k], 0), p.totalBytes);
    const bufs = trainingBuffers(cfg, { batch: 1, chunk, limits: H100_LIMITS, memory: 80 * GB });
    equal(bufs.length, p.buffers);
    // Pages round each buffer to 16 bytes; the table itself is a multiple of 64 elements.
    equal(p.parts.parameters, 4 * table.total);
    equal(p.parts.gradients, 4 * table.total);
    equal(p.parts.moments, 8 * table.total);
    ok(bufs.every((b) => b.bytes <= H100_LIMITS.maxBufferSize || !p.fits));
  }
});

Deno.test("plan: seed-2b at T 32,768, batch 1: the default chunk is under the seed's 47 GB; 80 GB fits larger ones", () => {
  const cfg = resolveConfig("seed-2b", []);
  equal(cfg.seqLength, 32768);
  // The default budget picks the default chunk: under the 47 GB the seed reports for batch 1.
  const d = chooseChunk(cfg, 1, H100_LIMITS, GPU_MEMORY_DEFAULT);
  ok(d !== null, "no chunk fits the default budget");
  const pd = planTraining(cfg, {
    batch: 1,
    chunk: d,
    limits: H100_LIMITS,
    memory: GPU_MEMORY_DEFAULT,
  });
  ok(pd.fits && pd.totalBytes < 47 * GB, `default chunk ${d}: ${pd.totalBytes} bytes`);
  // With the whole of an 80 GB card as the budget, the largest chunk that fits it.
  const k = chooseChunk(cfg, 1, H100_LIMITS, 80 * GB);
  ok(k !== null, "no chunk fits");
  const p = planTraining(cfg, { batch: 1, chunk: k, limits: H100_LIMITS, memory: 80 * GB });
  ok(p.fits, p.problems.join("; "));
  ok(p.totalBytes <= 80 * GB);
  ok(p.largestBuffer.bytes <= H100_LIMITS.maxBufferSize);
  ok(p.largestBinding.bytes <= H100_LIMITS.maxStorageBufferBindingSize);
  // The whole sequence does not fit (its GeGLU activations alone are 2 GiB per binding), so the
  // default is the largest chunk that does: every larger one is over the budget or a limit.
  const all = planByChunk(cfg, { batch: 1, limits: H100_LIMITS, memory: 80 * GB });
  ok(!all.at(-1)!.fits);
  for (const q of all) equal(q.fits, q.chunkSegments <= k, `chunk ${q.chunkSegments}`);
  // Totals grow with the chunk (activations scale with its rows).
  for (let i = 1; i < all.length; i++) ok(all[i].totalBytes > all[i - 1].totalBytes);
});

Deno.test("plan: the budget is inclusive, and what does not fit says what to reduce", () => {
  const cfg = resolveConfig("seed-2b", []);
  const req = { batch: 1, chunk: 2, limits: H100_LIMITS, memory: 80 * GB };
  const total = planTraining(cfg, req).totalBytes;
  ok(planTraining(cfg, { ...req, memory: total }).fits);
  const tight = { ...req, memory: total - 1 };
  const p = planTraining(cfg, tight);
  ok(!p.fits);
  ok(p.problems.some((x) => x.includes("over the budget")), p.problems.join("; "));
  const tips = advice(cfg, tight);
  ok(tips.some((t) => t.startsWith("--chunk 1 ")), tips.join("; "));
  // Each piece of advice fits when taken.
  const k1 = planTraining(cfg, { ...tight, chunk: 1 });
  ok(k1.fits);
  // Batch 4 at the whole sequence: too large in every way; advice names a batch or chunk.
  const big = { batch: 4, chunk: 16, limits: H100_LIMITS, memory: 80 * GB };
  const q = planTraining(cfg, big);
  ok(!q.fits);
  ok(q.problems.some((x) => x.includes("maxStorageBufferBindingSize")), q.problems.join("; "));
  const t2 = advice(cfg, big);
  ok(t2.some((t) => t.startsWith("--chunk ")), t2.join("; "));
  // Below the parameters, gradients and moments no batch, chunk or length helps.
  const fixed = 16 * paramTable(cfg).total;
  const none = advice(cfg, { ...req, memory: fixed - 1 });
  equal(none.length, 1);
  ok(none[0].includes("smaller model"), none[0]);
});

Deno.test("plan: bindings are checked against the cap, buffers against maxBufferSize", () => {
  const cfg = resolveConfig("seed-2b", []);
  // lavapipe: a chunk of 2 segments binds 4,096 x 16,384 f32 GeGLU activations (256 MiB).
  const lp = planTraining(cfg, { batch: 1, chunk: 2, limits: LAVAPIPE_LIMITS, memory: 1e15 });
  ok(!lp.fits);
  equal(lp.largestBinding.bytes, 2 * cfg.segmentLength * cfg.intermediateSize * 4);
  ok(lp.problems.some((x) => x.includes("maxStorageBufferBindingSize")));
  ok(planTraining(cfg, { batch: 1, chunk: 1, limits: LAVAPIPE_LIMITS, memory: 1e15 }).fits);
  equal(chooseChunk(cfg, 1, LAVAPIPE_LIMITS, 1e15), 1);
  // Pages keep the parameters within maxBufferSize (the embedding split into row blocks; the
  // 128 MiB MLP matrices each fit one); an activation over it is a problem.
  const small = { maxBufferSize: 128 * 2 ** 20, maxStorageBufferBindingSize: 128 * 2 ** 20 };
  const p = planTraining(cfg, { batch: 2, chunk: 1, limits: small, memory: 1e15 });
  ok(!p.fits);
  ok(p.problems.some((x) => x.includes("over maxBufferSize")));
  const params = trainingBuffers(cfg, { batch: 2, chunk: 1, limits: small, memory: 1e15 })
    .filter((b) => b.part === "parameters");
  ok(params.length > 1 && params.every((b) => b.bytes <= small.maxBufferSize));
  // A weight other than the embedding over a page cannot be split: the plan says so.
  const tiny = { maxBufferSize: 64 * 2 ** 20, maxStorageBufferBindingSize: 64 * 2 ** 20 };
  const q = planTraining(cfg, { batch: 1, chunk: 1, limits: tiny, memory: 1e15 });
  ok(!q.fits);
  ok(q.problems.some((x) => /mlp.*maxBufferSize/.test(x)), q.problems.join("; "));
});

Deno.test("plan: the whole sequence is the default chunk when it fits; chunks are 1..nS segments", () => {
  const cfg = resolveConfig("tiny", []);
  equal(chooseChunk(cfg, 16, LAVAPIPE_LIMITS, 1e12), 4);
  deepEqual(chunkChoices(cfg), [1, 2, 4]);
  throws(() => planTraining(cfg, { batch: 1, chunk: 5, limits: LAVAPIPE_LIMITS, memory: 1e12 }));
  throws(() => planTraining(cfg, { batch: 1, chunk: 0, limits: LAVAPIPE_LIMITS, memory: 1e12 }));
  // 3 does not divide 4 segments: two chunks, the last padded.
  equal(planTraining(cfg, { batch: 1, chunk: 3, limits: LAVAPIPE_LIMITS, memory: 1e12 }).chunks, 2);
  const whole = planTraining(cfg, { batch: 16, limits: LAVAPIPE_LIMITS, memory: 1e12 });
  equal(whole.chunkSegments, 4);
  equal(whole.chunks, 1);
  equal(whole.rowsPerChunk, 16 * 128);
  // Chunks add the step's staging and the chunk-boundary memory, and shrink the activations.
  const two = planTraining(cfg, { batch: 16, chunk: 2, limits: LAVAPIPE_LIMITS, memory: 1e12 });
  ok(two.parts.activations < whole.parts.activations);
  ok(two.totalBytes < whole.totalBytes);
});

Deno.test("plan: --memory takes decimal and binary units", () => {
  equal(parseBytes("memory", "80GB"), 80e9);
  equal(parseBytes("memory", "80GiB"), 80 * 2 ** 30);
  equal(parseBytes("memory", "512MB"), 512e6);
  equal(parseBytes("memory", "1TiB"), 2 ** 40);
  equal(parseBytes("memory", "1_000"), 1000);
  throws(() => parseBytes("memory", "80 GBs"));
});

Deno.test("train --plan --json: one object with the total, the chunk and whether it fits", async () => {
  const r = await cli(
    "train",
    "--preset",
    "seed-2b",
    "--batch",
    "1",
    "--plan",
    "--json",
    "--memory",
    "80GB",
  );
  equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  equal(j.memoryBudget, 80e9);
  equal(typeof j.totalBytes, "number");
  equal(typeof j.fits, "boolean");
  ok(Number.isInteger(j.chunkSegments));
  equal(j.byChunk.length, chunkChoices(resolveConfig("seed-2b", [])).length);
  // Whatever the adapter, the plan printed is the plan of its limits and chunk.
  const cfg = resolveConfig("seed-2b", []);
  const p = planTraining(cfg, {
    batch: 1,
    chunk: j.chunkSegments,
    limits: j.limits,
    memory: 80e9,
  });
  equal(j.totalBytes, p.totalBytes);
  equal(j.fits, p.fits);
});

/**
 * `train --preset tiny --plan` run with Deno permission flags `perms`, with no WebGPU adapter
 * at all (wgpu on Linux has no DX12 backend): its exit code and stdout.
 */
async function planWithoutAdapter(perms: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...perms, "main.ts", "train", "--preset", "tiny", "--plan"],
    cwd: new URL("..", import.meta.url).pathname,
    env: { NO_COLOR: "1", DENO_WEBGPU_BACKEND: "dx12" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

Deno.test("train --plan: without an adapter, planned against lavapipe's limits, and said", async () => {
  const text = await planWithoutAdapter(["-A"]);
  ok(text.includes("no WebGPU adapter: planned against lavapipe's limits"), text);
  ok(text.includes("fits: yes"), text);
});

Deno.test("train --plan: without permission to read the machine's memory there is no budget, only limits", async () => {
  // Planned as on a CPU adapter (none at all): the machine's memory would be the budget.
  const text = await planWithoutAdapter(["--allow-read", "--allow-env"]);
  ok(text.includes("budget: unlimited (none: this machine's memory"), text);
  ok(text.includes("fits: yes"), text);
});

Deno.test("train: --json without --plan, and a bad --memory, are usage errors", async () => {
  const a = await cli("train", "--json");
  equal(a.code, 2);
  ok(a.stderr.includes("--json goes with --plan"), a.stderr);
  const b = await cli("train", "--plan", "--memory", "lots");
  equal(b.code, 2);
  ok(b.stderr.includes("--memory 'lots'"), b.stderr);
});
