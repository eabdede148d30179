/**
 * The training optimizer over a model's parameters: AdamW with the global gradient-norm clip
 * (the GPU op in src/ops/adamw.ts), its per-group settings taken from the parameter table, and
 * the state it owns, the first and second moments. The model only exposes its parameters and
 * gradients; a checkpoint of the whole training state reads and writes the moments through
 * here.
 *
 * The moments are paged like the parameters and gradients (src/model/param_buffers.ts), so
 * each slot is the same (page, offset) in all four; a tensor split across pages (the
 * embedding of a large vocabulary) is one slot per row block, and the norm runs over each
 * gradient page.
 *
 * @example
 * ```ts
 * const model = await InfiniGemma.create(rt, cfg, { B, T, train: true });
 * const opt = await Optimizer.create(model, { weightDecay: 0.1 });
 * const rec = rt.record();
 * model.recordGrads(rec);
 * opt.recordStep(rec, { step: 1, lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, maxNorm: 1 });
 * const stats = opt.readStats(rec); // { norm, clip, skipped, skippedTotal } after submit
 * rt.submit(rec);
 * ```
 */
import type { Recorder } from "../gpu/runtime.ts";
import type { InfiniGemma } from "../model/model.ts";
import { ParamBuffers } from "../model/param_buffers.ts";
import { Adamw, type AdamwHyper, type GradStats } from "../ops/adamw.ts";

/** The optimizer's settings (per-group multipliers come from the config and param table). */
export interface OptimizerOptions {
  weightDecay: number;
}

/** AdamW moments, flat in the parameter table's layout (small models and tests). */
export interface Moments {
  m: Float32Array;
  v: Float32Array;
}

export class Optimizer {
  private constructor(
    readonly model: InfiniGemma,
    readonly adamw: Adamw,
    /** First and second moments, in table layout, paged like the parameters. */
    readonly m: ParamBuffers,
    readonly v: ParamBuffers,
  ) {}

  /**
   * AdamW over every tensor of `model` (a training model), with groups from its parameter
   * table: weight decay on the "decay" group only, the config's betaLrMult on the gates.
   */
  static async create(model: InfiniGemma, o: OptimizerOptions): Promise<Optimizer> {
    const { rt, table, layout, params, grads, cfg } = model;
    if (!grads) throw new Error("model was created without gradients (train: false)");
    // Moments laid out like the parameters: a checkpoint streams them page by page as the
    // flat arrays adam_m and adam_v.
    const m = ParamBuffers.create(rt, layout, "adam.m");
    const v = ParamBuffers.create(rt, layout, "adam.v");
    // One slot per tensor, or per row block of a tensor split across pages.
    const slots = table.specs.flatMap((s) => {
      const pb = params.rowBlocks(s.name, "p"), gb = grads.rowBlocks(s.name, "g");
      const mb = m.rowBlocks(s.name, "m"), vb = v.rowBlocks(s.name, "v");
      return pb.map((b, i) => ({
        name: pb.length === 1 ? s.name : `${s.name}[${b.row0}:${b.row0 + b.rows}]`,
        p: b.tensor,
        g: gb[i].tensor,
        m: mb[i].tensor,
        v: vb[i].tensor,
        lrScale: s.group === "gate" ? cfg.betaLrMult : 1,
        weightDecay: s.group === "decay" ? o.weightDecay : 0,
      }));
    });
    const adamw = await Adamw.create(rt, slots, { normOver: grads.pages });
    return new Optimizer(model, adamw, m, v);
  }

  /** Records the update from the accumulated gradients: norm, clip, AdamW. */
  recordStep(rec: Recorder, h: AdamwHyper): void {
    this.adamw.recordStep(rec, h);
  }

  /** The gradient statistics of the recorded step (resolves after submit). */
  readStats(rec: Recorder): Promise<GradStats> {
    return this.adamw.readStats(rec);
  }

  /** Records a read of both moments, flat (resolves after submit; small models and tests). */
  readMoments(rec: Recorder): Promise<Moments> {
    const m = this.m.read(rec), v = this.v.read(rec);
    return Promise.all([m, v]).then(([m, v]) => ({ m, v }));
  }

  /** Uploads both moments (flat, in table layout; small models and tests). */
  setMoments({ m, v }: Moments): void {
    const total = this.model.table.total;
    if (m.length !== total || v.length !== total) {
      throw new RangeError(`moments: ${m.length} and ${v.length} values, the model has ${total}`);
    }
    this.m.write(this.model.rt, m);
    this.v.write(this.model.rt, v);
  }
}
