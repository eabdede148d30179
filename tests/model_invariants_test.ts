/**
 * Whole-model invariants of Infini-Gemma on the GPU (notes/infini-attention.md, "Invariants
 * worth a test each"), on a small random model whose shapes are multiples of no workgroup
 * size (tests/_model.ts: V 37, C 24, F 40, L 2, H 4, D 8, S 5):
 *
 * 1. Gate forced to 0 equals a plain Gemma (a config without Infini layers), one segment and
 *    several (then local attention only).
 * 2. Causality: changing token p changes no NLL before p; memory carries the change into
 *    later segments, and without memory nothing crosses a segment boundary.
 * 3. One call over 4 segments (layer-major) equals streaming the segments one by one with
 *    (M, z) carried (segment-major).
 * 4. Memory reset before every segment differs from carried memory, and equals the memory read
 *    zeroed with the learned gate kept, A = (1 - g) A_dot, which is also every segment run as
 *    its own sequence.
 * 5. Every parameter's gradient (beta included) matches the f64 reference backward.
 */
import { ok as assert } from "node:assert/strict";
import { cloneConfig, type ModelConfig } from "../src/model/config.ts";
import { GATE } from "../src/model/model.ts";
import { IGNORE_TARGET as IGNORE } from "../src/util/targets.ts";
import { paramTable } from "../src/model/params.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import {
  copyByName,
  forwardNll,
  gpuModel,
  maxDiff,
  randomParams,
  randomTokens,
  refModel,
  smallConfig,
  streamNll,
} from "./_model.ts";
import { assertClose } from "./_numeric.ts";
import { modelBackward, modelForward, nextTokenTargets } from "./ref/model.ts";

const RULES = ["linear", "delta"] as const;

// GPU (f32) vs the f64 reference, per-token NLL. A logit is a dot product over C = 24 of
// values that went through 2 layers of ~10 f32 operations each (matmuls summing 24-40
// products, softmax over <= 5 keys, memory sums over <= 15 rows); each rounds at 6e-8
// relative, so with activations and logits of size ~1-8 the NLL (here 0.1..7.7) carries an
// absolute error of a few 1e-6 (measured worst: 1.9e-6). 1e-5 absolute plus 1e-6 relative
// leaves about 9x margin and is still 10^5 times below what the wrong variant each test also
// checks moves (memory on vs off, reset vs carried: >= 1.5 here).
const NLL_TOL = { atol: 1e-5, rtol: 1e-6 };
// Two f32 GPU runs of the same model in a different order (one call vs segment by segment):
// only the memory's sums are grouped differently (a prefix scan over segment updates vs adding
// each update to the carried state), ~1e-7 relative on M and z; everything else is the same
// arithmetic. The same bound as above covers it with margin (measured: bit for bit equal
// today, which a tree-shaped scan would not keep, so equality is not asserted).
const GPU_TOL = NLL_TOL;
/** A difference this large is a real effect, not rounding (100 times NLL_TOL's atol). */
const EFFECT = 1e-3;

/** Exact (bit for bit) equality of rows [from, to): the GPU is deterministic row by row. */
function assertSameRows(a: Float32Array, b: Float32Array, from: number, to: number, what: string) {
  for (let i = from; i < to; i++) {
    assert(Object.is(a[i], b[i]), `${what}: row ${i} changed from ${b[i]} to ${a[i]}`);
  }
}

function setup(sets: string[], seed: number, B: number) {
  const cfg = smallConfig(sets);
  const params = randomParams(paramTable(cfg), seed);
  const rng = new Rng(seed + 1000);
  const T = cfg.seqLength;
  const tokens = randomTokens(rng, B * T, cfg.vocabSize);
  return { cfg, params, rng, B, T, S: cfg.segmentLength, tokens };
}

// ---------------------------------------------------------------------------------------------
// 1. Gate 0 == plain Gemma.

for (const rule of RULES) {
  gpuTest(
    `model invariants: ${rule}, gate forced to 0 equals a Gemma without Infini layers ` +
      `(1 segment and 4)`,
    async (rt) => {
      const { cfg, params, rng, B, S } = setup([`memoryUpdate=${rule}`], 11, 2);
      const plain: ModelConfig = { ...cloneConfig(cfg), infiniLayers: "none" };
      const plainParams = copyByName(paramTable(cfg), params, paramTable(plain));
      const ref = refModel(plain, plainParams);
      for (const T of [S, 4 * S]) {
        const tokens = randomTokens(rng, B * T, cfg.vocabSize);
        const targets = nextTokenTargets(tokens, B, T);
        const want = modelForward(ref, { tokens, targets, B });
        const model = await gpuModel(rt, { ...cfg, seqLength: T }, params, {
          B,
          T,
          train: false,
        });
        const off = await forwardNll(model, tokens, targets, GATE.off);
        assertClose(off.nll, want.nll, { ...NLL_TOL, what: `T ${T} gate-off NLL` });
        assertClose([off.loss], [want.loss], { ...NLL_TOL, what: `T ${T} gate-off loss` });
        // The GPU's own plain path (no Infini op at all) agrees as well.
        const pm = await gpuModel(rt, { ...plain, seqLength: T }, plainParams, {
          B,
          T,
          train: false,
        });
        const p = await forwardNll(pm, tokens, targets);
        assertClose(p.nll, want.nll, { ...NLL_TOL, what: `T ${T} plain-config NLL` });
        // The check can fail: the learned gate (even with an empty memory on segment 0, where
        // A = (1 - g) A_dot) is far from the plain model.
        const on = await forwardNll(model, tokens, targets, GATE.learned);
        const d = maxDiff(on.nll, want.nll);
        assert(d > EFFECT, `learned gate should differ from plain Gemma, max diff ${d}`);
      }
    },
  );
}

