import {
  deepStrictEqual as assertEquals,
  notDeepStrictEqual,
  ok as assert,
  throws,
} from "node:assert/strict";
import {
  argmaxRows,
  exactMatch,
  FILLER_SENTENCES,
  isEvalKey,
  keyStatement,
  PasskeyTask,
  predictedAnswer,
  question,
} from "../src/tasks/passkey.ts";
import { Rng } from "../src/util/rng.ts";
import { IGNORE_TARGET } from "../src/util/targets.ts";

const text = (t: Uint32Array) => String.fromCharCode(...t);

/** Checks one sample's layout against its options. */
function checkLayout(task: PasskeyTask, i: number) {
  const s = task.sample(i);
  const T = task.length, S = task.options.segmentLength;
  const str = text(s.tokens);
  assertEquals(s.tokens.length, T);
  assert(s.tokens.every((b) => b < 128), "byte ids of ASCII text");
  assert(/^\d{5}$/.test(s.key));
  const q = question(s.key);
  assert(str.endsWith(q), `ends with the question: ${str.slice(-50)}`);
  const stmt = keyStatement(s.key);
  assertEquals(str.slice(s.keyStart, s.keyStart + stmt.length), stmt);
  assert(s.keyStart + stmt.length <= T - q.length, "the statement ends before the question");
  // The key appears exactly twice: in the statement and in the answer.
  assertEquals(str.split("pass key is").length - 1, 2);
  // Filler is made of the five sentences.
  const filler = str.slice(0, s.keyStart) + " " + str.slice(s.keyStart + stmt.length, T - q.length);
  for (const w of filler.split(/[ .]+/).filter((w) => w !== "")) {
    assert(FILLER_SENTENCES.some((f) => f.includes(w)), `filler word '${w}'`);
  }
  if (s.control) {
    const digits = s.keyStart + 16;
    assert(digits >= T - S, "control: the key's digits lie in the last segment");
  } else {
    const [first, end] = task.options.keySegments;
    assert(
      s.keyStart >= first * S && s.keyStart + stmt.length <= end * S,
      `inside segments [${first}, ${end})`,
    );
  }
  // Targets, weights, answer positions.
  for (let t = 0; t < T - 1; t++) assertEquals(s.targets[t], s.tokens[t + 1]);
  assertEquals(s.targets[T - 1], IGNORE_TARGET);
  assertEquals(s.answerPositions, [T - 6, T - 5, T - 4, T - 3, T - 2]);
  assertEquals(String.fromCharCode(...s.answerPositions.map((p) => s.tokens[p])), s.key);
  const w = 1 + task.options.answerWeight;
  for (let t = 0; t < T; t++) {
    const want: number = t === T - 1 ? 0 : s.answerPositions.includes(t + 1) ? w : 1;
    assertEquals(s.weights[t], Math.fround(want), `weight at ${t}`);
  }
  return s;
}

Deno.test("passkey samples: layout, targets, weights, answer positions", () => {
  const tasks = [
    new PasskeyTask({ segmentLength: 32, segments: 4 }, 1),
    new PasskeyTask({ segmentLength: 64, segments: 6, controlShare: 0.3 }, 2),
    new PasskeyTask({ segmentLength: 32, segments: 8, keySegments: [2, 4], keys: "eval" }, 3),
    new PasskeyTask({ segmentLength: 100, segments: 1 }, 4),
  ];
  for (const task of tasks) for (let i = 0; i < 60; i++) checkLayout(task, i);
});

Deno.test("passkey samples are deterministic in (seed, index) and vary with both", () => {
  const a = new PasskeyTask({ segmentLength: 32, segments: 4 }, 10);
  const b = new PasskeyTask({ segmentLength: 32, segments: 4 }, 10);
  assertEquals(b.sample(5), a.sample(5));
  assertEquals(a.sample(3), (a.sample(7), a.sample(3)), "independent of call order");
  notDeepStrictEqual(a.sample(6).tokens, a.sample(5).tokens);
  notDeepStrictEqual(
    new PasskeyTask({ segmentLength: 32, segments: 4 }, 11).sample(5).tokens,
    a.sample(5).tokens,
  );
  const batch = a.batch(20, 3);
  const T = a.length;
  for (let k = 0; k < 3; k++) {
    const s = a.sample(20 + k);
    assertEquals(batch.tokens.subarray(k * T, (k + 1) * T), s.tokens);
    assertEquals(batch.targets.subarray(k * T, (k + 1) * T), s.targets);
    assertEquals(batch.weights.subarray(k * T, (k + 1) * T), s.weights);
  }
  // Positions cover the allowed range and filler orders vary.
  const starts = new Set(Array.from({ length: 200 }, (_, i) => a.sample(i).keyStart));
  assert(starts.size > 30, `${starts.size} distinct key positions`);
});

