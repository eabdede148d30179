/**
 * Errors a user can act on. main.ts prints them as one line (no stack trace unless --debug)
 * and exits 2 for usage errors, 1 for failures.
 */

/** Bad flags or arguments: exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A failure the user can fix (bad input file, missing checkpoint...): exit code 1. */
export class UserError extends Error {
  override name = "UserError";
}

/** Wraps node:util parseArgs errors (unknown flag, missing value) as usage errors. */
export function usage(e: unknown, command: string): never {
  const msg = e instanceof Error ? e.message : String(e);
  throw new UsageError(`${command}: ${msg.split("\n")[0]} (see '${command} --help')`);
}

/**
 * Text from outside the program (a file's bytes quoted in a parser's message, a tensor name)
 * made safe for a one-line error: every control character, line breaks included, is shown as
 * an escape (`\n`, `\t`, `\u001b`), so it can neither break the line nor drive the terminal.
 */
export function oneLine(text: string): string {
  const named: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
  let out = "";
  for (const c of text) {
    const code = c.charCodeAt(0);
    const control = code < 0x20 || (code >= 0x7f && code < 0xa0) || code === 0x2028 ||
      code === 0x2029;
    out += !control ? c : named[c] ?? `\\u${code.toString(16).padStart(4, "0")}`;
  }
  return out;
}

/** A UTF-8 text file named by the user; a missing, unreadable or non-UTF-8 file is a UserError. */
export async function readUserText(path: string): Promise<string> {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(await Deno.readFile(path));
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof TypeError
      ? "not valid UTF-8"
      : oneLine((e as Error).message.split("\n")[0]);
    throw new UserError(`${path}: ${why}`);
  }
}

/** An integer flag (`def` when absent); anything else, or below `min`, is a usage error. */
export function intFlag(flag: string, v: string | undefined, def: number, min = 1): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new UsageError(`--${flag} '${v}': expected an integer >= ${min}`);
  }
  return n;
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
