/**
 * Benchmark of `gen` (not a test): throughput with 1 worker and with all workers on the same
 * input, and peak memory while streaming JSON arrays of growing size (it should not grow).
 *
 *   deno task bench:gen                  # 4 MB corpus for throughput; 16 MB, 128 MB, 1 GB arrays
 *   deno task bench:gen --mb 8 --memory-mb 128,2048 --workers 2 --tokenizer qwen
 *
 * The corpora are generated under $TMPDIR/infini-bench-gen (kept for reruns; --clean removes
 * them): documents of Zipf-sampled Qwen vocabulary pieces, about 70% Chinese and 30% English,
 * in the Wikipedia dump's format (one JSON array of {"completion", "source"} records).
 * Memory is the process's peak resident set (VmHWM, workers included), sampled from /proc.
 */
import { benchArgs } from "./_util.ts";
import { GEN_DEFAULTS, generate, type GenResult } from "../src/data/gen.ts";
import { compact } from "../src/data/progress.ts";
import { loadTokenizer, type Tokenizer } from "../src/data/tokenizer.ts";
import { Rng } from "../src/util/rng.ts";

const args = benchArgs(import.meta.url, {
  mb: { type: "string", default: "4" },
  "memory-mb": { type: "string", default: "16,128,1024" },
  workers: { type: "string", default: String(navigator.hardwareConcurrency || 2) },
  tokenizer: { type: "string", default: "qwen" },
  "memory-tokenizer": { type: "string", default: "bytes" },
  clean: { type: "boolean", default: false },
});
const ROOT = `${Deno.env.get("TMPDIR") ?? "/tmp"}/infini-bench-gen`;
const MAIN = new URL("../main.ts", import.meta.url).pathname;
await Deno.mkdir(ROOT, { recursive: true });

// --- corpus ------------------------------------------------------------------------------

/** Vocabulary pieces by language, in id order (roughly frequency order for a BPE). */
function pools(tok: Tokenizer): { zh: string[]; en: string[] } {
  const zh: string[] = [];
  const en: string[] = [];
  for (let id = 0; id < tok.eosId; id++) {
    const s = tok.decode([id]);
    if (/^[\u4e00-\u9fff]{1,4}$/.test(s)) zh.push(s);
    else if (/^ [a-z]{2,12}$/.test(s)) en.push(s);
  }
  return { zh, en };
}

function makeDoc(rng: Rng, p: { zh: string[]; en: string[] }): string {
  const zipf = (pool: string[]) => pool[Math.floor(pool.length * rng.next() ** 3)];
  const words = 200 + rng.int(2000);
  let s = "";
  if (rng.next() < 0.7) {
    for (let w = 1; w <= words; w++) {
      s += zipf(p.zh);
      if (w % 97 === 0) s += "。\n\n";
      else if (w % 13 === 0) s += "。";
      else if (w % 5 === 0) s += "，";
    }
  } else {
    for (let w = 1; w <= words; w++) {
      s += zipf(p.en);
      if (w % 120 === 0) s += ".\n\n";
      else if (w % 17 === 0) s += ".";
      else if (w % 7 === 0) s += ",";
    }
  }
  return s;
}

/** A JSON array of about `mb` MB at `path`, written in blocks; reused when present. */
async function jsonArray(path: string, mb: number, docs: string[]): Promise<number> {
  try {
    const size = (await Deno.stat(path)).size;
    if (Math.abs(size - mb * 1e6) < 0.05 * mb * 1e6) return size;
  } catch { /* build it */ }
  const enc = new TextEncoder();
  using f = await Deno.open(path + ".part", { write: true, create: true, truncate: true });
  let size = 0;
  let block = ["["];
  let blockBytes = 1;
  for (let i = 0; size + blockBytes < mb * 1e6; i++) {
    const rec = (i ? ",\n" : "\n") +
      JSON.stringify({ completion: `${docs[i % docs.length]} ${i}`, source: `bench/${i}` });
    block.push(rec);
    blockBytes += utf8Bytes(rec);
    if (blockBytes > 4e6) {
      size += await writeAll(f, enc.encode(block.join("")));
      block = [];
      blockBytes = 0;
    }
  }
  block.push("\n]\n");
  size += await writeAll(f, enc.encode(block.join("")));
  await Deno.rename(path + ".part", path);
  return size;
}

function utf8Bytes(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c < 0xdc00 ? (i++, 4) : 3;
  }
  return n;
}

async function writeAll(f: Deno.FsFile, b: Uint8Array): Promise<number> {
  for (let o = 0; o < b.length;) o += await f.write(b.subarray(o));
  return b.length;
}

/** CPU seconds used so far by this process, all threads (workers) included. */
function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in USER_HZ (100) ticks
}

