/**
 * Storage within any adapter's limits: parameters, gradients and AdamW moments in pages of at
 * most maxBufferSize, the tied embedding of a large vocabulary split across pages in row
 * blocks (src/model/params.ts pageLayout, src/model/param_buffers.ts, src/ops/row_blocks.ts).
 *
 *  - the page layout, on the host: no page over the cap, 256-byte alignment, every tensor
 *    covered exactly once, row blocks of whole rows (micro with Qwen's vocabulary, tiny under
 *    many caps, seed-2b under lavapipe's 2 GiB);
 *  - `micro` with vocabSize 151,936 (a 19.4 MB embedding) trained 3 AdamW steps with
 *    `--limit maxStorageBufferBindingSize=1MiB --limit maxBufferSize=4MiB` (5 pages, the
 *    embedding in 5 row blocks): bit for bit the run with the same binding cap in one buffer,
 *    and within the model tests' summation-order tolerance of the run without any cap;
 *  - a checkpoint whose tensors span several buffers saves, loads in a fresh capped runtime
 *    and resumes bit for bit; the streamed files equal the flat writer's byte for byte.
 */
import { deepEqual, equal, match, ok, rejects, throws } from "node:assert/strict";
import { GpuUnavailableError, Runtime } from "../src/gpu/runtime.ts";
import { loadCheckpoint, saveCheckpoint } from "../src/model/checkpoint.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { InfiniGemma } from "../src/model/model.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import { readRanges } from "../src/model/param_buffers.ts";
import {
  EMBED,
  initParams,
  type PageLayout,
  pageLayout,
  PARAM_ALIGN,
  type ParamTable,
  paramTable,
} from "../src/model/params.ts";
import { readSafetensors, writeSafetensorsStream } from "../src/model/safetensors.ts";
import { RecallSource } from "../src/tasks/sources.ts";
import { Optimizer } from "../src/train/optimizer.ts";
import { train, TRAIN_DEFAULTS } from "../src/train/trainer.ts";
import { Rng } from "../src/util/rng.ts";
import { cli } from "./_cli.ts";
import { gpuTest, sharedRuntime } from "./_gpu.ts";
import { nextTokenTargets } from "./ref/model.ts";

const MiB = 2 ** 20;
/** The caps: 1 MiB bindings, 4 MiB buffers. */
const CAPPED = { maxStorageBufferBindingSize: MiB, maxBufferSize: 4 * MiB };
/** The same binding cap with buffers as large as the adapter allows: one page. */
const BINDING_ONLY = { maxStorageBufferBindingSize: MiB };
/** micro with Qwen's vocabulary: a 151,936 x 32 embedding, 19.4 MB. */
const QWEN_MICRO = () => resolveConfig("micro", ["vocabSize=151936"]);

