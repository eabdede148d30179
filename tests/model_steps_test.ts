/**
 * Golden optimizer steps: 5 AdamW steps of the GPU model (forward, backward, global norm,
 * clipping, AdamW with decoupled weight decay, one submit per step) against the f64 reference
 * model driven by the f64 reference AdamW (tests/ref/model.ts + tests/ref/adamw.ts).
 *
 * Settings chosen so that each part of the step shows: weight decay on the "decay" group
 * only (matrices, embedding) while norms and gates start away from 0 (so wrongly decaying
 * them would show), a gate learning-rate multiplier of 10, a warm-up learning rate (a
 * different lr every step), and a clip threshold that binds on steps 1-4 but not on step 5.
 * The same batch every step, so the loss must fall.
 */
import { ok as assert } from "node:assert/strict";
import type { ModelConfig } from "../src/model/config.ts";
import { paramTable } from "../src/model/params.ts";
import type { AdamwHyper, GradStats } from "../src/ops/adamw.ts";
import { Optimizer } from "../src/train/optimizer.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import { gpuModel, randomParams, randomTokens, refModel, smallConfig } from "./_model.ts";
import { assertClose } from "./_numeric.ts";
import { type AdamwRefSlot, adamwStep } from "./ref/adamw.ts";
import { modelBackward, modelForward, nextTokenTargets, type RefBatch } from "./ref/model.ts";

const STEPS = 5;
const WEIGHT_DECAY = 0.1;
const BETA_LR_MULT = 10;
const LR = 1e-2;
const HYPER = { beta1: 0.9, beta2: 0.95, eps: 1e-8, maxNorm: 1.2 };

/** Step t (from 1) warms up linearly: lr = LR * t / STEPS. */
function hyper(step: number, maxNorm = HYPER.maxNorm): AdamwHyper {
  return { step, lr: (LR * step) / STEPS, ...HYPER, maxNorm };
}

/** Sum of the learning rates over the run, before the group multiplier. */
const LR_SUM = Array.from({ length: STEPS }, (_, i) => hyper(i + 1).lr).reduce((a, b) => a + b);

// The loss before each step: the f32 forward's error (~2e-6 on NLLs of ~4, as in
// model_invariants_test.ts) plus the effect of parameters that differ by <= ~1e-6: the same
// bound, 1e-5 absolute plus 1e-6 relative (measured worst: 3.4e-7; dropping weight decay
// moves the loss by 1e-4 from step 2 on).
const LOSS_TOL = { atol: 1e-5, rtol: 1e-6 };
// The global norm and clip factor: the root of a sum of squares of f32 gradients whose errors
// (<= 2e-6 of their tensor's scale, model_invariants_test.ts) mostly cancel in the sum, plus
// the f32 partial sums' rounding: ~1e-7 relative (measured worst: 5e-8); 1e-6.
const NORM_TOL = { atol: 0, rtol: 1e-6 };
// Parameters after 5 steps, per entry. Two sources of error:
// - the GPU rounds p to f32 after every step: STEPS half-ulps, 6e-8 * STEPS * max(1, |p|);
// - the update lr_t * lrScale * mhat / (sqrt(vhat) + eps) is nearly invariant to the size of
//   the gradient, so its error is the gradient's RELATIVE error: an entry whose gradient is
//   rho times its tensor's largest has a relative error of about NOISE / rho, with NOISE =
//   1e-5 (5x the worst f32 gradient error measured against the tensor scale, 2e-6). Where
//   rho is tiny the sign itself may flip, so the direction's error is capped at 2 (a unit
//   step reversed). Over the run: 2 * lrScale * LR_SUM * min(1, NOISE / rho_min), rho_min the
//   entry's smallest rho over the steps. For a typical entry (rho ~ 0.1) that is ~6e-6 while
//   dropping weight decay moves a matrix entry by ~LR_SUM * wd * |p| ~ 3e-4: the test checks
//   that each wrong setting (gate lr x1, no decay, no clipping) breaks this tolerance
//   (measured: the GPU's worst entry uses 3.4% of its tolerance, 2.1e-7 absolute; each wrong
//   setting puts 73-92% of the entries outside it).
const NOISE = 1e-5;

interface RefRun {
  losses: number[];
  norms: number[];
  clips: number[];
  /** Final parameters, table layout. */
  params: Float64Array;
  /** Per entry, the smallest |g| / max |g of its tensor| over the steps. */
  rhoMin: Float64Array;
}

