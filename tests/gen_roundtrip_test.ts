/**
 * gen round trips: for every input format and both built-in tokenizers, the shards decode to
 * exactly the source documents, each followed by its end-of-text token.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { GEN_DEFAULTS, generate } from "../src/data/gen.ts";
import {
  assertShardsHold,
  DOCS,
  tempDir,
  tokenizer,
  writeJsonArray,
  writeJsonl,
  writeParquet,
  writeTxtDir,
} from "./gen_fixtures.ts";

const FORMATS: Record<string, (dir: string) => Promise<string>> = {
  json: async (d) => (await writeJsonArray(`${d}/wiki.json`, DOCS), `${d}/wiki.json`),
  jsonl: async (d) => (await writeJsonl(`${d}/docs.jsonl`, DOCS), `${d}/docs.jsonl`),
  parquet: async (d) => (await writeParquet(`${d}/train.parquet`, DOCS, 5), `${d}/train.parquet`),
  txt: async (d) => (await writeTxtDir(`${d}/texts`, DOCS), `${d}/texts`),
};

for (const spec of ["bytes", "qwen"]) {
  for (const [format, make] of Object.entries(FORMATS)) {
    Deno.test(`gen round trip: ${format} input, ${spec} tokenizer`, async () => {
      const dir = await tempDir();
      try {
        const input = await make(dir);
        const r = await generate({
          ...GEN_DEFAULTS,
          inputs: [input],
          output: `${dir}/out`,
          tokenizer: spec,
          seqLen: spec === "bytes" ? 48 : 12,
          valFraction: 0.25,
          // The worker path for bytes, the calling thread for qwen (one load per test).
          workers: spec === "bytes" ? 1 : 0,
        });
        assertEquals(
          r.manifest.splits.train.documents + r.manifest.splits.val.documents,
          DOCS.length,
        );
        assertEquals(
          r.manifest.sources.map((s) => s.documents).reduce((a, b) => a + b),
          DOCS.length,
        );
        await assertShardsHold(`${dir}/out`, await tokenizer(spec), DOCS);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
}

Deno.test("gen round trip: every format in one folder, read in path order", async () => {
  const dir = await tempDir();
  try {
    const parts = [DOCS.slice(0, 3), DOCS.slice(3, 6), DOCS.slice(6, 9), DOCS.slice(9)];
    await Deno.mkdir(`${dir}/in`);
    await writeJsonArray(`${dir}/in/a.json`, parts[0]);
    await writeJsonl(`${dir}/in/b.ndjson`, parts[1]);
    await writeParquet(`${dir}/in/c.parquet`, parts[2], 2);
    await writeTxtDir(`${dir}/in/d`, parts[3]);
    await Deno.writeTextFile(`${dir}/in/README.md`, "not an input");
    await Deno.writeTextFile(`${dir}/in/.hidden.json`, "not read");
    const r = await generate({
      ...GEN_DEFAULTS,
      inputs: [`${dir}/in`],
      output: `${dir}/out`,
      tokenizer: "bytes",
      seqLen: 32,
      valFraction: 0.2,
      workers: 2,
    });
    assertEquals(r.manifest.sources.map((s) => [s.path.slice(dir.length), s.documents]), [
      ["/in/a.json", 3],
      ["/in/b.ndjson", 3],
      ["/in/c.parquet", 3],
      ["/in/d/0000.txt", 1],
      ["/in/d/0001.txt", 1],
      ["/in/d/0002.txt", 1],
    ]);
    await assertShardsHold(`${dir}/out`, await tokenizer("bytes"), DOCS);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
