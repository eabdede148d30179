/**
 * Evaluation and generation: streaming equals one-shot scoring, eval NLL equals the training
 * loss, generation matches the f64 reference logits while folding each segment into memory
 * once, the passkey harness is deterministic and its greedy scoring is exactly greedy
 * decoding.
 */
import { deepEqual, equal, notDeepEqual, ok } from "node:assert/strict";
import { Generator, sampleToken } from "../src/eval/generate.ts";
import { sampleCorrect } from "../src/eval/passkey.ts";
import { cellSamples } from "../src/tasks/passkey.ts";
import { evalPerplexity } from "../src/eval/ppl.ts";
import { nextTokenTargets, Streamer } from "../src/eval/stream.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import { IGNORE_TARGET as IGNORE } from "../src/util/targets.ts";
import { initParams, paramTable } from "../src/model/params.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import {
  forwardNll,
  gpuModel,
  maxDiff,
  randomParams,
  randomTokens,
  refModel,
  smallConfig,
} from "./_model.ts";
import { modelForward } from "./ref/model.ts";

// S 5, T 20 (4 segments); odd shapes everywhere.
const cfg = smallConfig();
const smallCfg = cfg;
const params = randomParams(paramTable(cfg), 11);
const S = cfg.segmentLength;

gpuTest(
  "eval: streaming in chunks of 1, 2 or 3 segments equals one call over the whole sequence (ragged batch)",
  async (rt) => {
    const rng = new Rng(3);
    // Lengths 20, 13 and 7 tokens: a full sequence, one ending mid-segment, a short one.
    const lens = [20, 13, 7];
    const seqs = lens.map((n) => {
      const tokens = randomTokens(rng, n, cfg.vocabSize);
      return { tokens, targets: nextTokenTargets(tokens) };
    });
    // One call per sequence (T = 20, padded): the training forward.
    const full = await gpuModel(rt, cfg, params, { B: 1, T: 20, train: false });
    const oneShot: Float32Array[] = [];
    for (const s of seqs) {
      const tok = new Uint32Array(20), tgt = new Uint32Array(20).fill(IGNORE);
      tok.set(s.tokens);
      tgt.set(s.targets);
      oneShot.push((await forwardNll(full, tok, tgt)).nll.subarray(0, s.tokens.length));
    }
    for (const [batch, chunk] of [[2, 1], [3, 2], [1, 3]]) {
      const st = await Streamer.create(rt, cfg, params, { batch, chunkSegments: chunk });
      const got = await st.score(seqs, "memory");
      seqs.forEach((s, i) => {
        const d = maxDiff(got[i].nll, oneShot[i]);
        ok(d < 2e-5, `batch ${batch} chunk ${chunk}, sequence ${i}: max |diff| ${d}`);
        // A target that is IGNORE scores 0; every other one is a positive NLL.
        equal(got[i].nll[s.tokens.length - 1], 0);
        ok(got[i].nll[0] > 0);
      });
    }
  },
);

gpuTest("eval: every variant matches the f64 reference on the same tokens", async (rt) => {
  const rng = new Rng(5);
  const tokens = randomTokens(rng, 20, cfg.vocabSize), targets = nextTokenTargets(tokens);
  const st = await Streamer.create(rt, cfg, params, { batch: 1, chunkSegments: 2 });
  const ref = refModel(cfg, params);
  const cases = [
    ["memory", "learned"],
    ["off", "off"],
    ["zero-read", "zero_read"],
  ] as const;
  for (const [v, mode] of cases) {
    const [got] = await st.score([{ tokens, targets }], v);
    const want = modelForward(ref, { tokens, targets, B: 1 }, { gate: mode }).nll;
    const d = maxDiff(got.nll, want);
    ok(d < 1e-4, `${v}: max |diff| ${d} from the reference`);
  }
  // reset: each segment alone, i.e. the reference over 4 one-segment sequences.
  const [got] = await st.score([{ tokens, targets }], "reset");
  const want = modelForward(ref, { tokens, targets, B: 4 }).nll;
  const d = maxDiff(got.nll, want);
  ok(d < 1e-4, `reset: max |diff| ${d} from the reference`);
  const memOn = (await st.score([{ tokens, targets }], "memory"))[0].nll;
  // With a non-zero gate the memory changes the later segments' NLL (else this test is vacuous).
  ok(maxDiff(memOn, got.nll, S, 20) > 1e-3, "memory made no difference to segments 1..3");
  ok(maxDiff(memOn, got.nll, 0, S) < 2e-5, "segment 0 (empty memory) differs under reset");
});

