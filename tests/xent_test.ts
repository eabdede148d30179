import assert from "node:assert/strict";
import type { Runtime, Tensor } from "../src/gpu/runtime.ts";
import { MAX_REDUCTION, Xent } from "../src/ops/xent.ts";
import { IGNORE_TARGET } from "../src/util/targets.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import { assertClose, f64, gradCheck, randf32 } from "./_numeric.ts";
import { IGNORE, xentBackward, xentForward, type XentRefArgs } from "./ref/xent.ts";

/** Targets uniform in [0, V), about a fifth IGNORE, plus the given forced (row, id) pairs. */
function makeTargets(rng: Rng, rows: number, V: number, forced: [number, number][] = []) {
  const t = new Uint32Array(rows);
  for (let r = 0; r < rows; r++) t[r] = rng.next() < 0.2 ? IGNORE : rng.int(V);
  for (const [r, v] of forced) t[r] = v;
  const count = t.filter((v) => v !== IGNORE).length;
  return { t, count };
}

Deno.test("ref xent backward matches finite differences (ignored rows, weights)", () => {
  const rng = new Rng(11);
  const rows = 5, V = 7, C = 4;
  const x = f64(randf32(rng, rows * C)), e = f64(randf32(rng, V * C));
  const targets = [3, IGNORE, 0, 6, IGNORE];
  for (const weights of [undefined, [0.5, 2, 1.5, 0.25, 3]]) {
    const a: XentRefArgs = { x, e, targets, weights, scale: 1 / 3, rows, V, C };
    const loss = () => xentForward(a).loss;
    const { dx, de } = xentBackward(a);
    const what = weights ? "weighted" : "unweighted";
    gradCheck(loss, x, dx, { what: `${what} dx` });
    gradCheck(loss, e, de, { what: `${what} dE` });
    // Ignored rows get no gradient at all.
    for (const r of [1, 4]) assert(dx.subarray(r * C, r * C + C).every((v) => v === 0));
  }
});

Deno.test("xent plan: seed sizes fit the 128 MiB binding cap", () => {
  const cap = 128 * 2 ** 20;
  const seed = Xent.plan(cap, 2048, 151936, 2048);
  assert.deepEqual([seed.chunk, seed.chunks], [16384, 10]);
  assert(seed.logitsElements * 4 <= cap && seed.chunk * 2048 * 4 <= cap);
  assert.deepEqual(Xent.plan(cap, 4096, 151936, 2048).chunk, 8192);
  const small = Xent.plan(cap, 2048, 256, 64); // byte vocabulary: one chunk
  assert.deepEqual([small.chunk, small.chunks], [256, 1]);
  assert.deepEqual(Xent.plan(cap, 10, 333, 8, 64).chunks, 6);
  // Few rows and a narrow model: the chunk stays within the longest loop lavapipe runs.
  assert.deepEqual(Xent.plan(cap, 64, 151936, 64).chunk, MAX_REDUCTION);
  assert.throws(() => Xent.plan(cap, 10, 333, 8, 100), RangeError);
  assert.throws(() => Xent.plan(cap, 2 ** 24, 151936, 2048)); // 64 columns would not fit
});

/** Bit-for-bit equality of f32 arrays, reporting the first difference (cheap on failure). */
function assertSameBits(a: Float32Array, b: Float32Array, what: string) {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  assert.equal(a.length, b.length, `${what}: lengths`);
  const i = ua.findIndex((v, k) => v !== ub[k]);
  assert.ok(i < 0, `${what}[${i}]: ${a[i]} differs from ${b[i]}`);
}

interface Case {
  rows: number;
  maxRows: number;
  V: number;
  C: number;
  chunk?: number;
  weighted: boolean;
  lossIndex: number;
  /** Log-sum-exp one invocation per row (lse_rows); default the 64-wide tree (lse_chunk). */
  lseRows?: boolean;
}

// Tolerances from f32 arithmetic (measured errors are 3-10x below them).
// NLL and loss: values up to ~11, where one f32 ulp is ~1e-6. lse comes from a handful of
// roundings (exp and log are a few ulp, the partial sums are combined in a tree), and the logits
// are sums of C <= 40 products of size <= 0.5 (error ~sqrt(C) * 2^-24 * 0.5 < 1e-6): a few ulp,
// so atol 5e-6 plus rtol 5e-7.
const NLL_TOL = { atol: 5e-6, rtol: 5e-7 };
// Gradients: a sum of K products whose absolute values add up to S is off by the dlogits' own
// relative error (the lse's ~1e-6) times S, plus f32 accumulation, ~sqrt(K) * 2^-24 * S for
// rounding errors of random sign: atol (2e-6 + 2 sqrt(K) 2^-24) S. For dx, K = V and
// S <= sum_v |dl_rv| |E| <= 2 * scale * w_max * 0.5; for dE, K = rows and S <= max over v of
// sum_r |dl_rv| (|x| <= 1), taken from the reference. dE also holds a start value of size ~1,
// rounded once more: rtol 2.4e-7 (2 ulp).
const gradTol = (K: number, S: number) => ({
  atol: (2e-6 + 2 * Math.sqrt(K) * 2 ** -24) * S,
  rtol: 2.4e-7,
});
/** max over v of sum_r |dlogits_rv|. */
function columnAbsSum(dl: Float64Array, rows: number, V: number): number {
  const col = new Float64Array(V);
  for (let i = 0; i < rows * V; i++) col[i % V] += Math.abs(dl[i]);
  return Math.max(...col);
}

