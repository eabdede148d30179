/**
 * The recall task's training lengths over time (RecallSource phases, the demo's recipe): which
 * length each batch index draws, that a single length keeps the task's own stream, and that
 * lengths the model cannot hold are refused.
 */
import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { resolveConfig } from "../src/model/overrides.ts";
import { RecallTask } from "../src/tasks/recall.ts";
import { DEMO_TASKS, phaseBatches } from "../src/tasks/recipes.ts";
import { RecallSource } from "../src/tasks/sources.ts";
import { UserError } from "../src/util/errors.ts";

const cfg = resolveConfig("micro", ["seqLength=128"]); // 8 segments of 16

Deno.test("recall phases: no phases is the config's length, the task's own stream", () => {
  const src = new RecallSource(cfg, 9);
  const task = new RecallTask({ segmentLength: 16, segments: 8 }, 9);
  for (const i of [0, 5]) {
    equal(src.lengthAt(i), 8);
    deepEqual(src.batch(i, 3).tokens, task.batch(i * 3, 3, "train").tokens);
  }
  deepEqual(src.valBatch(2, 3).tokens, task.batch(6, 3, "eval").tokens);
});

Deno.test("recall phases: the first phase's batches, then a mixture drawn per batch", () => {
  const phases = [{ batches: 4, segments: [2] }, { batches: Infinity, segments: [2, 4, 8] }];
  const src = new RecallSource(cfg, 3, { phases });
  for (let i = 0; i < 4; i++) equal(src.lengthAt(i), 2);
  const counts = new Map<number, number>();
  for (let i = 4; i < 604; i++) counts.set(src.lengthAt(i), (counts.get(src.lengthAt(i)) ?? 0) + 1);
  deepEqual([...counts.keys()].sort((a, b) => a - b), [2, 4, 8]);
  for (const c of counts.values()) ok(c > 150 && c < 250, `each length about 1 in 3: ${c}`);
  // A batch has the drawn length; its answer row predicts the digit after the final '?'.
  for (const i of [0, 10, 11, 12, 13]) {
    const n = src.lengthAt(i), B = 2, T = 16 * n;
    const b = src.batch(i, B);
    equal(b.tokens.length, B * T);
    for (let s = 0; s < B; s++) {
      const row = b.answerRows![s][0];
      equal(row, s * T + T - 2);
      equal(b.tokens[row], "?".charCodeAt(0));
      equal(b.targets[row], b.tokens[row + 1]);
    }
  }
  // The same index draws the same length and tokens; validation stays at the config's length.
  deepEqual(new RecallSource(cfg, 3, { phases }).batch(77, 2).tokens, src.batch(77, 2).tokens);
  equal(src.valBatch(0, 2).tokens.length, 2 * 128);
});

Deno.test("recall phases: a length outside 2..seqLength/S is refused in one line", () => {
  for (const segments of [[16], [1], [2, 2.5]]) {
    throws(
      () => new RecallSource(cfg, 1, { phases: [{ batches: Infinity, segments }] }),
      (e: Error) => e instanceof UserError && /training length .* is not in 2\.\.8/.test(e.message),
    );
  }
});

Deno.test("recall phases: the demo recipe's shares become batches, the last phase open-ended", () => {
  deepEqual(
    phaseBatches([{ share: 1 / 3, segments: [2] }, { share: 2 / 3, segments: [2, 4, 8] }], 200),
    [{ batches: 67, segments: [2] }, { batches: Infinity, segments: [2, 4, 8] }],
  );
  // The demo's recall recipe trains up to its config's length, and starts on the shortest.
  const r = DEMO_TASKS.recall;
  const demoCfg = resolveConfig(r.preset, r.sets);
  const nS = demoCfg.seqLength / demoCfg.segmentLength;
  equal(Math.max(...r.phases!.flatMap((p) => p.segments)), nS);
  deepEqual(r.phases![0].segments, [2]);
});
