/**
 * The model's configuration: one typed record named as the papers name things, presets as data,
 * type-checked `--set key=value` overrides, conversion to and from Hugging Face's GemmaConfig
 * (config.json) plus the Infini fields, and a pretty printer.
 *
 * Dimension letters used across the project: V vocab, C hidden, F MLP hidden, L layers,
 * H query heads, Hkv KV heads, D head dim, S segment length, T sequence length, B batch.
 *
 * @example
 * ```ts
 * const cfg = resolveConfig("tiny", ["memoryUpdate=delta", "infiniLayers=last:1"]);
 * console.log(formatConfig(cfg, "tiny"));
 * const hf = toHfConfig(cfg); // what config.json holds
 * ```
 */
import { oneLine, UsageError, UserError } from "../util/errors.ts";

/** How Infini-attention writes a segment into memory (paper section 2.1.2). */
export type MemoryUpdate = "linear" | "delta";

/**
 * Which layers use Infini-attention: every layer, none (plain Gemma with segment-local
 * attention), the last k layers, or an explicit list of layer indices.
 */
export type InfiniLayers = "all" | "none" | { last: number } | number[];

/** The model configuration. Every field is set in every preset; nothing is implied. */
export interface ModelConfig {
  /** V: vocabulary size; rows of the embedding, which is tied with the LM head. */
  vocabSize: number;
  /** C: hidden size (d_model), the width of the residual stream. */
  hiddenSize: number;
  /** F: GeGLU MLP hidden size (Gemma's intermediate_size). */
  intermediateSize: number;
  /** L: number of decoder layers. */
  numLayers: number;
  /** H: query heads per layer. */
  numHeads: number;
  /** Hkv: key/value heads; H must be a multiple (query head h uses KV head floor(h / (H/Hkv))). */
  numKvHeads: number;
  /** D: head dimension (dk = dv in the Infini paper); even, for rotate-half RoPE. */
  headDim: number;
  /** eps in RMSNorm x * rsqrt(mean(x^2) + eps) * (1 + w). */
  rmsNormEps: number;
  /** RoPE base; positions restart at 0 in each segment. */
  ropeTheta: number;
  /** S: segment length N of the Infini paper; local attention never crosses a segment. */
  segmentLength: number;
  /** T: training sequence length, a multiple of S; memory starts at zero for each sequence. */
  seqLength: number;
  /** Layers with Infini-attention; the others attend within their segment only. */
  infiniLayers: InfiniLayers;
  /** Memory update rule: "linear" (M += sigma(K)^T V) or "delta" (subtract what is retrieved). */
  memoryUpdate: MemoryUpdate;
  /** Initial gate logit beta per head; sigmoid(0) = 0.5 mixes memory and local attention evenly. */
  betaInit: number;
  /** Learning-rate multiplier for beta (the gates get no weight decay either). */
  betaLrMult: number;
  /** Standard deviation of the N(0, std) init of the embedding and every linear layer. */
  initStd: number;
}

/** A field's parser, printer and documentation: what `--set` type-checks against. */
export interface Field<V> {
  /** Dimension letter or short symbol shown by the printer ("" when none). */
  symbol: string;
  /** One line saying what the field is. */
  doc: string;
  /** What a value looks like, for error messages ("a positive integer"). */
  expects: string;
  /** Parses the text of `--set key=text`; returns undefined when the text is not valid. */
  parse(text: string): V | undefined;
  /** Formats a value the way `parse` reads it back. */
  show(v: V): string;
}

/** One field per key of T: the schema that overrides and printers are driven by. */
export type Schema<T> = { [K in keyof T]: Field<T[K]> };

/** A positive (or, with min 0, non-negative) integer field. */
export function intField(symbol: string, doc: string, min = 1): Field<number> {
  return {
    symbol,
    doc,
    expects: min === 1 ? "a positive integer" : `an integer >= ${min}`,
    parse: (t) => {
      if (!/^[+]?\d+$/.test(t.trim().replaceAll("_", ""))) return undefined;
      const v = Number(t.trim().replaceAll("_", ""));
      return Number.isSafeInteger(v) && v >= min ? v : undefined;
    },
    show: (v) => String(v),
  };
}

