/** `eval`: long-context perplexity and passkey retrieval, memory on and off, streaming. */
import { ShardReader, type Split } from "../data/shards.ts";
import { Runtime } from "../gpu/runtime.ts";
import { checkpointTokenizer } from "../eval/load.ts";
import { openCheckpoint } from "../model/checkpoint.ts";
import { cloneConfig, type ModelConfig, validateConfig } from "../model/config.ts";
import { evalPasskey, type PasskeyResult } from "../eval/passkey.ts";
import { evalPerplexity, type PplResult, type PplVariantResult } from "../eval/ppl.ts";
import {
  nextTokenTargets,
  type Sequence,
  Streamer,
  type Variant,
  VARIANT_HELP,
  VARIANTS,
} from "../eval/stream.ts";
import { writeFileAtomic } from "../util/files.ts";
import { heatMap, lineChart, type Series } from "../ui/svg.ts";
import { StatusLine } from "../ui/status.ts";
import { duration } from "../data/progress.ts";
import { readUserText, UsageError, UserError } from "../util/errors.ts";
import {
  choiceFlag,
  intFlag,
  LIMIT_HELP,
  LIMIT_OPTION,
  limitFlags,
  listFlag,
  parseCommand,
} from "./flags.ts";
import { SUMMARIES } from "./summaries.ts";

const HELP = `infini eval: ${SUMMARIES.eval}

Usage: infini eval ppl --checkpoint DIR (--data DIR | --text FILE...) [options]
       infini eval passkey --checkpoint DIR [options]

Both stream their input segment by segment with the memory (M, z) carried, so GPU memory
does not grow with the length. DIR is a checkpoint folder or a run folder from 'train'.

eval ppl: token-weighted NLL and perplexity, and the NLL per segment index, for
  memory      ${VARIANT_HELP.memory}
  off         ${VARIANT_HELP.off}
  zero-read   ${VARIANT_HELP["zero-read"]}
  reset       ${VARIANT_HELP.reset}
  --data DIR             token shards from 'gen' (each sequence scored as one document)
  --split val|train      which split of --data (default val)
  --text FILE...         raw UTF-8 files, one document each, tokenized with the checkpoint's
                         tokenizer (repeat the flag or list files after it)
  --tokenizer SPEC       override the checkpoint's tokenizer (bytes, qwen, tokenizer.json)
  --max-docs N           score at most N documents (default 64)
  --max-tokens N         cut each document to N tokens (default: whole)

eval passkey: exact match of the 5-digit key (greedy answer) on a grid of lengths x depths
  --segments LIST        total lengths in segments (default: 1x, 4x and 16x the training
                         length, e.g. 4,16,64)
  --lengths LIST         total lengths in tokens instead (rounded up to whole segments)
  --depths LIST          key depths in [0, 1] (default 0,0.5,1; 1 = latest before the
                         last segment)
  --trials N             samples per cell, held-out keys (default 20)
  --seed N               samples are a function of the seed (default 1)
  --no-control           skip the control (key in the final segment)

Common:
  --variants LIST        which of memory,off,zero-read,reset (ppl default: all four;
                         passkey default: memory,off)
  --batch B              sequences scored side by side (default 8)
  --chunk K              segments per GPU call (default 4); memory is carried between calls
  --segment-length S     stream segments of S tokens instead of the checkpoint's (no weight
                         depends on it; lengths in segments then count segments of S)
  --out DIR              write results.json and the SVG plot there (default runs/eval-ppl or
                         runs/eval-passkey)
  --json                 print the results as JSON on stdout instead of a table
${LIMIT_HELP}
  -h, --help             this help

Examples:
  deno task eval ppl --checkpoint runs/mini --data train_datasets
  deno task eval ppl --checkpoint runs/mini --text book.txt --max-tokens 65536
  deno task eval passkey --checkpoint runs/demo --segments 4,16,64 --trials 50
  deno task eval passkey --checkpoint runs/demo --lengths 1024,4096 --variants memory,off,zero-read`;

function parseVariants(v: string | undefined, def: Variant[]): Variant[] {
  if (v === undefined) return def;
  const out = v.split(",").map((s) => s.trim()).filter(Boolean);
  for (const x of out) {
    if (!VARIANTS.includes(x as Variant)) {
      throw new UsageError(
        `--variants: unknown variant '${x}' (choose from ${VARIANTS.join(", ")})`,
      );
    }
  }
  if (!out.length) throw new UsageError("--variants: empty list");
  return out as Variant[];
}