// ---------------------------------------------------------------------------------------------
// 2. Causality across segments.

for (const rule of RULES) {
  gpuTest(
    `model invariants: ${rule}, changing token p changes no NLL before p; memory carries it ` +
      `to later segments`,
    async (rt) => {
      const { cfg, params, rng, B, T, S, tokens } = setup([`memoryUpdate=${rule}`], 21, 2);
      const nS = T / S;
      assert(nS === 4);
      const p = 2 * S + 2; // in segment 2 of sequence 0, not at a segment edge
      const changed = Uint32Array.from(tokens);
      changed[p] = (tokens[p] + 1 + rng.int(cfg.vocabSize - 1)) % cfg.vocabSize;
      // Targets stay those of the original sequence: row p - 1 predicts token p, and the
      // question is what the model computes from its inputs, not which target it is scored on.
      const targets = nextTokenTargets(tokens, B, T);
      const model = await gpuModel(rt, cfg, params, { B, T, train: false });
      for (const gate of [GATE.learned, GATE.off]) {
        const name = gate === GATE.learned ? "memory on" : "memory off";
        const a = (await forwardNll(model, tokens, targets, gate)).nll;
        const b = (await forwardNll(model, changed, targets, gate)).nll;
        // Rows before p, and all of sequence 1, are computed from identical inputs by the same
        // deterministic arithmetic: bit for bit equal.
        assertSameRows(b, a, 0, p, `${name}, rows before p`);
        assertSameRows(b, a, T, 2 * T, `${name}, the other sequence`);
        // Local attention carries the change to the rest of segment 2.
        const local = maxDiff(a, b, p, 3 * S);
        assert(local > EFFECT, `${name}: rows p..end of segment 2 moved only ${local}`);
        const later = maxDiff(a, b, 3 * S, T);
        if (gate === GATE.learned) {
          // Only the memory reaches segment 3 (local attention never crosses a segment).
          assert(later > EFFECT, `memory on: segment 3 moved only ${later}`);
        } else {
          assertSameRows(b, a, 3 * S, T, "memory off, segment 3");
        }
      }
    },
  );
}

// ---------------------------------------------------------------------------------------------
// 3 and 4. One call vs streaming; memory reset per segment.

for (const rule of RULES) {
  gpuTest(
    `model invariants: ${rule}, one call over 4 segments equals streaming with (M, z) carried; ` +
      `reset per segment equals the zero-read gate`,
    async (rt) => {
      const { cfg, params, B, T, S, tokens } = setup([`memoryUpdate=${rule}`], 31, 2);
      const nS = T / S;
      const targets = nextTokenTargets(tokens, B, T);
      const ref = refModel(cfg, params);
      const whole = await gpuModel(rt, cfg, params, { B, T, train: false });
      const stream = await gpuModel(rt, cfg, params, { B, T: S, train: false });

      // 3. Layer-major in one call == segment-major with carried memory; both == reference.
      const one = (await forwardNll(whole, tokens, targets)).nll;
      const carried = await streamNll(stream, tokens, targets, B, T);
      assertClose(carried, one, { ...GPU_TOL, what: "streamed vs one-call NLL" });
      const want = modelForward(ref, { tokens, targets, B });
      assertClose(one, want.nll, { ...NLL_TOL, what: "one-call NLL vs reference" });

      // 4. Resetting before every segment: each segment reads M = 0, z = 0, so A_mem = 0 and
      // A = (1 - g) A_dot, the learned gate kept: exactly the "memory read zeroed" ablation
      // (GATE.zeroRead) over the whole sequence, and also each segment run as a sequence of
      // its own (B * nS sequences of length S: the same rows in the same order).
      const reset = await streamNll(stream, tokens, targets, B, T, { resetEvery: true });
      for (let b = 0; b < B; b++) {
        const r0 = b * T;
        assertSameRows(reset, carried, r0, r0 + S, `sequence ${b}, segment 0 (memory empty)`);
        const d = maxDiff(reset, carried, r0 + S, r0 + T);
        assert(d > EFFECT, `reset vs carried memory, sequence ${b}: later segments moved ${d}`);
      }
      const zero = await forwardNll(whole, tokens, targets, GATE.zeroRead);
      assertClose(reset, zero.nll, { ...GPU_TOL, what: "reset per segment vs zero-read gate" });
      const wantZero = modelForward(ref, { tokens, targets, B }, { gate: "zero_read" });
      assertClose(reset, wantZero.nll, { ...NLL_TOL, what: "reset per segment vs reference" });
      const split = await gpuModel(rt, { ...cfg, seqLength: S }, params, {
        B: B * nS,
        T: S,
        train: false,
      });
      const own = (await forwardNll(split, tokens, targets)).nll;
      assertClose(reset, own, { ...GPU_TOL, what: "reset per segment vs segments as sequences" });
    },
  );
}

