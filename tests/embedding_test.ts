import { Embedding } from "../src/ops/embedding.ts";
import type { Runtime } from "../src/gpu/runtime.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import { assertClose, dot, f64, gradCheck, randf32 } from "./_numeric.ts";
import { embeddingBackward, embeddingForward } from "./ref/layers.ts";
import { AssertionError, deepStrictEqual, ok, throws } from "node:assert/strict";

Deno.test("ref embedding backward matches finite differences", () => {
  const rng = new Rng(12);
  const V = 6, C = 5, tokens = [3, 0, 3, 5, 3, 1];
  const E = f64(randf32(rng, V * C)), r = f64(randf32(rng, tokens.length * C));
  const loss = () => dot(embeddingForward(E, tokens, C), r);
  gradCheck(loss, E, embeddingBackward(r, tokens, V, C), { what: "dE" });
});

Deno.test("embedding index groups rows by token in ascending row order", () => {
  const tokens = [7, 2, 7, 0, 2, 7];
  const ix = Embedding.buildIndex(tokens);
  const rows = tokens.length;
  deepStrictEqual([...ix.distinct], [0, 2, 7]);
  deepStrictEqual([...ix.data.subarray(rows, rows + 4)], [0, 1, 3, 6]); // run starts, then rows
  deepStrictEqual([...ix.data.subarray(2 * rows + 1)], [3, 1, 4, 0, 2, 5]);
  deepStrictEqual(ix.data.length, Embedding.indexLength(rows));
  throws(() => Embedding.buildIndex([1, -1]), RangeError);
});

/**
 * |actual - expected| <= bound elementwise. The GPU sums a token's k rows of dx in row order
 * in f32, scales by sqrt(C) and adds to dE0: to first order the error is at most
 * u ((k + 2) sqrt(C) sum|dx| + |dE0|), u = 2^-24 ((k - 1) roundings in the sum, the rounded
 * scale, the product, the add); doubled for second-order terms.
 */
function dEBound(
  dx: Float32Array,
  tokens: Uint32Array,
  dE0: Float32Array,
  V: number,
  C: number,
): Float64Array {
  const u = 2 ** -24, scale = Math.sqrt(C);
  const k = new Float64Array(V), s = new Float64Array(V * C);
  tokens.forEach((t, r) => {
    k[t]++;
    for (let c = 0; c < C; c++) s[t * C + c] += Math.abs(dx[r * C + c]);
  });
  return s.map((v, i) => 2 * u * ((k[Math.floor(i / C)] + 2) * scale * v + Math.abs(dE0[i])));
}

function assertBounded(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  bound: ArrayLike<number>,
  what: string,
): void {
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= bound[i])) {
      throw new AssertionError({
        message: `${what}[${i}]: got ${actual[i]}, expected ${expected[i]}, bound ${bound[i]}`,
      });
    }
  }
}

// Forward: sqrt(C) rounded to f32 times E, rounded: relative error <= 2 u = 1.2e-7.
const FWD = { atol: 0, rtol: 1.2e-7 };

interface Run {
  x: Float32Array;
  dE: Float32Array;
  dispatches: number;
}

async function run(
  rt: Runtime,
  emb: Embedding,
  E: Float32Array,
  dE0: Float32Array,
  tokens: Uint32Array,
  dx: Float32Array,
  V: number,
  C: number,
): Promise<Run> {
  const rows = tokens.length;
  const host = Embedding.buildIndex(tokens);
  const index = rt.tensor("index", Embedding.indexLength(rows), host.data);
  const weight = rt.tensor("E", V * C, E), dWeight = rt.tensor("dE", V * C, dE0);
  const tx = rt.tensor("x", rows * C), tdx = rt.tensor("dx", rows * C, dx);
  const rec = rt.record();
  emb.recordForward(rec, { x: tx, weight, index, host, V, C });
  emb.recordBackward(rec, { dWeight, dx: tdx, index, host, V, C });
  const dispatches = rec.dispatches;
  const out = [rec.read(tx), rec.read(dWeight)];
  rt.submit(rec);
  const [x, dE] = await Promise.all(out);
  for (const t of [index, weight, dWeight, tx, tdx]) rt.free(t);
  return { x, dE, dispatches };
}

function check(
  got: Run,
  E: Float32Array,
  dE0: Float32Array,
  tokens: Uint32Array,
  dx: Float32Array,
  V: number,
  C: number,
  what: string,
): void {
  assertClose(got.x, embeddingForward(E, tokens, C), { ...FWD, what: `${what} x` });
  const ref = embeddingBackward(dx, tokens, V, C).map((v, i) => v + dE0[i]);
  assertBounded(got.dE, ref, dEBound(dx, tokens, dE0, V, C), `${what} dE (accumulated)`);
}

function randomTokens(rng: Rng, rows: number, V: number): Uint32Array {
  return Uint32Array.from({ length: rows }, () => rng.int(V));
}

