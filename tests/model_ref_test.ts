import {
  deepStrictEqual as assertEquals,
  notDeepStrictEqual,
  ok as assert,
} from "node:assert/strict";
import { loadCheckpoint, tensorsToFlat } from "../src/model/checkpoint.ts";
import type { MemoryUpdate } from "../src/model/config.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import { paramTable } from "../src/model/params.ts";
import { readSafetensors } from "../src/model/safetensors.ts";
import { Rng } from "../src/util/rng.ts";
import { assertClose, gradCheck } from "./_numeric.ts";
import {
  type GateMode,
  IGNORE,
  modelBackward,
  modelForward,
  nextTokenTargets,
  type RefBatch,
  type RefModel,
} from "./ref/model.ts";

const FIXTURE = new URL("./fixtures/infini-gemma-tiny", import.meta.url).pathname;

async function fixture() {
  const ck = await loadCheckpoint(FIXTURE);
  const seqs = JSON.parse(await Deno.readTextFile(`${FIXTURE}/tokens.json`)) as number[][];
  const expected = JSON.parse(await Deno.readTextFile(`${FIXTURE}/expected.json`));
  const B = seqs.length, T = seqs[0].length;
  const tokens = seqs.flat();
  const model: RefModel = { cfg: ck.config, table: ck.table, params: Float64Array.from(ck.params) };
  const batch: RefBatch = { tokens, targets: nextTokenTargets(tokens, B, T), B };
  return { model, batch, expected, B, T };
}

const CASES: [string, MemoryUpdate, GateMode][] = [
  ["linear", "linear", "learned"],
  ["linear_memory_off", "linear", "off"],
  ["delta", "delta", "learned"],
  ["delta_memory_off", "delta", "off"],
];

// Both sides are f64 implementations of the same formulas; they differ only in summation
// order (~1e-16 relative per operation over a few thousand operations: ~1e-13), and the
// fixture prints per-token NLLs to 12 decimals (rounding <= 5e-13). 1e-10 leaves margin, while
// any convention slip (RoPE layout, norm form, head grouping, read-before-write, ...) moves
// the NLL by 1e-4 or more.
const NLL_TOL = { atol: 1e-10, rtol: 0 };

Deno.test("reference NLL matches the golden fixture (linear, delta, memory on and off)", async () => {
  const { model, batch, expected, B, T } = await fixture();
  for (const [name, memoryUpdate, gate] of CASES) {
    const fwd = modelForward(model, batch, { memoryUpdate, gate });
    const want = expected.cases[name];
    assertClose([fwd.loss], [want.mean_nll], { ...NLL_TOL, what: `${name} mean NLL` });
    const got: number[] = [];
    for (let b = 0; b < B; b++) for (let t = 0; t < T - 1; t++) got.push(fwd.nll[b * T + t]);
    assertClose(got, want.per_token_nll.flat(), { ...NLL_TOL, what: `${name} per-token NLL` });
    assertEquals(fwd.logits.length, B * T * model.cfg.vocabSize);
  }
});

// Gradients of the mean NLL are O(0.1) at most; two f64 backward passes agree to ~1e-15
// relative. rtol 1e-8 with atol 1e-10 (for entries near 0) flags any wrong term.
const GRAD_TOL = { atol: 1e-10, rtol: 1e-8 };

Deno.test("reference gradients match the golden fixture for every parameter", async () => {
  const { model, batch } = await fixture();
  for (const rule of ["linear", "delta"] as const) {
    const fwd = modelForward(model, batch, { memoryUpdate: rule });
    const grads = modelBackward(model, fwd);
    const ref = await readSafetensors(`${FIXTURE}/grad_${rule}.safetensors`);
    const want = tensorsToFlat(
      model.table,
      ref.tensors,
      new Float64Array(model.table.total),
      "grad",
    );
    for (const s of model.table.specs) {
      const g = grads.subarray(s.offset, s.offset + s.size);
      assertClose(g, want.subarray(s.offset, s.offset + s.size), {
        ...GRAD_TOL,
        what: `${rule} ${s.name}`,
      });
    }
    // Every gate (beta) really receives gradient through the memory path.
    assert(model.table.specs.filter((s) => s.group === "gate").every((s) => grads[s.offset] !== 0));
  }
});