/** A finite number field, optionally bounded below (strictly when `exclusive`). */
export function floatField(
  symbol: string,
  doc: string,
  bound?: { min: number; exclusive?: boolean },
): Field<number> {
  const expects = bound === undefined
    ? "a number"
    : `a number ${bound.exclusive ? ">" : ">="} ${bound.min}`;
  return {
    symbol,
    doc,
    expects,
    parse: (t) => {
      if (t.trim() === "") return undefined;
      const v = Number(t.trim());
      if (!Number.isFinite(v)) return undefined;
      if (bound && (bound.exclusive ? !(v > bound.min) : !(v >= bound.min))) return undefined;
      return v;
    },
    show: (v) => String(v),
  };
}

/** A boolean field: true/false, yes/no, on/off, 1/0. */
export function boolField(symbol: string, doc: string): Field<boolean> {
  return {
    symbol,
    doc,
    expects: "true or false",
    parse: (t) => {
      const s = t.trim().toLowerCase();
      if (["true", "yes", "on", "1"].includes(s)) return true;
      if (["false", "no", "off", "0"].includes(s)) return false;
      return undefined;
    },
    show: (v) => String(v),
  };
}

/** A field taking one of a fixed set of strings. */
export function enumField<E extends string>(
  symbol: string,
  doc: string,
  values: readonly E[],
): Field<E> {
  return {
    symbol,
    doc,
    expects: `one of ${values.join(", ")}`,
    parse: (t) => values.find((v) => v === t.trim()),
    show: (v) => v,
  };
}

/** A comma-separated list of non-negative integers ("[0, 2]" and "0,2" both read). */
export function intListField(symbol: string, doc: string): Field<number[]> {
  return {
    symbol,
    doc,
    expects: "a comma-separated list of non-negative integers",
    parse: (t) => parseIntList(t),
    show: (v) => v.join(","),
  };
}

function parseIntList(t: string): number[] | undefined {
  const s = t.trim().replace(/^\[/, "").replace(/\]$/, "").trim();
  if (s === "") return [];
  const out: number[] = [];
  for (const part of s.split(",")) {
    if (!/^\s*\d+\s*$/.test(part)) return undefined;
    out.push(Number(part));
  }
  return out;
}

const infiniLayersField: Field<InfiniLayers> = {
  symbol: "",
  doc: "layers with Infini-attention: all, none, last:k, or a list like 0,2",
  expects: "all, none, last:k or a comma-separated list of layer indices",
  parse: (t) => {
    const s = t.trim();
    if (s === "all" || s === "none") return s;
    const m = /^last:(\d+)$/.exec(s);
    if (m) return { last: Number(m[1]) };
    return parseIntList(s);
  },
  show: (v) => (typeof v === "string" ? v : Array.isArray(v) ? v.join(",") : `last:${v.last}`),
};

/** The schema of {@link ModelConfig}, in the order the printer shows it. */
export const CONFIG_SCHEMA: Schema<ModelConfig> = {
  vocabSize: intField("V", "vocabulary size (tied embedding and LM head)"),
  hiddenSize: intField("C", "hidden size (d_model)"),
  intermediateSize: intField("F", "GeGLU MLP hidden size"),
  numLayers: intField("L", "decoder layers"),
  numHeads: intField("H", "query heads"),
  numKvHeads: intField("Hkv", "key/value heads (H a multiple of it)"),
  headDim: intField("D", "head dimension (even)"),
  rmsNormEps: floatField("eps", "RMSNorm epsilon", { min: 0, exclusive: true }),
  ropeTheta: floatField("", "RoPE base (positions restart each segment)", {
    min: 0,
    exclusive: true,
  }),
  segmentLength: intField("S", "segment length"),
  seqLength: intField("T", "sequence length (a multiple of S)"),
  infiniLayers: infiniLayersField,
  memoryUpdate: enumField("", "memory update rule", ["linear", "delta"] as const),
  betaInit: floatField("beta0", "initial gate logit per head"),
  betaLrMult: floatField("", "learning-rate multiplier for beta (no weight decay)", { min: 0 }),
  initStd: floatField("", "std of the N(0, std) init of embedding and linears", { min: 0 }),
};