Deno.test("passkey depth and segment range place the key where asked", () => {
  const S = 64;
  const early = new PasskeyTask(
    { segmentLength: S, segments: 4, keySegments: [1, 3], depth: 0 },
    1,
  );
  const late = new PasskeyTask({ segmentLength: S, segments: 4, keySegments: [1, 3], depth: 1 }, 1);
  assertEquals(early.sample(0).keyStart, S);
  assertEquals(late.sample(0).keyStart, 3 * S - 36);
  const mid = new PasskeyTask(
    { segmentLength: S, segments: 4, keySegments: [0, 1], depth: 0.5 },
    1,
  );
  assertEquals(mid.sample(9).keyStart, Math.round((S - 36) / 2));
  // The last segment holds the question when S is small: the range is cut before it.
  const short = new PasskeyTask(
    { segmentLength: 32, segments: 4, keySegments: [0, 4], depth: 1 },
    1,
  );
  assertEquals(short.sample(0).keyStart, 128 - 44 - 36);
});

Deno.test("passkey control share and its feasibility", () => {
  const task = new PasskeyTask({ segmentLength: 64, segments: 4, controlShare: 0.3 }, 5);
  let control = 0;
  for (let i = 0; i < 500; i++) control += checkLayout(task, i).control ? 1 : 0;
  // Binomial(500, 0.3): sd 0.02; +-0.08 is 4 sd.
  assert(Math.abs(control / 500 - 0.3) < 0.08, `control share ${control / 500}`);
  throws(
    () => new PasskeyTask({ segmentLength: 32, segments: 4, controlShare: 0.2 }, 1),
    /at least 64 bytes/,
  );
  throws(
    () => new PasskeyTask({ segmentLength: 32, segments: 4, keySegments: [3, 4] }, 1),
    /does not fit/,
  );
  throws(
    () => new PasskeyTask({ segmentLength: 32, segments: 4, keySegments: [2, 1] }, 1),
    /not a range/,
  );
  throws(() => new PasskeyTask({ segmentLength: 32, segments: 4, depth: 1.5 }, 1), /depth/);
  throws(
    () => new PasskeyTask({ segmentLength: 32, segments: 4, controlShare: -1 }, 1),
    /controlShare/,
  );
});

Deno.test("passkey boundary share puts the key's digits at a segment start", () => {
  const S = 32, segments = 8;
  const at = (s: { keyStart: number }) => (s.keyStart + 16) % S === 0;
  // Share 1: every sample, and every allowed segment start turns up.
  const all = new PasskeyTask({ segmentLength: S, segments, boundaryShare: 1 }, 3);
  const seen = new Set<number>();
  for (let i = 0; i < 300; i++) {
    const s = checkLayout(all, i);
    assert(at(s), `sample ${i}: digits at byte ${s.keyStart + 16}, not a segment start`);
    seen.add((s.keyStart + 16) / S);
  }
  // Digits at k*S for k = 1..5: the statement must start in segment 0 or later and end
  // before the question (T - 80 is the latest start, so k*S - 16 <= 176, k <= 6.0).
  assertEquals([...seen].sort(), [1, 2, 3, 4, 5, 6]);
  // Share 0.25: about a quarter (plus the 1-in-32 that land there by chance).
  const some = new PasskeyTask({ segmentLength: S, segments, boundaryShare: 0.25 }, 3);
  let n = 0;
  for (let i = 0; i < 800; i++) n += at(checkLayout(some, i)) ? 1 : 0;
  const want = 0.25 + 0.75 / S;
  // Binomial(800, 0.27): sd 0.016; +-0.07 is over 4 sd.
  assert(Math.abs(n / 800 - want) < 0.07, `boundary share ${n / 800}, want ~${want}`);
  // Share 0 leaves the samples as they were; a set depth wins over the share.
  const none = new PasskeyTask({ segmentLength: S, segments, boundaryShare: 0 }, 3);
  const plain = new PasskeyTask({ segmentLength: S, segments }, 3);
  for (let i = 0; i < 20; i++) assertEquals(none.sample(i).tokens, plain.sample(i).tokens);
  const deep = new PasskeyTask({ segmentLength: S, segments, boundaryShare: 1, depth: 0 }, 3);
  assertEquals(deep.sample(0).keyStart, 0);
  throws(
    () => new PasskeyTask({ segmentLength: S, segments, boundaryShare: 2 }, 1),
    /boundaryShare/,
  );
  // One segment before the question's: no boundary inside the allowed range.
  throws(
    () => new PasskeyTask({ segmentLength: 64, segments: 2, boundaryShare: 0.5 }, 1),
    /start of a segment/,
  );
});

