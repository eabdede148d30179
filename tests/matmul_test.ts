import { equal } from "node:assert/strict";
import { Matmul, type MatmulVariant } from "../src/ops/matmul.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import { assertClose, dot, f64, gradCheck, randf32 } from "./_numeric.ts";
import { linearBackward, linearForward } from "./ref/matmul.ts";

Deno.test("ref linear backward matches finite differences", () => {
  const rng = new Rng(1);
  const M = 3, N = 4, K = 5;
  const x = f64(randf32(rng, M * K)), w = f64(randf32(rng, N * K)), r = f64(randf32(rng, M * N));
  const loss = () => dot(linearForward(x, w, M, N, K), r);
  const { dx, dw } = linearBackward(r, x, w, M, N, K);
  gradCheck(loss, x, dx, { what: "dx" });
  gradCheck(loss, w, dw, { what: "dw" });
});

// f32 accumulation of K products of O(1) values: error grows like sqrt(K) * 2^-24 * |terms|;
// with K <= 300 and |x|,|w| <= 1 an absolute 1e-4 plus relative 1e-4 bounds it with margin.
const TOL = { atol: 1e-4, rtol: 1e-4 };
// Odd shapes take the scalar path; rows of a multiple of 64 floats the texture path of the
// `reg` tuning, other multiples of 4 its packed-texture path (each layout has its own
// condition; a packed texture's last row is partial unless its texels fill whole 1 KiB rows).
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [65, 63, 67],
  [130, 70, 257],
  [3, 200, 33],
  [64, 64, 64],
  [68, 72, 12],
  [132, 36, 260],
  [70, 130, 128],
  [33, 300, 64],
  [64, 128, 192],
  [128, 64, 70],
];

for (const variant of ["reg", "tiled"] as MatmulVariant[]) {
  gpuTest(
    `matmul ${variant}: nt, nn, tn layouts match the f64 reference on odd and aligned shapes`,
    async (rt) => {
      const mm = await Matmul.create(rt, variant);
      const rng = new Rng(7);
      for (const [M, N, K] of SHAPES) {
        const x = randf32(rng, M * K), w = randf32(rng, N * K), dy = randf32(rng, M * N);
        const dw0 = randf32(rng, N * K);
        const tx = rt.tensor("x", M * K, x),
          tw = rt.tensor("w", N * K, w),
          tdy = rt.tensor("dy", M * N, dy);
        const ty = rt.tensor("y", M * N),
          tdx = rt.tensor("dx", M * K),
          tdw = rt.tensor("dw", N * K, dw0);
        const rec = rt.record();
        mm.forward(rec, ty, tx, tw, M, N, K);
        mm.backwardInput(rec, tdx, tdy, tw, M, N, K);
        mm.backwardWeight(rec, tdw, tdy, tx, M, N, K);
        const [y, dx, dw] = [rec.read(ty), rec.read(tdx), rec.read(tdw)];
        rt.submit(rec);
        const ref = linearBackward(dy, x, w, M, N, K);
        const path = mm.path(M, N, K);
        // Which path each layout takes: textures with the operands' rows need rows of a
        // multiple of 64 floats, packed textures a multiple of 4; then vec4, then scalar.
        const vec = M % 4 || N % 4 || K % 4 ? "reg" : "reg4";
        const tex = (...cols: number[]) =>
          cols.every((c) => c % 64 === 0) ? "tex" : cols.every((c) => c % 4 === 0) ? "texp" : vec;
        equal(path, variant === "tiled" ? "tiled" : tex(K));
        if (variant === "reg") {
          equal(mm.path(M, N, K, [], "nn"), tex(K, N));
          equal(mm.path(M, N, K, [], "tn"), tex(M, N));
        }
        const what = `${variant}/${path} ${M}x${N}x${K}`;
        assertClose(await y, linearForward(x, w, M, N, K), { ...TOL, what: `${what} y` });
        assertClose(await dx, ref.dx, { ...TOL, what: `${what} dx` });
        assertClose(await dw, ref.dw.map((v, i) => v + dw0[i]), {
          ...TOL,
          what: `${what} dw (accumulated)`,
        });
        for (const t of [tx, tw, tdy, ty, tdx, tdw]) rt.free(t);
      }
    },
  );

  gpuTest(`matmul ${variant}: batched with strides and alpha`, async (rt) => {
    const mm = await Matmul.create(rt, variant);
    const rng = new Rng(3);
    for (const [M, N, K, pad] of [[17, 9, 11, 3], [20, 12, 8, 4]]) {
      const B = 3, sA = M * K + pad, sB = N * K + pad, sC = M * N + pad;
      const a = randf32(rng, B * sA), b = randf32(rng, B * sB);
      const ta = rt.tensor("a", B * sA, a),
        tb = rt.tensor("b", B * sB, b),
        tc = rt.tensor("c", B * sC);
      const rec = rt.record();
      mm.record(rec, "nt", {
        c: tc,
        a: ta,
        b: tb,
        M,
        N,
        K,
        batch: B,
        strideA: sA,
        strideB: sB,
        strideC: sC,
        alpha: 0.5,
      });
      const out = rec.read(tc);
      rt.submit(rec);
      const got = await out;
      for (let z = 0; z < B; z++) {
        const ref = linearForward(a.subarray(z * sA), b.subarray(z * sB), M, N, K).map((v) =>
          v * 0.5
        );
        assertClose(got.subarray(z * sC, z * sC + M * N), ref, { ...TOL, what: `batch ${z}` });
      }
    }
  });
}

