/**
 * Streaming-evaluation benchmark: one long synthetic document (passkey filler with a key) is
 * scored at several lengths with the memory carried segment to segment. For each length: the
 * GPU bytes the runtime has allocated (every storage buffer it owns, after the run) and the
 * time per token. Targets: bytes at the longest length within 5% of those at the shortest,
 * time per token flat within 10%. Prints a table and writes JSON.
 *
 *   deno task bench:eval [--presets tiny] [--lengths 8192,65536,1048576] [--chunk 16]
 *                        [--out out/bench_eval.json] [--limit NAME=BYTES ...]
 */
import { cellSamples } from "../src/tasks/passkey.ts";
import { Streamer } from "../src/eval/stream.ts";
import { Runtime } from "../src/gpu/runtime.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import { initParams, paramTable } from "../src/model/params.ts";
import { LIMIT_OPTION, limitFlags } from "../src/cli/flags.ts";
import { benchArgs, printTable, writeJson } from "./_util.ts";

const values = benchArgs(import.meta.url, {
  presets: { type: "string", default: "tiny" },
  lengths: { type: "string", default: "8192,65536,1048576" },
  chunk: { type: "string", default: "16" },
  out: { type: "string", default: "out/bench_eval.json" },
  ...LIMIT_OPTION,
});
const lengths = values.lengths.split(",").map(Number);
const chunk = Number(values.chunk);
const rt = await Runtime.create({ limits: limitFlags(values.limit) });
console.log(`adapter: ${rt.describe()}`);

const rows: Record<string, string | number>[] = [];
const results: unknown[] = [];
for (const preset of values.presets.split(",")) {
  const cfg = resolveConfig(preset);
  const S = cfg.segmentLength;
  const params = initParams(paramTable(cfg), cfg, 1);
  const before = rt.allocatedBytes;
  const st = await Streamer.create(rt, cfg, params, { batch: 1, chunkSegments: chunk });
  // Warm-up: compile every pipeline and fill the caches before timing.
  const warm = cellSamples(S, chunk * 2, 0.5, 1, 1)[0];
  await st.score([{ tokens: warm.tokens, targets: warm.targets }], "memory");
  let base: { bytes: number; perTok: number } | null = null;
  for (const n of lengths) {
    const segs = Math.ceil(n / S);
    const doc = cellSamples(S, segs, 0.1, 1, 7)[0];
    const t0 = performance.now();
    const [r] = await st.score([{ tokens: doc.tokens, targets: doc.targets }], "memory", {
      onChunk: (d, total) => {
        if (d % 256 === 0) console.error(`  ${preset} ${n}: chunk ${d}/${total}`);
      },
    });
    const s = (performance.now() - t0) / 1000;
    let sum = 0;
    for (const x of r.nll) sum += x;
    const bytes = rt.allocatedBytes - before;
    const perTok = (s / doc.tokens.length) * 1e6;
    base ??= { bytes, perTok };
    const row = {
      preset,
      tokens: doc.tokens.length,
      segments: segs,
      "GPU bytes": bytes,
      "bytes / shortest": +(bytes / base.bytes).toFixed(4),
      "us / token": +perTok.toFixed(2),
      "time / shortest": +(perTok / base.perTok).toFixed(3),
      "tokens/s": Math.round(doc.tokens.length / s),
      "mean NLL": +(sum / (doc.tokens.length - 1)).toFixed(4),
      seconds: +s.toFixed(1),
    };
    rows.push(row);
    results.push(row);
    console.error(`  ${preset} ${n}: ${s.toFixed(1)} s`);
  }
}
printTable(rows);
await writeJson(values.out, { adapter: rt.describe(), chunkSegments: chunk, results });
console.log(`wrote ${values.out}`);
