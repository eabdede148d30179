/** The progress line and its number formats. */
import { equal, ok as assert } from "node:assert/strict";
import { compact, duration, Progress } from "../src/data/progress.ts";

Deno.test("progress: line, plain mode, compact numbers and durations", () => {
  const lines: string[] = [];
  const p = new Progress({ mode: "plain", plainEveryMs: 0, write: (s) => lines.push(s) });
  const stats = { documents: 1234, tokens: 2_500_000, bytes: 5e6, totalBytes: 1e7, skipped: 2 };
  p.update(stats);
  equal(lines.length, 1);
  for (
    const part of ["gen: reading", "1,234 docs", "2.50M tokens", "MB/s", "50%", "ETA", "2 skipped"]
  ) {
    assert(lines[0].includes(part), `${part} in ${lines[0]}`);
  }
  p.message("warning: x");
  equal(lines[1], "warning: x\n");
  const quiet: string[] = [];
  new Progress({ mode: "off", write: (s) => quiet.push(s) }).update(stats);
  equal(quiet.length, 0);
  equal(compact(999), "999");
  equal(compact(12_345), "12.3k");
  equal(compact(3_210_000_000), "3.21G");
  equal(duration(42), "42s");
  equal(duration(192), "3m12s");
  equal(duration(3900), "1h05m");
});
