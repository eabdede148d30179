import assert from "node:assert/strict";
import type { Runtime } from "../src/gpu/runtime.ts";
import { Adamw, type AdamwHyper, type AdamwSlot } from "../src/ops/adamw.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import { assertClose, f64, randf32 } from "./_numeric.ts";
import { type AdamwRefSlot, adamwStep, clipFactor, globalNorm } from "./ref/adamw.ts";

Deno.test("ref adamw: first step is lr * (sign(g') + wd * p), norm and clip as defined", () => {
  const g = [3, -4], p = f64([0.5, -2]);
  const slot: AdamwRefSlot = {
    p,
    g,
    m: new Float64Array(2),
    v: new Float64Array(2),
    lrScale: 2,
    weightDecay: 0.1,
  };
  const r = adamwStep([slot], { step: 1, lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 0, maxNorm: 1 });
  assert.equal(r.norm, 5);
  assert.equal(r.clip, clipFactor(5, 1));
  assert.ok(Math.abs(r.clip - 0.2) < 1e-7);
  // mhat = g', vhat = g'^2 after one step, so the Adam part is sign(g').
  assert.ok(Math.abs(p[0] - (0.5 - 0.02 * (1 + 0.1 * 0.5))) < 1e-15);
  assert.ok(Math.abs(p[1] - (-2 - 0.02 * (-1 + 0.1 * -2))) < 1e-15);
  assert.ok(Math.abs(slot.m[0] - 0.1 * 3 * r.clip) < 1e-15);
  assert.equal(globalNorm([[1, 2], [2]]), 3);
  assert.equal(clipFactor(0.5, 1), 1);
});

// Tolerances from f32 arithmetic, for |p| <= ~2, 6 steps. The GPU rounds p, m and v to f32
// after every step (half an ulp, 6e-8 relative) and forms each new value from a handful of f32
// operations, so after 6 steps errors stay below ~6 * 1e-7 of the values' scale. m is a sum of
// terms of either sign: its small entries are relatively inexact (cancellation), so every error
// is measured against the array's largest entry: |got - want| <= 1e-6 * max|want| (measured
// worst: 2.8e-7). The norm is a tree of f32 partial sums (relative error ~1e-8 measured).
function closeToScale(got: ArrayLike<number>, want: ArrayLike<number>, what: string) {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  assertClose(got, want, { atol: 1e-6 * scale, rtol: 0, what });
}
const NORM_TOL = { atol: 0, rtol: 1e-6 };

/** Bit-for-bit equality of f32 arrays, reporting the first difference (cheap on failure). */
function assertSameBits(a: Float32Array, b: Float32Array, what: string) {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  assert.equal(a.length, b.length, `${what}: lengths`);
  const i = ua.findIndex((v, k) => v !== ub[k]);
  assert.ok(i < 0, `${what}[${i}]: ${a[i]} differs from ${b[i]}`);
}

interface SlotSpec {
  n: number;
  lrScale: number;
  weightDecay: number;
}
const SPECS: SlotSpec[] = [
  { n: 20000, lrScale: 1, weightDecay: 0.1 }, // 3 workgroups of the norm kernel
  { n: 77, lrScale: 30, weightDecay: 0 }, // gates: faster, no decay
  { n: 5, lrScale: 1, weightDecay: 0 }, // norms: no decay
  { n: 1000, lrScale: 0.5, weightDecay: 0.05 },
];

/** GPU slots for SPECS: separate tensors, or views of one buffer holding p, g, m, v. */
function makeSlots(rt: Runtime, arena: boolean, p0: Float32Array[]) {
  if (!arena) {
    const slots: AdamwSlot[] = SPECS.map((s, i) => ({
      name: `t${i}`,
      p: rt.tensor(`p${i}`, s.n, p0[i]),
      g: rt.tensor(`g${i}`, s.n),
      lrScale: s.lrScale,
      weightDecay: s.weightDecay,
    }));
    return { slots, normOver: undefined, owned: slots.flatMap((s) => [s.p, s.g]) };
  }
  const at: number[] = [];
  let region = 0;
  for (const s of SPECS) {
    at.push(region);
    region += Math.ceil(s.n / 64) * 64; // 256-byte aligned starts
  }
  const buf = rt.tensor("arena", 4 * region);
  const slots: AdamwSlot[] = SPECS.map((s, i) => {
    const view = (k: number, what: string) => buf.view(k * region + at[i], s.n, `${what}${i}`);
    rt.write(buf, p0[i], at[i]);
    return {
      name: `t${i}`,
      p: view(0, "p"),
      g: view(1, "g"),
      m: view(2, "m"),
      v: view(3, "v"),
      lrScale: s.lrScale,
      weightDecay: s.weightDecay,
    };
  });
  // One norm view over the whole gradient region (its gaps stay zero).
  return { slots, normOver: [buf.view(region, region, "g-all")], owned: [buf] };
}

