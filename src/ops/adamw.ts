/**
 * The optimizer step on the GPU: global gradient norm over all gradients, clipping, and AdamW
 * with per-group learning-rate multiplier and weight decay (formulas in kernels/adamw.wgsl).
 * The clip factor is computed on the GPU and read there by the update, so a step needs no
 * readback; the norm can be read back asynchronously for logging.
 *
 * Non-finite gradients: when the global norm is NaN or infinite (or its square overflows f32)
 * the update is skipped on the GPU, leaving parameters and moments bit for bit unchanged, and
 * `stats` says so (skip flag of this step and a running count of skipped steps). The trainer
 * reads `stats` with the loss and stops with a message when it sees a skip.
 *
 * Tensors may be any length: ones larger than a storage binding are cut into pieces (views at
 * multiples of 256 bytes). Few long tensors mean few dispatches: a model that lays out its
 * parameters group by group in one buffer can pass one slot per group.
 *
 * @example
 * ```ts
 * const opt = await Adamw.create(rt, [
 *   { name: "matrices", p, g, weightDecay: 0.1 },
 *   { name: "gates", p: beta, g: dBeta, lrScale: 30 }, // no decay
 * ]);
 * const rec = rt.record();
 * // ... forward and backward into the gradients ...
 * opt.recordStep(rec, { step, lr, beta1: 0.9, beta2: 0.95, eps: 1e-8, maxNorm: 1 });
 * const stats = opt.readStats(rec); // resolves after submit: { norm, clip, skipped, ... }
 * rt.submit(rec);
 * ```
 */
import src from "../../kernels/adamw.wgsl" with { type: "text" };
import {
  type Kernel,
  Params,
  type Pipeline,
  type Recorder,
  type Runtime,
  type Tensor,
} from "../gpu/runtime.ts";

export const adamwKernel: Kernel = { name: "kernels/adamw.wgsl", source: src };

/** One parameter tensor (or a run of same-group tensors laid out back to back). */
export interface AdamwSlot {
  /** For error messages. */
  name: string;
  /** Parameters, (n). */
  p: Tensor;
  /** Gradient, (n); it may share a buffer with p, m and v (all are bound read-write). */
  g: Tensor;
  /** First and second moments, (n); allocated (zero) by create when omitted. */
  m?: Tensor;
  v?: Tensor;
  /** lr_t = lr * lrScale (default 1), e.g. a larger rate for the memory gates. */
  lrScale?: number;
  /** wd_t (default 0): decoupled decay, applied as p -= lr_t * wd_t * p. */
  weightDecay?: number;
}

/** Per-step hyperparameters; `step` is t, counted from 1, for the bias corrections. */
export interface AdamwHyper {
  step: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Clip threshold of the global norm; Infinity disables clipping. */
  maxNorm: number;
}

/** What `stats` holds after a step. */
export interface GradStats {
  /** Global gradient norm before clipping (NaN or Infinity when non-finite). */
  norm: number;
  /** Factor applied to the gradients (0 when the step was skipped). */
  clip: number;
  /** True when this step's norm was non-finite and the update was skipped. */
  skipped: boolean;
  /** Steps skipped so far by this optimizer. */
  skippedTotal: number;
}

type Piece = { g: Tensor; p: Tensor; m: Tensor; v: Tensor; lr: number; wd: number };

const KINDS_NORM = ["uniform", "rw", "rw", "rw"] as const;
const KINDS_UPDATE = ["uniform", "rw", "rw", "rw", "rw", "rw", "rw"] as const;
const WG = 256;
const PER_WG = WG * 32; // elements per sumsq workgroup (kernels/adamw.wgsl PER_THREAD)

export class Adamw {
  private constructor(
    /** The slots with their moments (allocated ones included). */
    readonly slots: readonly Required<AdamwSlot>[],
    /** (4): norm, clip, skip flag of the last norm (1/0), skipped steps so far. */
    readonly stats: Tensor,
    private readonly partials: Tensor,
    private readonly normPieces: readonly { g: Tensor; base: number; groups: number }[],
    private readonly pieces: readonly Piece[],
    private readonly pipes: { sumsq: Pipeline; finish: Pipeline; adamw: Pipeline },
  ) {}

