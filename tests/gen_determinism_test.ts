/**
 * gen is deterministic: the same inputs and seed give byte-identical output (manifest
 * included) whatever the number of workers; another seed gives another order; --limit and
 * the shard size do what they say.
 */
import {
  deepStrictEqual as assertEquals,
  notDeepStrictEqual,
  ok as assert,
} from "node:assert/strict";
import { GEN_DEFAULTS, generate, type GenOptions } from "../src/data/gen.ts";
import { ShardReader } from "../src/data/shards.ts";
import {
  assertShardsHold,
  manyDocs,
  tempDir,
  tokenizer,
  writeJsonArray,
  writeJsonl,
  writeParquet,
} from "./gen_fixtures.ts";

const DOCS = manyDocs(120);

async function corpus(dir: string) {
  await Deno.mkdir(`${dir}/in`);
  await writeJsonArray(`${dir}/in/a.json`, DOCS.slice(0, 50));
  await writeJsonl(`${dir}/in/b.jsonl`, DOCS.slice(50, 90));
  await writeParquet(`${dir}/in/c.parquet`, DOCS.slice(90), 7);
}

/** Every file of a folder, name -> bytes. */
async function snapshot(dir: string): Promise<Record<string, Uint8Array>> {
  const out: Record<string, Uint8Array> = {};
  for await (const e of Deno.readDir(dir)) out[e.name] = await Deno.readFile(`${dir}/${e.name}`);
  return out;
}

function opts(dir: string, out: string, o: Partial<GenOptions>): GenOptions {
  return {
    ...GEN_DEFAULTS,
    inputs: [`${dir}/in`],
    output: `${dir}/${out}`,
    valFraction: 0.1,
    ...o,
  };
}

Deno.test("gen determinism: byte-identical output for 0, 1 and 2 workers (bytes tokenizer)", async () => {
  const dir = await tempDir();
  try {
    await corpus(dir);
    const base = { tokenizer: "bytes", seqLen: 64, seed: 7 };
    await generate(opts(dir, "w0", { ...base, workers: 0 }));
    await generate(opts(dir, "w1", { ...base, workers: 1 }));
    await generate(opts(dir, "w2", { ...base, workers: 2 }));
    await generate(opts(dir, "w2b", { ...base, workers: 2 }));
    const ref = await snapshot(`${dir}/w0`);
    assert(Object.keys(ref).length >= 3);
    for (const o of ["w1", "w2", "w2b"]) assertEquals(await snapshot(`${dir}/${o}`), ref, o);
    await generate(opts(dir, "s8", { ...base, workers: 2, seed: 8 }));
    notDeepStrictEqual(
      (await snapshot(`${dir}/s8`))["train_00000.bin"],
      ref["train_00000.bin"],
      "another seed, another order",
    );
    await assertShardsHold(`${dir}/s8`, await tokenizer("bytes"), DOCS);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen determinism: qwen with 2 workers equals qwen on the main thread", async () => {
  const dir = await tempDir();
  try {
    await corpus(dir);
    const base = { tokenizer: "qwen", seqLen: 32, seed: 3 };
    await generate(opts(dir, "w0", { ...base, workers: 0 }));
    await generate(opts(dir, "w2", { ...base, workers: 2 }));
    assertEquals(await snapshot(`${dir}/w2`), await snapshot(`${dir}/w0`));
    await assertShardsHold(`${dir}/w2`, await tokenizer("qwen"), DOCS);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen: small shards split a split into many files, read back in one index space", async () => {
  const dir = await tempDir();
  try {
    await corpus(dir);
    const r = await generate(
      opts(dir, "out", { tokenizer: "bytes", seqLen: 16, workers: 1, shardBytes: 16 * 2 * 10 }),
    );
    const train = r.manifest.splits.train;
    assertEquals(train.shards.length, Math.ceil(train.sequences / 10));
    assert(train.shards.length > 3);
    assertEquals(train.shards.slice(0, -1).every((s) => s.sequences === 10), true);
    using reader = await ShardReader.open(`${dir}/out`, "train");
    assertEquals(reader.numSequences, train.sequences);
    const b = reader.batch([0, 10, train.sequences - 1]);
    assertEquals(Array.from(b.subarray(16, 32)), Array.from(reader.sequence(10)));
    await assertShardsHold(`${dir}/out`, await tokenizer("bytes"), DOCS);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen --limit reads only the first N documents", async () => {
  const dir = await tempDir();
  try {
    await corpus(dir);
    const r = await generate(
      opts(dir, "out", { tokenizer: "bytes", seqLen: 16, workers: 1, limit: 55 }),
    );
    const m = r.manifest;
    assertEquals(m.splits.train.documents + m.splits.val.documents, 55);
    assertEquals(m.limit, 55);
    assertEquals(m.sources.map((s) => s.documents), [50, 5]);
    await assertShardsHold(`${dir}/out`, await tokenizer("bytes"), DOCS.slice(0, 55));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen: the split follows the text, so duplicates never straddle train and val", async () => {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir}/in`);
    const docs = manyDocs(40);
    await writeJsonl(`${dir}/in/a.jsonl`, [...docs, ...docs, ...docs]);
    const r = await generate(
      opts(dir, "out", { tokenizer: "bytes", seqLen: 16, workers: 1, valFraction: 0.3 }),
    );
    const { train, val } = r.manifest.splits;
    assert(val.documents > 0 && train.documents > 0);
    assertEquals(val.documents % 3, 0);
    assertEquals(train.documents % 3, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