/**
 * The checkpoint's config streamed in segments of `flag` tokens: the same number of segments
 * per training sequence, so that the default passkey lengths stay 1x, 4x and 16x of it.
 */
function withSegmentLength(cfg: Readonly<ModelConfig>, flag: string | undefined): ModelConfig {
  const out = cloneConfig(cfg);
  if (flag === undefined) return out;
  const S = intFlag("segment-length", flag, cfg.segmentLength);
  out.seqLength = (cfg.seqLength / cfg.segmentLength) * S;
  out.segmentLength = S;
  validateConfig(out);
  return out;
}

const COMMON_OPTIONS = {
  checkpoint: { type: "string" },
  variants: { type: "string" },
  batch: { type: "string" },
  chunk: { type: "string" },
  "segment-length": { type: "string" },
  out: { type: "string" },
  json: { type: "boolean" },
  ...LIMIT_OPTION,
} as const;
const PPL_OPTIONS = {
  data: { type: "string" },
  split: { type: "string" },
  text: { type: "string", multiple: true },
  tokenizer: { type: "string" },
  "max-docs": { type: "string" },
  "max-tokens": { type: "string" },
} as const;
const PASSKEY_OPTIONS = {
  segments: { type: "string" },
  lengths: { type: "string" },
  depths: { type: "string" },
  trials: { type: "string" },
  seed: { type: "string" },
  "no-control": { type: "boolean" },
} as const;

