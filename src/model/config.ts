/**
 * The model's configuration: one typed record named as the papers name things, its schema
 * (one typed field per key, src/model/fields.ts), presets as data, the checks between fields,
 * and a pretty printer. Choosing a preset and `--set` overrides: src/model/overrides.ts;
 * config.json: src/model/hf_config.ts.
 *
 * Dimension letters used across the project: V vocab, C hidden, F MLP hidden, L layers,
 * H query heads, Hkv KV heads, D head dim, S segment length, T sequence length, B batch.
 *
 * @example
 * ```ts
 * const cfg = cloneConfig(PRESETS.tiny);
 * cfg.memoryUpdate = "delta";
 * validateConfig(cfg);
 * console.log(formatConfig(cfg, "tiny"));
 * ```
 */
import { UserError } from "../util/errors.ts";
import {
  enumField,
  type Field,
  floatField,
  intField,
  parseIntList,
  type Schema,
} from "./fields.ts";

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

/** A deep copy (the infiniLayers list or object included). */
export function cloneConfig(c: Readonly<ModelConfig>): ModelConfig {
  const il = c.infiniLayers;
  return {
    ...c,
    infiniLayers: typeof il === "string" ? il : Array.isArray(il) ? [...il] : { last: il.last },
  };
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
