/**
 * Fixtures and checks shared by the gen tests (not a test file itself): small corpora in every
 * input format, built in a temporary folder, and a reader that undoes the shuffle so that the
 * shards can be compared with the source documents.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import * as pq from "parquet-wasm";
import {
  Binary,
  Int32,
  makeData,
  makeVector,
  Table,
  tableToIPC,
  Utf8,
  type Vector,
  vectorFromArray,
} from "apache-arrow";
import { docHash, isValidation } from "../src/data/encode.ts";
import { splitSeed } from "../src/data/pack.ts";
import { permutation } from "../src/util/rng.ts";
import { ShardReader, type Split } from "../src/data/shards.ts";
import { loadTokenizer, type Tokenizer } from "../src/data/tokenizer.ts";

/** Chinese and English documents with the awkward parts: newlines, quotes, backslashes,
 * tabs, emoji, a literal "<|endoftext|>", leading and trailing spaces. All NFC. */
export const DOCS: string[] = [
  "维基百科（英语：Wikipedia）是一个自由内容、公开编辑且多语言的网络百科全书协作计划。",
  'The quick brown fox jumps over the lazy dog.\nSecond line, with "quotes" and a \\ backslash.',
  "数学是研究数量、结构以及空间等概念的一门学科。\n\n它从计数、计算、量度发展而来。",
  "  Leading spaces, a tab\there, and trailing spaces  ",
  "Emoji 😀🎉 and accents: café, naïve, Ærøskøbing.",
  "A document that mentions <|endoftext|> in its text must not end here.",
  "北京市，简称“京”，是中华人民共和国的首都。Beijing is the capital of China.",
  "Short.",
  "混合 mixed 文本 text 1234567890 ½ ∑ ∫ — end",
  "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.",
  "长城是中国古代的军事防御工程，是一道高大、坚固而且连绵不断的长垣。",
  "Last one: 最后一个文档。",
];

/** More documents, deterministic, for runs that need several sequences per split. */
export function manyDocs(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${DOCS[i % DOCS.length]} #${i}`);
}

const tokenizers = new Map<string, Promise<Tokenizer>>();

/** A tokenizer loaded once per test file (Qwen takes a second or more to build). */
export function tokenizer(spec: string): Promise<Tokenizer> {
  if (!tokenizers.has(spec)) tokenizers.set(spec, loadTokenizer(spec));
  return tokenizers.get(spec)!;
}

export async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "gen_test_" });
}

export async function writeJsonArray(path: string, docs: string[], field = "completion") {
  const recs = docs.map((d, i) => ({ [field]: d, source: `doc${i}` }));
  await Deno.writeTextFile(path, JSON.stringify(recs, null, 1));
}

export async function writeJsonl(path: string, docs: string[], field = "completion") {
  await Deno.writeTextFile(path, docs.map((d) => JSON.stringify({ [field]: d })).join("\n") + "\n");
}

/** One .txt file per document, named so that sorting keeps the order. */
export async function writeTxtDir(dir: string, docs: string[]) {
  await Deno.mkdir(dir, { recursive: true });
  for (const [i, d] of docs.entries()) {
    await Deno.writeTextFile(`${dir}/${String(i).padStart(4, "0")}.txt`, d);
  }
}

/** A parquet file with `completion` (or given columns), `rowGroupSize` rows per row group. */
export function parquetBytes(columns: Record<string, unknown[]>, rowGroupSize = 4): Uint8Array {
  const vecs: Record<string, Vector> = {};
  for (const [name, values] of Object.entries(columns)) {
    if (values.every((v) => typeof v === "number")) {
      vecs[name] = vectorFromArray(values as number[], new Int32());
    } else if (values.every((v) => v instanceof Uint8Array)) {
      vecs[name] = binaryVector(values as Uint8Array[]);
    } else vecs[name] = vectorFromArray(values as (string | null)[], new Utf8());
  }
  const table = new Table(vecs);
  const props = new pq.WriterPropertiesBuilder().setMaxRowGroupSize(rowGroupSize).build();
  return pq.writeParquet(pq.Table.fromIPCStream(tableToIPC(table, "stream")), props);
}

