/**
 * gen on bad input: each problem stops the run with one line naming the file and the record
 * (and the byte offset or line for JSON), exit code 1 and no stack trace; with --skip-bad the
 * bad record (or the rest of the bad file) is skipped and counted.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  assertOneLineError,
  parquetBytes,
  runGen,
  tempDir,
  writeJsonArray,
  writeJsonl,
  writeParquet,
} from "./gen_fixtures.ts";

const FAST = ["--tokenizer", "bytes", "--seq-len", "8", "--workers", "0", "--quiet"];

/** A folder with one good file and the given bad one; returns [dir, bad path]. */
async function withBad(name: string, content: string | Uint8Array): Promise<[string, string]> {
  const dir = await tempDir();
  await Deno.mkdir(`${dir}/in`);
  await writeJsonl(`${dir}/in/a_good.jsonl`, ["good document one", "good document two"]);
  const path = `${dir}/in/${name}`;
  if (typeof content === "string") await Deno.writeTextFile(path, content);
  else await Deno.writeFile(path, content);
  return [dir, path];
}

interface Case {
  name: string;
  file: string;
  content: string | Uint8Array;
  /** Parts of the error line. */
  error: (string | RegExp)[];
  /** With --skip-bad: the reason counted (records), or "file" when the file is skipped. */
  skipped: string;
  extra?: string[];
}

const enc = new TextEncoder();
const bytes = (...parts: (string | number[])[]) => {
  const chunks = parts.map((p) => (typeof p === "string" ? enc.encode(p) : new Uint8Array(p)));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) (out.set(c, o), o += c.length);
  return out;
};

const CASES: Case[] = [
  {
    name: "invalid JSON inside a record of an array: file, record and byte offset",
    file: "b.json",
    content: '[{"completion": "fine"},\n {"completion": nope}]',
    // The second record starts at byte 26; "nope" at 41, and it goes wrong at its 'o'.
    error: ["b.json: record 2 (byte 26): invalid JSON at byte 42: Unexpected token 'o'"],
    skipped: "invalid JSON",
  },
  {
    name: "a broken array structure: file and byte offset",
    file: "b.json",
    content: '[{"completion": "one"} {"completion": "two"}]',
    error: ["b.json: invalid JSON at byte 23: expected ',' or ']' after record 1"],
    skipped: "file",
  },
  {
    name: "an array that never closes",
    file: "b.json",
    content: '[{"completion": "one"}, {"completion": "tw',
    error: ["b.json: invalid JSON at byte 42: the file ends inside record 2"],
    skipped: "file",
  },
  {
    name: "a JSON object where an array of records is expected",
    file: "b.json",
    content: '{"completion": "one"}',
    error: ["b.json: invalid JSON at byte 0: expected '['", ".jsonl"],
    skipped: "file",
  },
  {
    name: "an empty .json file",
    file: "b.json",
    content: "",
    error: ["b.json: empty file"],
    skipped: "file",
  },
  {
    name: "invalid JSON on a JSON Lines line: file, record and line",
    file: "b.jsonl",
    content: '{"completion": "one"}\n\n{"completion": "two",}\n',
    // Line 3 starts at byte 23; the '}' after the trailing comma is at 44.
    error: ["b.jsonl: record 2 (line 3): invalid JSON at byte 44: Expected double-quoted"],
    skipped: "invalid JSON",
  },
  {
    name: "a missing text field lists the fields the record has",
    file: "b.json",
    content: '[{"title": "T", "text": "body"}]',
    error: [
      "b.json: record 1 (byte 1): no field 'completion' (it has title, text; see --text-field)",
    ],
    skipped: "missing field",
  },
  {
    name: "a non-string text field",
    file: "b.jsonl",
    content: '{"completion": 42}\n',
    error: ["b.jsonl: record 1 (line 1): field 'completion' is a number, not a string"],
    skipped: "not a string",
  },
  {
    name: "a record that is not an object",
    file: "b.json",
    content: '["just a string"]',
    error: ["b.json: record 1 (byte 1): the record is a string, not an object"],
    skipped: "not an object",
  },
  {
    name: "an empty document",
    file: "b.jsonl",
    content: '{"completion": "x"}\n{"completion": "  \\n "}\n',
    error: ["b.jsonl: record 2 (line 2): empty document"],
    skipped: "empty document",
  },
  {
    name: "an empty .txt document",
    file: "b.txt",
    content: "",
    error: ["b.txt: empty document"],
    skipped: "empty document",
  },
  {
    name: "invalid UTF-8 in a JSON array: the byte offset",
    file: "b.json",
    content: bytes('[{"completion": "ok"}, {"completion": "bad ', [0xff], ' byte"}]'),
    error: ["b.json: record 2 (byte 23): invalid UTF-8 at byte 43"],
    skipped: "invalid UTF-8",
  },
  {
    name: "invalid UTF-8 in JSON Lines",
    file: "b.jsonl",
    content: bytes('{"completion": "ok"}\n{"completion": "', [0xe4, 0xb8], '"}\n'),
    error: ["b.jsonl: record 2 (line 2): invalid UTF-8 at byte 37"],
    skipped: "invalid UTF-8",
  },
  {
    name: "invalid UTF-8 in a .txt document",
    file: "b.txt",
    content: bytes("text then ", [0xc0, 0x80], " an overlong NUL"),
    error: ["b.txt: invalid UTF-8 at byte 10"],
    skipped: "invalid UTF-8",
  },
  {
    name: "an unpaired surrogate escape",
    file: "b.jsonl",
    content: '{"completion": "half \\ud800 a pair"}\n',
    error: ["b.jsonl: record 1 (line 1): the text has an unpaired surrogate (\\ud800)"],
    skipped: "unpaired surrogate",
  },
  {
    name: "a parquet file with a null text",
    file: "b.parquet",
    content: parquetBytes({ completion: ["one", null, "three"] }, 2),
    error: ["b.parquet: record 2 (row group 0): field 'completion' is null"],
    skipped: "not a string",
  },
  {
    name: "a parquet file with invalid UTF-8 in a binary text column",
    file: "b.parquet",
    content: parquetBytes({ completion: [enc.encode("fine"), bytes("x", [0xfe], "y")] }, 1),
    error: ["b.parquet: record 2 (row group 1): invalid UTF-8 at byte 1"],
    skipped: "invalid UTF-8",
  },
  {
    name: "a parquet file whose text column is not text",
    file: "b.parquet",
    content: parquetBytes({ completion: [1, 2, 3] }),
    error: ["b.parquet: column 'completion' holds Int32, not strings"],
    skipped: "file",
  },
  {
    name: "a parquet file without the text column lists its columns",
    file: "b.parquet",
    content: parquetBytes({ text: ["a"], url: ["u"] }),
    error: ["b.parquet: no column 'completion' (it has text, url; see --text-field)"],
    skipped: "file",
  },
  {
    name: "a truncated parquet file",
    file: "b.parquet",
    content: parquetBytes({ completion: ["a", "b", "c"] }).slice(0, 40),
    error: ["b.parquet: not a readable parquet file"],
    skipped: "file",
  },
  {
    name: "a parquet file with damaged data pages",
    file: "b.parquet",
    content: (() => {
      const b = parquetBytes(
        { completion: Array.from({ length: 64 }, (_, i) => `row ${i} text`) },
        16,
      );
      for (let i = 4; i < 200; i++) b[i] = 7;
      return b;
    })(),
    error: [/b\.parquet: (row group \d+|not a readable parquet file)/],
    skipped: "file",
  },
];