// lavapipe stops a shader after 65535 loop iterations; a weight gradient over more rows than
// that must still be exact, so Matmul splits the reduction.
gpuTest(
  "matmul reg: packed textures widen when 64 texels per row exceed the height",
  async (rt) => {
    // x (M, K) holds more than 64 x maxTextureDimension2D texels, so its packed texture needs
    // rows of 128 texels or more; K 1028 is not a multiple of 64 (the unpacked layout is out).
    const mm = await Matmul.create(rt, "reg");
    const K = 1028, N = 8;
    const M = Math.ceil((64 * rt.limits.maxTextureDimension2D * 4) / K) + 3;
    equal(mm.path(M, N, K), "texp");
    const rng = new Rng(13);
    const x = randf32(rng, M * K), w = randf32(rng, N * K);
    const tx = rt.tensor("x", M * K, x), tw = rt.tensor("w", N * K, w), ty = rt.tensor("y", M * N);
    const rec = rt.record();
    mm.forward(rec, ty, tx, tw, M, N, K);
    const y = rec.read(ty);
    rt.submit(rec);
    // Sums of 1028 products of values in [-1, 1): f32 error ~ sqrt(K) * 2^-24 * K / 3 ~ 1e-3 at
    // worst; a misplaced texel gives errors of order 1.
    assertClose(await y, linearForward(x, w, M, N, K), {
      atol: 2e-3,
      rtol: 1e-4,
      what: `${M}x${N}x${K}`,
    });
    for (const t of [tx, tw, ty]) rt.free(t);
  },
);

gpuTest(
  "matmul reg: dW over 70000 rows (split reduction) matches the f64 reference",
  async (rt) => {
    const mm = await Matmul.create(rt, "reg");
    const rng = new Rng(11);
    const M = 70000, N = 3, K = 5; // dW (N, K) += dy (M, N)^T x (M, K)
    const x = randf32(rng, M * K), dy = randf32(rng, M * N);
    const tx = rt.tensor("x", M * K, x),
      tdy = rt.tensor("dy", M * N, dy),
      tdw = rt.tensor("dw", N * K);
    const rec = rt.record();
    mm.backwardWeight(rec, tdw, tdy, tx, M, N, K, 0);
    const out = rec.read(tdw);
    rt.submit(rec);
    const want = linearBackward(dy, x, new Float64Array(N * K), M, N, K).dw;
    // Sums of 70000 products of values in [-1, 1): f32 error ~ sqrt(M) * 2^-24 * M/3 ~ 0.4e-2 at
    // worst; 2e-3 absolute is far below the 10-30% loss a truncated loop causes.
    assertClose(await out, want, { atol: 2e-3, rtol: 1e-5, what: "dW over 70000 rows" });
    for (const t of [tx, tdy, tdw]) rt.free(t);
  },
);