// ---------------------------------------------------------------------------------------------
// 5. Every gradient vs the f64 reference backward.

// Gradients are sums over ~30 weighted rows of products through 2 layers and the memory
// recurrence; each term carries the forward's f32 error (~1e-6 relative) plus the backward's
// own. Small entries of a tensor are differences of larger terms (cancellation), so errors are
// measured against the tensor's largest entry: 1e-4 of it, the bound the golden fixture's
// README gives for the same model in f32 (measured worst here: 1.7e-6), with rtol 1e-3 for
// the large entries. The test checks that this tolerance sees two plausible bugs: the loss
// weights ignored, and the memory's backward missing (the zero-read gradient, where nothing
// flows through A_mem) each put several tensors outside it.
const GRAD_REL = 1e-4;
const GRAD_RTOL = 1e-3;
function gradTol(want: Float64Array) {
  return { atol: GRAD_REL * Math.max(...Array.from(want, Math.abs)), rtol: GRAD_RTOL };
}

const GRAD_CASES = [
  // Multi-query (one KV head shared by 4 query heads), every layer Infini.
  { rule: "linear", sets: ["numKvHeads=1", "infiniLayers=all"], seed: 41 },
  // Grouped-query (2 KV heads), layer 0 plain (segment-local), layer 1 Infini.
  { rule: "delta", sets: ["numKvHeads=2", "infiniLayers=1"], seed: 42 },
] as const;

for (const c of GRAD_CASES) {
  gpuTest(
    `model invariants: ${c.rule}, ${c.sets.join(" ")}, 3 segments, weighted tokens and an ` +
      `ignored target: every gradient matches the f64 reference`,
    async (rt) => {
      const { cfg, params, rng, B, T, tokens } = setup(
        [`memoryUpdate=${c.rule}`, "seqLength=15", ...c.sets],
        c.seed,
        2,
      );
      const targets = nextTokenTargets(tokens, B, T);
      targets[7] = IGNORE; // a masked position in the middle of segment 1
      const weights = Float32Array.from({ length: B * T }, () => 0.5 + rng.next());
      const model = await gpuModel(rt, cfg, params, { B, T, train: true });
      model.setBatch(tokens, targets, { weights });
      const rec = rt.record("grads");
      model.recordGrads(rec);
      const [lossP, nllP, gradsP] = [
        rec.read(model.loss),
        rec.read(model.nll),
        model.grads!.read(rec),
      ];
      rt.submit(rec);

      const ref = refModel(cfg, params);
      const fwd = modelForward(ref, { tokens, targets, B, weights });
      const want = modelBackward(ref, fwd);
      assertClose(await lossP, [fwd.loss], { ...NLL_TOL, what: "weighted loss" });
      assertClose(await nllP, fwd.nll, { ...NLL_TOL, what: "per-token NLL" });
      const g = await gradsP;
      for (const s of model.table.specs) {
        const w = want.subarray(s.offset, s.offset + s.size);
        assert(w.some((x) => x !== 0), `${s.name}: the reference gradient is zero`);
        assertClose(g.subarray(s.offset, s.offset + s.size), w, {
          ...gradTol(w),
          what: `${c.rule} grad ${s.name}`,
        });
      }
      // The tolerance can tell: gradients with a plausible bug fall outside it.
      const wrong = {
        "loss weights ignored": modelBackward(ref, modelForward(ref, { tokens, targets, B })),
        "memory backward missing": modelBackward(
          ref,
          modelForward(ref, { tokens, targets, B, weights }, { gate: "zero_read" }),
        ),
      };
      for (const [name, wg] of Object.entries(wrong)) {
        const off = model.table.specs.filter((s) => {
          const w = want.subarray(s.offset, s.offset + s.size);
          const tol = gradTol(w);
          const x = wg.subarray(s.offset, s.offset + s.size);
          return x.some((v, i) => !(Math.abs(v - w[i]) <= tol.atol + tol.rtol * Math.abs(w[i])));
        });
        assert(off.length > 0, `${name}: every gradient stays within tolerance`);
      }
      // Every gate gets gradient through the memory path (sigmoid'(beta) * dA . (A_mem - A_dot)).
      for (const s of model.table.specs.filter((s) => s.group === "gate")) {
        const gb = g.subarray(s.offset, s.offset + s.size);
        assert(gb.every((x) => x !== 0), `${s.name}: a zero beta gradient ${gb}`);
      }
    },
  );
}
