/**
 * The command line's one convention: every subcommand parses its flags with `parseCommand`
 * (which also answers `--help` and turns every mistake into a one-line UsageError naming the
 * flag) and reads values with the `*Flag` helpers below.
 *
 * Conventions: long flags `--name VALUE` or `--name=VALUE`; a value may be negative
 * (`--lr -1` is read as a value and then rejected by the helper with what is wrong with it);
 * the output folder is `--out` in every command; `-h, --help` everywhere.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../util/errors.ts";
import { closest } from "../util/text.ts";
import { LIMIT_NAMES, type LimitName } from "../gpu/runtime.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

const HELP_OPTION = { help: { type: "boolean", short: "h" } } as const;

/** What a command declares: its name as the user types it, its help text and its flags. */
export interface CommandSpec<O extends Options> {
  /** e.g. "train" or "eval passkey": starts every usage error. */
  name: string;
  help: string;
  options: O;
  /** Free arguments after the flags (default: none allowed). */
  positionals?: boolean;
  /** Other spellings of a flag, e.g. { output: "out" } for `--output DIR`. */
  aliases?: Record<string, string>;
  /**
   * Flags declared in `options` that belong to a sibling command and are refused here, with
   * an error naming that command: { text: "eval ppl" }.
   */
  elsewhere?: Record<string, string>;
}

/**
 * Parses `args` against `spec`. Returns null when `--help` was given (the help is printed);
 * throws a UsageError that names the flag for an unknown flag, a missing value, a value given
 * to a switch, or an unexpected argument.
 */
export function parseCommand<const O extends Options>(spec: CommandSpec<O>, args: string[]) {
  const options = { ...spec.options, ...HELP_OPTION };
  const normal = normalize(spec, options, args);
  type Config = {
    args: string[];
    options: O & typeof HELP_OPTION;
    strict: true;
    allowPositionals: boolean;
  };
  let parsed;
  try {
    parsed = parseArgs<Config>({
      args: normal,
      options,
      strict: true,
      allowPositionals: spec.positionals ?? false,
    });
  } catch (e) {
    // normalize() already caught what a user can get wrong; this is a last resort.
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new UsageError(`${spec.name}: ${msg} (see '${spec.name} --help')`);
  }
  if ((parsed.values as { help?: boolean }).help) {
    console.log(spec.help);
    return null;
  }
  return parsed;
}

/** A number as a flag value: "-3", "1e-4", ".5", "1_000". */
const NUMERIC = /^[+-]?(\d[\d_]*\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * Checks every token against the declared flags before node:util sees them, so that each
 * mistake gets a message of its own, and joins each value to its flag (`--name=value`), so a
 * value may start with '-'. The token after a flag that needs a value is that value unless it
 * is another flag (`--x`, or a declared short flag such as `-h`).
 */
function normalize(spec: CommandSpec<Options>, options: Options, args: string[]): string[] {
  const cmd = spec.name;
  const see = `(see '${cmd} --help')`;
  const shorts = new Map<string, string>();
  for (const [name, o] of Object.entries(options)) if (o.short) shorts.set(o.short, name);
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      out.push(...args.slice(i));
      break;
    }
    let name: string | undefined, inline: string | undefined, shown: string;
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      inline = eq < 0 ? undefined : a.slice(eq + 1);
      shown = `--${name}`;
      name = spec.aliases?.[name] ?? name;
    } else if (a.startsWith("-") && a.length > 1 && !NUMERIC.test(a)) {
      const letter = a[1];
      name = shorts.get(letter);
      shown = `-${letter}`;
      if (name === undefined) throw new UsageError(`${cmd}: unknown option '${shown}' ${see}`);
      if (a.length > 2) inline = a.slice(2);
    } else {
      if (!spec.positionals) {
        throw new UsageError(`${cmd}: unexpected argument '${a}' ${see}`);
      }
      out.push(a);
      continue;
    }
    const other = spec.elsewhere?.[name];
    if (other) {
      throw new UsageError(`${cmd}: ${shown} is an option of '${other}', not of '${cmd}' ${see}`);
    }
    const opt = options[name];
    if (!opt) {
      const near = closest(name, Object.keys(options), 2);
      throw new UsageError(
        `${cmd}: unknown option '${shown}'${near ? ` (did you mean '--${near}'?)` : ""} ${see}`,
      );
    }
    if (opt.type === "boolean") {
      if (inline !== undefined) throw new UsageError(`${cmd}: ${shown} takes no value ${see}`);
      out.push(`--${name}`);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      const next = args[i + 1];
      if (next === undefined || next.startsWith("--") || shorts.has(next.slice(1))) {
        throw new UsageError(
          `${cmd}: ${shown} needs a value${next === undefined ? "" : `, got '${next}'`} ${see}`,
        );
      }
      value = next;
      i++;
    }
    out.push(`--${name}=${value}`);
  }
  return out;
}

