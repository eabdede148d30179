import { deepStrictEqual, notDeepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import type { Runtime } from "../src/gpu/runtime.ts";
import {
  Attention,
  type AttentionShape,
  ROWS_MAX_WORK,
  useRowsKernel,
} from "../src/ops/attention.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import { assertClose, dot, f64, gradCheck, randf32 } from "./_numeric.ts";
import { attentionBackward, attentionForward } from "./ref/attention.ts";

Deno.test("ref attention backward matches finite differences", () => {
  const rng = new Rng(11);
  // Two segments of 5 rows, 4 query heads on 2 KV heads, D 3, a scale that is not 1/sqrt(D).
  const sh = { rows: 10, S: 5, H: 4, Hkv: 2, D: 3 }, scale = 0.7;
  const q = f64(randf32(rng, sh.rows * sh.H * sh.D, 2));
  const k = f64(randf32(rng, sh.rows * sh.Hkv * sh.D, 2));
  const v = f64(randf32(rng, sh.rows * sh.Hkv * sh.D));
  const r = f64(randf32(rng, sh.rows * sh.H * sh.D));
  const loss = () => dot(attentionForward(q, k, v, sh, scale).o, r);
  const g = attentionBackward(r, q, k, v, sh, scale);
  gradCheck(loss, q, g.dq, { what: "dq" });
  gradCheck(loss, k, g.dk, { what: "dk" });
  gradCheck(loss, v, g.dv, { what: "dv" });
});

Deno.test("ref attention: L is the log-sum-exp and rows of P sum to one", () => {
  // One row by hand: t = 1 sees keys 0 and 1 of its segment.
  const sh = { rows: 2, S: 2, H: 1, Hkv: 1, D: 1 };
  const { o, lse } = attentionForward([1, 2], [3, -1], [5, 7], sh, 0.5);
  const s0 = 0.5 * 2 * 3, s1 = 0.5 * 2 * -1;
  const L = Math.log(Math.exp(s0) + Math.exp(s1));
  assertClose(lse, [0.5 * 3, L], { atol: 1e-14, rtol: 1e-14, what: "lse" });
  assertClose(o, [5, Math.exp(s0 - L) * 5 + Math.exp(s1 - L) * 7], {
    atol: 1e-14,
    rtol: 1e-14,
    what: "o",
  });
});

interface Outputs {
  o: Float32Array;
  lse: Float32Array;
  dsum: Float32Array;
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
}

interface Inputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  dO: Float32Array;
}

/** Runs forward then backward in one submit and reads every output back. */
async function runGpu(
  rt: Runtime,
  attn: Attention,
  x: Inputs,
  sh: AttentionShape,
): Promise<Outputs> {
  const { rows, H, Hkv } = sh, D = attn.D;
  const t = {
    q: rt.tensor("q", rows * H * D, x.q),
    k: rt.tensor("k", rows * Hkv * D, x.k),
    v: rt.tensor("v", rows * Hkv * D, x.v),
    dO: rt.tensor("dO", rows * H * D, x.dO),
    o: rt.tensor("o", rows * H * D),
    lse: rt.tensor("lse", rows * H),
    dsum: rt.tensor("dsum", rows * H),
    dq: rt.tensor("dq", rows * H * D),
    dk: rt.tensor("dk", rows * Hkv * D),
    dv: rt.tensor("dv", rows * Hkv * D),
  };
  const rec = rt.record();
  attn.recordForward(rec, t, sh);
  attn.recordBackward(rec, t, sh);
  const names = ["o", "lse", "dsum", "dq", "dk", "dv"] as const;
  const reads = names.map((n) => rec.read(t[n]));
  rt.submit(rec);
  const got = await Promise.all(reads);
  for (const u of Object.values(t)) rt.free(u);
  return Object.fromEntries(names.map((n, i) => [n, got[i]])) as unknown as Outputs;
}