console.error("bench:gen: building the corpora in", ROOT);
const qwen = await loadTokenizer("qwen");
const vocab = pools(qwen);
const rng = new Rng(42);
const docs = Array.from({ length: 400 }, () => makeDoc(rng, vocab));
const mb = Number(args.mb);
const throughputPath = `${ROOT}/corpus_${mb}mb.json`;
// Throughput wants distinct documents (no repeats that a BPE cache would flatter).
const distinct: string[] = [];
for (let n = 0; n * 2600 < mb * 1e6; n++) distinct.push(makeDoc(rng, vocab));
await jsonArray(throughputPath, mb, distinct);
const memorySizes = args["memory-mb"].split(",").map(Number);
const memoryPaths = memorySizes.map((m) => `${ROOT}/array_${m}mb.json`);
for (const [i, m] of memorySizes.entries()) await jsonArray(memoryPaths[i], m, docs);

// --- calibration: how many cores this process can get right now ---------------------------

/**
 * Cores kept busy by `n` threads spinning for `ms`: with other sessions busy (the kernel's
 * autogroup shares CPU per session, not per thread) this is below n, and caps any speedup.
 */
async function coresAvailable(n: number, ms = 1500): Promise<number> {
  const code = `self.onmessage = (e) => { const t = performance.now(); let x = 0;
    while (performance.now() - t < e.data) for (let i = 0; i < 1e5; i++) x += Math.sqrt(i);
    self.postMessage(x > 0); };`;
  const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
  const workers = Array.from({ length: n }, () => new Worker(url, { type: "module" }));
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  await Promise.all(workers.map((w) =>
    new Promise((resolve) => {
      w.onmessage = resolve;
      w.postMessage(ms);
    })
  ));
  const busy = (cpuSeconds() - cpu0) / ((performance.now() - t0) / 1000);
  for (const w of workers) w.terminate();
  URL.revokeObjectURL(url);
  return busy;
}

// --- throughput: 1 worker vs all ---------------------------------------------------------

const all = Number(args.workers);
const available = await coresAvailable(all);
console.error(`bench:gen: ${all} spinning threads get ${available.toFixed(2)} cores right now`);
const runs: { workers: number; r: GenResult; cpu: number }[] = [];
for (const workers of [1, all]) {
  console.error(`bench:gen: ${args.tokenizer}, ${workers} worker(s) on ${throughputPath}`);
  const cpu0 = cpuSeconds();
  const r = await generate({
    ...GEN_DEFAULTS,
    inputs: [throughputPath],
    output: `${ROOT}/out_w${workers}`,
    tokenizer: args.tokenizer,
    workers,
  });
  runs.push({ workers, r, cpu: cpuSeconds() - cpu0 });
}

// --- memory: a small and a large array, in a fresh process each --------------------------

interface MemoryRun {
  mb: number;
  seconds: number;
  /** Largest resident set in each quarter of the run's duration, MB: flat means bounded. */
  quarters: number[];
}

