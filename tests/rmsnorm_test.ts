import { RmsNorm } from "../src/ops/rmsnorm.ts";
import type { Profile, Runtime } from "../src/gpu/runtime.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import { dot, f64, gradCheck, randf32 } from "./_numeric.ts";
import { rmsnormBackward, rmsnormForward } from "./ref/layers.ts";
import { AssertionError, deepStrictEqual } from "node:assert/strict";

const EPS = 1e-6;

Deno.test("ref rmsnorm backward matches finite differences", () => {
  const rng = new Rng(4);
  const rows = 3, C = 5;
  const x = f64(randf32(rng, rows * C)), w = f64(randf32(rng, C, 0.5));
  const r = f64(randf32(rng, rows * C));
  const loss = () => dot(rmsnormForward(x, w, rows, C, EPS).y, r);
  const { dx, dw } = rmsnormBackward(r, x, w, rows, C, EPS);
  gradCheck(loss, x, dx, { what: "dx" });
  gradCheck(loss, w, dw, { what: "dw" });
});

/**
 * Error bounds from the kernel's f32 arithmetic (u = 2^-24, first order, doubled for the
 * second-order terms). With WG threads per workgroup, a row's sum of squares is ceil(C/WG)
 * terms per thread then WG partials in order (on the row kernels, C/4 per vec4 lane then the
 * 4 lanes: read C/4 + 4 for ceil(C/WG) + WG below), all positive: relative error
 * (ceil(C/WG) + WG) u; rstd halves it and adds ~3 u
 * (division, eps, inverseSqrt's 2 ulp): eR. Then per element:
 *   y     (eR + 3u) |y|
 *   dx    rs |g| (eR + 4u) + rs^3 |x| sum|g x| / C (3 eR + (ceil(C/WG) + WG + 4) u)  (+ u |dx0|)
 *   dw    (eR + (32 + nblocks + 3) u) sum_rows |dy x rs| + u |dw0|
 * where g = dy (1 + w), the signed row sum sum(g x) errs by its length times sum|g x|, and dw's
 * blocks of 32 rows and their nblocks partials are summed in order.
 */
function bounds(
  x: Float32Array,
  w: Float32Array,
  dy: Float32Array,
  dx0: Float32Array | null,
  dw0: Float32Array,
  rows: number,
  C: number,
  WG: number,
  rowKernels: boolean,
) {
  // A row's sums: C / WG terms per thread then WG partials, or on the row kernels C / 4 terms
  // per vec4 lane then the 4 lanes.
  const u = 2 ** -24, nb = Math.ceil(rows / 32);
  const chain = rowKernels ? C / 4 + 4 : Math.ceil(C / WG) + WG;
  const eR = (chain / 2 + 3) * u;
  const { y, rstd } = rmsnormForward(x, w, rows, C, EPS);
  const by = y.map((v) => 2 * (eR + 3 * u) * Math.abs(v));
  const br = rstd.map((v) => 2 * eR * v);
  const bdx = new Float64Array(rows * C), sdw = new Float64Array(C);
  for (let r = 0; r < rows; r++) {
    const rs = rstd[r];
    let sgx = 0;
    for (let c = 0; c < C; c++) sgx += Math.abs(dy[r * C + c] * (1 + w[c]) * x[r * C + c]);
    for (let c = 0; c < C; c++) {
      const i = r * C + c, g = Math.abs(dy[i] * (1 + w[c]));
      bdx[i] = 2 * (rs * g * (eR + 4 * u) +
        rs ** 3 * Math.abs(x[i]) * sgx / C * (3 * eR + (chain + 4) * u) +
        (dx0 ? u * Math.abs(dx0[i]) : 0));
      sdw[c] += Math.abs(dy[i] * x[i] * rs);
    }
  }
  const bdw = sdw.map((s, c) => 2 * ((eR + (32 + nb + 3) * u) * s + u * Math.abs(dw0[c])));
  return { by, br, bdx, bdw };
}

/** |actual - expected| <= bound elementwise, reporting the worst element. */
function assertBounded(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  bound: ArrayLike<number>,
  what: string,
): void {
  let worst = -1, ratio = 1;
  for (let i = 0; i < expected.length; i++) {
    const q = Math.abs(actual[i] - expected[i]) / (bound[i] + 1e-30);
    if (!(q <= ratio)) [worst, ratio] = [i, q];
  }
  if (worst >= 0) {
    throw new AssertionError({
      message: `${what}[${worst}]: got ${actual[worst]}, expected ${expected[worst]}, ` +
        `bound ${bound[worst]} (error ${ratio.toExponential(2)} x bound)`,
    });
  }
}