/**
 * Presets, as data. `tiny` trains in seconds on lavapipe (the notes' passkey model: 4 segments
 * of 32 bytes); `mini` trains on a CPU in minutes; `seed-2b` has the seed's Gemma-2B sizes
 * (about 1.85B parameters; build its config and count, do not allocate it here).
 * Byte vocabulary 258 = 256 bytes + <|endoftext|> + <|pad|> (src/data/tokenizer.ts).
 */
export const PRESETS: Readonly<Record<string, Readonly<ModelConfig>>> = {
  // The demo's and the learning test's model (about 26k parameters): two segments of 16
  // bytes, enough for the recall task (key in the first segment, question in the second).
  micro: {
    vocabSize: 258,
    hiddenSize: 32,
    intermediateSize: 64,
    numLayers: 2,
    numHeads: 2,
    numKvHeads: 1,
    headDim: 16,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    segmentLength: 16,
    seqLength: 32,
    infiniLayers: "all",
    memoryUpdate: "linear",
    betaInit: 0,
    betaLrMult: 1,
    initStd: 0.02,
  },
  tiny: {
    vocabSize: 258,
    hiddenSize: 64,
    intermediateSize: 256,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 16,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    segmentLength: 32,
    seqLength: 128,
    infiniLayers: "all",
    memoryUpdate: "linear",
    betaInit: 0,
    betaLrMult: 1,
    initStd: 0.02,
  },
  mini: {
    vocabSize: 258,
    hiddenSize: 256,
    intermediateSize: 1024,
    numLayers: 6,
    numHeads: 4,
    numKvHeads: 1,
    headDim: 64,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    segmentLength: 128,
    seqLength: 512,
    infiniLayers: "all",
    memoryUpdate: "linear",
    betaInit: 0,
    betaLrMult: 1,
    initStd: 0.02,
  },
  "seed-2b": {
    vocabSize: 151936,
    hiddenSize: 2048,
    intermediateSize: 16384,
    numLayers: 14,
    numHeads: 8,
    numKvHeads: 1,
    headDim: 256,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    segmentLength: 2048,
    seqLength: 32768,
    infiniLayers: "all",
    memoryUpdate: "linear",
    betaInit: 0,
    betaLrMult: 1,
    initStd: 0.02,
  },
};

/** A fresh copy of a preset; an unknown name is a usage error naming the closest preset. */
export function preset(name: string): ModelConfig {
  const p = PRESETS[name];
  if (!p) {
    const names = Object.keys(PRESETS);
    throw new UsageError(
      `unknown preset '${name}' (did you mean '${closest(name, names)}'? presets: ${
        names.join(", ")
      })`,
    );
  }
  return cloneConfig(p);
}

/** A deep copy (the infiniLayers list or object included). */
export function cloneConfig(c: Readonly<ModelConfig>): ModelConfig {
  const il = c.infiniLayers;
  return {
    ...c,
    infiniLayers: typeof il === "string" ? il : Array.isArray(il) ? [...il] : { last: il.last },
  };
}

/**
 * Applies `key=value` overrides to a copy of `base`, each value parsed and type-checked by its
 * field in `schema`. `aliases` maps extra accepted spellings (e.g. Hugging Face names) to keys.
 * An unknown key is a usage error naming it and the closest valid key (edit distance).
 */
export function applyOverrides<T extends object>(
  base: T,
  schema: Schema<T>,
  sets: readonly string[],
  aliases: Readonly<Record<string, keyof T>> = {},
): T {
  const out = { ...base };
  const keys = Object.keys(schema) as (keyof T & string)[];
  for (const set of sets) {
    const eq = set.indexOf("=");
    if (eq <= 0) throw new UsageError(`--set '${set}': expected key=value`);
    const rawKey = set.slice(0, eq).trim();
    const text = set.slice(eq + 1);
    const key = (keys.includes(rawKey as keyof T & string) ? rawKey : aliases[rawKey]) as
      | (keyof T & string)
      | undefined;
    if (key === undefined) {
      const suggestion = closest(rawKey, [...keys, ...Object.keys(aliases)]);
      throw new UsageError(`unknown config key '${rawKey}' (did you mean '${suggestion}'?)`);
    }
    const field = schema[key];
    const v = field.parse(text);
    if (v === undefined) {
      throw new UsageError(`--set ${key}=${text}: expected ${field.expects}`);
    }
    out[key] = v;
  }
  return out;
}