/** Checks every rule of the page layout; returns the largest page in bytes. */
function checkLayout(table: ParamTable, maxBytes: number): { layout: PageLayout; largest: number } {
  const layout = pageLayout(table, maxBytes);
  const cap = Math.floor(maxBytes / 4);
  const { pages } = layout;
  // The pages tile the flat layout [0, total) in order, each within the cap, 256-byte aligned.
  let at = 0;
  for (const [i, p] of pages.entries()) {
    equal(p.start, at, `page ${i} starts where page ${i - 1} ends`);
    ok(p.length > 0 && p.length <= cap, `page ${i}: ${p.length} elements, cap ${cap}`);
    ok(4 * p.length <= maxBytes, `page ${i}: ${4 * p.length} bytes over ${maxBytes}`);
    equal(p.start % PARAM_ALIGN, 0, `page ${i} start`);
    at += p.length;
  }
  equal(at, table.total, "the pages cover the flat layout");
  if (4 * table.total <= maxBytes) deepEqual(pages, [{ start: 0, length: table.total }]);
  // Every tensor: whole-row blocks in row order, aligned, inside their page, at the element
  // of the flat layout it has there; no two blocks overlap.
  const spans: [number, number, string][] = [];
  for (const s of table.specs) {
    const blocks = layout.blocks(s.name);
    const R = s.shape[0], rowLen = s.size / R;
    let row = 0;
    for (const b of blocks) {
      const what = `${s.name} rows [${b.row0}, ${b.row0 + b.rows})`;
      equal(b.row0, row, `${what}: blocks in row order`);
      ok(Number.isInteger(b.rows) && b.rows > 0, what);
      equal(b.size, b.rows * rowLen, `${what}: whole rows`);
      if (b.row0 > 0) equal(b.row0 % 64, 0, `${what}: a split starts at a multiple of 64 rows`);
      equal(b.offset % PARAM_ALIGN, 0, `${what}: offset ${b.offset} is not 256-byte aligned`);
      const p = pages[b.page];
      ok(b.offset + b.size <= p.length, `${what} runs past page ${b.page}`);
      equal(p.start + b.offset, s.offset + b.row0 * rowLen, `${what}: its flat position`);
      spans.push([p.start + b.offset, p.start + b.offset + b.size, what]);
      row += b.rows;
    }
    equal(row, R, `${s.name}: the blocks cover its ${R} rows`);
    if (s.name !== EMBED) equal(blocks.length, 1, `${s.name} is split`);
  }
  spans.sort((a, b) => a[0] - b[0]);
  let covered = 0;
  for (let i = 0; i < spans.length; i++) {
    if (i > 0) ok(spans[i][0] >= spans[i - 1][1], `${spans[i][2]} overlaps ${spans[i - 1][2]}`);
    covered += spans[i][1] - spans[i][0];
  }
  equal(covered, table.count, "every parameter is covered exactly once");
  return { layout, largest: 4 * Math.max(...pages.map((p) => p.length)) };
}

Deno.test("page layout: within the cap, aligned, every tensor once, whole-row blocks", () => {
  // micro with Qwen's vocabulary at 4 MiB: 32,768 rows of E per page, so E is 4 full pages and
  // a block of 20,864 rows that shares the fifth page with every other tensor.
  const micro = paramTable(QWEN_MICRO());
  const { layout } = checkLayout(micro, 4 * MiB);
  deepEqual(layout.blocks(EMBED).map((b) => [b.page, b.row0, b.rows]), [
    [0, 0, 32768],
    [1, 32768, 32768],
    [2, 65536, 32768],
    [3, 98304, 32768],
    [4, 131072, 20864],
  ]);
  equal(layout.pages.length, 5);
  // One page whenever everything fits, under any cap from the total up.
  checkLayout(micro, 4 * micro.total);
  checkLayout(micro, 2 ** 31 - 1);
  // tiny (E 258 x 64, MLP 256 x 64) under caps from one MLP matrix (64 KiB) up, including
  // ones that leave odd room at the end of a page and split E into blocks of 64 rows.
  const tiny = paramTable(resolveConfig("tiny"));
  const rng = new Rng(5);
  const caps = [65536, 65536 + 256, 65792 + 252, 66048, 70000, 100000, 4 * tiny.total - 256];
  for (let i = 0; i < 20; i++) caps.push(65536 + rng.int(4 * tiny.total));
  for (const c of caps) {
    const { layout } = checkLayout(tiny, c);
    // E (16,512 elements) is split exactly when it is over a page.
    equal(layout.blocks(EMBED).length > 1, 16512 > Math.floor(c / 4 / 64) * 64, `cap ${c}`);
  }
  // E first in a page of room for 100 rows: blocks of 64 rows, then what is left.
  const e = paramTable(resolveConfig("tiny", ["vocabSize=300", "intermediateSize=64"]));
  deepEqual(
    checkLayout(e, 100 * 64 * 4).layout.blocks(EMBED).map((b) => b.rows),
    [64, 64, 64, 64, 44],
  );
  // seed-2b under lavapipe's 2 GiB - 1 (host only: nothing is allocated).
  const seed = paramTable(resolveConfig("seed-2b"));
  const s2 = checkLayout(seed, 2 ** 31 - 1);
  ok(s2.layout.pages.length >= 4 && s2.largest <= 2 ** 31 - 1);
  // A weight other than the embedding over a page, and a cap below 64 rows of E, say which.
  throws(
    () => pageLayout(tiny, 32768),
    (e: Error) => e instanceof GpuUnavailableError && /mlp.*maxBufferSize/.test(e.message),
  );
  throws(
    () => pageLayout(paramTable(resolveConfig("tiny", ["hiddenSize=8192"])), 2 * MiB - 256),
    (e: Error) => e instanceof GpuUnavailableError && /64 rows of model\.embed/.test(e.message),
  );
});