async function checkShape(
  rt: Runtime,
  norm: RmsNorm,
  rng: Rng,
  rows: number,
  C: number,
  opts: { residual: boolean; accumulate: boolean },
): Promise<void> {
  const x = randf32(rng, rows * C, 2), w = randf32(rng, C, 0.5), dy = randf32(rng, rows * C);
  const a = randf32(rng, rows * C), dw0 = randf32(rng, C);
  const dx0 = opts.accumulate ? randf32(rng, rows * C) : null;
  const T = (label: string, n: number, init?: Float32Array) => rt.tensor(label, n, init);
  const tx = T("x", rows * C, x), tw = T("w", C, w), tdy = T("dy", rows * C, dy);
  const ta = T("a", rows * C, a), tsum = T("sum", rows * C);
  const ty = T("y", rows * C), trstd = T("rstd", rows);
  const tdx = T("dx", rows * C, dx0 ?? undefined), tdw = T("dw", C, dw0);
  const scratch = T("scratch", RmsNorm.scratchLength(rows, C));
  const rec = rt.record();
  norm.recordForward(rec, {
    x: tx,
    w: tw,
    y: ty,
    rstd: trstd,
    rows,
    C,
    eps: EPS,
    residual: opts.residual ? { a: ta, sum: tsum } : undefined,
  });
  const xin = opts.residual ? tsum : tx;
  norm.recordBackward(rec, {
    dy: tdy,
    x: xin,
    w: tw,
    rstd: trstd,
    dx: tdx,
    dw: tdw,
    scratch,
    rows,
    C,
    accumulate: opts.accumulate,
  });
  const reads = [ty, trstd, tdx, tdw, tsum].map((t) => rec.read(t));
  rt.submit(rec);
  const [y, rstd, dx, dw, sum] = await Promise.all(reads);
  // The reference normalises the same f32 input the kernel saw (x + a rounded to f32).
  const xs = opts.residual ? Float32Array.from(x, (v, i) => v + a[i]) : x;
  if (opts.residual) deepStrictEqual(sum, xs);
  const ref = rmsnormForward(xs, w, rows, C, EPS);
  const bref = rmsnormBackward(dy, xs, w, rows, C, EPS);
  const b = bounds(xs, w, dy, dx0, dw0, rows, C, norm.threads, norm.rowKernels(C));
  const what = `WG ${norm.threads} rows ${rows} C ${C}${opts.residual ? " +residual" : ""}${
    opts.accumulate ? " dx+=" : ""
  }${norm.rowKernels(C) ? " (row kernels)" : ""}`;
  assertBounded(y, ref.y, b.by, `${what} y`);
  assertBounded(rstd, ref.rstd, b.br, `${what} rstd`);
  assertBounded(dx, dx0 ? bref.dx.map((v, i) => v + dx0[i]) : bref.dx, b.bdx, `${what} dx`);
  assertBounded(dw, bref.dw.map((v, c) => v + dw0[c]), b.bdw, `${what} dw (accumulated)`);
  for (const t of [tx, tw, tdy, ta, tsum, ty, trstd, tdx, tdw, scratch]) rt.free(t);
}

for (const profile of ["cpu", "gpu"] as Profile[]) {
  gpuTest(`rmsnorm ${profile} tuning: forward and backward match the f64 reference`, async (rt) => {
    const norm = await RmsNorm.create(rt, profile);
    const rng = new Rng(8);
    // C % 4 == 0 takes the row backward on "cpu": 64 and 2048; 65 and 97 rows end part-way
    // through a 64-row workgroup and a 32-row block.
    for (const [rows, C] of [[1, 1], [13, 37], [65, 130], [65, 64], [97, 2048]]) {
      await checkShape(rt, norm, rng, rows, C, { residual: false, accumulate: false });
    }
  });

  gpuTest(`rmsnorm ${profile} tuning: fused residual add and dx accumulation`, async (rt) => {
    const norm = await RmsNorm.create(rt, profile);
    const rng = new Rng(9);
    for (const [rows, C] of [[13, 37], [70, 91], [70, 92]]) {
      await checkShape(rt, norm, rng, rows, C, { residual: true, accumulate: true });
    }
  });
}

gpuTest("rmsnorm backward is reproducible bit for bit", async (rt) => {
  const norm = await RmsNorm.create(rt);
  const rng = new Rng(10);
  const rows = 200, C = 300;
  const tx = rt.tensor("x", rows * C, randf32(rng, rows * C)), tw = rt.tensor("w", C);
  const tdy = rt.tensor("dy", rows * C, randf32(rng, rows * C));
  const ty = rt.tensor("y", rows * C), trstd = rt.tensor("rstd", rows);
  const tdx = rt.tensor("dx", rows * C), tdw = rt.tensor("dw", C);
  const scratch = rt.tensor("scratch", RmsNorm.scratchLength(rows, C));
  const once = async () => {
    const rec = rt.record();
    rec.clear(tdw);
    norm.recordForward(rec, { x: tx, w: tw, y: ty, rstd: trstd, rows, C, eps: EPS });
    norm.recordBackward(rec, {
      dy: tdy,
      x: tx,
      w: tw,
      rstd: trstd,
      dx: tdx,
      dw: tdw,
      scratch,
      rows,
      C,
    });
    const out = [rec.read(tdx), rec.read(tdw)];
    rt.submit(rec);
    return await Promise.all(out);
  };
  const [dxA, dwA] = await once();
  const [dxB, dwB] = await once();
  deepStrictEqual(dxB, dxA);
  deepStrictEqual(dwB, dwA);
  for (const t of [tx, tw, tdy, ty, trstd, tdx, tdw, scratch]) rt.free(t);
});
