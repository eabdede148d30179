/**
 * eval ppl's long-range breakdown: which targets only the memory can help with, counted
 * exactly on constructed documents, checked against a brute-force reading of the rule, and
 * the two subsets weighting back to the total NLL.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { evalPerplexity, longRangeTargets } from "../src/eval/ppl.ts";
import { nextTokenTargets, type Streamer } from "../src/eval/stream.ts";
import { IGNORE_TARGET } from "../src/util/targets.ts";
import { Rng } from "../src/util/rng.ts";

const indices = (m: Uint8Array) => [...m.keys()].filter((i) => m[i]);

function doc(tokens: number[]) {
  const t = Uint32Array.from(tokens);
  return { tokens: t, targets: nextTokenTargets(t) };
}

/** The rule read literally: O(n^2) over every earlier occurrence of the target's trigram. */
function bruteForce(tokens: Uint32Array, targets: Uint32Array, S: number): number[] {
  const n = tokens.length;
  const t = (j: number) => (j < n ? tokens[j] : targets[n - 1]);
  const out: number[] = [];
  for (let p = 1; p < n; p++) {
    if (targets[p] === IGNORE_TARGET) continue;
    const j = p + 1, a = Math.floor(p / S) * S;
    let before = false, inside = false;
    for (let k = 2; k < j; k++) {
      if (t(k - 2) !== t(j - 2) || t(k - 1) !== t(j - 1) || t(k) !== t(j)) continue;
      if (k < a) before = true;
      if (k - 2 >= a) inside = true;
    }
    if (before && !inside) out.push(p);
  }
  return out;
}

Deno.test("long-range targets: constructed documents, counted by hand", () => {
  // S 4: (1,2,3) ends at 2, 7 and 10. Targets 6 (predicting position 7) and 9 (position 10)
  // see it only in earlier segments.
  const a = doc([1, 2, 3, 4, 5, 1, 2, 3, 1, 2, 3, 6]);
  deepEqual(indices(longRangeTargets(a.tokens, a.targets, 4)), [6, 9]);
  // S 8: (1,2,3) at 0-2, 8-10, 11-13: target 9 is long-range; target 12 is not, the occurrence
  // at 8-10 lies inside its own segment. (2,3,0) at 1-3 and 12-14: target 13 is long-range;
  // (3,0,0) at 3-5 and 13-15: target 14 too. (0,0,1) at 6-8 straddles the segment start and
  // is seen once only.
  const b = doc([1, 2, 3, 0, 0, 0, 0, 0, 1, 2, 3, 1, 2, 3, 0, 0]);
  deepEqual(indices(longRangeTargets(b.tokens, b.targets, 8)), [9, 13, 14]);
  // Only a straddling earlier occurrence: (7,8,9) at 2-4 across the start of segment 1 (S 4),
  // then again at 9-11 in segment 2: the earlier one ends at 4 < 8, so it is long-range.
  const c = doc([0, 1, 7, 8, 9, 5, 5, 5, 6, 7, 8, 9]);
  deepEqual(indices(longRangeTargets(c.tokens, c.targets, 4)), [10]);
  // An earlier occurrence straddling the current segment's start (7,8,9 at 2-4, S 4) is
  // neither memory nor local: target 7 (the repeat at 6-8) is not long-range.
  const d = doc([0, 0, 7, 8, 9, 1, 7, 8, 9, 5]);
  deepEqual(indices(longRangeTargets(d.tokens, d.targets, 4)), []);
  // In one segment nothing is long-range.
  deepEqual(indices(longRangeTargets(a.tokens, a.targets, 64)), []);
});

Deno.test("long-range targets: agree with the rule read literally on random documents", () => {
  const rng = new Rng(7);
  const rand = () => rng.next();
  for (let trial = 0; trial < 200; trial++) {
    const n = 2 + Math.floor(rand() * 60), V = 2 + Math.floor(rand() * 4);
    const S = 1 + Math.floor(rand() * 12);
    const { tokens, targets } = doc(Array.from({ length: n }, () => Math.floor(rand() * V)));
    if (rand() < 0.3) targets[Math.floor(rand() * n)] = IGNORE_TARGET;
    deepEqual(
      indices(longRangeTargets(tokens, targets, S)),
      bruteForce(tokens, targets, S),
      `n ${n} V ${V} S ${S}`,
    );
  }
  // Large token ids (a Qwen vocabulary) take the string-key path: same answer.
  const big = doc([151935, 151934, 151933, 0, 151935, 151934, 151933, 1]);
  deepEqual(indices(longRangeTargets(big.tokens, big.targets, 4)), [5]);
  const bigNot = doc([151935, 151934, 151933, 0, 151935, 151934, 151932, 1]);
  deepEqual(indices(longRangeTargets(bigNot.tokens, bigNot.targets, 4)), []);
});

Deno.test("eval ppl: long-range and other targets weight back to the total, overall and per segment", async () => {
  const S = 4;
  const docs = [doc([1, 2, 3, 4, 5, 1, 2, 3, 1, 2, 3, 6]), doc([1, 2, 3, 0, 1, 2, 3, 0, 9])];
  // A stand-in streamer: NLL of position p in document i is 0.1 + 0.01 (p + 7 i).
  const streamer = {
    cfg: { segmentLength: S },
    score: (seqs: { tokens: Uint32Array }[]) =>
      Promise.resolve(
        seqs.map((s, i) => ({
          nll: Float32Array.from(s.tokens, (_, p) => 0.1 + 0.01 * (p + 7 * i)),
        })),
      ),
  } as unknown as Streamer;
  const r = await evalPerplexity(streamer, docs, ["memory"]);
  const v = r.variants[0];
  // Doc 0: targets 6 and 9; doc 1: (1,2,3) at 0-2 and 4-6 (target 5) and (2,3,0) at 1-3 and
  // 5-7 (target 6).
  equal(v.longRange.tokens, 4);
  equal(v.tokens, 11 + 8);
  equal(v.rest.tokens, v.tokens - 4);
  const nll = (i: number, p: number) => Math.fround(0.1 + 0.01 * (p + 7 * i));
  const lr = (nll(0, 6) + nll(0, 9) + nll(1, 5) + nll(1, 6)) / 4;
  ok(Math.abs(v.longRange.nll - lr) < 1e-12, `${v.longRange.nll} vs ${lr}`);
  const back = (v.longRange.nll * v.longRange.tokens + v.rest.nll * v.rest.tokens) / v.tokens;
  ok(Math.abs(back - v.nll) < 1e-12, `${back} vs ${v.nll}`);
  let segTokens = 0;
  for (const s of v.perSegment) {
    equal(s.longRange.tokens + s.rest.tokens, s.tokens);
    const w = (s.longRange.tokens ? s.longRange.nll * s.longRange.tokens : 0) +
      s.rest.nll * s.rest.tokens;
    ok(Math.abs(w / s.tokens - s.nll) < 1e-12, `segment ${s.segment}`);
    segTokens += s.tokens;
  }
  equal(segTokens, v.tokens);
  deepEqual(v.perSegment.map((s) => s.longRange.tokens), [0, 3, 1]);
});