/** Runtimes with caps, one per set, shared by the tests of this file. */
const runtimes = new Map<string, Promise<Runtime>>();
function capped(limits: Record<string, number>): Promise<Runtime> {
  const key = JSON.stringify(limits);
  if (!runtimes.has(key)) runtimes.set(key, Runtime.create({ limits }));
  return runtimes.get(key)!;
}

gpuTest("param buffers: flat and streamed transfers across pages round trip", async () => {
  const rt = await capped(CAPPED);
  const cfg = QWEN_MICRO();
  const model = await InfiniGemma.create(rt, cfg, { B: 1, T: cfg.seqLength, train: false });
  equal(model.params.pages.length, 5);
  const flat = initParams(model.table, cfg, 9);
  model.setParams(flat);
  deepEqual(await model.readParams(), flat);
  // Ranges that cross page boundaries, read in 64 KiB batches, come back in order.
  const ranges = model.table.specs.map((s) => ({ start: s.offset, length: s.size }));
  const got = new Float32Array(model.table.count), want = new Float32Array(model.table.count);
  let at = 0, parts = 0;
  for await (const part of readRanges(rt, model.params, ranges, 64 * 1024)) {
    ok(part.length <= 16384);
    got.set(part, at);
    at += part.length;
    parts++;
  }
  equal(at, got.length);
  ok(parts > 300, `${parts} parts`);
  at = 0;
  for (const r of ranges) {
    want.set(flat.subarray(r.start, r.start + r.length), at);
    at += r.length;
  }
  deepEqual(got, want);
  model.params.free(rt);
});

gpuTest(
  "capped limits: one row's logits over the embedding's row blocks equal one buffer bit for bit",
  async () => {
    const cfg = QWEN_MICRO();
    const rng = new Rng(8);
    const tokens = Uint32Array.from({ length: cfg.seqLength }, () => rng.int(cfg.vocabSize));
    const logits: Float32Array[] = [];
    for (const limits of [CAPPED, BINDING_ONLY]) {
      const rt = await capped(limits);
      const model = await InfiniGemma.create(rt, cfg, { B: 1, T: cfg.seqLength, train: false });
      model.setParams(initParams(model.table, cfg, 9));
      model.setBatch(tokens, nextTokenTargets(tokens, 1, cfg.seqLength));
      const rec = rt.record("logits");
      model.resetMemory(rec);
      model.recordForward(rec, { head: false });
      const out = rec.read(model.recordLogits(rec, cfg.seqLength - 1));
      rt.submit(rec);
      logits.push(await out);
      model.params.free(rt);
    }
    ok(logits[0].some((x) => x !== 0));
    // Every block's logits are there: the last rows of each of the 5 blocks are not zero.
    for (const v of [32767, 65535, 98303, 131071, cfg.vocabSize - 1]) {
      ok(logits[0][v] !== 0, `${v}`);
    }
    deepEqual(logits[0], logits[1]);
  },
);

/** The learning rate of every step, and the gradient noise of model_steps_test.ts. */
const LR = 1e-2, NOISE = 1e-5;
/** A clip threshold that binds on every step of these runs. */
const MAX_NORM = 0.05;

/** The capped run both comparisons use, run once. */
let pagedOnce: Promise<Run> | null = null;
function pagedRun(): Promise<Run> {
  pagedOnce ??= capped(CAPPED).then((rt) => run(rt, QWEN_MICRO(), 3, MAX_NORM));
  return pagedOnce;
}

/** What one run of a few AdamW steps produced, per step. */
interface Run {
  losses: number[];
  norms: number[];
  clips: number[];
  grads: Float32Array[];
  params: Float32Array[];
  pages: number;
}

/**
 * `steps` AdamW steps of `cfg` from the same initial weights and batches: random tokens over
 * the whole vocabulary (so the gather and the scatter touch every row block), some repeated.
 */
