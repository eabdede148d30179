/**
 * The model config as Hugging Face stores it: config.json holds GemmaConfig's field names
 * (vocab_size, num_hidden_layers, ...) plus the Infini fields (segment_size, infini_layers,
 * memory_update) and ours (sequence_length, beta_init, beta_lr_multiplier). Conversion both
 * ways, reading a file with one-line errors, and the Hugging Face names `--set` accepts.
 *
 * @example
 * ```ts
 * const hf = toHfConfig(cfg); // what config.json holds
 * const back = fromHfConfig(JSON.parse(text), "run/config.json"); // validated
 * ```
 */
import { oneLine, UserError } from "../util/errors.ts";
import {
  infiniLayerList,
  type InfiniLayers,
  type MemoryUpdate,
  type ModelConfig,
  validateConfig,
} from "./config.ts";

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