/** Hugging Face GemmaConfig names accepted by `--set` as aliases of our keys. */
export const HF_ALIASES: Readonly<Record<string, keyof ModelConfig>> = {
  vocab_size: "vocabSize",
  hidden_size: "hiddenSize",
  intermediate_size: "intermediateSize",
  num_hidden_layers: "numLayers",
  num_attention_heads: "numHeads",
  num_key_value_heads: "numKvHeads",
  head_dim: "headDim",
  rms_norm_eps: "rmsNormEps",
  rope_theta: "ropeTheta",
  segment_size: "segmentLength",
  sequence_length: "seqLength",
  infini_layers: "infiniLayers",
  memory_update: "memoryUpdate",
  beta_init: "betaInit",
  beta_lr_multiplier: "betaLrMult",
  initializer_range: "initStd",
};

/** A preset with `--set` overrides applied, validated. */
export function resolveConfig(presetName: string, sets: readonly string[] = []): ModelConfig {
  const cfg = applyOverrides(preset(presetName), CONFIG_SCHEMA, sets, HF_ALIASES);
  validateConfig(cfg);
  return cfg;
}

/** The Infini layer indices, ascending. */
export function infiniLayerList(cfg: Readonly<ModelConfig>): number[] {
  const il = cfg.infiniLayers;
  const L = cfg.numLayers;
  if (il === "all") return Array.from({ length: L }, (_, i) => i);
  if (il === "none") return [];
  if (Array.isArray(il)) return [...il].sort((a, b) => a - b);
  const k = Math.min(il.last, L);
  return Array.from({ length: k }, (_, i) => L - k + i);
}

/** Whether layer `l` uses Infini-attention. */
export function isInfiniLayer(cfg: Readonly<ModelConfig>, l: number): boolean {
  return infiniLayerList(cfg).includes(l);
}

/** Checks the relations between fields; throws a one-line UserError saying what to change. */
export function validateConfig(cfg: Readonly<ModelConfig>): void {
  const bad = (msg: string): never => {
    throw new UserError(`invalid model config: ${msg}`);
  };
  for (const key of Object.keys(CONFIG_SCHEMA) as (keyof ModelConfig)[]) {
    const field = CONFIG_SCHEMA[key] as Field<unknown>;
    const v = cfg[key];
    if (v === undefined) bad(`${key} is missing`);
    if (field.parse(field.show(v)) === undefined) {
      bad(`${key} = ${String(v)}: expected ${field.expects}`);
    }
  }
  if (cfg.numHeads % cfg.numKvHeads !== 0) {
    bad(`numHeads ${cfg.numHeads} is not a multiple of numKvHeads ${cfg.numKvHeads}`);
  }
  if (cfg.headDim % 2 !== 0) bad(`headDim ${cfg.headDim} must be even (rotate-half RoPE)`);
  if (cfg.seqLength % cfg.segmentLength !== 0) {
    bad(`seqLength ${cfg.seqLength} is not a multiple of segmentLength ${cfg.segmentLength}`);
  }
  const il = cfg.infiniLayers;
  if (Array.isArray(il)) {
    const seen = new Set<number>();
    for (const l of il) {
      if (!Number.isInteger(l) || l < 0 || l >= cfg.numLayers) {
        bad(`infiniLayers has layer ${l}, outside 0..${cfg.numLayers - 1}`);
      }
      if (seen.has(l)) bad(`infiniLayers lists layer ${l} twice`);
      seen.add(l);
    }
  } else if (typeof il === "object" && il.last > cfg.numLayers) {
    bad(`infiniLayers last:${il.last} exceeds numLayers ${cfg.numLayers}`);
  }
}

/** The activation Gemma uses in its MLP, the only one this project implements. */
export const HIDDEN_ACTIVATION = "gelu_pytorch_tanh";