async function runCase(rt: Runtime, k: Case, seed: number) {
  const { rows, V, C } = k;
  const rng = new Rng(seed);
  const x = randf32(rng, rows * C), e = randf32(rng, V * C, 0.5);
  // Row 0 targets id 0, row 1 the last id (inside the ragged last chunk), row 2 is ignored.
  const { t, count } = makeTargets(rng, rows, V, [[0, 0], [1, V - 1], [2, IGNORE]]);
  const weights = k.weighted ? randf32(rng, rows).map((v) => 1 + v) : undefined;
  const de0 = randf32(rng, V * C);
  const scale = 1 / count;
  const xent = await Xent.create(rt, {
    maxRows: k.maxRows,
    V,
    C,
    chunk: k.chunk,
    rows: k.lseRows ?? false,
  });
  const tx = rt.tensor("x", rows * C, x), tE = rt.tensor("E", V * C, e);
  const tt = rt.tensor("targets", rows, t);
  const tw = weights ? rt.tensor("weights", rows, weights) : undefined;
  const tLoss = rt.tensor("loss", k.lossIndex + 1), tNll = rt.tensor("nll", rows);
  const tdx = rt.tensor("dx", rows * C, randf32(rng, rows * C)); // overwritten
  const tdE = rt.tensor("dE", V * C, de0); // accumulated
  const args = {
    x: tx,
    E: tE,
    targets: tt,
    weights: tw,
    scale,
    loss: tLoss,
    lossIndex: k.lossIndex,
    nll: tNll,
    rows,
  };
  const rec = rt.record();
  xent.recordForwardBackward(rec, { ...args, dx: tdx, dE: tdE });
  const reads = [tLoss, tNll, tdx, tdE].map((tt) => rec.read(tt));
  rt.submit(rec);
  const [loss, nll, dx, dE] = await Promise.all(reads);
  const ref: XentRefArgs = { x, e, targets: t, weights, scale, rows, V, C };
  const what = `rows ${rows} V ${V} C ${C} chunk ${xent.plan.chunk}${
    k.weighted ? " weighted" : ""
  }${k.lseRows ? " lse_rows" : ""}`;
  const fwd = xentForward(ref), bwd = xentBackward(ref);
  assertClose([loss[k.lossIndex]], [fwd.loss], { ...NLL_TOL, what: `${what} loss` });
  assertClose(nll, fwd.nll, { ...NLL_TOL, what: `${what} nll` });
  const wMax = k.weighted ? 2 : 1;
  assertClose(dx, bwd.dx, { ...gradTol(V, scale * wMax), what: `${what} dx` });
  assertClose(dE, bwd.de.map((v, i) => v + de0[i]), {
    ...gradTol(rows, columnAbsSum(bwd.dlogits, rows, V)),
    what: `${what} dE (accum.)`,
  });
  return {
    xent,
    args,
    tdx,
    tdE,
    de0,
    loss: loss[k.lossIndex],
    nll,
    dx,
    dE,
    free: [tx, tE, tt, tLoss],
  };
}

function freeAll(rt: Runtime, ts: (Tensor | undefined)[], xent: Xent) {
  for (const t of ts) if (t) rt.free(t);
  xent.free(rt);
}

gpuTest("xent: several chunks with a ragged last one match the f64 reference", async (rt) => {
  // V 333 in chunks of 64: five full chunks and one of 13; 37 rows (not a multiple of 64).
  const r = await runCase(rt, {
    rows: 37,
    maxRows: 37,
    V: 333,
    C: 29,
    chunk: 64,
    weighted: false,
    lossIndex: 0,
  }, 5);
  assert.equal(r.xent.plan.chunks, 6);
  assert.equal(r.nll[2], 0); // ignored row
  freeAll(rt, [...r.free, r.tdx, r.tdE, r.args.nll, r.args.weights], r.xent);
});

