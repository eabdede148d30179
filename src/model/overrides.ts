/**
 * A model config from the command line: a preset by name, then `--set key=value` overrides,
 * each value parsed and type-checked by its field (src/model/fields.ts). Keys are our names or
 * Hugging Face's (src/model/hf_config.ts); an unknown preset or key is a usage error naming the
 * closest valid one.
 *
 * @example
 * ```ts
 * const cfg = resolveConfig("tiny", ["memoryUpdate=delta", "num_hidden_layers=4"]);
 * ```
 */
import { UsageError } from "../util/errors.ts";
import { closest } from "../util/text.ts";
import { cloneConfig, CONFIG_SCHEMA, type ModelConfig, PRESETS, validateConfig } from "./config.ts";
import type { Schema } from "./fields.ts";
import { HF_ALIASES } from "./hf_config.ts";

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

/** A preset with `--set` overrides applied, validated. */
export function resolveConfig(presetName: string, sets: readonly string[] = []): ModelConfig {
  const cfg = applyOverrides(preset(presetName), CONFIG_SCHEMA, sets, HF_ALIASES);
  validateConfig(cfg);
  return cfg;
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