async function run(rt: Runtime, cfg: ModelConfig, steps: number, maxNorm: number): Promise<Run> {
  const B = 2, T = cfg.seqLength;
  const model = await InfiniGemma.create(rt, cfg, { B, T, train: true });
  const opt = await Optimizer.create(model, { weightDecay: 0.1 });
  model.setParams(initParams(model.table, cfg, 11));
  const rng = new Rng(4);
  const out: Run = { losses: [], norms: [], clips: [], grads: [], params: [], pages: 0 };
  out.pages = model.params.pages.length;
  for (let step = 1; step <= steps; step++) {
    const tokens = Uint32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
    for (let i = 0; i < 8; i++) tokens[rng.int(B * T)] = tokens[0]; // a repeated token
    model.setBatch(tokens, nextTokenTargets(tokens, B, T));
    const rec = rt.record("step");
    model.recordGrads(rec);
    const loss = rec.read(model.loss), grads = model.grads!.read(rec);
    opt.recordStep(rec, { step, lr: LR, beta1: 0.9, beta2: 0.95, eps: 1e-8, maxNorm });
    const stats = opt.readStats(rec), params = model.params.read(rec);
    rt.submit(rec);
    out.losses.push((await loss)[0]);
    out.grads.push(await grads);
    out.params.push(await params);
    const s = await stats;
    out.norms.push(s.norm);
    out.clips.push(s.clip);
  }
  model.params.free(rt);
  model.grads!.free(rt);
  opt.m.free(rt);
  opt.v.free(rt);
  return out;
}

/** Largest |a - b| over each tensor, relative to the tensor's largest |b| (0 for all-zero). */
function worstPerTensor(table: ParamTable, a: Float32Array, b: Float32Array) {
  let worst = 0, name = "";
  for (const s of table.specs) {
    let d = 0, scale = 0;
    for (let i = s.offset; i < s.offset + s.size; i++) {
      d = Math.max(d, Math.abs(a[i] - b[i]));
      scale = Math.max(scale, Math.abs(b[i]));
    }
    const rel = scale > 0 ? d / scale : d;
    if (rel > worst) [worst, name] = [rel, s.name];
  }
  return { worst, name };
}

gpuTest(
  "capped limits (4 MiB buffers, 1 MiB bindings): 3 steps of micro at V 151,936 equal one buffer bit for bit",
  async () => {
    // Bit for bit by construction: the LM head's chunks of 4,096 vocabulary rows tile E's
    // blocks of 32,768 (so the online log-sum-exp and dx add in the same order), the
    // embedding's chunks likewise, AdamW is elementwise, and the gradient norm's workgroups
    // (8,192 elements each, partials summed in order) start at the same elements: the pages
    // start at multiples of 32,768 x 32 elements. So even the clipped update is identical.
    const paged = await pagedRun();
    const one = await run(await capped(BINDING_ONLY), QWEN_MICRO(), 3, MAX_NORM);
    equal(paged.pages, 5);
    equal(one.pages, 1);
    ok(paged.clips.every((c) => c < 1), `no clipping: ${paged.clips}`);
    deepEqual(paged.losses, one.losses);
    deepEqual(paged.norms, one.norms);
    deepEqual(paged.clips, one.clips);
    for (let s = 0; s < 3; s++) {
      deepEqual(paged.grads[s], one.grads[s], `step ${s + 1}: gradients`);
      deepEqual(paged.params[s], one.params[s], `step ${s + 1}: parameters`);
    }
  },
);

