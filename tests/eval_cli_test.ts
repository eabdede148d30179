/**
 * `eval` and `generate` through the real command line: results written where they say, and
 * a missing, truncated or mismatched checkpoint is a one-line error with exit code 1.
 */
import { equal, match, ok } from "node:assert/strict";
import { saveCheckpoint } from "../src/model/checkpoint.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import { initParams, paramTable } from "../src/model/params.ts";
import { cli } from "./_cli.ts";
import { gpuTest } from "./_gpu.ts";

/** A tiny checkpoint (segments of 64 bytes) in a fresh folder. */
async function makeCheckpoint(): Promise<{ dir: string; ck: string }> {
  const dir = await Deno.makeTempDir({ prefix: "infini-evalcli-" });
  const cfg = resolveConfig("tiny", ["segmentLength=64", "seqLength=128"]);
  await saveCheckpoint(`${dir}/run/checkpoint`, cfg, initParams(paramTable(cfg), cfg, 1), {
    tokenizer: "bytes",
  });
  return { dir, ck: `${dir}/run` };
}

gpuTest(
  "eval cli: passkey, ppl and generate run on a run folder and write their results",
  async () => {
    const { dir, ck } = await makeCheckpoint();
    try {
      const pk = await cli(
        "eval",
        "passkey",
        "--checkpoint",
        ck,
        "--segments",
        "2,3",
        "--depths",
        "0.5",
        "--trials",
        "2",
        "--batch",
        "2",
        "--out",
        `${dir}/pk`,
      );
      equal(pk.code, 0, pk.stderr);
      match(pk.stdout, /exact match \(2 held-out samples per cell/);
      const res = JSON.parse(await Deno.readTextFile(`${dir}/pk/results.json`));
      // 2 lengths x (1 depth + control) x 2 variants.
      equal(res.cells.length, 8);
      match(await Deno.readTextFile(`${dir}/pk/passkey.svg`), /^<svg/);
      // Progress reaches a log too (stderr is not a terminal here): at least a line per cell.
      for (let c = 1; c <= 8; c++) {
        match(pk.stderr, new RegExp(`eval passkey: cell ${c}/8 \\(\\d segments, .*chunk 1/1`));
      }

      // The same weights streamed in segments of 80 bytes: lengths count those segments.
      const pk80 = await cli(
        "eval",
        "passkey",
        "--checkpoint",
        ck,
        "--segment-length",
        "80",
        "--segments",
        "3",
        "--depths",
        "0.5",
        "--trials",
        "2",
        "--variants",
        "memory",
        "--json",
        "--out",
        `${dir}/pk80`,
      );
      equal(pk80.code, 0, pk80.stderr);
      const r80 = JSON.parse(pk80.stdout);
      equal(r80.segmentLength, 80);
      // 1 depth + the control, each 3 segments of 80 bytes.
      equal(r80.cells.length, 2);
      ok(r80.cells.every((c: { tokens: number }) => c.tokens === 240), pk80.stdout);
      const bad = await cli("eval", "passkey", "--checkpoint", ck, "--segment-length", "0");
      equal(bad.code, 2, bad.stderr);
      match(bad.stderr, /--segment-length '0'/);

      await Deno.writeTextFile(`${dir}/doc.txt`, "The grass is green. ".repeat(20));
      const ppl = await cli(
        "eval",
        "ppl",
        "--checkpoint",
        ck,
        "--text",
        `${dir}/doc.txt`,
        "--out",
        `${dir}/ppl`,
        "--json",
      );
      equal(ppl.code, 0, ppl.stderr);
      const r = JSON.parse(ppl.stdout);
      equal(r.tokens, 399);
      equal(r.variants.length, 4);
      // Each variant's long-range and other targets, which add up to all of them.
      for (const v of r.variants) {
        equal(v.longRange.tokens + v.rest.tokens, v.tokens);
        ok(Number.isFinite(v.rest.nll));
      }
      equal(r.variants[0].perSegment.length, 7); // 400 bytes in segments of 64
      ok(r.variants.every((v: { nll: number }) => v.nll > 0 && Number.isFinite(v.nll)));
      match(await Deno.readTextFile(`${dir}/ppl/nll_per_segment.svg`), /^<svg/);
      match(await Deno.readTextFile(`${dir}/ppl/nll_gap_per_segment.svg`), /NLL minus memory on/);

      // The same document in segments of 32 bytes.
      const ppl32 = await cli(
        "eval",
        "ppl",
        "--checkpoint",
        ck,
        "--text",
        `${dir}/doc.txt`,
        "--segment-length",
        "32",
        "--variants",
        "memory",
        "--out",
        `${dir}/ppl32`,
        "--json",
      );
      equal(ppl32.code, 0, ppl32.stderr);
      const r32 = JSON.parse(ppl32.stdout);
      equal(r32.segmentLength, 32);
      equal(r32.variants[0].perSegment.length, 13);

      // Token shards from gen (byte tokens, sequences of 256 = 4 segments), validation split.
      const docs = Array.from(
        { length: 40 },
        (_, i) =>
          JSON.stringify({
            completion: `Document ${i}: ` + "the grass is green and the sky is blue. ".repeat(4),
          }),
      );
      await Deno.writeTextFile(`${dir}/corpus.jsonl`, docs.join("\n") + "\n");
      const gen = await cli(
        "gen",
        "-i",
        `${dir}/corpus.jsonl`,
        "-o",
        `${dir}/shards`,
        "--tokenizer",
        "bytes",
        "--seq-len",
        "256",
        "--val-fraction",
        "0.3",
        "--quiet",
      );
      equal(gen.code, 0, gen.stderr);
      const sh = await cli(
        "eval",
        "ppl",
        "--checkpoint",
        ck,
        "--data",
        `${dir}/shards`,
        "--json",
        "--out",
        `${dir}/ppl2`,
      );
      equal(sh.code, 0, sh.stderr);
      const rs = JSON.parse(sh.stdout);
      ok(
        rs.documents >= 1 && rs.tokens === rs.documents * 255,
        `${rs.documents} docs, ${rs.tokens} tokens`,
      );
      equal(rs.variants[0].perSegment.length, 4);

      const g = await cli(
        "generate",
        "--checkpoint",
        ck,
        "--prompt",
        "The grass is green. ".repeat(8),
        "--max-tokens",
        "5",
        "--temperature",
        "0",
        "--no-stop",
      );
      equal(g.code, 0, g.stderr);
      match(g.stderr, /160 prompt tokens \(2 segments in memory\), 5 new tokens/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("eval cli: a missing, truncated or mismatched checkpoint is a one-line error (exit 1)", async () => {
  const { dir, ck } = await makeCheckpoint();
  try {
    const check = async (path: string, want: RegExp) => {
      for (const args of [["eval", "passkey"], ["generate", "--prompt", "hi"]]) {
        const r = await cli(...args, "--checkpoint", path);
        equal(r.code, 1, `${args[0]} on ${path}: ${r.stderr}`);
        match(r.stderr, want);
        equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      }
    };
    await check(`${dir}/nowhere`, /nowhere: no such checkpoint folder/);
    await check(dir, /not a checkpoint/);
    const model = `${ck}/checkpoint/model.safetensors`;
    const bytes = await Deno.readFile(model);
    await Deno.writeFile(model, bytes.subarray(0, bytes.length - 100));
    await check(ck, /model\.safetensors/);
    await Deno.writeFile(model, bytes);
    const cfgPath = `${ck}/checkpoint/config.json`;
    const cfg = JSON.parse(await Deno.readTextFile(cfgPath));
    cfg.hidden_size = 32;
    await Deno.writeTextFile(cfgPath, JSON.stringify(cfg));
    await check(ck, /model\.safetensors.*(shape|hidden|\[)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("passkey table: every header is its own column, every row has one value per header", async () => {
  const { passkeyTable } = await import("../src/cli/eval.ts");
  const variants = ["memory", "off", "zero-read"] as const;
  const cells = [4, 1024].flatMap((segments) =>
    [0, 0.5, 1].flatMap((depth) =>
      variants.map((variant, i) => ({
        segments,
        tokens: segments * 32,
        depth,
        variant,
        correct: i,
        trials: 67,
        accuracy: i / 67,
      }))
    )
  );
  const lines = passkeyTable({ segmentLength: 32, trials: 67, seed: 1, cells, seconds: 1 })
    .split("\n");
  // Headers are "d=0 on", "d=0.5 zero-read", ...: two words each after "segments tokens".
  const heads = lines[1].trim().split(/\s{2,}/);
  equal(heads.length, 2 + 9);
  equal(heads[4], "d=0 zero-read");
  equal(heads[10], "d=1 zero-read");
  for (const row of lines.slice(2)) {
    const f = row.trim().split(/\s+/);
    equal(f.length, 2 + 9);
    equal(f[4], (2 / 67).toFixed(3));
    // Right-aligned: each value ends where its header ends.
    equal(row.length, lines[1].length);
  }
});
