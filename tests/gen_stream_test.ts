/**
 * The streaming JSON splitters against JSON.parse, for every way a file can be cut into read
 * blocks, and the UTF-8 and JSON error locators against the platform's own judgement.
 */
import { deepStrictEqual as assertEquals, equal } from "node:assert/strict";
import {
  firstInvalidUtf8,
  jsonArrayRecords,
  jsonErrorIndex,
  jsonLinesRecords,
  type Reader,
} from "../src/data/json_stream.ts";
import { Rng } from "../src/util/rng.ts";

/** Serves `bytes` in reads of at most `step` bytes. */
function reader(bytes: Uint8Array, step: number): Reader {
  let i = 0;
  return {
    read(p: Uint8Array) {
      if (i >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, step, bytes.length - i);
      p.set(bytes.subarray(i, i + n));
      i += n;
      return Promise.resolve(n);
    },
  };
}

const dec = new TextDecoder();
const RECORDS: unknown[] = [
  { completion: "plain", source: "s" },
  { completion: 'quotes " and \\ backslashes \\" \\\\', n: [1, { x: "]}" }] },
  { completion: "中文，维基百科。\n换行", deep: { a: { b: ["[", "{"] } } },
  "a bare string record",
  12.5e3,
  null,
  [],
  {},
];

Deno.test("json array splitter: records and offsets for every read size", async () => {
  const text = "\ufeff \n[" + RECORDS.map((r) => " " + JSON.stringify(r)).join(",\n") + "\n]\n";
  const bytes = new TextEncoder().encode(text);
  for (const step of [1, 2, 3, 7, 64, 1 << 20]) {
    const got: unknown[] = [];
    for await (const r of jsonArrayRecords(reader(bytes, step), "t.json")) {
      got.push(JSON.parse(dec.decode(r.bytes)));
      // The offset points at the record's bytes in the file.
      assertEquals(bytes.subarray(r.offset, r.offset + r.bytes.length), r.bytes);
      equal(r.index, got.length);
    }
    assertEquals(got, RECORDS, `read size ${step}`);
  }
});

Deno.test("json lines splitter: records, lines and offsets for every read size", async () => {
  const text = RECORDS.map((r) => JSON.stringify(r)).join("\r\n\n  \n") + "\n";
  const bytes = new TextEncoder().encode(text);
  for (const step of [1, 5, 1 << 20]) {
    const got: unknown[] = [];
    const lines: number[] = [];
    for await (const r of jsonLinesRecords(reader(bytes, step), "t.jsonl")) {
      got.push(JSON.parse(dec.decode(r.bytes)));
      lines.push(r.line);
      assertEquals(bytes.subarray(r.offset, r.offset + r.bytes.length), r.bytes);
    }
    assertEquals(got, RECORDS);
    assertEquals(lines, RECORDS.map((_, i) => 1 + 3 * i));
  }
});

Deno.test("firstInvalidUtf8 agrees with TextDecoder's fatal mode on random bytes", () => {
  const rng = new Rng(5);
  const fatal = new TextDecoder("utf-8", { fatal: true });
  const pieces = [
    [0x61],
    [0xc3, 0xa9],
    [0xe4, 0xb8, 0xad],
    [0xf0, 0x9f, 0x98, 0x80],
    [0x80],
    [0xff],
    [0xc0, 0x80],
    [0xed, 0xa0, 0x80],
    [0xf4, 0x90, 0x80, 0x80],
    [0xe4, 0xb8],
    [0xf0, 0x9f],
  ];
  for (let t = 0; t < 3000; t++) {
    const parts: number[] = [];
    const n = 1 + rng.int(6);
    for (let k = 0; k < n; k++) {
      parts.push(...pieces[rng.int(rng.next() < 0.8 ? 4 : pieces.length)]);
    }
    const b = new Uint8Array(parts);
    const at = firstInvalidUtf8(b);
    let ok = true;
    try {
      fatal.decode(b);
    } catch {
      ok = false;
    }
    equal(at === -1, ok, `${Array.from(b)}`);
    if (at >= 0) {
      // Everything before the culprit is valid text.
      fatal.decode(b.subarray(0, at));
    }
  }
});

Deno.test("jsonErrorIndex finds where JSON.parse gave up", () => {
  const cases: [string, number][] = [
    ['{"a": x}', 6],
    ["[1,]", 3],
    ['{"a": tru}', 9],
    ['{"a":1} x', 8],
    ['{"a":"\\q"}', 7],
    ['{"a": "b\n"}', 8],
    ['{"a" 1}', 5],
  ];
  for (const [s, want] of cases) {
    let msg = "";
    try {
      JSON.parse(s);
    } catch (e) {
      msg = (e as Error).message;
    }
    equal(jsonErrorIndex(s, msg), want, s);
  }
});