export async function run(args: string[]): Promise<number> {
  const sub = args[0];
  if (sub === undefined || sub === "-h" || sub === "--help") {
    console.log(HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== "ppl" && sub !== "passkey") {
    throw new UsageError(`eval: unknown subcommand '${sub}' (ppl or passkey; see 'eval --help')`);
  }
  const ppl = sub === "ppl";
  const parsed = parseCommand({
    name: `eval ${sub}`,
    help: HELP,
    options: { ...COMMON_OPTIONS, ...PPL_OPTIONS, ...PASSKEY_OPTIONS },
    positionals: ppl,
    elsewhere: Object.fromEntries(
      Object.keys(ppl ? PASSKEY_OPTIONS : PPL_OPTIONS).map((
        k,
      ) => [k, `eval ${ppl ? "passkey" : "ppl"}`]),
    ),
  }, args.slice(1));
  if (!parsed) return 0;
  const { values, positionals } = parsed;
  if (!values.checkpoint) throw new UsageError(`eval ${sub}: --checkpoint DIR is required`);
  const limits = limitFlags(values.limit);
  const batch = intFlag("batch", values.batch, 8);
  const chunk = intFlag("chunk", values.chunk, 4);
  const out = values.out ?? `runs/eval-${sub}`;
  const ck = await openCheckpoint(values.checkpoint);
  const cfg = withSegmentLength(ck.config, values["segment-length"]);
  const log = (s: string) => {
    if (!values.json) console.log(s);
  };
  const status = new StatusLine({ mode: values.json ? "off" : undefined });
  const t0 = performance.now();
  const elapsed = () => duration((performance.now() - t0) / 1000);

  if (sub === "ppl") {
    const variants = parseVariants(values.variants, [...VARIANTS]);
    const maxDocs = intFlag("max-docs", values["max-docs"], 64);
    const maxTokens = intFlag("max-tokens", values["max-tokens"], Number.MAX_SAFE_INTEGER, 2);
    const texts = [...(values.text ?? []), ...positionals];
    if (!values.data === !texts.length) {
      throw new UsageError("eval ppl: give either --data DIR or --text FILE... (one of them)");
    }
    const docs: (Sequence & { name: string })[] = [];
    if (values.data) {
      const split: Split = choiceFlag("split", values.split, ["val", "train"], "val");
      const r = await ShardReader.open(values.data, split);
      try {
        if (r.vocabSize > cfg.vocabSize) {
          throw new UserError(
            `${values.data}: shards use ${r.vocabSize} tokens, the checkpoint's vocabulary is ${cfg.vocabSize}`,
          );
        }
        if (r.numSequences === 0) {
          throw new UserError(`${values.data}: the ${split} split is empty`);
        }
        for (let i = 0; i < Math.min(maxDocs, r.numSequences); i++) {
          const tokens = r.sequence(i).slice(0, maxTokens);
          docs.push({ name: `${split}[${i}]`, tokens, targets: nextTokenTargets(tokens) });
        }
      } finally {
        r.close();
      }
    } else {
      const tok = await checkpointTokenizer(ck, values.tokenizer);
      for (const f of texts.slice(0, maxDocs)) {
        const text = await readUserText(f);
        const tokens = Uint32Array.from(tok.encode(text)).slice(0, maxTokens);
        if (tokens.length < 2) throw new UserError(`${f}: fewer than 2 tokens, nothing to score`);
        docs.push({ name: f, tokens, targets: nextTokenTargets(tokens) });
      }
    }
    const rt = await Runtime.create({ limits });
    const streamer = await Streamer.create(rt, cfg, ck.params, { batch, chunkSegments: chunk });
    const nTok = docs.reduce((s, d) => s + d.tokens.length, 0);
    log(
      `eval ppl: ${docs.length} documents, ${nTok} tokens (longest ${
        Math.max(...docs.map((d) => d.tokens.length))
      }), segment ${cfg.segmentLength}, ${rt.describe()}`,
    );
    const res = await evalPerplexity(
      streamer,
      docs,
      variants,
      (v, d, n) => status.update(`eval ppl: ${v}: chunk ${d}/${n}, ${elapsed()}`, d === 1),
    );
    status.done();
    await writeResults(out, "results.json", res);
    const enc = new TextEncoder();
    await writeFileAtomic(`${out}/nll_per_segment.svg`, [enc.encode(pplPlot(res))]);
    const gap = variants.includes("memory") && variants.length > 1;
    if (gap) await writeFileAtomic(`${out}/nll_gap_per_segment.svg`, [enc.encode(gapPlot(res))]);
    if (values.json) console.log(JSON.stringify(res, null, 2));
    else {
      console.log(pplTable(res));
      console.log(
        `\nwrote ${out}/results.json, ${out}/nll_per_segment.svg${
          gap ? ` and ${out}/nll_gap_per_segment.svg` : ""
        }`,
      );
    }
    rt.destroy();
    return 0;
  }

  // passkey
  if (cfg.vocabSize < 256) {
    throw new UserError(
      `the passkey task needs byte tokens; this checkpoint's vocabulary is ${cfg.vocabSize}`,
    );
  }
  const S = cfg.segmentLength, nTrain = cfg.seqLength / S;
  if (values.segments && values.lengths) {
    throw new UsageError("eval passkey: --segments or --lengths, not both");
  }
  const segments = listFlag("segments", values.segments, true) ??
    listFlag("lengths", values.lengths, true)?.map((t) => Math.ceil(t / S)) ??
    [nTrain, 4 * nTrain, 16 * nTrain];
  const depths = listFlag("depths", values.depths, false) ?? [0, 0.5, 1];
  if (depths.some((d) => d < 0 || d > 1)) {
    throw new UsageError(`--depths: every depth must be in [0, 1]`);
  }
  const grid = {
    segments,
    depths,
    trials: intFlag("trials", values.trials, 20),
    seed: intFlag("seed", values.seed, 1, 0),
    variants: parseVariants(values.variants, ["memory", "off"]),
    control: !values["no-control"],
  };
  const rt = await Runtime.create({ limits });
  const streamer = await Streamer.create(rt, cfg, ck.params, { batch, chunkSegments: chunk });
  log(
    `eval passkey: lengths ${segments.join(", ")} segments of ${S}, depths ${
      depths.join(", ")
    }, ${grid.trials} trials per cell, ${rt.describe()}`,
  );
  let res: PasskeyResult;
  try {
    res = await evalPasskey(streamer, grid, undefined, (p) =>
      status.update(
        `eval passkey: cell ${p.cell}/${p.cells} (${p.segments} segments, ${
          p.depth === "control" ? "control" : `depth ${p.depth}`
        }, ${p.variant}): chunk ${p.chunk}/${p.chunks}, ${elapsed()}`,
        p.chunk === 1,
      ));
  } catch (e) {
    if (e instanceof RangeError) throw new UserError(`eval passkey: ${e.message}`);
    throw e;
  }
  status.done();
  await writeResults(out, "results.json", res);
  await writeFileAtomic(`${out}/passkey.svg`, [new TextEncoder().encode(passkeyHeatMap(res))]);
  if (values.json) console.log(JSON.stringify(res, null, 2));
  else {
    console.log(passkeyTable(res));
    if (res.controlSkipped) console.log(`control skipped: ${res.controlSkipped}`);
    console.log(`\nwrote ${out}/results.json and ${out}/passkey.svg`);
  }
  rt.destroy();
  return 0;
}

async function writeResults(dir: string, name: string, res: unknown): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await writeFileAtomic(`${dir}/${name}`, [
    new TextEncoder().encode(JSON.stringify(res, null, 2) + "\n"),
  ]);
}

