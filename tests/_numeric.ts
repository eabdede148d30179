/** Numerical helpers for tests: closeness with stated tolerances and finite differences. */
import { AssertionError } from "node:assert/strict";

/**
 * Asserts |actual - expected| <= atol + rtol * |expected| elementwise, reporting the worst
 * element. Tolerances are chosen per kernel from its f32 arithmetic, never tuned to pass.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  opts: { atol: number; rtol: number; what?: string },
): void {
  const what = opts.what ?? "value";
  if (actual.length < expected.length) {
    throw new AssertionError({ message: `${what}: length ${actual.length} < ${expected.length}` });
  }
  let worst = -1, worstExcess = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    const excess = Math.abs(a - e) - (opts.atol + opts.rtol * Math.abs(e));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new AssertionError({
      message: `${what}[${worst}]: got ${actual[worst]}, expected ${expected[worst]} ` +
        `(atol ${opts.atol}, rtol ${opts.rtol}, n ${expected.length})`,
    });
  }
}

/** Largest |a - b| / (atol + |b|), for reporting. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>, atol = 1e-12): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]) / (atol + Math.abs(b[i])));
  }
  return m;
}

/**
 * Checks an analytic gradient against central finite differences in f64 on `samples` random
 * coordinates (all when samples >= x.length). `f` maps the (mutated in place) input to a
 * scalar loss.
 */
export function gradCheck(
  f: () => number,
  x: Float64Array,
  grad: ArrayLike<number>,
  opts: { what: string; samples?: number; h?: number; atol?: number; rtol?: number; seed?: number },
): void {
  const h = opts.h ?? 1e-5;
  const n = x.length;
  const count = Math.min(n, opts.samples ?? n);
  let state = (opts.seed ?? 1) >>> 0;
  const idx: number[] = [];
  if (count === n) { for (let i = 0; i < n; i++) idx.push(i); }
  else {
    for (let j = 0; j < count; j++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      idx.push(state % n);
    }
  }
  const num: number[] = [], ana: number[] = [];
  for (const i of idx) {
    const x0 = x[i];
    x[i] = x0 + h;
    const fp = f();
    x[i] = x0 - h;
    const fm = f();
    x[i] = x0;
    num.push((fp - fm) / (2 * h));
    ana.push(grad[i]);
  }
  assertClose(ana, num, { atol: opts.atol ?? 1e-7, rtol: opts.rtol ?? 1e-5, what: opts.what });
}

/** f64 copy of a Float32Array (what the references consume). */
export function f64(x: ArrayLike<number>): Float64Array {
  return Float64Array.from(x);
}

/** Random Float32Array with entries uniform in [-scale, scale), from a seeded generator. */
export function randf32(rng: { next(): number }, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rng.next() * 2 - 1) * scale;
  return out;
}

/** Dot product of two arrays in f64 (a scalar loss L = sum(out * weights)). */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