  /**
   * Compiles the pipelines, allocates missing moments and the small norm buffers. The norm is
   * taken over every slot's gradient unless `normOver` lists the gradient tensors to use
   * (e.g. one view over a whole gradient buffer: one dispatch instead of one per tensor).
   * `pieceElements` (a multiple of 64) caps the elements per binding; by default the device's
   * binding cap.
   */
  static async create(
    rt: Runtime,
    slots: readonly AdamwSlot[],
    opts: { normOver?: readonly Tensor[]; pieceElements?: number } = {},
  ): Promise<Adamw> {
    const capElems = Math.floor(rt.limits.maxStorageBufferBindingSize / 4 / 64) * 64;
    const pe = opts.pieceElements ?? capElems;
    if (!Number.isInteger(pe) || pe < 64 || pe % 64 !== 0 || pe > capElems) {
      throw new RangeError(`adamw: pieceElements ${pe} must be a multiple of 64 up to ${capElems}`);
    }
    const full: Required<AdamwSlot>[] = slots.map((s) => {
      const n = s.p.length;
      const m = s.m ?? rt.tensor(`${s.name}.adam_m`, n);
      const v = s.v ?? rt.tensor(`${s.name}.adam_v`, n);
      for (const [k, t] of [["g", s.g], ["m", m], ["v", v]] as const) {
        if (t.length !== n) {
          throw new RangeError(`adamw: ${s.name}.${k} has ${t.length} elements, p has ${n}`);
        }
      }
      const lrScale = s.lrScale ?? 1, weightDecay = s.weightDecay ?? 0;
      if (!(lrScale >= 0) || !(weightDecay >= 0)) {
        throw new RangeError(`adamw: ${s.name} lrScale and weightDecay must be >= 0`);
      }
      return { name: s.name, p: s.p, g: s.g, m, v, lrScale, weightDecay };
    });
    const pieces: Piece[] = [];
    for (const s of full) {
      const parts = split([s.g, s.p, s.m, s.v], pe, s.name);
      for (const [g, p, m, v] of parts) {
        pieces.push({ g, p, m, v, lr: s.lrScale, wd: s.weightDecay });
      }
    }
    const normPieces: { g: Tensor; base: number; groups: number }[] = [];
    let base = 0;
    for (const [i, t] of (opts.normOver ?? full.map((s) => s.g)).entries()) {
      for (const [g] of split([t], pe, `normOver[${i}]`)) {
        const groups = Math.ceil(g.length / PER_WG);
        normPieces.push({ g, base, groups });
        base += groups;
      }
    }
    const [sumsq, finish, adamw] = await Promise.all([
      rt.pipeline(adamwKernel, "sumsq", KINDS_NORM),
      rt.pipeline(adamwKernel, "norm_finish", KINDS_NORM),
      rt.pipeline(adamwKernel, "adamw", KINDS_UPDATE),
    ]);
    const stats = rt.tensor("adamw.stats", 4);
    const partials = rt.tensor("adamw.partials", Math.max(1, base));
    return new Adamw(full, stats, partials, normPieces, pieces, { sumsq, finish, adamw });
  }

  /** Records the global norm, the clip factor and the skip flag into `stats`. */
  recordNorm(rec: Recorder, maxNorm: number): void {
    if (!(maxNorm > 0)) throw new RangeError(`adamw: maxNorm ${maxNorm} must be > 0`);
    const cap = Math.min(maxNorm, 3.4e38); // Infinity: never clips
    for (const q of this.normPieces) {
      const u = params({ n: q.g.length, base: q.base });
      rec.dispatch(this.pipes.sumsq, [u, q.g, this.stats, this.partials], [q.groups]);
    }
    const u = params({ n: this.normPieces.reduce((a, q) => a + q.groups, 0), maxNorm: cap });
    rec.dispatch(this.pipes.finish, [u, this.partials, this.stats, this.partials], [1]);
  }

  /** Records the AdamW update of every slot, using the clip and skip flag in `stats`. */
  recordUpdate(rec: Recorder, h: AdamwHyper): void {
    const { step, lr, beta1, beta2, eps } = h;
    if (!Number.isInteger(step) || step < 1) throw new RangeError(`adamw: step ${step} < 1`);
    if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1)) {
      throw new RangeError(`adamw: betas ${beta1}, ${beta2} must lie in [0, 1)`);
    }
    if (!(eps > 0) || !(lr >= 0)) throw new RangeError(`adamw: eps ${eps} or lr ${lr} invalid`);
    const maxX = rec.rt.limits.maxComputeWorkgroupsPerDimension;
    for (const q of this.pieces) {
      const u = params({
        n: q.p.length,
        lr: lr * q.lr,
        wd: q.wd,
        b1: beta1,
        b2: beta2,
        omb1: 1 - beta1,
        omb2: 1 - beta2,
        eps,
        bc1: 1 - beta1 ** step,
        bc2: 1 - beta2 ** step,
      });
      const groups = Math.ceil(q.p.length / WG), x = Math.min(groups, maxX);
      rec.dispatch(this.pipes.adamw, [u, q.g, this.stats, this.partials, q.p, q.m, q.v], [
        x,
        Math.ceil(groups / x),
      ]);
    }
  }

  /** recordNorm then recordUpdate: the whole optimizer step, 2 * pieces + 1 dispatches. */
  recordStep(rec: Recorder, h: AdamwHyper): void {
    this.recordNorm(rec, h.maxNorm);
    this.recordUpdate(rec, h);
  }

  /** Reads `stats` after the recorder's work (resolves once submitted and done). */
  async readStats(rec: Recorder): Promise<GradStats> {
    return Adamw.parseStats(await rec.read(this.stats));
  }

  static parseStats(s: Float32Array): GradStats {
    return { norm: s[0], clip: s[1], skipped: s[2] !== 0, skippedTotal: s[3] };
  }
}

/** Cuts equally long tensors into aligned pieces of at most `pe` elements, side by side. */
function split(ts: Tensor[], pe: number, name: string): Tensor[][] {
  const n = ts[0].length;
  if (n === 0) return [];
  if (n > pe) {
    for (const t of ts) {
      if (t.offset % 256 !== 0) {
        throw new RangeError(`adamw: ${name} (${t.label}) is split, so must start at 256 bytes`);
      }
    }
  }
  const out: Tensor[][] = [];
  for (let s = 0; s < n; s += pe) {
    const len = Math.min(pe, n - s);
    out.push(ts.map((t) => (n > pe ? t.view(s, len) : t)));
  }
  return out;
}

function params(f: Partial<Record<FieldName, number>>): Params {
  const p = new Params(FIELDS.length);
  for (const k of FIELDS) {
    if (k === "n" || k === "base") p.u32(f[k] ?? 0);
    else p.f32(f[k] ?? 0);
  }
  return p;
}

/** The kernel's Params struct, in field order. */
const FIELDS = [
  "n",
  "base",
  "maxNorm",
  "lr",
  "wd",
  "b1",
  "b2",
  "omb1",
  "omb2",
  "eps",
  "bc1",
  "bc2",
] as const;
type FieldName = (typeof FIELDS)[number];