for (const arena of [false, true]) {
  const how = arena ? "views of one buffer, 256-element pieces, one norm view" : "own tensors";
  gpuTest(
    `adamw: 6 steps, clipping on and off, 4 groups match the f64 reference (${how})`,
    async (rt) => {
      const rng = new Rng(arena ? 21 : 20);
      const p0 = SPECS.map((s) => randf32(rng, s.n));
      const { slots, normOver, owned } = makeSlots(rt, arena, p0);
      const opt = await Adamw.create(rt, slots, {
        normOver,
        pieceElements: arena ? 256 : undefined,
      });
      const ref: AdamwRefSlot[] = SPECS.map((s, i) => ({
        p: f64(p0[i]),
        g: [],
        m: new Float64Array(s.n),
        v: new Float64Array(s.n),
        lrScale: s.lrScale,
        weightDecay: s.weightDecay,
      }));
      let clipped = 0;
      for (let step = 1; step <= 6; step++) {
        // Odd steps: gradients of norm ~10 (clipped to 1); even steps: norm ~0.3 (not clipped).
        const gs = SPECS.map((s) => randf32(rng, s.n, step % 2 ? 0.12 : 0.0035));
        gs.forEach((g, i) => rt.write(opt.slots[i].g, g));
        const h: AdamwHyper = {
          step,
          lr: 0.01 * (1 - step / 20),
          beta1: 0.9,
          beta2: 0.95,
          eps: 1e-8,
          maxNorm: 1,
        };
        const rec = rt.record();
        opt.recordStep(rec, h);
        const stats = opt.readStats(rec);
        const reads = opt.slots.map((s) => [rec.read(s.p), rec.read(s.m), rec.read(s.v)]);
        rt.submit(rec);
        ref.forEach((r, i) => (r.g = gs[i]));
        const want = adamwStep(ref, h);
        const got = await stats;
        const what = `${how} step ${step}`;
        assertClose([got.norm, got.clip], [want.norm, want.clip], {
          ...NORM_TOL,
          what: `${what} norm, clip`,
        });
        assert.equal(got.skipped, false);
        if (want.clip < 1) clipped++;
        for (const [i, [p, m, v]] of reads.entries()) {
          closeToScale(await m, ref[i].m, `${what} m${i}`);
          closeToScale(await v, ref[i].v, `${what} v${i}`);
          closeToScale(await p, ref[i].p, `${what} p${i}`);
        }
      }
      assert.equal(clipped, 3);
      for (const t of owned) rt.free(t);
      if (!arena) { for (const s of opt.slots) for (const t of [s.m, s.v]) rt.free(t); }
    },
  );
}

gpuTest(
  "adamw: a NaN or infinite gradient skips the step and leaves p, m, v unchanged",
  async (rt) => {
    const rng = new Rng(30);
    const p0 = SPECS.map((s) => randf32(rng, s.n));
    const { slots, owned } = makeSlots(rt, false, p0);
    const opt = await Adamw.create(rt, slots);
    const ref: AdamwRefSlot[] = SPECS.map((s, i) => ({
      p: f64(p0[i]),
      g: [],
      m: new Float64Array(s.n),
      v: new Float64Array(s.n),
      lrScale: s.lrScale,
      weightDecay: s.weightDecay,
    }));
    const bad: Record<number, number> = { 2: NaN, 3: Infinity };
    let before: Float32Array[] = [];
    for (let step = 1; step <= 4; step++) {
      const gs = SPECS.map((s) => randf32(rng, s.n, 0.01));
      if (step in bad) gs[1][40] = bad[step];
      gs.forEach((g, i) => rt.write(opt.slots[i].g, g));
      const h = { step, lr: 0.02, beta1: 0.9, beta2: 0.999, eps: 1e-8, maxNorm: 1 };
      const rec = rt.record();
      opt.recordStep(rec, h);
      const stats = opt.readStats(rec);
      const reads = opt.slots.flatMap((s) => [rec.read(s.p), rec.read(s.m), rec.read(s.v)]);
      rt.submit(rec);
      ref.forEach((r, i) => (r.g = gs[i]));
      const want = adamwStep(ref, h);
      const got = await stats, now = await Promise.all(reads);
      assert.equal(got.skipped, want.skipped, `step ${step} skipped`);
      assert.equal(got.skippedTotal, step === 2 ? 1 : step >= 3 ? 2 : 0);
      if (want.skipped) {
        assert.ok(!Number.isFinite(got.norm));
        now.forEach((t, j) =>
          assertSameBits(t, before[j], `step ${step} ${"pmv"[j % 3]}${j / 3 | 0}`)
        );
      } else {
        now.forEach((t, j) => {
          const r = ref[Math.floor(j / 3)];
          closeToScale(
            t,
            [r.p, r.m, r.v][j % 3],
            `step ${step} ${"pmv"[j % 3]}${Math.floor(j / 3)}`,
          );
        });
      }
      before = now;
    }
    for (const t of owned) rt.free(t);
    for (const s of opt.slots) for (const t of [s.m, s.v]) rt.free(t);
  },
);

gpuTest("adamw: norm-only recording and readback for logging, no update", async (rt) => {
  const rng = new Rng(40);
  const g = randf32(rng, 9000);
  const tp = rt.tensor("p", 9000, randf32(rng, 9000)), tg = rt.tensor("g", 9000, g);
  const opt = await Adamw.create(rt, [{ name: "w", p: tp, g: tg }]);
  const p0 = await rt.read(tp);
  const rec = rt.record();
  opt.recordNorm(rec, Infinity);
  const stats = opt.readStats(rec);
  rt.submit(rec);
  const s = await stats;
  assertClose([s.norm], [globalNorm([g])], { ...NORM_TOL, what: "norm" });
  assert.equal(s.clip, 1);
  assertSameBits(await rt.read(tp), p0, "p");
  for (const t of [tp, tg, opt.slots[0].m, opt.slots[0].v]) rt.free(t);
});
