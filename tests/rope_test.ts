import { equal } from "node:assert/strict";
import { Rope, type RopeArgs } from "../src/ops/rope.ts";
import type { Runtime } from "../src/gpu/runtime.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import { assertClose, dot, f64, gradCheck, randf32 } from "./_numeric.ts";
import { ropeBackward, ropeForward } from "./ref/layers.ts";

const THETA = 10000;

Deno.test("ref rope backward matches finite differences and inverts the forward", () => {
  const rng = new Rng(3);
  const rows = 7, H = 2, D = 6, S = 3;
  const x = f64(randf32(rng, rows * H * D)), r = f64(randf32(rng, rows * H * D));
  const loss = () => dot(ropeForward(x, rows, H, D, S, THETA), r);
  gradCheck(loss, x, ropeBackward(r, rows, H, D, S, THETA), { what: "dx" });
  const back = ropeBackward(ropeForward(x, rows, H, D, S, THETA), rows, H, D, S, THETA);
  assertClose(back, x, { atol: 1e-15, rtol: 0, what: "R^T R x" });
});

Deno.test("rope table is cos and sin of pos * theta^(-2i/D) up to position 65535", () => {
  const S = 65536, D = 8;
  const t = Rope.buildTable(S, D, THETA);
  for (const pos of [0, 1, 4095, 65535]) {
    for (let i = 0; i < D / 2; i++) {
      const ang = pos * THETA ** (-2 * i / D);
      const k = (pos * (D / 2) + i) * 2;
      // f32 rounding of values in [-1, 1]: half an ulp of 1, 2^-25.
      assertClose([t[k], t[k + 1]], [Math.cos(ang), Math.sin(ang)], {
        atol: 2 ** -25,
        rtol: 0,
        what: `pos ${pos} i ${i}`,
      });
    }
  }
});

// f32 error of y_i = x_i c - x_j s with c, s rounded to f32 (2^-24 relative each), two rounded
// products (possibly one fused) and a rounded sum: <= 2 * 2^-24 (|x_i| + |x_j|) + 2^-24 |y|
// <= 3.2e-7 for |x| <= 1. Positions do not enter: the table holds every angle to f32 rounding.
const TOL = { atol: 4e-7, rtol: 0 };

interface Case {
  rows: number;
  S: number;
  D: number;
  H: number;
  /** KV heads rotated in the same dispatch, or 0 for a single tensor. */
  Hkv: number;
}

async function checkCase(rt: Runtime, rope: Rope, rng: Rng, c: Case): Promise<void> {
  const { rows, S, D, H, Hkv } = c;
  const table = rt.tensor("rope-table", Rope.tableLength(S, D), Rope.buildTable(S, D, THETA));
  const heads = Hkv > 0 ? [H, Hkv] : [H];
  const xs = heads.map((h) => randf32(rng, rows * h * D));
  const dys = heads.map((h) => randf32(rng, rows * h * D));
  const tx = xs.map((x, j) => rt.tensor(`x${j}`, x.length, x));
  const ty = xs.map((x, j) => rt.tensor(`y${j}`, x.length));
  const tdy = dys.map((d, j) => rt.tensor(`dy${j}`, d.length, d));
  const tdx = dys.map((d, j) => rt.tensor(`dx${j}`, d.length));
  const base = { table, rows, D, S };
  const pair = (src: typeof tx, dst: typeof tx): Pick<RopeArgs, "a" | "b"> => ({
    a: { src: src[0], dst: dst[0], nHeads: heads[0] },
    b: heads.length > 1 ? { src: src[1], dst: dst[1], nHeads: heads[1] } : undefined,
  });
  const rec = rt.record();
  rope.recordForward(rec, { ...base, ...pair(tx, ty) });
  rope.recordBackward(rec, { ...base, ...pair(tdy, tdx) });
  if (rec.dispatches !== 2) throw new Error(`expected 2 dispatches, got ${rec.dispatches}`);
  const ys = ty.map((t) => rec.read(t)), dxs = tdx.map((t) => rec.read(t));
  rt.submit(rec);
  for (let j = 0; j < heads.length; j++) {
    const what = `rows ${rows} S ${S} D ${D} heads ${heads[j]}`;
    assertClose(await ys[j], ropeForward(xs[j], rows, heads[j], D, S, THETA), {
      ...TOL,
      what: `${what} y`,
    });
    assertClose(await dxs[j], ropeBackward(dys[j], rows, heads[j], D, S, THETA), {
      ...TOL,
      what: `${what} dx`,
    });
  }
  for (const t of [table, ...tx, ...ty, ...tdy, ...tdx]) rt.free(t);
}