gpuTest(
  "capped limits equal no caps within the model tests' tolerance: losses, every gradient, parameters after 3 clipped steps",
  async () => {
    const cfg = QWEN_MICRO();
    const shared = await sharedRuntime();
    if (typeof shared === "string") throw new Error(shared);
    // Every step clips, so the clip factor (from the norm) reaches the update.
    const paged = await pagedRun();
    const free = await run(shared, cfg, 3, MAX_NORM);
    equal(paged.pages, 5);
    equal(free.pages, 1);
    ok(paged.clips.every((c) => c < 1) && free.clips.every((c) => c < 1), "no clipping");
    const table = paramTable(cfg);
    // Per entry, the smallest |g| / (its tensor's largest |g|) over the steps so far.
    const rhoMin = new Float64Array(table.total).fill(Infinity);
    for (let s = 0; s < 3; s++) {
      // The LM head runs in chunks of 4,096 vocabulary rows instead of 32,768: its online
      // log-sum-exp and dx = sum_c dl_c E_c add the same terms in another order. Tolerances
      // of the model tests: NLL 2e-5 relative and gradients 1e-4 of each tensor's largest
      // entry (model_test.ts), the norm 1e-6 relative (model_steps_test.ts). The gradients
      // are compared at step 1, from the same weights: later steps start from weights that
      // already differ within the parameter tolerance below, which is no summation order.
      const dl = Math.abs(paged.losses[s] - free.losses[s]) / free.losses[s];
      const g = worstPerTensor(table, paged.grads[s], free.grads[s]);
      const dn = Math.abs(paged.norms[s] - free.norms[s]) / free.norms[s];
      ok(dl <= 2e-5, `step ${s + 1}: loss differs by ${dl} relative`);
      if (s === 0) ok(g.worst <= 1e-4, `${g.name} gradient differs by ${g.worst}`);
      if (s === 0) ok(dn <= 1e-6, `the norm differs by ${dn} relative`);
      // Parameters: model_steps_test.ts's per-entry rule. Adam's update is nearly invariant
      // to the gradient's size, so its error is the gradient's relative error: NOISE / rho
      // for an entry whose gradient is rho times its tensor's largest (NOISE = 1e-5), capped
      // at a unit step reversed (2), summed over the steps' learning rates; plus f32
      // rounding of p per step.
      for (const t of table.specs) {
        let scale = 0;
        for (let i = t.offset; i < t.offset + t.size; i++) {
          scale = Math.max(scale, Math.abs(free.grads[s][i]));
        }
        for (let i = t.offset; i < t.offset + t.size; i++) {
          rhoMin[i] = Math.min(rhoMin[i], Math.abs(free.grads[s][i]) / scale);
        }
      }
      let bad = 0, first = "", worst = 0;
      for (const t of table.specs) {
        const lrScale = t.group === "gate" ? cfg.betaLrMult : 1;
        for (let i = t.offset; i < t.offset + t.size; i++) {
          const want = free.params[s][i], d = Math.abs(paged.params[s][i] - want);
          const tol = 6e-8 * (s + 1) * Math.max(1, Math.abs(want)) +
            2 * lrScale * LR * (s + 1) * Math.min(1, NOISE / rhoMin[i]);
          worst = Math.max(worst, d / tol);
          if (!(d <= tol) && bad++ === 0) {
            first = `${t.name}[${i - t.offset}]: ${paged.params[s][i]} vs ${want} (tol ${tol})`;
          }
        }
      }
      console.log(
        `step ${s + 1}: loss ${dl.toExponential(2)}, norm ${dn.toExponential(2)} relative; ` +
          `gradient ${g.worst.toExponential(2)} of its tensor's largest (${g.name}); ` +
          `parameters within ${(100 * worst).toFixed(1)}% of their tolerance`,
      );
      equal(bad, 0, `step ${s + 1}: ${bad} parameters off; first ${first}`);
    }
  },
);

gpuTest(
  "capped limits: a checkpoint over several buffers saves, loads in a fresh runtime and resumes bit for bit",
  async () => {
    const cfg = QWEN_MICRO();
    const base = {
      ...TRAIN_DEFAULTS,
      batch: 2,
      lr: 5e-3,
      warmup: 1,
      logEvery: 1,
      evalEvery: 0,
      saveEvery: 0,
    };
    const quiet = { tty: false, info: () => {} };
    const a = await Deno.makeTempDir({ prefix: "infini-limits-a-" });
    const b = await Deno.makeTempDir({ prefix: "infini-limits-b-" });
    const rt = await capped(CAPPED);
    try {
      const straight = await train(
        rt,
        cfg,
        { ...base, out: a, steps: 4 },
        new RecallSource(cfg, 3),
        quiet,
      );
      equal(straight.model.params.pages.length, 5);
      const first = await train(
        rt,
        cfg,
        { ...base, out: b, steps: 4, stopAfter: 2 },
        new RecallSource(cfg, 3),
        quiet,
      );
      // The streamed checkpoint holds exactly the model's weights.
      deepEqual((await loadCheckpoint(`${b}/checkpoint`)).params, await first.model.readParams());
      const fresh = await Runtime.create({ limits: CAPPED });
      try {
        const resumed = await train(
          fresh,
          cfg,
          { ...base, out: b, steps: 4, resume: true },
          new RecallSource(cfg, 3),
          quiet,
        );
        deepEqual(resumed.losses.map((s) => s.loss), straight.losses.map((s) => s.loss));
        deepEqual(await resumed.model.readParams(), await straight.model.readParams());
        // And the resumed run's own checkpoint equals the straight run's, file by file.
        for (const f of ["model.safetensors", "optimizer.safetensors"]) {
          deepEqual(
            await Deno.readFile(`${b}/checkpoint/${f}`),
            await Deno.readFile(`${a}/checkpoint/${f}`),
            f,
          );
        }
      } finally {
        fresh.destroy();
      }
    } finally {
      await Deno.remove(a, { recursive: true });
      await Deno.remove(b, { recursive: true });
    }
  },
);

