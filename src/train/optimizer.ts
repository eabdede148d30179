/**
 * The training optimizer over a model's parameters: AdamW with the global gradient-norm clip
 * (the GPU op in src/ops/adamw.ts), its per-group settings taken from the parameter table, and
 * the state it owns, the first and second moments. The model only exposes its parameters and
 * gradients; a checkpoint of the whole training state reads and writes the moments through
 * here.
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
import type { Recorder, Tensor } from "../gpu/runtime.ts";
import type { InfiniGemma } from "../model/model.ts";
import { Adamw, type AdamwHyper, type GradStats } from "../ops/adamw.ts";

/** The optimizer's settings (per-group multipliers come from the config and param table). */
export interface OptimizerOptions {
  weightDecay: number;
}

/** AdamW moments, flat in the parameter table's layout. */
export interface Moments {
  m: Float32Array;
  v: Float32Array;
}

export class Optimizer {
  private constructor(
    readonly model: InfiniGemma,
    readonly adamw: Adamw,
    /** First and second moments, flat in table layout (one buffer each). */
    readonly m: Tensor,
    readonly v: Tensor,
  ) {}

  /**
   * AdamW over every tensor of `model` (a training model), with groups from its parameter
   * table: weight decay on the "decay" group only, the config's betaLrMult on the gates.
   */
  static async create(model: InfiniGemma, o: OptimizerOptions): Promise<Optimizer> {
    const { rt, table, params, grads, cfg } = model;
    if (!grads) throw new Error("model was created without gradients (train: false)");
    // Moments live in two flat buffers laid out like the parameters: one read or write each
    // when a checkpoint is saved or resumed.
    const m = rt.tensor("adam.m", table.total), v = rt.tensor("adam.v", table.total);
    const slots = table.specs.map((s) => ({
      name: s.name,
      p: params.view(s.offset, s.size, `p:${s.name}`),
      g: grads.view(s.offset, s.size, `g:${s.name}`),
      m: m.view(s.offset, s.size, `m:${s.name}`),
      v: v.view(s.offset, s.size, `v:${s.name}`),
      lrScale: s.group === "gate" ? cfg.betaLrMult : 1,
      weightDecay: s.group === "decay" ? o.weightDecay : 0,
    }));
    const adamw = await Adamw.create(rt, slots, { normOver: [grads] });
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

  /** Records a read of both moments (resolves after submit). */
  readMoments(rec: Recorder): Promise<Moments> {
    const m = rec.read(this.m), v = rec.read(this.v);
    return Promise.all([m, v]).then(([m, v]) => ({ m, v }));
  }

  /** Uploads both moments (flat, in table layout). */
  setMoments({ m, v }: Moments): void {
    const total = this.model.table.total;
    if (m.length !== total || v.length !== total) {
      throw new RangeError(`moments: ${m.length} and ${v.length} values, the model has ${total}`);
    }
    this.model.rt.write(this.m, m);
    this.model.rt.write(this.v, v);
  }
}