for (const c of CASES) {
  Deno.test(`gen bad input: ${c.name}`, async () => {
    const [dir] = await withBad(c.file, c.content);
    try {
      const r = await runGen(["-i", `${dir}/in`, "-o", `${dir}/out`, ...FAST, ...(c.extra ?? [])]);
      assertOneLineError(r, c.error);
      if (c.skipped !== "file") assert(r.stderr.includes("--skip-bad"), "hint at --skip-bad");
      // Nothing that looks complete was written.
      assert(!(await exists(`${dir}/out/manifest.json`)));

      const s = await runGen([
        "-i",
        `${dir}/in`,
        "-o",
        `${dir}/out`,
        ...FAST,
        "--skip-bad",
        ...(c.extra ?? []),
      ]);
      assertEquals(s.code, 0, s.stderr);
      const m = JSON.parse(await Deno.readTextFile(`${dir}/out/manifest.json`));
      if (c.skipped === "file") {
        assertEquals(m.skipped.files, 1);
        assert(m.sources.some((x: { error?: string }) => x.error?.includes(c.file)));
      } else {
        assertEquals(m.skipped.records, 1);
        assertEquals(m.skipped.byReason, { [c.skipped]: 1 });
      }
      assert(m.splits.train.documents + m.splits.val.documents >= 2, "the good documents");
      assert(s.stdout.includes("skipped"), `summary mentions skips: ${s.stdout}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("gen bad input: a missing input folder", async () => {
  const dir = await tempDir();
  try {
    const r = await runGen(["-i", `${dir}/nothing`, "-o", `${dir}/out`, ...FAST]);
    assertOneLineError(r, [`input '${dir}/nothing' does not exist`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen bad input: an input folder with no corpus files", async () => {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir}/in`);
    await Deno.writeTextFile(`${dir}/in/notes.csv`, "a,b");
    const r = await runGen(["-i", `${dir}/in`, "-o", `${dir}/out`, ...FAST]);
    assertOneLineError(r, [`input folder '${dir}/in' has no .json`, "notes.csv"]);
    await Deno.remove(`${dir}/in/notes.csv`);
    assertOneLineError(await runGen(["-i", `${dir}/in`, ...FAST]), ["it is empty"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen bad input: an unreadable file (a dangling link)", async () => {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir}/in`);
    await writeJsonl(`${dir}/in/a.jsonl`, ["one document", "another document"]);
    await Deno.symlink(`${dir}/gone.json`, `${dir}/in/b.json`);
    const r = await runGen(["-i", `${dir}/in`, "-o", `${dir}/out`, ...FAST]);
    assertOneLineError(r, [`${dir}/in/b.json: cannot read`]);
    const s = await runGen(["-i", `${dir}/in`, "-o", `${dir}/out`, ...FAST, "--skip-bad"]);
    assertEquals(s.code, 0, s.stderr);
    const m = JSON.parse(await Deno.readTextFile(`${dir}/out/manifest.json`));
    assertEquals(m.skipped.files, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen bad input: --skip-bad counts every kind in one run, and warns", async () => {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir}/in`);
    await writeJsonArray(`${dir}/in/a.json`, ["good one", "good two"]);
    await Deno.writeTextFile(
      `${dir}/in/b.jsonl`,
      [
        '{"completion": "good three"}',
        '{"completion": ""}',
        '{"text": "x"}',
        '{"completion": null}',
        "{broken",
        '{"completion": "good four"}',
      ].join("\n"),
    );
    await writeParquet(`${dir}/in/c.parquet`, ["good five"]);
    const r = await runGen([
      "-i",
      `${dir}/in`,
      "-o",
      `${dir}/out`,
      ...FAST.slice(0, -1),
      "--skip-bad",
    ]);
    assertEquals(r.code, 0, r.stderr);
    const m = JSON.parse(await Deno.readTextFile(`${dir}/out/manifest.json`));
    assertEquals(m.skipped.records, 4);
    assertEquals(m.skipped.byReason, {
      "empty document": 1,
      "missing field": 1,
      "not a string": 1,
      "invalid JSON": 1,
    });
    assertEquals(m.splits.train.documents + m.splits.val.documents, 5);
    assertEquals(m.skipped.examples.length, 4);
    assertEquals(r.stderr.split("\n").filter((l) => l.startsWith("warning: skipped")).length, 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen bad input: a wrong --text-field for every record, even with --skip-bad", async () => {
  const dir = await tempDir();
  try {
    await writeJsonArray(`${dir}/a.json`, ["one", "two"], "text");
    const r = await runGen(["-i", `${dir}/a.json`, "-o", `${dir}/out`, ...FAST, "--skip-bad"]);
    assertOneLineError(r, ["no documents found", "no field 'completion' (it has text, source"]);
    const ok = await runGen([
      "-i",
      `${dir}/a.json`,
      "-o",
      `${dir}/out`,
      ...FAST,
      "--text-field",
      "text",
    ]);
    assertEquals(ok.code, 0, ok.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen usage errors exit 2; a bad tokenizer path exits 1", async () => {
  assertOneLineError(await runGen(["--frobnicate"]), ["gen: unknown option '--frobnicate'"], 2);
  assertOneLineError(
    await runGen(["--seq-len", "many"]),
    ["--seq-len 'many': expected an integer"],
    2,
  );
  assertOneLineError(await runGen(["--val-fraction", "1.5"]), ["--val-fraction"], 2);
  const dir = await tempDir();
  try {
    await writeJsonl(`${dir}/a.jsonl`, ["one"]);
    const r = await runGen([
      "-i",
      `${dir}/a.jsonl`,
      "-o",
      `${dir}/out`,
      "--tokenizer",
      `${dir}/no.json`,
    ]);
    assertOneLineError(r, [`tokenizer '${dir}/no.json': no such file`]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen --help shows the options and examples", async () => {
  const r = await runGen(["--help"]);
  assertEquals(r.code, 0);
  for (
    const s of ["--input", "--tokenizer", "--seq-len", "--skip-bad", "Examples:", "deno task gen"]
  ) {
    assert(r.stdout.includes(s), s);
  }
});

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.stat(p);
    return true;
  } catch {
    return false;
  }
}
