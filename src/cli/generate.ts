/** `generate`: continue a prompt of any length, streaming tokens to stdout. */
import { Runtime } from "../gpu/runtime.ts";
import { Generator } from "../eval/generate.ts";
import { checkpointTokenizer } from "../eval/load.ts";
import { openCheckpoint } from "../model/checkpoint.ts";
import { readUserText, UsageError } from "../util/errors.ts";
import { intFlag, LIMIT_HELP, LIMIT_OPTION, limitFlags, numFlag, parseCommand } from "./flags.ts";
import { SUMMARIES } from "./summaries.ts";

const HELP = `infini generate: ${SUMMARIES.generate}

Usage: infini generate --checkpoint DIR (--prompt TEXT | --prompt-file FILE) [options]

The prompt is read segment by segment: each complete segment is folded into the memory
exactly once; inside the current segment a key/value cache serves local attention, so each
new token costs one row through the model. Memory use does not grow with the prompt.

Options:
  --checkpoint DIR       checkpoint folder, or a run folder from 'train'
  --prompt TEXT          the prompt
  --prompt-file FILE     read the prompt from a UTF-8 file
  --max-tokens N         tokens to generate (default 64)
  --temperature X        0 = greedy (default 0.8)
  --top-p X              nucleus sampling threshold in (0, 1] (default 0.95)
  --seed N               sampling seed (default 1)
  --tokenizer SPEC       override the checkpoint's tokenizer (bytes, qwen, tokenizer.json)
  --no-stop              keep going past the end-of-text token
${LIMIT_HELP}
  -h, --help             this help

Examples:
  deno task generate --checkpoint runs/demo --prompt "The pass key is 12345. Remember it. " --temperature 0
  deno task generate --checkpoint runs/mini --prompt-file long.txt --max-tokens 200 --top-p 0.9`;

export async function run(args: string[]): Promise<number> {
  const parsed = parseCommand({
    name: "generate",
    help: HELP,
    options: {
      checkpoint: { type: "string" },
      prompt: { type: "string" },
      "prompt-file": { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      "top-p": { type: "string" },
      seed: { type: "string" },
      tokenizer: { type: "string" },
      "no-stop": { type: "boolean" },
      ...LIMIT_OPTION,
    },
  }, args);
  if (!parsed) return 0;
  const { values } = parsed;
  if (!values.checkpoint) throw new UsageError("generate: --checkpoint DIR is required");
  if ((values.prompt === undefined) === (values["prompt-file"] === undefined)) {
    throw new UsageError("generate: give --prompt TEXT or --prompt-file FILE (one of them)");
  }
  const limits = limitFlags(values.limit);
  const maxTokens = intFlag("max-tokens", values["max-tokens"], 64);
  const seed = intFlag("seed", values.seed, 1, 0);
  const temperature = numFlag("temperature", values.temperature, 0.8);
  const topP = numFlag("top-p", values["top-p"], 0.95, { above: 0, max: 1 });

  let prompt = values.prompt;
  if (prompt === undefined) {
    prompt = await readUserText(values["prompt-file"]!);
  }
  const ck = await openCheckpoint(values.checkpoint);
  const tok = await checkpointTokenizer(ck, values.tokenizer);
  const ids = tok.encode(prompt);
  if (!ids.length) throw new UsageError("generate: the prompt is empty");
  const rt = await Runtime.create({ limits });
  const gen = await Generator.create(rt, ck.config, ck.params);
  const out: number[] = [];
  let shown = "";
  const enc = new TextEncoder();
  const t0 = performance.now();
  for await (
    const t of gen.generate(ids, maxTokens, {
      temperature,
      topP,
      seed,
      stop: values["no-stop"] ? [] : [tok.eosId],
    })
  ) {
    if (t === tok.eosId && !values["no-stop"]) break;
    out.push(t);
    // Decode everything so far and print what is new (a multi-byte character or a merged
    // token may only become printable with the next token).
    const text = tok.decode(out);
    const stable = text.endsWith("\uFFFD") ? text.slice(0, text.lastIndexOf("\uFFFD")) : text;
    if (stable.length > shown.length && stable.startsWith(shown)) {
      await Deno.stdout.write(enc.encode(stable.slice(shown.length)));
      shown = stable;
    }
  }
  const text = tok.decode(out);
  if (text.length > shown.length && text.startsWith(shown)) {
    await Deno.stdout.write(enc.encode(text.slice(shown.length)));
  }
  await Deno.stdout.write(enc.encode("\n"));
  const s = (performance.now() - t0) / 1000;
  console.error(
    `[${ids.length} prompt tokens (${gen.committed} segments in memory), ${out.length} new tokens, ${
      (out.length / Math.max(s, 1e-9)).toFixed(1)
    } tok/s]`,
  );
  rt.destroy();
  return 0;
}