gpuTest("xent: lse_rows (one invocation per row) matches the f64 reference", async (rt) => {
  // The byte vocabulary's one chunk of 258 over 130 rows (three workgroups, the last ragged),
  // weighted; then V 333 in chunks of 64, where the running state merges across six chunks.
  // (258 and 333's last chunk of 13 are not multiples of 4: their logits have padded rows.)
  for (
    const [k, chunks] of [
      [{ rows: 130, maxRows: 130, V: 258, C: 24, weighted: true, lossIndex: 1 }, 1],
      [{ rows: 37, maxRows: 40, V: 333, C: 29, chunk: 64, weighted: false, lossIndex: 0 }, 6],
      // One chunk whose length is a multiple of 4: stored unpadded.
      [{ rows: 20, maxRows: 20, V: 96, C: 16, weighted: false, lossIndex: 0 }, 1],
    ] as const
  ) {
    const r = await runCase(rt, { ...k, lseRows: true }, 11);
    assert.equal(r.xent.plan.chunks, chunks);
    assert.equal(r.nll[2], 0); // ignored row
    freeAll(rt, [...r.free, r.tdx, r.tdE, r.args.nll, r.args.weights], r.xent);
  }
});

gpuTest("xent: one chunk, weighted rows, fewer rows than planned, loss at an index", async (rt) => {
  const r = await runCase(rt, {
    rows: 70,
    maxRows: 80,
    V: 101,
    C: 40,
    weighted: true,
    lossIndex: 2,
  }, 6);
  assert.equal(r.xent.plan.chunks, 1);
  freeAll(rt, [...r.free, r.tdx, r.tdE, r.args.nll, r.args.weights], r.xent);
});

gpuTest("xent: forward-only path agrees bit for bit and runs are reproducible", async (rt) => {
  const r = await runCase(rt, {
    rows: 45,
    maxRows: 45,
    V: 200,
    C: 17,
    chunk: 64,
    weighted: true,
    lossIndex: 0,
  }, 7);
  const { xent, args } = r;
  // Forward only: same loss and NLL bits, dx and dE untouched.
  const nll2 = rt.tensor("nll2", args.rows);
  let rec = rt.record();
  xent.recordForward(rec, { ...args, nll: nll2 });
  const reads = [rec.read(args.loss), rec.read(nll2), rec.read(r.tdx), rec.read(r.tdE)];
  rt.submit(rec);
  const [loss, nll, dx, dE] = await Promise.all(reads);
  assert.equal(loss[0], r.loss);
  assertSameBits(nll, r.nll, "forward-only nll");
  assertSameBits(dx, r.dx, "forward-only dx");
  assertSameBits(dE, r.dE, "forward-only dE");
  // Training again from the same start values gives the same bits.
  rt.write(r.tdE, r.de0);
  rec = rt.record();
  xent.recordForwardBackward(rec, { ...args, dx: r.tdx, dE: r.tdE });
  const again = [rec.read(args.loss), rec.read(r.tdx), rec.read(r.tdE)];
  rt.submit(rec);
  const [loss2, dx2, dE2] = await Promise.all(again);
  assert.equal(loss2[0], r.loss);
  assertSameBits(dx2, r.dx, "second run dx");
  assertSameBits(dE2, r.dE, "second run dE");
  freeAll(rt, [...r.free, r.tdx, r.tdE, args.nll, args.weights, nll2], xent);
});

gpuTest("xent: a target id >= V gives a NaN loss instead of a silent wrong value", async (rt) => {
  const rows = 3, V = 10, C = 5;
  const rng = new Rng(9);
  const xent = await Xent.create(rt, { maxRows: rows, V, C });
  const tx = rt.tensor("x", rows * C, randf32(rng, rows * C));
  const tE = rt.tensor("E", V * C, randf32(rng, V * C));
  const tt = rt.tensor("targets", rows, new Uint32Array([1, V, IGNORE_TARGET]));
  const tLoss = rt.tensor("loss", 1), tNll = rt.tensor("nll", rows);
  const rec = rt.record();
  xent.recordForward(rec, { x: tx, E: tE, targets: tt, scale: 0.5, loss: tLoss, nll: tNll });
  const [loss, nll] = [rec.read(tLoss), rec.read(tNll)];
  rt.submit(rec);
  assert(Number.isNaN((await loss)[0]));
  const n = await nll;
  assert(Number.isFinite(n[0]) && Number.isNaN(n[1]) && n[2] === 0);
  freeAll(rt, [tx, tE, tt, tLoss, tNll], xent);
});

gpuTest("xent: 66000 rows: a 2-D workgroup grid and dE in row blocks", async (rt) => {
  const r = await runCase(rt, {
    rows: 66000,
    maxRows: 66000,
    V: 70,
    C: 3,
    chunk: 64,
    weighted: false,
    lossIndex: 0,
  }, 8);
  assert.equal(r.xent.plan.chunks, 2);
  freeAll(rt, [...r.free, r.tdx, r.tdE, r.args.nll, r.args.weights], r.xent);
});
