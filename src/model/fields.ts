/**
 * Typed fields: how one value of a record is read from text, written back, and described.
 * A {@link Schema} gives every key of a record its field, which is what `--set key=value`
 * overrides are type-checked against (src/model/overrides.ts) and what the config printer and
 * validator walk (src/model/config.ts). Nothing here knows about models.
 *
 * @example
 * ```ts
 * const steps = intField("N", "optimizer steps");
 * steps.parse("1_000"); // 1000
 * steps.parse("-3"); // undefined: steps.expects says "a positive integer"
 * ```
 */

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

/** "[0, 2]", "0,2" and "" (the empty list) read; anything else is undefined. */
export function parseIntList(t: string): number[] | undefined {
  const s = t.trim().replace(/^\[/, "").replace(/\]$/, "").trim();
  if (s === "") return [];
  const out: number[] = [];
  for (const part of s.split(",")) {
    if (!/^\s*\d+\s*$/.test(part)) return undefined;
    out.push(Number(part));
  }
  return out;
}