/** A small random model: layer 0 plain (segment-local), layer 1 Infini; 3 segments of 3. */
function smallModel(seed: number, rule: MemoryUpdate): { model: RefModel; batch: RefBatch } {
  const cfg = resolveConfig("tiny", [
    "vocabSize=13",
    "hiddenSize=8",
    "intermediateSize=12",
    "numHeads=4",
    "numKvHeads=2",
    "headDim=4",
    "segmentLength=3",
    "seqLength=9",
    "infiniLayers=1",
    `memoryUpdate=${rule}`,
  ]);
  const table = paramTable(cfg);
  const rng = new Rng(seed);
  const params = new Float64Array(table.total);
  for (const s of table.specs) {
    // Weights large enough that every nonlinearity (softmax, ELU both sides, GELU) is exercised;
    // norm weights and gates away from their init so that their gradients are tested in general.
    const scale = s.init === "normal" ? 0.5 : s.init === "beta" ? 1.5 : 0.5;
    for (let i = 0; i < s.size; i++) params[s.offset + i] = (rng.next() * 2 - 1) * scale;
  }
  const B = 2, T = 9;
  const tokens = Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
  const targets = nextTokenTargets(tokens, B, T);
  targets[4] = IGNORE; // a masked position in the middle
  const weights = Array.from({ length: B * T }, () => 0.5 + rng.next());
  return { model: { cfg, table, params }, batch: { tokens, targets, B, weights } };
}

// Central differences with h = 1e-5 in f64: truncation ~h^2 * |f'''| ~ 1e-10, rounding
// ~1e-16 * |loss| / h ~ 1e-10; atol 1e-7 with rtol 1e-5 is far above both and far below the
// size of any missing or wrong term.
const FD_TOL = { atol: 1e-7, rtol: 1e-5 };

for (const rule of ["linear", "delta"] as const) {
  for (const gate of ["learned", "off", "memory_only", "zero_read"] as const) {
    Deno.test(`reference backward matches finite differences: ${rule}, gate ${gate}`, () => {
      const { model, batch } = smallModel(rule === "linear" ? 11 : 12, rule);
      const grads = modelBackward(model, modelForward(model, batch, { gate }));
      const loss = () => modelForward(model, batch, { gate }).loss;
      for (const s of model.table.specs) {
        // All of every small tensor, 12 random entries of each larger one.
        gradCheck(
          loss,
          model.params.subarray(s.offset, s.offset + s.size),
          grads.subarray(s.offset, s.offset + s.size),
          {
            what: `${rule}/${gate} ${s.name}`,
            samples: s.size <= 16 ? s.size : 12,
            seed: s.offset + 1,
            ...FD_TOL,
          },
        );
      }
      const beta = model.table.specs.find((s) => s.group === "gate")!;
      const dbeta = grads.subarray(beta.offset, beta.offset + beta.size);
      if (gate === "learned" || gate === "zero_read") assert(dbeta.some((x) => x !== 0));
      else assert(dbeta.every((x) => x === 0), "a forced gate gets no gradient");
    });
  }
}

Deno.test("causality: changing token p changes no NLL term before p - 1", () => {
  const { model, batch } = smallModel(5, "delta");
  const base = modelForward(model, batch);
  for (const p of [2, 4, 7, 12]) {
    const tokens = [...(batch.tokens as number[])];
    tokens[p] = (tokens[p] + 1) % model.cfg.vocabSize;
    const targets = Uint32Array.from(batch.targets as Uint32Array);
    if (p % 9 > 0 && targets[p - 1] !== IGNORE) targets[p - 1] = tokens[p];
    const f = modelForward(model, { ...batch, tokens, targets });
    const seqStart = p - (p % 9);
    for (let t = seqStart; t < p - 1; t++) {
      assertEquals(f.nll[t], base.nll[t], `position ${t}, token ${p} changed`);
    }
    let changed = false;
    for (let t = p; t < seqStart + 8; t++) changed ||= f.nll[t] !== base.nll[t];
    assert(changed, `changing token ${p} changes later terms`);
  }
});

Deno.test("the delta rule equals the linear rule on two segments, not on three", () => {
  // Delta subtracts the retrieval from the memory written so far: nothing on the first
  // segment, so the first write (all that segment 1 reads) is the same under both rules.
  const { model, batch } = smallModel(7, "linear");
  const tokens = (batch.tokens as number[]).slice(0, 12);
  const two: RefBatch = { tokens, targets: nextTokenTargets(tokens, 2, 6), B: 2 };
  const lin2 = modelForward(model, two, { memoryUpdate: "linear" });
  const del2 = modelForward(model, two, { memoryUpdate: "delta" });
  assertEquals(del2.nll, lin2.nll);
  const lin3 = modelForward(model, batch, { memoryUpdate: "linear" });
  const del3 = modelForward(model, batch, { memoryUpdate: "delta" });
  notDeepStrictEqual(del3.nll, lin3.nll);
});

Deno.test("memory off equals a model without Infini layers; memory on differs", () => {
  const { model, batch } = smallModel(9, "linear");
  const off = modelForward(model, batch, { gate: "off" });
  // The same weights read as a model with no Infini layer (its gate tensor goes unused).
  const plain = modelForward({ ...model, cfg: { ...model.cfg, infiniLayers: "none" } }, batch);
  assertEquals(off.nll, plain.nll);
  notDeepStrictEqual(modelForward(model, batch).nll, off.nll);
});