gpuTest(
  "rope q (H 8) and k (Hkv 1) in one dispatch, D 6, positions restart per segment",
  async (rt) => {
    const rope = await Rope.create(rt);
    const rng = new Rng(21);
    await checkCase(rt, rope, rng, { rows: 13, S: 5, D: 6, H: 8, Hkv: 1 });
    await checkCase(rt, rope, rng, { rows: 13, S: 13, D: 2, H: 3, Hkv: 1 });
  },
);

gpuTest(
  "rope row kernels (D % 8 == 0) match the f64 reference, single tensor and q/k pair",
  async (rt) => {
    // Both families on this adapter: 70 head-rows end part-way through a 64-wide workgroup.
    for (const rows of [false, true]) {
      const rope = await Rope.create(rt, { rows });
      equal(rope.rowsFor(8), rows);
      const rng = new Rng(25);
      await checkCase(rt, rope, rng, { rows: 14, S: 5, D: 8, H: 4, Hkv: 1 });
      await checkCase(rt, rope, rng, { rows: 35, S: 7, D: 16, H: 2, Hkv: 0 });
      await checkCase(rt, rope, rng, { rows: 2 * 37, S: 37, D: 64, H: 4, Hkv: 2 });
    }
  },
);

gpuTest("rope D 256 at positions up to 4095, single tensor and q/k pair", async (rt) => {
  const rope = await Rope.create(rt);
  const rng = new Rng(22);
  await checkCase(rt, rope, rng, { rows: 4096 + 13, S: 4096, D: 256, H: 2, Hkv: 0 });
  await checkCase(rt, rope, rng, { rows: 2 * 37, S: 37, D: 256, H: 8, Hkv: 1 });
});

gpuTest("rope stays accurate at positions up to 65535", async (rt) => {
  const rope = await Rope.create(rt);
  await checkCase(rt, rope, new Rng(23), { rows: 65536 + 3, S: 65536, D: 6, H: 1, Hkv: 0 });
});

gpuTest("rope backward with accumulate adds to dst, single tensor and q/k pair", async (rt) => {
  for (const useRows of [false, true]) await accumulateCase(rt, useRows);
});

async function accumulateCase(rt: Runtime, useRows: boolean): Promise<void> {
  const rope = await Rope.create(rt, { rows: useRows });
  const rng = new Rng(24);
  const rows = 21, S = 7, D = 8, H = 3, Hkv = 2;
  const table = rt.tensor("rope-table", Rope.tableLength(S, D), Rope.buildTable(S, D, THETA));
  for (const heads of [[H], [H, Hkv]]) {
    const dys = heads.map((h) => randf32(rng, rows * h * D));
    const olds = heads.map((h) => randf32(rng, rows * h * D));
    const tdy = dys.map((d, j) => rt.tensor(`dy${j}`, d.length, d));
    const tdx = olds.map((o, j) => rt.tensor(`dx${j}`, o.length, o));
    const rec = rt.record();
    rope.recordBackward(rec, {
      table,
      rows,
      D,
      S,
      a: { src: tdy[0], dst: tdx[0], nHeads: heads[0] },
      b: heads.length > 1 ? { src: tdy[1], dst: tdx[1], nHeads: heads[1] } : undefined,
      accumulate: true,
    });
    const got = tdx.map((t) => rec.read(t));
    rt.submit(rec);
    for (let j = 0; j < heads.length; j++) {
      const want = ropeBackward(dys[j], rows, heads[j], D, S, THETA).map((v, i) => v + olds[j][i]);
      // One more rounded addition onto values of magnitude <= 1: 2^-24 * 2 more.
      assertClose(await got[j], want, {
        atol: TOL.atol + 1.2e-7,
        rtol: 0,
        what: `accumulate${useRows ? " (rows)" : ""}, ${heads.length} tensor(s), tensor ${j}`,
      });
    }
    for (const t of [...tdy, ...tdx]) rt.free(t);
  }
  rt.free(table);
}