/**
 * The side-by-side table of `eval ppl`: all targets, then the long-range ones (a trigram seen
 * only in earlier segments: what only the memory can help with) and the rest.
 */
export function pplTable(r: PplResult): string {
  const f = (x: number) => (Number.isNaN(x) ? "-" : x.toFixed(4)).padStart(10);
  const lines = [
    `variant      NLL (nats)   perplexity   tokens    seconds   (${r.documents} documents)`,
  ];
  for (const v of r.variants) {
    lines.push(
      `${v.variant.padEnd(12)} ${v.nll.toFixed(4).padStart(10)}   ${
        v.ppl.toFixed(3).padStart(10)
      }   ${String(v.tokens).padStart(7)}   ${v.seconds.toFixed(1).padStart(7)}`,
    );
  }
  const lr = r.variants[0]?.longRange.tokens ?? 0;
  lines.push(
    "",
    `long-range targets (trigram seen only in earlier segments): ${lr} of ${r.tokens}`,
    `variant      long-range NLL   other NLL`,
  );
  for (const v of r.variants) {
    lines.push(`${v.variant.padEnd(12)} ${f(v.longRange.nll)}      ${f(v.rest.nll)}`);
  }
  const segs = r.variants[0]?.perSegment ?? [];
  if (segs.length > 1) {
    lines.push(
      "",
      `NLL per segment index (segment = ${r.segmentLength} tokens), all targets | long-range:`,
    );
    lines.push(
      `segment  ${r.variants.map((v) => v.variant.padStart(10)).join(" ")}   tokens |${
        r.variants.map((v) => v.variant.padStart(10)).join(" ")
      }   tokens`,
    );
    const show = segs.length <= 16 ? segs.map((_, i) => i) : pickIndices(segs.length, 16);
    for (const i of show) {
      lines.push(
        `${String(segs[i].segment).padStart(7)}  ${
          r.variants.map((v) => f(v.perSegment[i]?.nll ?? NaN)).join(" ")
        }   ${String(segs[i].tokens).padStart(6)} |${
          r.variants.map((v) => f(v.perSegment[i]?.longRange.nll ?? NaN)).join(" ")
        }   ${segs[i].longRange.tokens}`,
      );
    }
  }
  return lines.join("\n");
}

function pickIndices(n: number, k: number): number[] {
  const s = new Set<number>();
  for (let i = 0; i < k; i++) s.add(Math.round((i * (n - 1)) / (k - 1)));
  return [...s];
}

/** NLL per segment index: per variant one line over all targets, one over long-range ones. */
export function pplPlot(r: PplResult): string {
  return lineChart({
    title: `NLL per segment index (segment = ${r.segmentLength} tokens)`,
    xLabel: "segment index",
    yLabel: "NLL (nats/token)",
    series: r.variants.flatMap((v) => [
      {
        name: v.variant,
        points: v.perSegment.map((p) => [p.segment, p.nll] as [number, number]),
      },
      {
        name: `${v.variant}, long-range`,
        points: v.perSegment.filter((p) => p.longRange.tokens > 0)
          .map((p) => [p.segment, p.longRange.nll] as [number, number]),
      },
    ]),
  });
}

/** Most points a gap line gets: windows of segments are widened to stay under it. */
const GAP_POINTS = 60;

/**
 * Each variant's NLL minus memory on's, token-weighted over windows of `window` consecutive
 * segment indices (a window's x is its first index), over all targets and over long-range ones.
 * A window where either side has no targets gets no point. Empty without a "memory" variant.
 */
