/**
 * The data pipeline behind `infini gen`: input files -> documents -> tokens (in workers) ->
 * packed, shuffled sequences in shards -> manifest.json, written atomically.
 *
 *   read (main thread, streaming)  ->  tokenize (worker pool, batches in flight)
 *     -> in input order: route each document by its text hash to train or val
 *     -> pack each split into seqLen sequences (spill file) -> shuffle -> shards
 *
 * Atomic output: everything is written into a hidden temporary folder inside the output
 * folder; only when all of it is on disk are the previous manifest and shards removed, the new
 * shards moved in, and manifest.json moved in last. A run that fails or is interrupted before
 * that leaves the previous output as it was; one that stops during the swap leaves no
 * manifest, and readers refuse a folder without one.
 *
 * @example
 * ```ts
 * const { manifest } = await generate({ ...GEN_DEFAULTS, inputs: ["datasets"], tokenizer: "bytes" });
 * console.log(manifest.splits.train.sequences);
 * ```
 */
import denoJson from "../../deno.json" with { type: "json" };
import { UserError } from "../util/errors.ts";
import { type EncodedBatch, isValidation } from "./encode.ts";
import { splitSeed, SplitWriter } from "./pack.ts";
import { EncoderPool } from "./pool.ts";
import { Progress, type ProgressStats } from "./progress.ts";
import { errorText, SourceError } from "./records.ts";
import {
  type Manifest,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type SkipInfo,
  type SourceInfo,
  type Split,
  SPLITS,
  tokenWidthFor,
} from "./shards.ts";
import { findInputs, readSource } from "./sources.ts";

export interface GenOptions {
  /** Files or folders to read (folders: every .json, .jsonl, .ndjson, .parquet, .txt inside). */
  inputs: string[];
  /** Output folder; created when missing. */
  output: string;
  /** "qwen", "bytes" or a path to a tokenizer.json. */
  tokenizer: string;
  /** Record field holding the text. */
  textField: string;
  /** Tokens per sequence. */
  seqLen: number;
  /** Share of documents (by text hash) put in the validation split, in [0, 1). */
  valFraction: number;
  /** Seeds the split hash and the shuffles. */
  seed: number;
  /** Read only the first N documents. */
  limit?: number;
  /** Tokenizer workers; 0 tokenizes on the calling thread. */
  workers: number;
  /** Skip bad records (and the rest of a bad file) instead of stopping. */
  skipBad: boolean;
  /** Largest shard, in bytes of tokens. */
  shardBytes: number;
  progress?: Progress;
  /** Stops the run (then nothing is written); the CLI aborts it on Ctrl-C. */
  signal?: AbortSignal;
  /** Told each skipped record or file (the CLI prints them as warnings). */
  onSkip?: (message: string) => void;
}

export const GEN_DEFAULTS = {
  inputs: ["datasets"],
  output: "train_datasets",
  tokenizer: "qwen",
  textField: "completion",
  seqLen: 1024,
  valFraction: 0.01,
  seed: 1,
  workers: navigator.hardwareConcurrency || 1,
  skipBad: false,
  shardBytes: 64 << 20,
} satisfies Omit<GenOptions, "limit">;

export interface GenResult {
  manifest: Manifest;
  /** Wall time: the whole run, starting the tokenizers, and reading + tokenizing + packing. */
  seconds: { total: number; tokenizerLoad: number; tokenize: number; write: number };
  /** Source bytes read. */
  bytes: number;
  /** Tokens produced, documents' end-of-text tokens included (before packing drops any). */
  tokens: number;
}

/** Thrown when the run was stopped through `signal`. */
export class Interrupted extends Error {
  override name = "Interrupted";
}

/** How many characters of text make one batch for a worker (~0.1-0.5 s of Qwen BPE). */
const BATCH_CHARS = 64 * 1024;
const BATCH_DOCS = 512;
const MAX_EXAMPLES = 10;

