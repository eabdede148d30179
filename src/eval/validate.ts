/**
 * Validation during training: the loss on held-out batches and, for tasks with answers (the
 * passkey and recall tasks), the exact-match accuracy with the memory on and off. It needs only
 * a model of the batches' shape (or a chunked training model, which takes them chunk by chunk)
 * and a source of held-out batches; the trainer calls it every --eval-every steps and tests
 * call it on a trained model.
 */
import type { Runtime } from "../gpu/runtime.ts";
import { GATE, InfiniGemma, targetIsArgmax } from "../model/model.ts";
import type { GateMode } from "../ops/infini.ts";

/** One held-out batch of B sequences laid out consecutively (rows = B * T). */
export interface ValBatch {
  tokens: Uint32Array;
  targets: Uint32Array;
  /** Per-row loss weights (rows); all 1 when absent. */
  weights?: Float32Array;
  /** Per sample, the rows whose prediction must be right for it to count as exact. */
  answerRows?: number[][];
}

/** Where held-out batches come from (a training data source). */
export interface ValSource {
  /** Number of distinct validation batches (0: none; Infinity for synthetic tasks). */
  readonly valBatches: number;
  /** Validation batch number `index` of B sequences. */
  valBatch(index: number, B: number): ValBatch;
}

export interface ValLog {
  step: number;
  valLoss: number;
  /** Exact-match accuracy of the answers (passkey), teacher-forced = greedy. */
  valExact?: number;
  /** The same with the memory switched off (sigmoid(beta) = 0). */
  valExactMemoryOff?: number;
}

/**
 * Validation loss over `evalBatches` held-out batches, and for passkey batches the exact-match
 * accuracy with the memory on and off (teacher-forced arg-max of every answer digit, which is
 * exactly what greedy decoding would produce).
 */
export async function validate(
  rt: Runtime,
  model: InfiniGemma,
  source: ValSource,
  o: { batch: number; evalBatches: number },
  step: number,
): Promise<ValLog> {
  let lossSum = 0, n = 0;
  const exact = { on: 0, off: 0, total: 0 };
  const nb = Math.min(o.evalBatches, source.valBatches);
  for (let i = 0; i < nb; i++) {
    const bt = source.valBatch(i, o.batch);
    // A chunked training model takes the batch chunk by chunk (memory carried).
    if (model.chunked) model.setChunkedBatch(bt.tokens, bt.targets, { weights: bt.weights });
    else model.setBatch(bt.tokens, bt.targets, { weights: bt.weights });
    for (const gate of bt.answerRows ? [GATE.learned, GATE.off] : [GATE.learned]) {
      const rec = rt.record("validate");
      const r = model.recordEvalForward(rec, {
        gate: gate as GateMode,
        headState: !!bt.answerRows,
      });
      const head = r.headState;
      rt.submit(rec);
      if (gate === GATE.learned) {
        lossSum += await r.loss;
        n++;
      }
      if (head && bt.answerRows) {
        const hs = await head;
        for (const rows of bt.answerRows) {
          const ok = rows.every((r) => targetIsArgmax(hs, r));
          if (gate === GATE.learned) {
            exact.on += ok ? 1 : 0;
            exact.total++;
          } else exact.off += ok ? 1 : 0;
        }
      }
    }
  }
  const v: ValLog = { step, valLoss: lossSum / Math.max(1, n) };
  if (exact.total > 0) {
    v.valExact = exact.on / exact.total;
    v.valExactMemoryOff = exact.off / exact.total;
  }
  return v;
}