/** An integer flag (`def` when absent); anything else, or outside [min, max], is a usage error. */
export function intFlag(
  flag: string,
  v: string | undefined,
  def: number,
  min = 1,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (v === undefined) return def;
  const t = v.trim().replaceAll("_", "");
  const n = /^[+-]?\d+$/.test(t) ? Number(t) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw new UsageError(`--${flag} '${v}': expected an integer ${range}`);
  }
  return n;
}

/**
 * A number flag (`def` when absent) within a range: `min` (default 0) or `above` from below,
 * `max` or `below` from above; anything else is a usage error that states the range.
 */
export function numFlag(
  flag: string,
  v: string | undefined,
  def: number,
  range: { min?: number; above?: number; max?: number; below?: number } = {},
): number {
  if (v === undefined) return def;
  const { above, max, below } = range;
  const min = above === undefined ? range.min ?? 0 : -Infinity;
  const x = v.trim() === "" ? NaN : Number(v.trim().replaceAll("_", ""));
  const ok = Number.isFinite(x) && x >= min && (above === undefined || x > above) &&
    (max === undefined || x <= max) && (below === undefined || x < below);
  if (!ok) {
    const lo = above !== undefined ? `> ${above}` : `>= ${min}`;
    const hi = below !== undefined ? ` and < ${below}` : max !== undefined ? ` and <= ${max}` : "";
    throw new UsageError(`--${flag} '${v}': expected a number ${lo}${hi}`);
  }
  return x;
}

/**
 * A comma-separated list flag (undefined when absent): numbers, or with `int` positive
 * integers; anything else, or an empty list, is a usage error.
 */
export function listFlag(flag: string, v: string | undefined, int: boolean): number[] | undefined {
  if (v === undefined) return undefined;
  const out = v.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (
    !out.length || out.some((x) => !Number.isFinite(x) || (int && (!Number.isInteger(x) || x < 1)))
  ) {
    throw new UsageError(
      `--${flag} '${v}': expected a comma-separated list of ${
        int ? "positive integers" : "numbers"
      }`,
    );
  }
  return out;
}

/** One of `choices` (`def` when absent); anything else is a usage error listing them. */
export function choiceFlag<const C extends string>(
  flag: string,
  v: string | undefined,
  choices: readonly C[],
  def: C,
): C {
  if (v === undefined) return def;
  if (!choices.includes(v as C)) {
    throw new UsageError(`--${flag} '${v}': expected one of ${choices.join(", ")}`);
  }
  return v as C;
}

/** The `--limit` option every command that opens the GPU declares. */
export const LIMIT_OPTION = { limit: { type: "string", multiple: true } } as const;

/** Help lines for `--limit`, the same in every command. */
export const LIMIT_HELP =
  `  --limit NAME=BYTES     lower a device limit below the adapter's, repeatable (e.g.
                         --limit maxStorageBufferBindingSize=1MiB --limit maxBufferSize=4MiB):
                         run as if on an adapter with smaller buffers and bindings`;

const UNITS: Record<string, number> = {
  "": 1,
  k: 1e3,
  kb: 1e3,
  kib: 2 ** 10,
  m: 1e6,
  mb: 1e6,
  mib: 2 ** 20,
  g: 1e9,
  gb: 1e9,
  gib: 2 ** 30,
  t: 1e12,
  tb: 1e12,
  tib: 2 ** 40,
};

/**
 * A byte count: "1048576", "1MiB", "64KiB", "2GiB", "1_000_000"; decimal k/M/G/T with or
 * without B ("80GB" is 80e9 bytes, "80GiB" 80 x 2^30).
 */
export function parseBytes(flag: string, v: string): number {
  const m = /^(\d[\d_]*)\s*([a-z]*)$/i.exec(v.trim());
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  const n = m && unit !== undefined ? Number(m[1].replaceAll("_", "")) * unit : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new UsageError(`--${flag} '${v}': expected a byte count such as 1048576 or 1MiB`);
  }
  return n;
}

/** `--limit NAME=BYTES` values as runtime caps; a name the runtime does not use is an error. */
export function limitFlags(values: string[] | undefined): Partial<Record<LimitName, number>> {
  const out: Partial<Record<LimitName, number>> = {};
  for (const v of values ?? []) {
    const eq = v.indexOf("=");
    const name = eq < 0 ? v : v.slice(0, eq);
    if (!(LIMIT_NAMES as readonly string[]).includes(name)) {
      const near = closest(name, LIMIT_NAMES, 2);
      throw new UsageError(
        `--limit '${v}': unknown limit '${name}'${
          near ? ` (did you mean ${near}?)` : ` (one of ${LIMIT_NAMES.join(", ")})`
        }`,
      );
    }
    if (eq < 0) throw new UsageError(`--limit '${v}': expected NAME=BYTES`);
    out[name as LimitName] = parseBytes(`limit ${name}`, v.slice(eq + 1));
  }
  return out;
}