export async function generate(o: GenOptions): Promise<GenResult> {
  const t0 = performance.now();
  const files = await findInputs(o.inputs, o.output);
  const totalBytes = files.reduce((s, f) => s + f.bytes, 0);
  const tmp = await prepareOutput(o.output);
  const progress = o.progress ?? new Progress({ mode: "off" });
  let pool: EncoderPool | undefined;
  const writers: Partial<Record<Split, SplitWriter>> = {};
  let committed = false;
  try {
    progress.note(`loading the ${o.tokenizer} tokenizer in ${o.workers || "no"} worker(s)`);
    pool = await EncoderPool.create(o.tokenizer, o.workers, o.seed);
    const info = pool.info;
    const tLoaded = performance.now();
    const tokenWidth = tokenWidthFor(info.vocabSize);
    for (const split of SPLITS) {
      writers[split] = new SplitWriter({
        dir: tmp,
        split,
        seqLen: o.seqLen,
        tokenWidth,
        vocabSize: info.vocabSize,
        shardBytes: o.shardBytes,
      });
    }
    // Progress counts what has been tokenized and packed; `bytesRead` runs ahead of it by the
    // batches in flight and is credited to a batch when the batch is handed over.
    const stats: ProgressStats = { documents: 0, tokens: 0, bytes: 0, totalBytes, skipped: 0 };
    let bytesRead = 0;
    let docsRead = 0;
    const skipped: SkipInfo = { records: 0, byReason: {}, files: 0, examples: [] };
    const sources: SourceInfo[] = [];
    const skip = (message: string) => {
      if (skipped.examples.length < MAX_EXAMPLES) skipped.examples.push(message);
      o.onSkip?.(message);
    };

    // Batches in flight, oldest first; results are consumed in this order, which keeps the
    // output independent of how many workers there are and which finishes first.
    const inFlight: Promise<void>[] = [];
    const maxInFlight = Math.max(1, 2 * o.workers);
    let batch: string[] = [];
    let batchChars = 0;
    const consume = async (p: Promise<EncodedBatch>, bytesMark: number) => {
      const r = await p;
      let off = 0;
      for (let d = 0; d < r.lengths.length; d++) {
        const toks = r.tokens.subarray(off, off + r.lengths[d]);
        off += r.lengths[d];
        const split: Split = isValidation(r.hashes[d], o.valFraction) ? "val" : "train";
        await writers[split]!.addDocument(toks, info.eosId);
        stats.tokens += toks.length + 1;
      }
      stats.documents += r.lengths.length;
      stats.bytes = bytesMark;
      progress.update(stats);
    };
    let chain = Promise.resolve();
    const submit = async () => {
      if (batch.length === 0) return;
      const p = pool!.encode(batch);
      p.catch(() => {}); // awaited below, in order; this only marks it handled
      batch = [];
      batchChars = 0;
      const mark = bytesRead;
      // Each consumer starts after the previous one: packing stays in input order.
      chain = chain.then(() => consume(p, mark));
      const done = chain;
      done.catch(() => {});
      inFlight.push(done);
      while (inFlight.length >= maxInFlight) await inFlight.shift();
    };

    let limitReached = false;
    for (const file of files) {
      if (limitReached) break;
      const src: SourceInfo = {
        path: file.path,
        format: file.format,
        bytes: file.bytes,
        documents: 0,
        skipped: 0,
      };
      sources.push(src);
      try {
        const items = readSource(file, {
          textField: o.textField,
          onBytes: (n) => (bytesRead += n),
        });
        for await (const item of items) {
          if (o.signal?.aborted) throw new Interrupted("interrupted");
          if (item.kind === "bad") {
            if (!o.skipBad) {
              throw new UserError(`${item.message} (--skip-bad skips such records)`);
            }
            skipped.records++;
            skipped.byReason[item.reason] = (skipped.byReason[item.reason] ?? 0) + 1;
            src.skipped++;
            stats.skipped++;
            skip(item.message);
            continue;
          }
          batch.push(item.text);
          batchChars += item.text.length;
          src.documents++;
          docsRead++;
          if (batchChars >= BATCH_CHARS || batch.length >= BATCH_DOCS) await submit();
          if (o.limit !== undefined && docsRead >= o.limit) {
            limitReached = true;
            break;
          }
        }
      } catch (e) {
        if (!(e instanceof SourceError) || !o.skipBad) {
          if (e instanceof SourceError) {
            throw new UserError(`${e.message} (--skip-bad skips the rest of such a file)`);
          }
          throw e;
        }
        skipped.files++;
        src.error = e.message;
        skip(e.message);
      }
    }
    await submit();
    await chain;
    stats.bytes = bytesRead;
    if (o.signal?.aborted) throw new Interrupted("interrupted");
    progress.update({ ...stats }, "read");
    progress.done();
    const tRead = performance.now();

    if (stats.documents === 0) {
      const why = skipped.records + skipped.files > 0
        ? `; ${skipped.records} record(s) and ${skipped.files} file(s) were skipped, e.g. ${
          skipped.examples[0]
        }`
        : "";
      throw new UserError(`no documents found in ${o.inputs.join(", ")}${why}`);
    }
    progress.note("shuffling and writing shards");
    const splits = {
      train: await writers.train!.finish(splitSeed(o.seed, "train")),
      val: await writers.val!.finish(splitSeed(o.seed, "val")),
    };
    if (o.signal?.aborted) throw new Interrupted("interrupted");
    if (splits.train.sequences === 0) {
      throw new UserError(
        `too little text for one training sequence: ${splits.train.droppedTokens} train tokens, --seq-len ${o.seqLen}`,
      );
    }
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      program: `infini ${denoJson.version}`,
      tokenizer: info,
      vocabSize: info.vocabSize,
      tokenWidth,
      seqLen: o.seqLen,
      seed: o.seed,
      valFraction: o.valFraction,
      textField: o.textField,
      limit: o.limit ?? null,
      splits,
      sources,
      skipped,
    };
    await Deno.writeTextFile(`${tmp}/${MANIFEST_FILE}`, JSON.stringify(manifest, null, 2) + "\n");
    await commit(tmp, o.output, [...splits.train.shards, ...splits.val.shards].map((s) => s.file));
    committed = true;
    const tEnd = performance.now();
    return {
      manifest,
      seconds: {
        total: (tEnd - t0) / 1000,
        tokenizerLoad: (tLoaded - t0) / 1000,
        tokenize: (tRead - tLoaded) / 1000,
        write: (tEnd - tRead) / 1000,
      },
      bytes: stats.bytes,
      tokens: stats.tokens,
    };
  } finally {
    progress.done();
    pool?.close();
    for (const w of Object.values(writers)) w.discard();
    if (!committed) await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

const TMP_RE = /^\.gen-(\d+)-[0-9a-f]+\.tmp$/;
const SHARD_RE = /^(train|val)_\d{5}\.bin$/;

/**
 * Creates the output folder if needed and a fresh temporary folder inside it; removes
 * temporary folders left by runs that were killed (their process is gone).
 */
async function prepareOutput(out: string): Promise<string> {
  try {
    const info = await Deno.stat(out);
    if (!info.isDirectory) throw new UserError(`output '${out}' exists and is not a folder`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      if (e instanceof UserError) throw e;
      throw new UserError(`output '${out}': ${errorText(e)}`);
    }
    try {
      await Deno.mkdir(out, { recursive: true });
    } catch (e2) {
      throw new UserError(`output '${out}': cannot create it (${errorText(e2)})`);
    }
  }
  for await (const e of Deno.readDir(out)) {
    const m = TMP_RE.exec(e.name);
    if (m && Number(m[1]) !== Deno.pid && !processAlive(Number(m[1]))) {
      await Deno.remove(`${out}/${e.name}`, { recursive: true }).catch(() => {});
    }
  }
  const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(16);
  const tmp = `${out}/.gen-${Deno.pid}-${rand}.tmp`;
  try {
    await Deno.mkdir(tmp);
  } catch (e) {
    throw new UserError(`output '${out}': cannot write in it (${errorText(e)})`);
  }
  return tmp;
}

function processAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch (e) {
    // Without /proc (not Linux) we cannot tell: keep the folder.
    return !(e instanceof Deno.errors.NotFound) || !existsSync("/proc/self");
  }
}

function existsSync(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}

/** The swap: old manifest out first, new manifest in last (see the module comment). */
async function commit(tmp: string, out: string, shards: string[]): Promise<void> {
  await Deno.remove(`${out}/${MANIFEST_FILE}`).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  for await (const e of Deno.readDir(out)) {
    if (SHARD_RE.test(e.name)) await Deno.remove(`${out}/${e.name}`);
  }
  for (const f of shards) await Deno.rename(`${tmp}/${f}`, `${out}/${f}`);
  await Deno.rename(`${tmp}/${MANIFEST_FILE}`, `${out}/${MANIFEST_FILE}`);
  await Deno.remove(tmp, { recursive: true });
}