function binaryVector(values: Uint8Array[]) {
  const offsets = new Int32Array(values.length + 1);
  for (let i = 0; i < values.length; i++) offsets[i + 1] = offsets[i] + values[i].length;
  const data = new Uint8Array(offsets[values.length]);
  for (let i = 0; i < values.length; i++) data.set(values[i], offsets[i]);
  return makeVector(
    makeData({ type: new Binary(), length: values.length, valueOffsets: offsets, data }),
  );
}

export async function writeParquet(path: string, docs: string[], rowGroupSize = 4) {
  await Deno.writeFile(
    path,
    parquetBytes({ completion: docs, source: docs.map((_, i) => `doc${i}`) }, rowGroupSize),
  );
}

/** A split's token stream in packing order (the shuffle undone), from the shards. */
export async function unshuffledStream(dir: string, split: Split): Promise<Uint32Array> {
  using r = await ShardReader.open(dir, split);
  const perm = permutation(r.numSequences, splitSeed(r.manifest.seed, split));
  const out = new Uint32Array(r.numSequences * r.seqLen);
  for (let j = 0; j < r.numSequences; j++) out.set(r.sequence(j), perm[j] * r.seqLen);
  return out;
}

/**
 * Checks that both splits' shards hold exactly `docs` (in order, each routed by its hash,
 * each followed by end-of-text), as tokens and, decoded, as text.
 */
export async function assertShardsHold(dir: string, tok: Tokenizer, docs: string[]) {
  const m = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
  assertEquals(m.tokenizer.hash, tok.hash);
  for (const split of ["train", "val"] as const) {
    const mine = docs.filter((d) =>
      isValidation(docHash(d, m.seed), m.valFraction) === (split === "val")
    );
    const expected: number[] = [];
    for (const d of mine) expected.push(...tok.encode(d), tok.eosId);
    const got = await unshuffledStream(dir, split);
    assertEquals(m.splits[split].documents, mine.length, `${split} documents`);
    assertEquals(got.length + m.splits[split].droppedTokens, expected.length, `${split} tokens`);
    assertEquals(Array.from(got), expected.slice(0, got.length), `${split} token stream`);
    // Text: everything up to the last end-of-text token kept decodes to whole documents.
    const lastEos = got.lastIndexOf(tok.eosId);
    const whole = lastEos < 0
      ? 0
      : got.subarray(0, lastEos + 1).filter((t) => t === tok.eosId).length;
    const eos = tok.decode([tok.eosId]);
    const text = lastEos < 0 ? "" : tok.decode(got.subarray(0, lastEos + 1));
    assertEquals(text, mine.slice(0, whole).map((d) => d + eos).join(""), `${split} text`);
    if (split === "train") assert(whole > 0, "no whole training document to compare");
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `main.ts gen ...args` in a fresh process. */
export async function runGen(args: string[]): Promise<CliResult> {
  const main = new URL("../main.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", main, "gen", ...args],
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Asserts a failed run: exit code, one "error:" line naming `parts`, no stack trace. */
export function assertOneLineError(r: CliResult, parts: (string | RegExp)[], code = 1) {
  assertEquals(r.code, code, `exit code; stderr: ${r.stderr}`);
  const errors = r.stderr.split("\n").filter((l) => l.startsWith("error:"));
  assertEquals(errors.length, 1, `one error line in: ${r.stderr}`);
  assert(!/\n\s+at /.test(r.stderr), `a stack trace in: ${r.stderr}`);
  for (const p of parts) {
    assert(
      typeof p === "string" ? errors[0].includes(p) : p.test(errors[0]),
      `'${p}' not in: ${errors[0]}`,
    );
  }
}
