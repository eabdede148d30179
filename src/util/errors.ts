/**
 * Errors a user can act on, at the bottom of the layers so that every layer may throw them.
 * main.ts prints them as one line (no stack trace unless --debug) and exits 2 for usage
 * errors, 1 for failures.
 */
/** Bad flags or arguments: exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A failure the user can fix (bad input file, missing checkpoint...): exit code 1. */
export class UserError extends Error {
  override name = "UserError";
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
