/**
 * The whole tiny model on the GPU against the golden fixture (an independent float64
 * implementation): per-token NLL and every parameter's gradient, for the linear and delta
 * rules, memory on and off.
 */
import { equal } from "node:assert/strict";
import { type ModelConfig } from "../src/model/config.ts";
import { loadCheckpoint, tensorsToFlat } from "../src/model/checkpoint.ts";
import { GATE, InfiniGemma } from "../src/model/model.ts";
import { IGNORE_TARGET as IGNORE } from "../src/util/targets.ts";
import { readSafetensors } from "../src/model/safetensors.ts";
import { gpuTest } from "./_gpu.ts";
import { assertClose } from "./_numeric.ts";

const FIX = new URL("./fixtures/infini-gemma-tiny/", import.meta.url).pathname;

interface Expected {
  cases: Record<string, { mean_nll: number; per_token_nll: number[][] }>;
}

async function fixture() {
  const ck = await loadCheckpoint(FIX);
  const tokens: number[][] = JSON.parse(await Deno.readTextFile(`${FIX}/tokens.json`));
  const expected: Expected = JSON.parse(await Deno.readTextFile(`${FIX}/expected.json`));
  const B = tokens.length, T = tokens[0].length;
  const flatTokens = new Uint32Array(tokens.flat());
  const targets = new Uint32Array(B * T).fill(IGNORE);
  for (let b = 0; b < B; b++) for (let t = 0; t + 1 < T; t++) targets[b * T + t] = tokens[b][t + 1];
  return { ck, B, T, flatTokens, targets, expected };
}

// f32 through 2 layers at C 32: the NLL's relative error is a few f32 ulps of the logits
// summed over ~100 products (~1e-6); 2e-5 relative leaves margin without hiding a real bug
// (a wrong convention moves the NLL by > 1e-2).
const NLL_TOL = { atol: 2e-5, rtol: 2e-5 };

for (const rule of ["linear", "delta"] as const) {
  gpuTest(
    `model: tiny fixture, ${rule} rule, NLL and every gradient match the f64 reference`,
    async (rt) => {
      const { ck, B, T, flatTokens, targets, expected } = await fixture();
      const cfg: ModelConfig = { ...ck.config, memoryUpdate: rule, seqLength: T };
      const model = await InfiniGemma.create(rt, cfg, { B, T, train: true });
      model.setParams(Float32Array.from(ck.params));
      model.setBatch(flatTokens, targets);
      const rec = rt.record();
      model.recordGrads(rec);
      const [loss, nll, grads] = [
        rec.read(model.loss),
        rec.read(model.nll),
        model.grads!.read(rec),
      ];
      rt.submit(rec);
      const want = expected.cases[rule];
      assertClose(await loss, [want.mean_nll], { ...NLL_TOL, what: `${rule} mean NLL` });
      const gotNll = await nll;
      const wantRows = new Float64Array(B * T);
      for (let b = 0; b < B; b++) {
        for (let t = 0; t + 1 < T; t++) wantRows[b * T + t] = want.per_token_nll[b][t];
      }
      assertClose(gotNll, wantRows, { ...NLL_TOL, what: `${rule} per-token NLL` });

      const ref = await readSafetensors(`${FIX}/grad_${rule}.safetensors`);
      const refFlat = tensorsToFlat(
        model.table,
        ref.tensors,
        new Float64Array(model.table.total),
        "grad",
      );
      const g = await grads;
      for (const s of model.table.specs) {
        const r = refFlat.subarray(s.offset, s.offset + s.size);
        const scale = Math.max(...Array.from(r, Math.abs));
        // Gradients are sums over 62 tokens of products through 2 layers in f32: relative to the
        // tensor's largest entry, 1e-4 (the fixture's README expects ~1e-4).
        assertClose(g.subarray(s.offset, s.offset + s.size), r, {
          atol: 1e-4 * scale + 1e-9,
          rtol: 1e-3,
          what: `${rule} grad ${s.name}`,
        });
      }
      equal(ref.tensors.size, model.table.specs.length);
    },
  );

  gpuTest(`model: tiny fixture, ${rule} rule, memory off (gate 0) NLL matches`, async (rt) => {
    const { ck, B, T, flatTokens, targets, expected } = await fixture();
    const cfg: ModelConfig = { ...ck.config, memoryUpdate: rule, seqLength: T };
    const model = await InfiniGemma.create(rt, cfg, { B, T, train: false });
    model.setParams(Float32Array.from(ck.params));
    model.setBatch(flatTokens, targets);
    const rec = rt.record();
    model.resetMemory(rec);
    model.recordForward(rec, { gate: GATE.off });
    const [loss, nll] = [rec.read(model.loss), rec.read(model.nll)];
    rt.submit(rec);
    const want = expected.cases[`${rule}_memory_off`];
    assertClose(await loss, [want.mean_nll], { ...NLL_TOL, what: `${rule} memory-off mean NLL` });
    const gotNll = await nll;
    for (let b = 0; b < B; b++) {
      assertClose(gotNll.subarray(b * T, b * T + T - 1), want.per_token_nll[b], {
        ...NLL_TOL,
        what: `${rule} memory-off NLL seq ${b}`,
      });
    }
  });
}