gpuTest("embedding gather and scatter match the f64 reference on odd shapes", async (rt) => {
  const emb = await Embedding.create(rt);
  const rng = new Rng(31);
  for (const [V, C, rows] of [[1, 1, 1], [50, 37, 13], [1000, 91, 70]]) {
    const tokens = randomTokens(rng, rows, V);
    const E = randf32(rng, V * C), dE0 = randf32(rng, V * C), dx = randf32(rng, rows * C);
    const got = await run(rt, emb, E, dE0, tokens, dx, V, C);
    check(got, E, dE0, tokens, dx, V, C, `V ${V} C ${C} rows ${rows}`);
  }
});

gpuTest(
  "embedding with many repeated tokens is correct and bit-for-bit reproducible",
  async (rt) => {
    const emb = await Embedding.create(rt);
    const rng = new Rng(32);
    const V = 300, C = 37, rows = 517;
    // Mostly three tokens (runs of ~150 rows), a few others, and the last token of the vocabulary.
    const tokens = Uint32Array.from(
      { length: rows },
      (_, r) => r % 29 === 0 ? V - 1 : r % 11 === 0 ? rng.int(V) : [0, 5, 17][rng.int(3)],
    );
    const E = randf32(rng, V * C), dE0 = randf32(rng, V * C), dx = randf32(rng, rows * C);
    const a = await run(rt, emb, E, dE0, tokens, dx, V, C);
    check(a, E, dE0, tokens, dx, V, C, "repeated");
    const b = await run(rt, emb, E, dE0, tokens, dx, V, C);
    deepStrictEqual(b.dE, a.dE);
    deepStrictEqual(b.x, a.x);
  },
);

gpuTest(
  "embedding: a token repeated 70,000 times (past lavapipe's 65,535-iteration cap) and forced small pieces stay exact",
  async (rt) => {
    const rng = new Rng(33);
    // One token in almost every row: a single run of ~70k occurrences.
    const V = 20, C = 8, rows = 70_003;
    const tokens = Uint32Array.from({ length: rows }, (_, r) => (r % 1000 === 0 ? 3 : 7));
    const E = randf32(rng, V * C), dE0 = randf32(rng, V * C), dx = randf32(rng, rows * C);
    const emb = await Embedding.create(rt);
    const big = await run(rt, emb, E, dE0, tokens, dx, V, C);
    check(big, E, dE0, tokens, dx, V, C, "70k repeats");
    // Pieces of 7 occurrences on odd shapes: many dispatches, the same result within the bound.
    const small = await Embedding.create(rt, { maxRun: 7 });
    const t2 = Uint32Array.from({ length: 517 }, () => [0, 5, 17][rng.int(3)]);
    const E2 = randf32(rng, 300 * 37), d2 = randf32(rng, 300 * 37), dx2 = randf32(rng, 517 * 37);
    const got = await run(rt, small, E2, d2, t2, dx2, 300, 37);
    check(got, E2, d2, t2, dx2, 300, 37, "pieces of 7");
    ok(got.dispatches >= 2 * Math.ceil(150 / 7), `${got.dispatches} dispatches`);
  },
);

gpuTest("embedding over vocabulary chunks equals one binding, bit for bit", async (rt) => {
  const whole = await Embedding.create(rt);
  // C 37: chunk starts must be multiples of 64 rows (64 * 37 * 4 bytes is a multiple of 256);
  // 100 rows fit in 14800 bytes, so chunks of 64 rows: [0, 64), [64, 128), ... [256, 300).
  const chunked = await Embedding.create(rt, { maxChunkBytes: 100 * 37 * 4 });
  const V = 300, C = 37;
  deepStrictEqual(chunked.chunks(V, C).map((c) => [c.v0, c.count]), [
    [0, 64],
    [64, 64],
    [128, 64],
    [192, 64],
    [256, 44],
  ]);
  const rng = new Rng(33);
  // Tokens in every chunk but [128, 192), which must then cost no dispatch.
  const pool = [0, 63, 64, 100, 127, 192, 200, 255, 256, 299];
  const tokens = Uint32Array.from({ length: 97 }, () => pool[rng.int(pool.length)]);
  const E = randf32(rng, V * C), dE0 = randf32(rng, V * C), dx = randf32(rng, 97 * C);
  const a = await run(rt, whole, E, dE0, tokens, dx, V, C);
  const b = await run(rt, chunked, E, dE0, tokens, dx, V, C);
  if (a.dispatches !== 2 || b.dispatches !== 8) {
    throw new Error(`dispatches: whole ${a.dispatches} (want 2), chunked ${b.dispatches} (want 8)`);
  }
  check(b, E, dE0, tokens, dx, V, C, "chunked");
  deepStrictEqual(b.x, a.x);
  deepStrictEqual(b.dE, a.dE);
  // C 64: rows are 256 bytes, any chunk start is aligned.
  deepStrictEqual(
    (await Embedding.create(rt, { maxChunkBytes: 3 * 256 })).chunks(7, 64).map((c) => c.count),
    [3, 3, 1],
  );
});

gpuTest("embedding rejects tokens outside the vocabulary", async (rt) => {
  const emb = await Embedding.create(rt);
  const host = Embedding.buildIndex([1, 4]);
  const t = rt.tensor("t", 64);
  throws(
    () => emb.recordForward(rt.record(), { x: t, weight: t, index: t, host, V: 4, C: 2 }),
    RangeError,
  );
  rt.free(t);
});