async function peakRss(input: string, out: string): Promise<MemoryRun> {
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "gen",
      "-i",
      input,
      "-o",
      out,
      "--tokenizer",
      args["memory-tokenizer"],
    ]
      .concat(["--workers", String(all), "--quiet"]),
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  let peak = 0;
  const samples: [number, number][] = [];
  let done = false;
  const status = child.status.then((s) => (done = true, s));
  while (!done) {
    try {
      const st = await Deno.readTextFile(`/proc/${child.pid}/status`);
      const hwm = /VmHWM:\s+(\d+) kB/.exec(st);
      const rss = /VmRSS:\s+(\d+) kB/.exec(st);
      if (hwm) peak = Math.max(peak, Number(hwm[1]) * 1024);
      if (rss) samples.push([performance.now() - t0, Number(rss[1]) * 1024]);
    } catch { /* exited */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  const s = await status;
  if (!s.success) throw new Error(`gen failed on ${input}: exit ${s.code}`);
  await Deno.remove(out, { recursive: true });
  const total = performance.now() - t0;
  const quarters = [0, 1, 2, 3].map((q) =>
    Math.max(
      0,
      ...samples.filter(([t]) => t >= (q * total) / 4 && t < ((q + 1) * total) / 4).map(([, r]) =>
        r
      ),
    ) / 1e6
  );
  return { mb: peak / 1e6, seconds: total / 1000, quarters };
}

const memory = [];
for (const path of memoryPaths) {
  console.error(`bench:gen: peak memory, ${args["memory-tokenizer"]} tokenizer, ${path}`);
  const bytes = (await Deno.stat(path)).size;
  const m = await peakRss(path, `${ROOT}/out_memory`);
  memory.push({
    path,
    bytes,
    peakRssMb: m.mb,
    rssByQuarterMb: m.quarters,
    seconds: m.seconds,
    mbPerSec: bytes / 1e6 / m.seconds,
  });
}

// --- report ------------------------------------------------------------------------------

const rows = runs.map(({ workers, r, cpu }) => ({
  workers,
  mbPerSec: r.bytes / 1e6 / r.seconds.tokenize,
  tokensPerSec: r.tokens / r.seconds.tokenize,
  tokenizeSeconds: r.seconds.tokenize,
  loadSeconds: r.seconds.tokenizerLoad,
  writeSeconds: r.seconds.write,
  totalSeconds: r.seconds.total,
  endToEndMbPerSec: r.bytes / 1e6 / r.seconds.total,
  /** CPU seconds of the whole run (all threads), and cores kept busy on average. */
  cpuSeconds: cpu,
  coresBusy: cpu / r.seconds.total,
  /** Tokens per CPU-second: equal for 1 and N workers means no parallel overhead. */
  tokensPerCpuSecond: r.tokens / cpu,
}));
const report = {
  machine: {
    cores: navigator.hardwareConcurrency,
    loadavg: Deno.loadavg(),
    /** Cores that `workers` spinning threads actually got before the runs. */
    coresAvailable: available,
  },
  tokenizer: args.tokenizer,
  input: { path: throughputPath, bytes: runs[0].r.bytes, tokens: runs[0].r.tokens },
  throughput: rows,
  speedup: rows[1].tokensPerSec / rows[0].tokensPerSec,
  speedupEndToEnd: rows[0].totalSeconds / rows[1].totalSeconds,
  /**
   * What the speedup would be with `workers` idle cores: workers x the CPU cost ratio. Only a
   * bound, for machines where other load caps "cores busy" (then the measured one means little).
   */
  speedupIfCoresFree: all * rows[1].tokensPerCpuSecond / rows[0].tokensPerCpuSecond,
  memory: {
    tokenizer: args["memory-tokenizer"],
    workers: all,
    runs: memory,
    /** Peak RSS of the largest input over that of the second largest. */
    ratio: memory[memory.length - 1].peakRssMb / memory[Math.max(0, memory.length - 2)].peakRssMb,
  },
};

const pad = (s: string | number, n: number) => String(s).padStart(n);
console.log(
  `gen throughput, ${args.tokenizer} tokenizer, ${
    (report.input.bytes / 1e6).toFixed(1)
  } MB JSON array, ${compact(report.input.tokens)} tokens (load average ${
    report.machine.loadavg.map((x) => x.toFixed(1)).join(" ")
  }; ${all} spinning threads got ${available.toFixed(2)} cores)`,
);
console.log(
  `${pad("workers", 8)} ${pad("tokens/s", 10)} ${pad("MB/s", 7)} ${pad("tokenize s", 11)} ${
    pad("load s", 7)
  } ${pad("write s", 8)} ${pad("total s", 8)} ${pad("cores busy", 11)}`,
);
for (const r of rows) {
  console.log(
    `${pad(r.workers, 8)} ${pad(compact(r.tokensPerSec), 10)} ${pad(r.mbPerSec.toFixed(2), 7)} ${
      pad(r.tokenizeSeconds.toFixed(1), 11)
    } ${pad(r.loadSeconds.toFixed(1), 7)} ${pad(r.writeSeconds.toFixed(1), 8)} ${
      pad(r.totalSeconds.toFixed(1), 8)
    } ${pad(r.coresBusy.toFixed(2), 11)}`,
  );
}
console.log(
  `speedup ${report.speedup.toFixed(2)}x tokenizing, ${
    report.speedupEndToEnd.toFixed(2)
  }x end to end; tokens per CPU-second ${
    rows.map((r) => compact(r.tokensPerCpuSecond)).join(" vs ")
  } (with ${all} free cores: at most ${report.speedupIfCoresFree.toFixed(2)}x)`,
);
console.log(`\npeak memory (VmHWM), ${report.memory.tokenizer} tokenizer, ${all} workers`);
console.log(
  `${pad("input MB", 9)} ${pad("peak RSS MB", 12)} ${pad("s", 7)} ${
    pad("MB/s", 7)
  }   ${"max RSS MB in each quarter of the run"}`,
);
for (const m of memory) {
  console.log(
    `${pad((m.bytes / 1e6).toFixed(0), 9)} ${pad(m.peakRssMb.toFixed(0), 12)} ${
      pad(m.seconds.toFixed(1), 7)
    } ${pad(m.mbPerSec.toFixed(1), 7)}   ${m.rssByQuarterMb.map((q) => q.toFixed(0)).join(" / ")}`,
  );
}
console.log(`peak RSS, largest input / second largest: ${report.memory.ratio.toFixed(2)}x`);
console.log("\n" + JSON.stringify(report, null, 2));

for (const w of [1, all]) {
  await Deno.remove(`${ROOT}/out_w${w}`, { recursive: true }).catch(() => {});
}
if (args.clean) await Deno.remove(ROOT, { recursive: true });
