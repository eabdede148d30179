/** `gen`: text corpora (JSON array, JSON Lines, parquet, .txt) to packed token shards. */
import { GEN_DEFAULTS, generate, type GenOptions, Interrupted } from "../data/gen.ts";
import { compact, Progress } from "../data/progress.ts";
import { TOKENIZER_SPECS } from "../data/tokenizer.ts";
import { UsageError } from "../util/errors.ts";
import { intFlag, numFlag, parseCommand } from "./flags.ts";
import { SUMMARIES } from "./summaries.ts";

const D = GEN_DEFAULTS;
const HELP = `infini gen: ${SUMMARIES.gen}

Reads every .json (one array of records), .jsonl/.ndjson (one record per line), .parquet and
.txt (one document per file) under the inputs, tokenizes in parallel, appends the end-of-text
token to each document, packs the token stream into sequences of --seq-len tokens, shuffles
them by --seed and writes shards plus manifest.json (format: docs/data.md). The output is
replaced atomically: a failed or interrupted run leaves the previous one as it was.

Usage: infini gen [options]

Options:
  -i, --input PATH       file or folder to read; repeatable (default: ${D.inputs[0]}/)
  -o, --out DIR          output folder (default: ${D.output}/; --output works too)
  -t, --tokenizer SPEC   ${
  TOKENIZER_SPECS.join(" | ")
} | path/to/tokenizer.json (default: ${D.tokenizer})
      --text-field NAME  record field holding the text (default: ${D.textField})
      --seq-len N        tokens per sequence (default: ${D.seqLen})
      --val-fraction F   share of documents for validation, chosen by a hash of the
                         text (default: ${D.valFraction})
      --seed N           seeds the split and the shuffle (default: ${D.seed})
      --limit N          read only the first N documents (a quick sample)
      --workers N        tokenizer workers (default: the number of cores, here ${D.workers};
                         0 tokenizes on the main thread)
      --shard-mb N       largest shard in MiB (default: ${D.shardBytes >> 20})
      --skip-bad         skip bad records (and the rest of an unreadable file) instead of
                         stopping; they are counted in the summary and the manifest
      --quiet            no progress or warnings on stderr
      --json             print the manifest as JSON instead of a summary
  -h, --help             this help

Examples:
  deno task gen                                    # datasets/ -> train_datasets/, Qwen BPE
  deno task gen --limit 2000 --seq-len 512         # a quick sample
  deno task gen -i wikipedia-cn-20230720-filtered.json --skip-bad
  deno task gen -i corpus/ --tokenizer bytes --seq-len 256 --out runs/bytes_data
  deno task gen -i data.parquet --text-field text --tokenizer ./tokenizer.json`;

export async function run(args: string[]): Promise<number> {
  const parsed = parseCommand({
    name: "gen",
    help: HELP,
    options: {
      input: { type: "string", short: "i", multiple: true },
      out: { type: "string", short: "o" },
      tokenizer: { type: "string", short: "t" },
      "text-field": { type: "string" },
      "seq-len": { type: "string" },
      "val-fraction": { type: "string" },
      seed: { type: "string" },
      limit: { type: "string" },
      workers: { type: "string" },
      "shard-mb": { type: "string" },
      "skip-bad": { type: "boolean" },
      quiet: { type: "boolean" },
      json: { type: "boolean" },
    },
    aliases: { output: "out" },
  }, args);
  if (!parsed) return 0;
  const { values } = parsed;
  const valFraction = numFlag("val-fraction", values["val-fraction"], D.valFraction, { below: 1 });
  const textField = values["text-field"] ?? D.textField;
  if (textField === "") throw new UsageError("gen: --text-field is empty");
  const quiet = values.quiet ?? false;
  const tty = Deno.stderr.isTerminal();
  let shown = 0;
  const controller = new AbortController();
  const progress = new Progress({ mode: quiet ? "off" : tty ? "tty" : "plain" });
  const opts: GenOptions = {
    inputs: values.input ?? D.inputs,
    output: values.out ?? D.output,
    tokenizer: values.tokenizer ?? D.tokenizer,
    textField,
    seqLen: intFlag("seq-len", values["seq-len"], D.seqLen, 2),
    valFraction,
    seed: intFlag("seed", values.seed, D.seed, 0, 2 ** 32 - 1),
    limit: values.limit === undefined ? undefined : intFlag("limit", values.limit, 0, 1),
    workers: intFlag("workers", values.workers, D.workers, 0),
    skipBad: values["skip-bad"] ?? false,
    shardBytes: intFlag("shard-mb", values["shard-mb"], D.shardBytes >> 20, 1) * (1 << 20),
    progress,
    signal: controller.signal,
    onSkip: (message) => {
      if (quiet) return;
      shown++;
      if (shown <= 10) progress.message(`warning: skipped ${message}`);
      if (shown === 10) progress.message("warning: further skips are counted, not shown");
    },
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  const onSignal = () => controller.abort();
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  try {
    const r = await generate(opts);
    const m = r.manifest;
    if (values.json) {
      console.log(JSON.stringify(m, null, 2));
      return 0;
    }
    const row = (name: string) => {
      const s = m.splits[name as "train" | "val"];
      return `  ${name.padEnd(5)} ${s.documents.toLocaleString("en-US").padStart(11)} docs ${
        s.sequences.toLocaleString("en-US").padStart(11)
      } sequences ${compact(s.tokens).padStart(8)} tokens  ${s.shards.length} shard(s)`;
    };
    console.log(
      `wrote ${opts.output}/ (tokenizer ${m.tokenizer.name}, vocabulary ${m.vocabSize}, ${m.tokenWidth}-byte tokens, seq-len ${m.seqLen})`,
    );
    console.log(row("train"));
    console.log(row("val"));
    if (m.skipped.records + m.skipped.files > 0) {
      const reasons = Object.entries(m.skipped.byReason).map(([k, v]) => `${v} ${k}`).join(", ");
      console.log(
        `  skipped ${m.skipped.records} record(s)${
          reasons ? ` (${reasons})` : ""
        } and ${m.skipped.files} file(s); see manifest.json`,
      );
    }
    if (m.splits.val.sequences === 0 && opts.valFraction > 0 && !quiet) {
      console.error(
        "warning: the validation split is empty (too few documents or tokens); raise --val-fraction",
      );
    }
    const s = r.seconds;
    console.log(
      `  ${(r.bytes / 1e6).toFixed(1)} MB, ${compact(r.tokens)} tokens in ${
        s.total.toFixed(1)
      } s (${(r.bytes / 1e6 / s.tokenize).toFixed(2)} MB/s, ${
        compact(r.tokens / s.tokenize)
      } tokens/s tokenizing with ${opts.workers} worker(s))`,
    );
    return 0;
  } catch (e) {
    if (e instanceof Interrupted) {
      console.error(`gen: interrupted; ${opts.output}/ was left as it was`);
      return 130;
    }
    throw e;
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
}