export function gapSeries(r: PplResult, window: number): Series[] {
  const mem = r.variants.find((v) => v.variant === "memory");
  if (!mem) return [];
  const windowed = (ps: { segment: number; tokens: number; nll: number }[]) => {
    const acc = new Map<number, { t: number; s: number }>();
    for (const p of ps) {
      if (!(p.tokens > 0)) continue;
      const w = Math.floor(p.segment / window) * window;
      const a = acc.get(w) ?? { t: 0, s: 0 };
      a.t += p.tokens;
      a.s += p.tokens * p.nll;
      acc.set(w, a);
    }
    return new Map([...acc].map(([w, a]) => [w, a.s / a.t]));
  };
  const all = (v: PplVariantResult) => windowed(v.perSegment);
  const lr = (v: PplVariantResult) =>
    windowed(v.perSegment.map((p) => ({ segment: p.segment, ...p.longRange })));
  const series: Series[] = [];
  for (const v of r.variants.filter((v) => v !== mem)) {
    for (const [name, f] of [[v.variant, all], [`${v.variant}, long-range`, lr]] as const) {
      const base = f(mem), mine = f(v);
      series.push({
        name,
        points: [...mine].filter(([w]) => base.has(w)).map(([w, x]) =>
          [w, x - base.get(w)!] as [number, number]
        ),
      });
    }
  }
  return series;
}

/** What the memory buys per depth: each variant's NLL minus memory on's, per window of segments. */
export function gapPlot(r: PplResult): string {
  const n = Math.max(0, ...r.variants.flatMap((v) => v.perSegment.map((p) => p.segment))) + 1;
  const window = Math.max(1, Math.ceil(n / GAP_POINTS));
  return lineChart({
    title: `NLL minus memory on, per ${
      window === 1 ? "segment" : `${window} segments`
    } (segment = ${r.segmentLength} tokens)`,
    xLabel: "segment index",
    yLabel: "NLL - memory on (nats/token)",
    series: gapSeries(r, window),
  });
}

function depthLabel(d: number | "control"): string {
  return d === "control" ? "control" : `depth ${d}`;
}

/** Rows: length; columns: depth x variant. */
export function passkeyTable(r: PasskeyResult): string {
  const lengths = [...new Set(r.cells.map((c) => c.segments))];
  const cols = [...new Set(r.cells.map((c) => `${depthLabel(c.depth)}|${c.variant}`))];
  const short = (c: string) =>
    c.replace("depth ", "d=").replace("|memory", " on").replace("|", " ").replace(
      "control",
      "ctrl",
    );
  // Every column at least two spaces wider than its widest header.
  const w = Math.max(8, ...cols.map((c) => short(c).length + 2));
  const head = cols.map((c) => short(c).padStart(w)).join("");
  const lines = [
    `exact match (${r.trials} held-out samples per cell, greedy answer)`,
    `segments    tokens${head}`,
  ];
  for (const n of lengths) {
    const row = cols.map((c) => {
      const cell = r.cells.find((x) =>
        x.segments === n && `${depthLabel(x.depth)}|${x.variant}` === c
      );
      return (cell ? cell.accuracy.toFixed(3) : "-").padStart(w);
    }).join("");
    lines.push(`${String(n).padStart(8)}  ${String(n * r.segmentLength).padStart(8)}${row}`);
  }
  return lines.join("\n");
}

export function passkeyHeatMap(r: PasskeyResult): string {
  const lengths = [...new Set(r.cells.map((c) => c.segments))];
  const cols = [...new Set(r.cells.map((c) => `${c.variant}, ${depthLabel(c.depth)}`))];
  return heatMap({
    title: `Exact match (${r.trials} held-out samples per cell)`,
    rowLabels: lengths.map((n) => `${n} seg (${n * r.segmentLength} tok)`),
    colLabels: cols.map((c) =>
      c.replace("depth ", "d=").replace("memory", "on").replace("control", "ctrl")
    ),
    rowTitle: "length",
    colTitle: "variant, key depth",
    values: lengths.map((n) =>
      cols.map((c) =>
        r.cells.find((x) => x.segments === n && `${x.variant}, ${depthLabel(x.depth)}` === c)
          ?.accuracy ?? null
      )
    ),
  });
}
