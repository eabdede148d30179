import { GeGLU } from "../src/ops/geglu.ts";
import type { Runtime } from "../src/gpu/runtime.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import { assertClose, dot, f64, gradCheck, randf32 } from "./_numeric.ts";
import { gegluBackward, gegluForward, geluTanh, geluTanhGrad } from "./ref/layers.ts";
import { deepStrictEqual } from "node:assert/strict";

Deno.test("ref gelu_tanh equals 0.5 x (1 + tanh(k (x + a x^3))) and is finite far out", () => {
  const k = Math.sqrt(2 / Math.PI);
  const xs = [-8, -3, -1, -0.1, 0, 1e-3, 0.5, 2, 7];
  const direct = xs.map((x) => 0.5 * x * (1 + Math.tanh(k * (x + 0.044715 * x ** 3))));
  assertClose(xs.map(geluTanh), direct, { atol: 1e-15, rtol: 1e-13, what: "gelu_tanh" });
  for (const x of [-3e38, -1e20, -50, 50, 1e20, 3e38]) {
    const v = geluTanh(x), d = geluTanhGrad(x);
    if (!Number.isFinite(v) || !Number.isFinite(d)) throw new Error(`ref not finite at ${x}`);
  }
});

Deno.test("ref geglu backward matches finite differences", () => {
  const rng = new Rng(11);
  const n = 40;
  const g = f64(randf32(rng, n, 5)), u = f64(randf32(rng, n)), r = f64(randf32(rng, n));
  const loss = () => dot(gegluForward(g, u), r);
  const { dg, du } = gegluBackward(r, g, u);
  gradCheck(loss, g, dg, { what: "dg" });
  gradCheck(loss, u, du, { what: "du" });
});

// Tolerances from f32 arithmetic. WGSL's exp is accurate to 3 + 2|x| ULP; with |g| <= 5 the
// argument |2z| <= 17, so e = exp(-2|z|) is off by <= 37 ulp (2.2e-6 relative) and
// s = 1 / (1 + e) by <= 2.2e-6 * e / (1 + e)^2 <= 5.5e-7 absolute, plus a few roundings of
// 6e-8. h = g s u and dg = dh u (s + g ds) with |g u|, |g ds| <= 5 then err by < 5e-6:
// atol 1e-5. rtol 1e-6 (16 ulp) covers the roundings on the huge values of the far-out test.
const TOL = { atol: 1e-5, rtol: 1e-6 };

async function run(
  rt: Runtime,
  op: GeGLU,
  g: Float32Array,
  u: Float32Array,
  dh: Float32Array,
): Promise<{ h: Float32Array; dg: Float32Array; du: Float32Array }> {
  const n = g.length;
  const tg = rt.tensor("g", n, g), tu = rt.tensor("u", n, u), tdh = rt.tensor("dh", n, dh);
  const th = rt.tensor("h", n), tdg = rt.tensor("dg", n), tdu = rt.tensor("du", n);
  const rec = rt.record();
  op.recordForward(rec, { g: tg, u: tu, h: th, n });
  op.recordBackward(rec, { dh: tdh, g: tg, u: tu, dg: tdg, du: tdu, n });
  const out = [rec.read(th), rec.read(tdg), rec.read(tdu)];
  rt.submit(rec);
  const [h, dg, du] = await Promise.all(out);
  for (const t of [tg, tu, tdh, th, tdg, tdu]) rt.free(t);
  return { h, dg, du };
}

function check(
  got: { h: Float32Array; dg: Float32Array; du: Float32Array },
  g: Float32Array,
  u: Float32Array,
  dh: Float32Array,
  what: string,
): void {
  const ref = gegluBackward(dh, g, u);
  assertClose(got.h, gegluForward(g, u), { ...TOL, what: `${what} h` });
  assertClose(got.dg, ref.dg, { ...TOL, what: `${what} dg` });
  assertClose(got.du, ref.du, { ...TOL, what: `${what} du` });
}

// Both kernel families: one element per thread, and 4 per invocation (vec4, n % 4 == 0).
gpuTest("geglu forward and backward match the f64 reference on odd shapes", async (rt) => {
  for (const vec4 of [false, true]) {
    const op = await GeGLU.create(rt, { vec4 });
    const rng = new Rng(5);
    for (const [rows, F] of [[1, 1], [13, 91], [37, 300], [16, 64]]) {
      const n = rows * F;
      const g = randf32(rng, n, 5), u = randf32(rng, n), dh = randf32(rng, n);
      check(await run(rt, op, g, u, dh), g, u, dh, `${rows}x${F}${vec4 ? " vec4" : ""}`);
    }
  }
});

gpuTest("geglu chunked over small bindings gives the same bits as one dispatch", async (rt) => {
  for (const vec4 of [false, true]) {
    const whole = await GeGLU.create(rt, { vec4 });
    const chunked = await GeGLU.create(rt, { maxChunkBytes: 3 * 256, vec4 }); // 192 a chunk
    const rng = new Rng(9);
    // 7 chunks, the last partial; the second n (a multiple of 4) takes the vec4 kernels.
    for (const n of [13 * 91, 12 * 100]) {
      const g = randf32(rng, n, 5), u = randf32(rng, n), dh = randf32(rng, n);
      const a = await run(rt, whole, g, u, dh), b = await run(rt, chunked, g, u, dh);
      check(b, g, u, dh, `chunked n ${n}${vec4 ? " vec4" : ""}`);
      deepStrictEqual(b.h, a.h);
      deepStrictEqual(b.dg, a.dg);
      deepStrictEqual(b.du, a.du);
    }
  }
});

gpuTest("geglu stays finite and correct for large |g| (no tanh overflow)", async (rt) => {
  for (const vec4 of [false, true]) await largeCase(rt, vec4);
});

async function largeCase(rt: Runtime, vec4: boolean): Promise<void> {
  const op = await GeGLU.create(rt, { vec4 });
  const big = [3e38, 1e30, 1e20, 1e10, 1e3, 100, 40, 12, 9, 5.5, 1e-30, 0];
  const g = new Float32Array([...big, ...big.map((x) => -x)]);
  const n = g.length;
  const rng = new Rng(2);
  const u = randf32(rng, n), dh = randf32(rng, n);
  const got = await run(rt, op, g, u, dh);
  for (const [name, arr] of Object.entries(got)) {
    arr.forEach((v, i) => {
      if (!Number.isFinite(v)) throw new Error(`${name}[${i}] = ${v} for g = ${g[i]}`);
    });
  }
  check(got, g, u, dh, `large${vec4 ? " vec4" : ""}`);
}