function randomInputs(rng: Rng, sh: AttentionShape, D: number, qScale: number): Inputs {
  return {
    q: randf32(rng, sh.rows * sh.H * D, qScale),
    k: randf32(rng, sh.rows * sh.Hkv * D),
    v: randf32(rng, sh.rows * sh.Hkv * D),
    dO: randf32(rng, sh.rows * sh.H * D),
  };
}

// f32 error: every output is a sum of at most 1060 products (S * H/Hkv keys or queries; D <= 256
// terms in a score) of values <= ~4 in size. Rounding (2^-24 relative per operation) grows like
// sqrt(n) in such sums: ~1e-6 typical, 4e-5 in the worst case relative to the largest terms;
// exp and log on lavapipe add a few ulp. A wrong mask, head mapping or missing rescale shows
// up as errors of 1e-2 or more.
const TOL = { atol: 3e-5, rtol: 1e-4 };

// [S, segments, H, Hkv, D, scale of q]: rows = S * segments is never a multiple of 4; S below
// and above the block sizes (8..64 owned, 32..512 streamed rows), D odd-sized, vec4 and 256.
const CASES: [number, number, number, number, number, number][] = [
  [7, 3, 8, 1, 6, 2],
  [13, 5, 4, 2, 8, 2],
  [33, 2, 3, 3, 64, 2],
  [33, 3, 4, 2, 6, 8], // peaked softmax: the running max changes a lot
  [150, 2, 4, 2, 64, 2],
  [150, 1, 4, 2, 8, 2],
  [70, 2, 8, 1, 256, 1],
  [530, 1, 2, 1, 256, 2],
  // Head dims and segments of the row kernel (D % 4 == 0, D <= 16, S x H / Hkv <= 64); rows
  // never a multiple of its 64.
  [5, 9, 4, 4, 4, 2],
  [20, 3, 6, 2, 12, 8],
  [8, 7, 8, 1, 16, 2],
];

// The CPU profile runs the row kernel where D allows (`useRowsKernel`); "cpu-blocked" forces
// the blocked kernel at those head dims so both stay covered.
const VARIANTS = ["cpu", "cpu-blocked", "gpu"] as const;
const make = (rt: Runtime, D: number, variant: typeof VARIANTS[number]) =>
  variant === "cpu-blocked"
    ? Attention.create(rt, D, "cpu", undefined, false)
    : Attention.create(rt, D, variant);