/** config.json contents: GemmaConfig field names plus the Infini fields. */
export interface HfConfig {
  architectures: string[];
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  rms_norm_eps: number;
  rope_theta: number;
  hidden_activation: string;
  tie_word_embeddings: boolean;
  initializer_range: number;
  /** Infini: segment length S. */
  segment_size: number;
  /** Infini: explicit list of layer indices with Infini-attention. */
  infini_layers: number[];
  /** Infini: "linear" | "delta". */
  memory_update: MemoryUpdate;
  /** Ours: training sequence length T. */
  sequence_length: number;
  /** Ours: initial beta and its learning-rate multiplier. */
  beta_init: number;
  beta_lr_multiplier: number;
}

/** The config as config.json stores it (Hugging Face names, explicit Infini layer list). */
export function toHfConfig(cfg: Readonly<ModelConfig>): HfConfig {
  return {
    architectures: ["InfiniGemmaForCausalLM"],
    model_type: "gemma",
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads,
    head_dim: cfg.headDim,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    hidden_activation: HIDDEN_ACTIVATION,
    tie_word_embeddings: true,
    initializer_range: cfg.initStd,
    segment_size: cfg.segmentLength,
    infini_layers: infiniLayerList(cfg),
    memory_update: cfg.memoryUpdate,
    sequence_length: cfg.seqLength,
    beta_init: cfg.betaInit,
    beta_lr_multiplier: cfg.betaLrMult,
  };
}

/** Sequences per config.json that lacks `sequence_length` (e.g. a plain Infini checkpoint). */
export const DEFAULT_SEGMENTS_PER_SEQUENCE = 4;

/**
 * Reads a parsed config.json. Required: the Gemma sizes and `segment_size`. Optional with
 * defaults: num_key_value_heads (= heads), head_dim (= hidden / heads), rms_norm_eps 1e-6,
 * rope_theta 10000, infini_layers (all), memory_update (linear), sequence_length
 * (4 segments), beta_init 0, beta_lr_multiplier 1, initializer_range 0.02. Other fields
 * (torch_dtype, transformers_version, ...) are ignored. `source` names the file in errors.
 */