gpuTest("eval: eval NLL equals the training loss on the same tokens", async (rt) => {
  const rng = new Rng(9);
  const B = 2, T = 20;
  const tokens = randomTokens(rng, B * T, cfg.vocabSize);
  const targets = new Uint32Array(B * T);
  for (let b = 0; b < B; b++) {
    targets.set(nextTokenTargets(tokens.subarray(b * T, b * T + T)), b * T);
  }
  const trainModel = await gpuModel(rt, cfg, params, { B, T, train: true });
  trainModel.setBatch(tokens, targets);
  const rec = rt.record("train-forward");
  trainModel.recordGrads(rec);
  const lossP = rec.read(trainModel.loss);
  rt.submit(rec);
  const trainLoss = (await lossP)[0];
  const st = await Streamer.create(rt, cfg, params, { batch: 2, chunkSegments: 1 });
  const docs = [0, 1].map((b) => ({
    tokens: tokens.slice(b * T, b * T + T),
    targets: targets.slice(b * T, b * T + T),
  }));
  const r = await evalPerplexity(st, docs, ["memory", "off"]);
  const evalNll = r.variants[0].nll;
  ok(
    Math.abs(evalNll - trainLoss) < 1e-5 * trainLoss,
    `eval ${evalNll} vs training loss ${trainLoss}`,
  );
  equal(r.variants[0].tokens, B * (T - 1));
  deepEqual(r.variants[0].perSegment.map((p) => p.tokens), [10, 10, 10, 8]);
  // The per-segment means weight back to the total.
  const back = r.variants[0].perSegment.reduce((s, p) => s + p.nll * p.tokens, 0) / (B * (T - 1));
  ok(Math.abs(back - evalNll) < 1e-9);
  ok(Math.abs(r.variants[1].nll - evalNll) > 1e-4, "memory off gave the same NLL as memory on");
});

gpuTest(
  "generate: logits match the f64 reference at every step, each segment folded into memory once",
  async (rt) => {
    // Greedy decoding of random weights soon repeats one token, and then identical keys and
    // values hide a wrong cache row or RoPE position; sampling at temperature 1.5 keeps the
    // context varied, so both are checked.
    const delta = smallConfig(["memoryUpdate=delta"]);
    for (const [cfg, temperature] of [[smallCfg, 0], [smallCfg, 1.5], [delta, 1.5]] as const) {
      const rng = new Rng(21);
      const prompt = randomTokens(rng, 12, cfg.vocabSize); // 2 full segments + 2 tokens
      const gen = await Generator.create(rt, cfg, params);
      const logitsSeen: Float32Array[] = [];
      const out: number[] = [];
      for await (
        const t of gen.generate(prompt, 9, {
          temperature,
          topP: 1,
          seed: 1,
          onLogits: (l) => logitsSeen.push(l),
        })
      ) out.push(t);
      equal(out.length, 9);
      if (temperature > 0) ok(new Set(out).size >= 5, `sampled ${out}: too few distinct tokens`);
      // 12 + 9 = 21 tokens; the last one is never fed back, so 20 are in context: 4 segments,
      // all complete, each folded exactly once.
      equal(gen.committed, 4);
      // Segment forwards: the 2 full prompt segments, the prompt's 2-token tail (which fills
      // the key/value cache), and the 2 segments completed while generating (tokens 10..14,
      // 15..19). Every other new token is one decode step against the cache: 12, 13, 15..18.
      equal(gen.forwards, 2 + 1 + 2);
      equal(gen.decodes, 6);
      const ctx = Uint32Array.from([...prompt, ...out]);
      const ref = modelForward(refModel(cfg, params), {
        tokens: ctx.subarray(0, 20),
        targets: new Uint32Array(20).fill(IGNORE),
        B: 1,
      });
      const V = cfg.vocabSize;
      logitsSeen.forEach((l, k) => {
        const pos = 11 + k;
        const want = ref.logits.subarray(pos * V, pos * V + V);
        const d = maxDiff(l, want);
        ok(
          d < 1e-4,
          `${cfg.memoryUpdate} T ${temperature}, step ${k} (position ${pos}): logits differ by ${d}`,
        );
        if (temperature === 0) {
          // Greedy picks the reference's arg-max.
          let best = 0;
          for (let i = 1; i < V; i++) if (want[i] > want[best]) best = i;
          equal(out[k], best);
        }
      });
    }
  },
);