for (const profile of VARIANTS) {
  gpuTest(
    `attention ${profile} profile: forward and backward match the f64 reference`,
    async (rt) => {
      const rng = new Rng(5);
      let rowsRuns = 0;
      for (const [S, nseg, H, Hkv, D, qScale] of CASES) {
        // S 530 is there for the CPU tiling at D 256, which streams 512 rows per block; the GPU
        // tiling streams 32 and is crossed many times by the other cases.
        if (profile === "gpu" && S > 512) continue;
        if (profile === "cpu-blocked" && !useRowsKernel("cpu", D)) continue; // same as "cpu"
        const attn = await make(rt, D, profile);
        const sh = { rows: S * nseg, S, H, Hkv };
        const x = randomInputs(rng, sh, D, qScale);
        const got = await runGpu(rt, attn, x, sh);
        const scale = 1 / Math.sqrt(D);
        const f = attentionForward(x.q, x.k, x.v, { ...sh, D }, scale);
        const b = attentionBackward(x.dO, x.q, x.k, x.v, { ...sh, D }, scale);
        if (attn.usesRows(sh)) rowsRuns++;
        const kind = attn.usesRows(sh) ? "rows" : attn.tiling.kind;
        const what = `${profile} ${kind} S ${S} x${nseg} H ${H}/${Hkv} D ${D}`;
        assertClose(got.o, f.o, { ...TOL, what: `${what} o` });
        assertClose(got.lse, f.lse, { ...TOL, what: `${what} lse` });
        assertClose(got.dsum, b.dsum, { ...TOL, what: `${what} dsum` });
        assertClose(got.dq, b.dq, { ...TOL, what: `${what} dq` });
        assertClose(got.dk, b.dk, { ...TOL, what: `${what} dk` });
        assertClose(got.dv, b.dv, { ...TOL, what: `${what} dv` });
      }
      // The row kernel ran exactly where the CPU profile picks it.
      strictEqual(rowsRuns, profile === "cpu" ? 4 : 0);
    },
  );

  gpuTest(`attention ${profile} profile: causal inside segments, reproducible`, async (rt) => {
    for (const D of [6, 8]) {
      const attn = await make(rt, D, profile);
      const S = 33, sh = { rows: 3 * S, S, H: 4, Hkv: 2 };
      const x = randomInputs(new Rng(9), sh, D, 2);
      const base = await runGpu(rt, attn, x, sh);
      const again = await runGpu(rt, attn, x, sh);
      for (const n of ["o", "lse", "dsum", "dq", "dk", "dv"] as const) {
        deepStrictEqual(again[n], base[n], `${n} differs between two identical runs`);
      }
      for (const p of [S + 17, S, 2 * S - 1]) {
        // Perturb every input of row p (all heads): q, k, v and dO.
        const y = {
          q: x.q.slice(),
          k: x.k.slice(),
          v: x.v.slice(),
          dO: x.dO.slice(),
        };
        for (const [a, w] of [[y.q, sh.H], [y.k, sh.Hkv], [y.v, sh.Hkv], [y.dO, sh.H]] as const) {
          for (let i = p * w * D; i < (p + 1) * w * D; i++) a[i] += 0.5;
        }
        const got = await runGpu(rt, attn, y, sh);
        const seg0 = p - (p % S), seg1 = seg0 + S;
        const what = `${profile} D ${D} row ${p}`;
        // Rows before p in its segment and all rows of other segments: bit for bit the same.
        const same = (n: keyof Outputs, width: number, t: number) => {
          const a = got[n].subarray(t * width, (t + 1) * width);
          const b = base[n].subarray(t * width, (t + 1) * width);
          deepStrictEqual(a, b, `${what}: ${n} of row ${t} changed`);
        };
        for (let t = 0; t < sh.rows; t++) {
          const outside = t < seg0 || t >= seg1;
          if (outside || t < p) {
            same("o", sh.H * D, t);
            same("lse", sh.H, t);
            same("dsum", sh.H, t);
            same("dq", sh.H * D, t);
          }
          if (outside) {
            same("dk", sh.Hkv * D, t);
            same("dv", sh.Hkv * D, t);
          }
        }
        // And the perturbation does reach row p itself (so the checks above can fail).
        const row = (a: Float32Array) => Array.from(a.subarray(p * sh.H * D, (p + 1) * sh.H * D));
        notDeepStrictEqual(row(got.o), row(base.o), `${what}: o of row p did not change`);
      }
    }
  });
}

gpuTest("attention row kernel: at its size limit, and the blocked kernel past it", async (rt) => {
  // Segments with S x (H / Hkv) up to ROWS_MAX_WORK run the row kernel, one row more the
  // blocked one; both must match the reference at the switch.
  const attn = await Attention.create(rt, 16, "cpu");
  const rng = new Rng(11);
  for (const S of [ROWS_MAX_WORK / 2, ROWS_MAX_WORK / 2 + 1]) {
    const sh = { rows: 3 * S, S, H: 2, Hkv: 1 };
    strictEqual(attn.usesRows(sh), S * 2 <= ROWS_MAX_WORK);
    const x = randomInputs(rng, sh, 16, 2);
    const got = await runGpu(rt, attn, x, sh);
    const f = attentionForward(x.q, x.k, x.v, { ...sh, D: 16 }, 0.25);
    const b = attentionBackward(x.dO, x.q, x.k, x.v, { ...sh, D: 16 }, 0.25);
    const what = `S ${S} H 2/1 D 16 ${attn.usesRows(sh) ? "rows" : "blocked"}`;
    assertClose(got.o, f.o, { ...TOL, what: `${what} o` });
    assertClose(got.dq, b.dq, { ...TOL, what: `${what} dq` });
    assertClose(got.dk, b.dk, { ...TOL, what: `${what} dk` });
    assertClose(got.dv, b.dv, { ...TOL, what: `${what} dv` });
  }
});

