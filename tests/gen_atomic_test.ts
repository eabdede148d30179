/**
 * gen writes atomically: a run that fails or is interrupted leaves the previous complete
 * output untouched (or, when there was none, nothing that looks complete), and no temporary
 * files; a temporary folder left by a killed run is cleaned up by the next one.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ShardReader } from "../src/data/shards.ts";
import { manyDocs, runGen, tempDir, writeJsonl } from "./gen_fixtures.ts";

const FAST = ["--tokenizer", "bytes", "--seq-len", "16", "--workers", "1", "--quiet"];

async function snapshot(dir: string): Promise<Record<string, Uint8Array>> {
  const out: Record<string, Uint8Array> = {};
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile) out[e.name] = await Deno.readFile(`${dir}/${e.name}`);
    else out[e.name + "/"] = new Uint8Array();
  }
  return out;
}

Deno.test("gen atomic: a failed run keeps the previous output byte for byte", async () => {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir}/out`);
    await Deno.writeTextFile(`${dir}/out/README.md`, "kept: not written by gen");
    await writeJsonl(`${dir}/good.jsonl`, manyDocs(50));
    assertEquals((await runGen(["-i", `${dir}/good.jsonl`, "-o", `${dir}/out`, ...FAST])).code, 0);
    const before = await snapshot(`${dir}/out`);
    assert("manifest.json" in before && "README.md" in before);
    // The bad record comes after many good ones: the run fails midway.
    await Deno.writeTextFile(
      `${dir}/bad.jsonl`,
      [...manyDocs(40).map((d) => JSON.stringify({ completion: d })), "{oops"].join("\n"),
    );
    const r = await runGen(["-i", `${dir}/bad.jsonl`, "-o", `${dir}/out`, ...FAST]);
    assertEquals(r.code, 1);
    assertEquals(await snapshot(`${dir}/out`), before);
    // A good run replaces it, and leaves the other file alone.
    await writeJsonl(`${dir}/other.jsonl`, manyDocs(20));
    assertEquals((await runGen(["-i", `${dir}/other.jsonl`, "-o", `${dir}/out`, ...FAST])).code, 0);
    const after = await snapshot(`${dir}/out`);
    assertEquals(after["README.md"], before["README.md"]);
    assert(JSON.stringify(after) !== JSON.stringify(before));
    using r2 = await ShardReader.open(`${dir}/out`, "train");
    assertEquals(r2.manifest.sources[0].path, `${dir}/other.jsonl`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen atomic: an interrupted run (SIGINT) keeps the previous output", async () => {
  const dir = await tempDir();
  try {
    await writeJsonl(`${dir}/small.jsonl`, manyDocs(30));
    assertEquals((await runGen(["-i", `${dir}/small.jsonl`, "-o", `${dir}/out`, ...FAST])).code, 0);
    const before = await snapshot(`${dir}/out`);
    // Enough Qwen work to outlast the signal: a few MB of mixed text.
    const big = manyDocs(400).map((d) => d.repeat(40));
    await writeJsonl(`${dir}/big.jsonl`, big);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../main.ts", import.meta.url).pathname,
        "gen",
        "-i",
        `${dir}/big.jsonl`,
        "-o",
        `${dir}/out`,
        "--workers",
        "1",
        "--quiet",
      ],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    // Wait until it is writing (its temporary folder exists), then interrupt it.
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const names = (await Array.fromAsync(Deno.readDir(`${dir}/out`))).map((e) => e.name);
      if (names.some((n) => n.startsWith(".gen-"))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 300));
    child.kill("SIGINT");
    const out = await child.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 130, stderr);
    assert(stderr.includes("interrupted"), stderr);
    assertEquals(await snapshot(`${dir}/out`), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen atomic: a failure with no previous output leaves no manifest and no shards", async () => {
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad.jsonl`, '{"completion": "one"}\n{"completion": 2}\n');
    const r = await runGen(["-i", `${dir}/bad.jsonl`, "-o", `${dir}/out`, ...FAST]);
    assertEquals(r.code, 1);
    const left = await Array.fromAsync(Deno.readDir(`${dir}/out`)).catch(() => []);
    assertEquals(left.map((e) => e.name), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gen atomic: a temporary folder left by a killed run is removed by the next run", async () => {
  const dir = await tempDir();
  try {
    await writeJsonl(`${dir}/a.jsonl`, manyDocs(20));
    // A pid that cannot be running (above Linux's pid_max).
    await Deno.mkdir(`${dir}/out/.gen-99999999-abc.tmp`, { recursive: true });
    await Deno.writeTextFile(`${dir}/out/.gen-99999999-abc.tmp/train.spill`, "x");
    assertEquals((await runGen(["-i", `${dir}/a.jsonl`, "-o", `${dir}/out`, ...FAST])).code, 0);
    const names = (await Array.fromAsync(Deno.readDir(`${dir}/out`))).map((e) => e.name);
    assert(names.includes("manifest.json"));
    assertEquals(names.filter((n) => n.startsWith(".")), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