gpuTest("passkey: teacher-forced scoring is exactly greedy decoding", async (rt) => {
  const pk = resolveConfig("tiny", ["segmentLength=64", "seqLength=128"]);
  const p = initParams(paramTable(pk), pk, 4);
  // At init beta = 0: sigmoid(beta) = 1/2, so the memory takes part.
  const gen = await Generator.create(rt, pk, p);
  const st = await Streamer.create(rt, pk, p, { batch: 2, chunkSegments: 1 });
  const samples = cellSamples(pk.segmentLength, 3, 0.5, 2, 7);
  for (const s of samples) {
    const first = s.answerPositions[0];
    // What greedy decoding produces after the question.
    gen.reset();
    const decoded: number[] = [];
    for await (
      const t of gen.generate(s.tokens.subarray(0, first), 5, { temperature: 0, topP: 1, seed: 0 })
    ) {
      decoded.push(t);
    }
    // A sample whose answer IS the greedy output must score as right, at every digit...
    const tokens = s.tokens.slice();
    tokens.set(decoded, first);
    const targets = nextTokenTargets(tokens);
    const answer = { ...s, tokens, targets };
    const [r] = await st.score([answer], "memory", {
      greedyRows: () => s.answerPositions.map((q) => q - 1),
    });
    ok(sampleCorrect(answer, r.greedy), "the greedy output was not scored as right");
    // ...and with its first digit changed, as wrong.
    const wrong = tokens.slice();
    wrong[first] = decoded[0] === 48 ? 49 : 48;
    const [r2] = await st.score([{ tokens: wrong, targets: nextTokenTargets(wrong) }], "memory", {
      greedyRows: () => s.answerPositions.map((q) => q - 1),
    });
    equal(r2.greedy!.get(first - 1), false);
    ok(!sampleCorrect({ ...s, tokens: wrong }, r2.greedy));
  }
});

Deno.test("passkey: the harness is deterministic for a seed; answer checking is exact", () => {
  const a = cellSamples(32, 16, 0.5, 5, 42), b = cellSamples(32, 16, 0.5, 5, 42);
  deepEqual(a.map((s) => [...s.tokens]), b.map((s) => [...s.tokens]));
  const c = cellSamples(32, 16, 0.5, 5, 43);
  notDeepEqual(a.map((s) => s.key), c.map((s) => s.key));
  // Depth moves the key: 0 is the earliest start, 1 the latest.
  const d0 = cellSamples(32, 16, 0, 3, 42), d1 = cellSamples(32, 16, 1, 3, 42);
  ok(d0.every((s) => s.keyStart === 0));
  ok(d1.every((s) => s.keyStart > 14 * 32 - 40));
  const s = a[0];
  const all = new Map(s.answerPositions.map((p) => [p - 1, true]));
  ok(sampleCorrect(s, all));
  for (const p of s.answerPositions) {
    const one = new Map(all);
    one.set(p - 1, false);
    ok(!sampleCorrect(s, one), `digit at ${p} wrong but scored right`);
    one.delete(p - 1);
    ok(!sampleCorrect(s, one), `digit at ${p} unscored but scored right`);
  }
  ok(!sampleCorrect(s, undefined));
});

Deno.test("generate: sampling is greedy at temperature 0, follows the softmax otherwise, honours top-p", () => {
  const logits = Float32Array.from([0, Math.log(3), -1e9]);
  const rng = new Rng(1);
  equal(sampleToken(logits, { temperature: 0, topP: 1, seed: 0 }, rng), 1);
  let ones = 0;
  const n = 4000;
  for (let i = 0; i < n; i++) {
    ones += sampleToken(logits, { temperature: 1, topP: 1, seed: 0 }, rng) === 1 ? 1 : 0;
  }
  // P(1) = 3/4; 0.03 is about 4.4 standard deviations (0.0068).
  ok(Math.abs(ones / n - 0.75) < 0.03, `P(token 1) = ${ones / n}`);
  // top-p 0.5: only the most likely token is kept.
  for (let i = 0; i < 100; i++) {
    equal(sampleToken(logits, { temperature: 1, topP: 0.5, seed: 0 }, rng), 1);
  }
});

gpuTest(
  "eval ppl: in segment 0 memory, zero-read and reset agree; reset equals zero-read everywhere",
  async (rt) => {
    // An empty memory reads as 0, so segment 0 under "memory" is (1 - g) A_dot like "zero-read",
    // and "reset" (empty memory at every segment) equals "zero-read" at every segment.
    const c = resolveConfig("tiny", ["segmentLength=8", "seqLength=32"]);
    const p = initParams(paramTable(c), c, 2);
    const rng = new Rng(4);
    const tokens = randomTokens(rng, 40, c.vocabSize);
    const st = await Streamer.create(rt, c, p, { batch: 1, chunkSegments: 2 });
    const r = await evalPerplexity(st, [{ tokens, targets: nextTokenTargets(tokens) }], [
      "memory",
      "zero-read",
      "reset",
      "off",
    ]);
    const seg0 = r.variants.map((v) => v.perSegment[0].nll);
    ok(
      Math.abs(seg0[0] - seg0[1]) < 1e-6 && Math.abs(seg0[0] - seg0[2]) < 1e-6,
      `segment 0: ${seg0}`,
    );
    // Reset and zero-read agree everywhere (an empty memory reads as 0).
    for (let s = 0; s < 5; s++) {
      ok(Math.abs(r.variants[1].perSegment[s].nll - r.variants[2].perSegment[s].nll) < 1e-6);
    }
    equal(r.variants[0].perSegment.length, 5);
    // ...while memory on differs from them once there is something in memory (beta = 0 at
    // init: sigmoid(beta) = 1/2).
    ok(Math.abs(r.variants[0].perSegment[3].nll - r.variants[1].perSegment[3].nll) > 1e-4);
  },
);