gpuTest("attention: shapes are validated", async (rt) => {
  const attn = await Attention.create(rt, 8);
  const t = (n: number) => rt.tensor("t", n);
  const a = { q: t(8 * 16), k: t(8 * 8), v: t(8 * 8), o: t(8 * 16), lse: t(16) };
  const rec = rt.record();
  throws(() => attn.recordForward(rec, a, { rows: 8, S: 3, H: 2, Hkv: 1 }), RangeError);
  throws(() => attn.recordForward(rec, a, { rows: 8, S: 4, H: 3, Hkv: 2 }), RangeError);
  throws(() => attn.recordForward(rec, a, { rows: 16, S: 4, H: 2, Hkv: 1 }), RangeError);
  attn.recordForward(rec, a, { rows: 8, S: 4, H: 2, Hkv: 1 });
  ok(rec.dispatches === 1);
  rt.submit(rec);
  await rt.sync();
  for (const u of Object.values(a)) rt.free(u);
});

// Decode (generation): one token against the first n cached rows equals row n - 1 of the
// segment forward. n crosses the 64-key blocks (1, 63, 64, 65, 150) so the online rescale
// between blocks is exercised; D odd, 8 and 256 (4 output dims per invocation); GQA 8 / 1.
gpuTest(
  "attention decode: one token against the cache equals the reference's row n - 1",
  async (rt) => {
    const rng = new Rng(17);
    const CASES_DEC: [number, number, number, number, number][] = [
      // [n, H, Hkv, D, scale of q]
      [1, 4, 2, 8, 2],
      [63, 8, 1, 6, 2],
      [64, 4, 2, 8, 8], // peaked softmax
      [65, 3, 3, 64, 2],
      [150, 8, 1, 256, 1],
      [150, 4, 2, 7, 4],
    ];
    for (const [n, H, Hkv, D, qScale] of CASES_DEC) {
      const attn = await Attention.create(rt, D);
      const capacity = n + 5; // the cache holds more rows than are valid: they must be ignored
      const q = randf32(rng, capacity * H * D, qScale);
      const k = randf32(rng, capacity * Hkv * D);
      const v = randf32(rng, capacity * Hkv * D);
      // Reference: causal attention over one segment of the n valid rows; take its last row.
      const sh = { rows: n, S: n, H, Hkv, D };
      const ref = attentionForward(q.subarray(0, n * H * D), k, v, sh, 1 / Math.sqrt(D));
      const want = ref.o.subarray((n - 1) * H * D, n * H * D);
      const t = {
        q: rt.tensor("q", H * D, q.slice((n - 1) * H * D, n * H * D)),
        k: rt.tensor("kcache", capacity * Hkv * D, k),
        v: rt.tensor("vcache", capacity * Hkv * D, v),
        o: rt.tensor("o", H * D),
      };
      const rec = rt.record();
      attn.recordDecode(rec, t, { n, H, Hkv });
      const out = rec.read(t.o);
      rt.submit(rec);
      assertClose(await out, want, { ...TOL, what: `decode n ${n} H ${H}/${Hkv} D ${D}` });
      for (const u of Object.values(t)) rt.free(u);
    }
  },
);

gpuTest("attention decode: shapes are validated", async (rt) => {
  const attn = await Attention.create(rt, 8);
  const t = (n: number) => rt.tensor("t", n);
  const a = { q: t(16), k: t(4 * 8), v: t(4 * 8), o: t(16) };
  const rec = rt.record();
  throws(() => attn.recordDecode(rec, a, { n: 5, H: 2, Hkv: 1 }), RangeError); // cache too short
  throws(() => attn.recordDecode(rec, a, { n: 0, H: 2, Hkv: 1 }), RangeError);
  throws(() => attn.recordDecode(rec, a, { n: 4, H: 3, Hkv: 2 }), RangeError);
  attn.recordDecode(rec, a, { n: 4, H: 2, Hkv: 1 });
  rt.submit(rec);
});
