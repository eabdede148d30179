/** The seeded shuffle that orders shards, shard epochs and the passkey filler. */
import {
  deepStrictEqual as assertEquals,
  notDeepStrictEqual,
  ok as assert,
} from "node:assert/strict";
import { permutation, Rng } from "../src/util/rng.ts";

Deno.test("rng: permutation holds each of 0..n-1 once and depends only on the seed", () => {
  for (const n of [0, 1, 2, 7, 1000]) {
    const p = permutation(n, 42);
    assertEquals(p.length, n);
    assertEquals([...p].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i));
    assertEquals(permutation(n, 42), p);
  }
  notDeepStrictEqual(permutation(1000, 1), permutation(1000, 2));
});

Deno.test("rng: shuffle is Fisher-Yates from the last position, one draw per position", () => {
  // Written out against the generator's own draws: position i swaps with int(i + 1).
  const xs = ["a", "b", "c", "d", "e", "f"];
  const draws = new Rng(7);
  const expected = [...xs];
  for (let i = expected.length - 1; i > 0; i--) {
    const j = draws.int(i + 1);
    [expected[i], expected[j]] = [expected[j], expected[i]];
  }
  const rng = new Rng(7);
  rng.shuffle(xs);
  assertEquals(xs, expected);
  // Exactly length - 1 draws were taken: both generators are now in step.
  assert(rng.u32() === draws.u32());
  // A typed array shuffles the same way as a plain one.
  const typed = Uint32Array.from([0, 1, 2, 3, 4, 5]);
  const plain = [0, 1, 2, 3, 4, 5];
  new Rng(3).shuffle(typed);
  new Rng(3).shuffle(plain);
  assertEquals([...typed], plain);
});
