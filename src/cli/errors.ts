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