Deno.test("held-out keys: train and eval keys are disjoint by a fixed rule", () => {
  let evalKeys = 0;
  for (let k = 0; k < 100000; k++) evalKeys += isEvalKey(k) ? 1 : 0;
  assert(evalKeys > 8000 && evalKeys < 12000, `${evalKeys} eval keys`);
  const train = new PasskeyTask({ segmentLength: 32, segments: 4 }, 1);
  const heldOut = new PasskeyTask({ segmentLength: 32, segments: 4, keys: "eval" }, 1);
  const firstDigits = new Set<string>();
  for (let i = 0; i < 300; i++) {
    const k = train.sample(i).key;
    assert(!isEvalKey(Number(k)), `train key ${k} is held out`);
    assert(isEvalKey(Number(heldOut.sample(i).key)));
    firstDigits.add(k[0]);
  }
  assertEquals(firstDigits.size, 10, "every digit, 0 included, can lead a key");
});

Deno.test("default answer weight reproduces the notes' loss: mean NLL + mean digit NLL", () => {
  const task = new PasskeyTask({ segmentLength: 32, segments: 4 }, 3);
  const s = task.sample(0), T = task.length;
  const rng = new Rng(1);
  const nll = Array.from({ length: T }, () => rng.next() * 5);
  let weighted = 0, all = 0, digits = 0;
  for (let t = 0; t < T - 1; t++) {
    weighted += s.weights[t] * nll[t];
    all += nll[t];
  }
  for (const p of s.answerPositions) digits += nll[p - 1];
  const want = all / (T - 1) + digits / 5;
  // Float32 weights (25.4 is not exact in f32): relative 1e-7.
  assert(Math.abs(weighted / (T - 1) - want) < 1e-6 * want, `${weighted / (T - 1)} vs ${want}`);
});

Deno.test("exact match: all five digits predicted, or not", () => {
  const task = new PasskeyTask({ segmentLength: 32, segments: 4 }, 8);
  const batch = task.batch(0, 2), T = task.length;
  // Perfect predictions: the next token everywhere.
  const perfect = new Uint32Array(2 * T);
  for (let r = 0; r < 2 * T - 1; r++) perfect[r] = batch.tokens[r + 1];
  for (let b = 0; b < 2; b++) {
    const s = batch.samples[b];
    assert(exactMatch(s, perfect, b * T));
    assertEquals(predictedAnswer(s, perfect, b * T), s.key);
  }
  for (const p of batch.samples[1].answerPositions) {
    const wrong = perfect.slice();
    wrong[T + p - 1] = wrong[T + p - 1] === 48 ? 49 : 48;
    assert(!exactMatch(batch.samples[1], wrong, T), `digit at ${p} wrong`);
    assert(exactMatch(batch.samples[0], wrong, 0), "the other sample is unaffected");
  }
  // argmaxRows over one-hot-ish logits returns the hot index.
  const V = 7, logits = new Float64Array(3 * V);
  [4, 0, 6].forEach((v, r) => (logits[r * V + v] = 2));
  logits[V + 3] = -1;
  assertEquals(argmaxRows(logits, 3, V), new Uint32Array([4, 0, 6]));
});
