/**
 * Helpers for the whole-model GPU tests: a small odd-shaped config, random parameters shared
 * by the GPU model and the f64 reference, and the GPU runs the tests compare (one call over
 * all segments, or streaming segment by segment).
 *
 * Row order everywhere: rows = B * T, row b * T + t; segment s of sequence b is rows
 * b * T + s * S .. b * T + s * S + S - 1.
 */
import type { Runtime } from "../src/gpu/runtime.ts";
import type { ModelConfig } from "../src/model/config.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import { GATE, InfiniGemma } from "../src/model/model.ts";
import { type ParamTable, paramTable } from "../src/model/params.ts";
import type { GateMode } from "../src/ops/infini.ts";
import { Rng } from "../src/util/rng.ts";
import type { RefModel } from "./ref/model.ts";

/**
 * The tiny preset shrunk to shapes that are multiples of no workgroup size: V 37, C 24, F 40,
 * L 2, H 4, D 8, S 5, T 20 (4 segments). `sets` are further `key=value` overrides.
 */
export function smallConfig(sets: readonly string[] = []): ModelConfig {
  return resolveConfig("tiny", [
    "vocabSize=37",
    "hiddenSize=24",
    "intermediateSize=40",
    "numLayers=2",
    "numHeads=4",
    "numKvHeads=2",
    "headDim=8",
    "segmentLength=5",
    "seqLength=20",
    ...sets,
  ]);
}

/** Entry scales of {@link randomParams}. */
export interface ParamScales {
  /** std of the N(0, std) embedding and linear weights. */
  normal: number;
  /** Norm weights w (the scale is 1 + w) uniform in [-norm, norm). */
  norm: number;
  /** Gate logits beta uniform in [-beta, beta). */
  beta: number;
}

/**
 * Random parameters in the table's flat layout (padding 0), as f32 so that the GPU and the
 * f64 reference see the same values. The defaults are large enough that softmax, both sides
 * of ELU + 1 and GELU are exercised, and put norms and gates away from their init, so a
 * wrong norm weight or gate convention shows.
 */
export function randomParams(
  table: ParamTable,
  seed: number,
  scales: ParamScales = { normal: 0.3, norm: 0.3, beta: 1.5 },
): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(table.total);
  for (const s of table.specs) {
    for (let i = 0; i < s.size; i++) {
      out[s.offset + i] = s.init === "normal"
        ? rng.normal() * scales.normal
        : (rng.next() * 2 - 1) * (s.init === "beta" ? scales.beta : scales.norm);
    }
  }
  return out;
}

/**
 * Copies every tensor of `dstTable` from `src` (laid out by `srcTable`) by name: e.g. an
 * Infini model's weights into the same model without Infini layers (whose table has no gates).
 */
export function copyByName(
  srcTable: ParamTable,
  src: Float32Array,
  dstTable: ParamTable,
): Float32Array {
  const out = new Float32Array(dstTable.total);
  for (const d of dstTable.specs) {
    const s = srcTable.get(d.name);
    out.set(src.subarray(s.offset, s.offset + s.size), d.offset);
  }
  return out;
}

/** The f64 reference model for a config and (f32) parameters. */
export function refModel(cfg: Readonly<ModelConfig>, params: Float32Array): RefModel {
  return { cfg, table: paramTable(cfg), params: Float64Array.from(params) };
}

/** Random tokens (B*T) in 0..V-1. */
export function randomTokens(rng: Rng, n: number, V: number): Uint32Array {
  return Uint32Array.from({ length: n }, () => rng.int(V));
}

/** A GPU model with its parameters uploaded. */
export async function gpuModel(
  rt: Runtime,
  cfg: Readonly<ModelConfig>,
  params: Float32Array,
  opts: { B: number; T: number; train: boolean },
): Promise<InfiniGemma> {
  const m = await InfiniGemma.create(rt, cfg, opts);
  m.setParams(params);
  return m;
}

/**
 * One forward over the whole batch in one call (layer-major), memory starting at zero:
 * the loss and the per-row NLL (rows).
 */
export async function forwardNll(
  model: InfiniGemma,
  tokens: Uint32Array,
  targets: Uint32Array,
  gate: GateMode = GATE.learned,
): Promise<{ loss: number; nll: Float32Array }> {
  const rt = model.rt;
  model.setBatch(tokens, targets);
  const rec = rt.record("forward");
  model.resetMemory(rec);
  model.recordForward(rec, { gate });
  const loss = rec.read(model.loss), nll = rec.read(model.nll);
  rt.submit(rec);
  return { loss: (await loss)[0], nll: await nll };
}

/**
 * Streams B sequences of T tokens through `model` (created with T = S) segment by segment,
 * SEGMENT-MAJOR: memory reset before the first segment, then carried (M_out -> M_in) between
 * segments, or, with `resetEvery`, reset before every segment. Returns the per-row NLL laid
 * out like the one-call run (B*T rows), so the two compare row by row.
 */
export async function streamNll(
  model: InfiniGemma,
  tokens: Uint32Array,
  targets: Uint32Array,
  B: number,
  T: number,
  opts: { resetEvery?: boolean; gate?: GateMode } = {},
): Promise<Float32Array> {
  const rt = model.rt, S = model.cfg.segmentLength;
  if (model.opts.T !== S || model.opts.B !== B) {
    throw new Error(`streamNll: model is B ${model.opts.B} T ${model.opts.T}, wants B ${B} T ${S}`);
  }
  const out = new Float32Array(B * T);
  const pending: Promise<void>[] = [];
  for (let s = 0; s < T / S; s++) {
    const segTok = new Uint32Array(B * S), segTgt = new Uint32Array(B * S);
    for (let b = 0; b < B; b++) {
      segTok.set(tokens.subarray(b * T + s * S, b * T + s * S + S), b * S);
      segTgt.set(targets.subarray(b * T + s * S, b * T + s * S + S), b * S);
    }
    // setBatch writes through the queue, so it lands after the previous segment's submit.
    model.setBatch(segTok, segTgt);
    const rec = rt.record(`segment ${s}`);
    if (s === 0 || opts.resetEvery) model.resetMemory(rec);
    else model.carryMemory(rec);
    model.recordForward(rec, { gate: opts.gate ?? GATE.learned });
    const nll = rec.read(model.nll);
    rt.submit(rec);
    pending.push(nll.then((x) => {
      for (let b = 0; b < B; b++) out.set(x.subarray(b * S, b * S + S), b * T + s * S);
    }));
  }
  await Promise.all(pending);
  return out;
}

/** Largest |a - b| over rows in [from, to). */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>, from = 0, to = a.length) {
  let m = 0;
  for (let i = from; i < to; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