export function fromHfConfig(json: unknown, source = "config.json"): ModelConfig {
  const fail = (msg: string): never => {
    throw new UserError(`${source}: ${msg}`);
  };
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    fail("expected a JSON object");
  }
  const o = json as Record<string, unknown>;
  const num = (k: string, def?: number, int = true): number => {
    const v = o[k];
    if (v === undefined || v === null) {
      return def ?? fail(`missing field '${k}'`);
    }
    if (typeof v !== "number" || !Number.isFinite(v) || (int && !Number.isInteger(v))) {
      return fail(
        `field '${k}' must be ${int ? "an integer" : "a number"}, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  };
  if (o.hidden_activation !== undefined && o.hidden_activation !== HIDDEN_ACTIVATION) {
    fail(
      `hidden_activation ${
        JSON.stringify(o.hidden_activation)
      } is not supported (only "${HIDDEN_ACTIVATION}")`,
    );
  }
  if (o.tie_word_embeddings === false) fail("tie_word_embeddings false is not supported");
  const hidden = num("hidden_size");
  const heads = num("num_attention_heads");
  const layers = num("num_hidden_layers");
  const segment = num("segment_size");
  let infiniLayers: InfiniLayers = "all";
  if (o.infini_layers !== undefined) {
    const il = o.infini_layers;
    if (!Array.isArray(il) || il.some((x) => typeof x !== "number" || !Number.isInteger(x))) {
      fail(`field 'infini_layers' must be a list of layer indices, got ${JSON.stringify(il)}`);
    }
    const list = [...(il as number[])].sort((a, b) => a - b);
    infiniLayers = list.length === 0
      ? "none"
      : list.length === layers && list.every((l, i) => l === i)
      ? "all"
      : list;
  }
  const mu = o.memory_update ?? "linear";
  if (mu !== "linear" && mu !== "delta") {
    fail(`field 'memory_update' must be "linear" or "delta", got ${JSON.stringify(mu)}`);
  }
  const cfg: ModelConfig = {
    vocabSize: num("vocab_size"),
    hiddenSize: hidden,
    intermediateSize: num("intermediate_size"),
    numLayers: layers,
    numHeads: heads,
    numKvHeads: num("num_key_value_heads", heads),
    headDim: num("head_dim", Math.floor(hidden / heads)),
    rmsNormEps: num("rms_norm_eps", 1e-6, false),
    ropeTheta: num("rope_theta", 10000, false),
    segmentLength: segment,
    seqLength: num("sequence_length", segment * DEFAULT_SEGMENTS_PER_SEQUENCE),
    infiniLayers,
    memoryUpdate: mu as MemoryUpdate,
    betaInit: num("beta_init", 0, false),
    betaLrMult: num("beta_lr_multiplier", 1, false),
    initStd: num("initializer_range", 0.02, false),
  };
  try {
    validateConfig(cfg);
  } catch (e) {
    fail((e as Error).message);
  }
  return cfg;
}

/** Reads and validates a config.json file. */
export async function readHfConfig(path: string): Promise<ModelConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UserError(`${path}: no such file`);
    throw new UserError(`${path}: cannot read (${oneLine((e as Error).message)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${path}: not valid JSON (${oneLine((e as Error).message)})`);
  }
  return fromHfConfig(json, path);
}

/** Whether two configs describe the same model and training shape (Infini layers resolved). */
export function sameConfig(a: Readonly<ModelConfig>, b: Readonly<ModelConfig>): boolean {
  return configDiff(a, b).length === 0;
}

/** The fields where two configs differ, as "key a -> b" (Infini layers compared resolved). */
export function configDiff(a: Readonly<ModelConfig>, b: Readonly<ModelConfig>): string[] {
  const out: string[] = [];
  for (const key of Object.keys(CONFIG_SCHEMA) as (keyof ModelConfig)[]) {
    const f = CONFIG_SCHEMA[key] as Field<unknown>;
    const [x, y] = key === "infiniLayers"
      ? [infiniLayerList(a).join(","), infiniLayerList(b).join(",")]
      : [f.show(a[key]), f.show(b[key])];
    if (x !== y) out.push(`${key} ${x} -> ${y}`);
  }
  return out;
}

/**
 * The resolved config as an aligned table, one field per line with its symbol and meaning,
 * followed by derived figures. `paramCount` (from params.ts) is passed in to keep this file
 * free of the parameter table.
 */
export function formatConfig(
  cfg: Readonly<ModelConfig>,
  title = "model config",
  paramCount?: number,
): string {
  const rows: [string, string, string, string][] = [];
  for (const key of Object.keys(CONFIG_SCHEMA) as (keyof ModelConfig)[]) {
    const f = CONFIG_SCHEMA[key] as Field<unknown>;
    rows.push([key, f.show(cfg[key]), f.symbol, f.doc]);
  }
  const il = infiniLayerList(cfg);
  rows.push([
    "  -> infini layers",
    il.length === 0 ? "none" : compactRanges(il),
    "",
    `of ${cfg.numLayers}`,
  ]);
  rows.push([
    "  -> segments",
    String(cfg.seqLength / cfg.segmentLength),
    "T/S",
    "per sequence",
  ]);
  if (paramCount !== undefined) {
    rows.push(["  -> parameters", paramCount.toLocaleString("en-US"), "", fmtCount(paramCount)]);
  }
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) =>
    `  ${r[0].padEnd(w[0])}  ${r[1].padStart(w[1])}  ${r[2].padEnd(w[2])}  ${r[3]}`.trimEnd()
  );
  return [title, ...lines].join("\n");
}

/** [0, 1, 2, 5] -> "0-2,5". */
function compactRanges(xs: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < xs.length;) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j] + 1) j++;
    parts.push(j > i ? `${xs[i]}-${xs[j]}` : `${xs[i]}`);
    i = j + 1;
  }
  return parts.join(",");
}

function fmtCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

/** Levenshtein distance, case-insensitive. */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase(), t = b.toLowerCase();
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const cur = [i];
    for (let j = 1; j <= t.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (s[i - 1] === t[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[t.length];
}

/** The candidate nearest to `name` by edit distance (first one on ties). */
export function closest(name: string, candidates: readonly string[]): string {
  let best = candidates[0], bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best;
}
