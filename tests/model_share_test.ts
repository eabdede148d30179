/**
 * Training on a mixture of lengths: models of several lengths share one set of weights and
 * gradients, and a step on the short model is the step a standalone short model would take.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { resolveConfig } from "../src/model/overrides.ts";
import { InfiniGemma } from "../src/model/model.ts";
import { paramTable } from "../src/model/params.ts";
import { PasskeySource } from "../src/tasks/sources.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import { gpuModel, maxDiff, randomParams, randomTokens, smallConfig } from "./_model.ts";
import { nextTokenTargets } from "./ref/model.ts";

gpuTest(
  "model: a shorter model sharing the weights writes the same gradients as a standalone one",
  async (rt) => {
    const cfg = smallConfig(); // S 5, T 20
    const params = randomParams(paramTable(cfg), 3);
    const B = 2, T = 10;
    const long = await gpuModel(rt, cfg, params, { B, T: 20, train: true });
    const short = await InfiniGemma.create(rt, cfg, { B, T, train: true, share: long });
    const alone = await gpuModel(rt, cfg, params, { B, T, train: true });
    const rng = new Rng(8);
    const tokens = randomTokens(rng, B * T, cfg.vocabSize);
    const targets = nextTokenTargets(tokens, B, T);
    const grads: Float32Array[] = [];
    for (const m of [short, alone]) {
      m.setBatch(tokens, targets);
      const rec = rt.record("grads");
      m.recordGrads(rec);
      rt.submit(rec);
      grads.push(await m.readGrads());
    }
    // The shared model wrote into the long model's gradient buffer.
    const viaLong = await long.readGrads();
    deepEqual(viaLong, grads[0]);
    const d = maxDiff(grads[0], grads[1]);
    ok(d < 1e-6, `shared vs standalone gradients differ by ${d}`);
    ok(grads[1].some((g) => g !== 0));
  },
);

Deno.test("passkey source: a mixture of lengths draws each length, deterministically per batch", () => {
  const cfg = resolveConfig("tiny", ["seqLength=256"]); // 8 segments of 32
  const a = new PasskeySource(cfg, 5, { segments: [4, 8] });
  const b = new PasskeySource(cfg, 5, { segments: [4, 8] });
  const lens = Array.from({ length: 40 }, (_, i) => a.batch(i, 2).tokens.length / 2);
  deepEqual(lens, Array.from({ length: 40 }, (_, i) => b.batch(i, 2).tokens.length / 2));
  ok(lens.includes(128) && lens.includes(256), `lengths drawn: ${[...new Set(lens)]}`);
  // Validation runs at seqLength.
  equal(a.valBatch(0, 2).tokens.length, 2 * 256);
});