Deno.test("streamed safetensors: the same bytes as a flat write; a short or long stream writes nothing", async () => {
  const cfg = resolveConfig("tiny");
  const table = paramTable(cfg);
  const flat = initParams(table, cfg, 3);
  const dir = await Deno.makeTempDir({ prefix: "infini-stream-" });
  try {
    await saveCheckpoint(`${dir}/flat`, cfg, flat, { step: "1" });
    // The same values in parts of odd sizes that cross tensor boundaries.
    const values = new Float32Array(table.count);
    let at = 0;
    for (const s of table.specs) {
      values.set(flat.subarray(s.offset, s.offset + s.size), at);
      at += s.size;
    }
    const rng = new Rng(2);
    const parts = (async function* () {
      for (let i = 0; i < values.length;) {
        const n = 1 + rng.int(5000);
        yield values.subarray(i, i + n);
        i += n;
      }
    })();
    await saveCheckpoint(`${dir}/stream`, cfg, parts, { step: "1" });
    for (const f of ["model.safetensors", "config.json"]) {
      deepEqual(await Deno.readFile(`${dir}/stream/${f}`), await Deno.readFile(`${dir}/flat/${f}`));
    }
    // A stream that ends early or runs over: an error, and no file.
    const shape = [["x", { dtype: "F32", shape: [4] }]] as const;
    const bytes = (n: number) =>
      (async function* () {
        yield new Uint8Array(n);
      })();
    for (const n of [12, 20]) {
      await rejects(writeSafetensorsStream(`${dir}/x.safetensors`, shape, bytes(n)), /bytes/);
      deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["flat", "stream"]);
    }
    await writeSafetensorsStream(`${dir}/x.safetensors`, shape, bytes(16));
    deepEqual(
      (await readSafetensors(`${dir}/x.safetensors`)).tensors.get("x")!.data,
      new Float32Array(4),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest(
  "cli: train --limit runs micro at V 151,936 in 4 MiB buffers and 1 MiB bindings",
  async () => {
    const out = await Deno.makeTempDir({ prefix: "infini-limits-cli-" });
    try {
      const limits = [
        "--limit",
        "maxStorageBufferBindingSize=1MiB",
        "--limit",
        "maxBufferSize=4MiB",
      ];
      const args = ["--preset", "micro", "--set", "vocabSize=151936", "--data", "recall"];
      const r = await cli(
        "train",
        ...args,
        "--steps",
        "2",
        "--batch",
        "2",
        ...limits,
        "--out",
        out,
      );
      equal(r.code, 0, r.stderr);
      match(r.stderr, /step 2\/2/);
      // The same run without the buffer cap (one page) writes the same checkpoint.
      const one = `${out}/one`;
      const r1 = await cli(
        "train",
        ...args,
        "--steps",
        "2",
        "--batch",
        "2",
        ...limits.slice(0, 2),
        "--out",
        one,
      );
      equal(r1.code, 0, r1.stderr);
      for (const f of ["model.safetensors", "optimizer.safetensors"]) {
        deepEqual(
          await Deno.readFile(`${out}/checkpoint/${f}`),
          await Deno.readFile(`${one}/checkpoint/${f}`),
          f,
        );
      }
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
);
