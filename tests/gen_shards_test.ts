/**
 * Shard files and the reader: the header round-trips, and a damaged folder (no manifest, a
 * truncated shard, a wrong magic, a header that disagrees with the manifest, a token outside
 * the vocabulary) is refused with one line naming the file.
 */
import { deepStrictEqual as assertEquals, rejects, throws } from "node:assert/strict";
import { GEN_DEFAULTS, generate } from "../src/data/gen.ts";
import {
  decodeHeader,
  encodeHeader,
  HEADER_BYTES,
  readManifest,
  ShardReader,
} from "../src/data/shards.ts";
import { manyDocs, tempDir, writeJsonl } from "./gen_fixtures.ts";

Deno.test("shard header: encode then decode", () => {
  const h = { tokenWidth: 4 as const, vocabSize: 151669, seqLen: 1024, tokenCount: 3 * 1024 };
  const b = encodeHeader(h);
  assertEquals(b.length, HEADER_BYTES);
  assertEquals(new TextDecoder().decode(b.subarray(0, 8)), "INFSHARD");
  assertEquals(decodeHeader(b, "x.bin"), { version: 1, ...h });
  throws(() => decodeHeader(b.subarray(0, 10), "x.bin"), /x\.bin: too short/);
  const v2 = b.slice();
  v2[8] = 2;
  throws(() => decodeHeader(v2, "x.bin"), /x\.bin: shard format version 2/);
  throws(
    () => decodeHeader(encodeHeader({ ...h, tokenCount: 1000 }), "x.bin"),
    /not a whole number of 1024-token sequences/,
  );
});

async function sample(dir: string) {
  await writeJsonl(`${dir}/a.jsonl`, manyDocs(60));
  await generate({
    ...GEN_DEFAULTS,
    inputs: [`${dir}/a.jsonl`],
    output: `${dir}/out`,
    tokenizer: "bytes",
    seqLen: 32,
    workers: 0,
  });
  return `${dir}/out/train_00000.bin`;
}

Deno.test("shard reader: refuses damaged folders with a message naming the file", async () => {
  const dir = await tempDir();
  try {
    const shard = await sample(dir);
    const good = await Deno.readFile(shard);
    {
      using r = await ShardReader.open(`${dir}/out`, "train");
      assertEquals(r.seqLen, 32);
      assertEquals(r.tokenWidth, 2);
      assertEquals(r.sequence(0).length, 32);
      throws(() => r.sequence(r.numSequences), /outside 0\.\./);
    }
    await Deno.writeFile(shard, good.subarray(0, good.length - 2));
    await rejects(
      ShardReader.open(`${dir}/out`, "train"),
      /train_00000\.bin: \d+ bytes, expected \d+.*truncated/,
    );
    const badMagic = good.slice();
    badMagic[0] = 0x58;
    await Deno.writeFile(shard, badMagic);
    await rejects(ShardReader.open(`${dir}/out`, "train"), /train_00000\.bin: not a token shard/);
    const otherVocab = good.slice();
    new DataView(otherVocab.buffer).setUint32(20, 300, true);
    await Deno.writeFile(shard, otherVocab);
    await rejects(
      ShardReader.open(`${dir}/out`, "train"),
      /train_00000\.bin: vocabSize 300 in the header, 258 in the manifest/,
    );
    const badToken = good.slice();
    new DataView(badToken.buffer).setUint16(HEADER_BYTES + 2 * 5, 999, true);
    await Deno.writeFile(shard, badToken);
    {
      using r = await ShardReader.open(`${dir}/out`, "train");
      throws(() => r.sequence(0), /train_00000\.bin: sequence 0 holds token 999/);
    }
    await Deno.remove(shard);
    await rejects(ShardReader.open(`${dir}/out`, "train"), /train_00000\.bin: cannot open/);
    await Deno.writeTextFile(`${dir}/out/manifest.json`, "{");
    await rejects(readManifest(`${dir}/out`), /manifest\.json: not valid JSON/);
    await Deno.remove(`${dir}/out/manifest.json`);
    await rejects(readManifest(`${dir}/out`), /manifest\.json: not found.*run 'infini gen'/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