/** STEPS reference steps from `params` (f64 model + f64 AdamW, the model's groups). */
function refRun(
  cfg: ModelConfig,
  params: Float32Array,
  batch: RefBatch,
  o: Partial<{ betaLrMult: number; wd: number; maxNorm: number }> = {},
): RefRun {
  const m = refModel(cfg, params);
  const slots = m.table.specs.map((s) => ({
    spec: s,
    p: m.params.subarray(s.offset, s.offset + s.size),
    m: new Float64Array(s.size),
    v: new Float64Array(s.size),
    lrScale: s.group === "gate" ? (o.betaLrMult ?? BETA_LR_MULT) : 1,
    weightDecay: s.group === "decay" ? (o.wd ?? WEIGHT_DECAY) : 0,
  }));
  const run: RefRun = {
    losses: [],
    norms: [],
    clips: [],
    params: m.params,
    rhoMin: new Float64Array(m.table.total).fill(Infinity),
  };
  for (let t = 1; t <= STEPS; t++) {
    const fwd = modelForward(m, batch);
    const g = modelBackward(m, fwd);
    const step: AdamwRefSlot[] = slots.map((s) => {
      const gs = g.subarray(s.spec.offset, s.spec.offset + s.spec.size);
      const scale = Math.max(...Array.from(gs, Math.abs));
      for (let i = 0; i < gs.length; i++) {
        const k = s.spec.offset + i;
        run.rhoMin[k] = Math.min(run.rhoMin[k], Math.abs(gs[i]) / scale);
      }
      return { p: s.p, m: s.m, v: s.v, lrScale: s.lrScale, weightDecay: s.weightDecay, g: gs };
    });
    const r = adamwStep(step, hyper(t, o.maxNorm));
    run.losses.push(fwd.loss);
    run.norms.push(r.norm);
    run.clips.push(r.clip);
  }
  return run;
}

/**
 * Entries of `got` outside the per-entry tolerance around `want` (see the comment above),
 * with the first one described.
 */
function paramMismatches(cfg: ModelConfig, got: ArrayLike<number>, want: RefRun) {
  const table = paramTable(cfg);
  let count = 0, first = "";
  for (const s of table.specs) {
    const lrScale = s.group === "gate" ? BETA_LR_MULT : 1;
    for (let i = s.offset; i < s.offset + s.size; i++) {
      const w = want.params[i];
      const tol = 6e-8 * STEPS * Math.max(1, Math.abs(w)) +
        2 * lrScale * LR_SUM * Math.min(1, NOISE / want.rhoMin[i]);
      if (!(Math.abs(got[i] - w) <= tol)) {
        if (count++ === 0) {
          first = `${s.name}[${i - s.offset}]: got ${got[i]}, expected ${w} (tol ${tol})`;
        }
      }
    }
  }
  return { count, first, total: table.count };
}

gpuTest(
  "model steps: 5 AdamW steps (decay groups, gate lr x10, clipping) match the f64 reference",
  async (rt) => {
    const cfg = smallConfig(["seqLength=15", `betaLrMult=${BETA_LR_MULT}`]);
    const params = randomParams(paramTable(cfg), 61, { normal: 0.1, norm: 0.3, beta: 1 });
    const rng = new Rng(62);
    const B = 2, T = cfg.seqLength;
    const tokens = randomTokens(rng, B * T, cfg.vocabSize);
    const targets = nextTokenTargets(tokens, B, T);
    const weights = Float32Array.from({ length: B * T }, () => 0.5 + rng.next());
    const batch: RefBatch = { tokens, targets, B, weights };

    // GPU: each step is one submit (clear grads, reset memory, forward, backward, norm, clip,
    // AdamW); the loss before the update and the optimizer's stats ride along.
    const model = await gpuModel(rt, cfg, params, { B, T, train: true });
    const opt = await Optimizer.create(model, { weightDecay: WEIGHT_DECAY });
    model.setBatch(tokens, targets, { weights });
    const pending: Promise<[Float32Array, GradStats]>[] = [];
    for (let t = 1; t <= STEPS; t++) {
      const rec = rt.record(`step ${t}`);
      model.recordGrads(rec);
      opt.recordStep(rec, hyper(t));
      pending.push(Promise.all([rec.read(model.loss), opt.readStats(rec)]));
      rt.submit(rec);
    }
    const gpu = await Promise.all(pending);
    const gpuParams = await model.readParams();

    const want = refRun(cfg, params, batch);
    // The run is the one meant: clipping binds on some steps and not on others; it learns.
    assert(want.clips.some((c) => c < 0.9), `clipping never binds: ${want.clips}`);
    assert(want.clips.some((c) => c === 1), `clipping binds on every step: ${want.clips}`);
    assert(want.losses[STEPS - 1] < want.losses[0] - 0.5, `no learning: ${want.losses}`);

    for (let t = 0; t < STEPS; t++) {
      const [loss, stats] = gpu[t];
      assert(!stats.skipped, `step ${t + 1} was skipped`);
      assertClose(loss, [want.losses[t]], { ...LOSS_TOL, what: `loss before step ${t + 1}` });
      assertClose([stats.norm], [want.norms[t]], { ...NORM_TOL, what: `norm of step ${t + 1}` });
      assertClose([stats.clip], [want.clips[t]], { ...NORM_TOL, what: `clip of step ${t + 1}` });
    }
    const bad = paramMismatches(cfg, gpuParams, want);
    assert(bad.count === 0, `${bad.count} of ${bad.total} parameters off; first ${bad.first}`);

    // The tolerance is tight enough to see each optimizer setting: the reference run with
    // one setting wrong is outside it (on many entries, or in the losses).
    const wrong = {
      "gate lr multiplier 1": refRun(cfg, params, batch, { betaLrMult: 1 }),
      "no weight decay": refRun(cfg, params, batch, { wd: 0 }),
      "no clipping": refRun(cfg, params, batch, { maxNorm: Infinity }),
    };
    for (const [name, run] of Object.entries(wrong)) {
      const n = paramMismatches(cfg, run.params, want).count;
      assert(n > 0, `${name}: the parameters stay within the tolerance, so it cannot tell`);
    }
  },
);
