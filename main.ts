/**
 * infini: pre-train and evaluate Gemma-style models with Infini-attention on WebGPU.
 * This file only dispatches subcommands; each lives in src/cli/<name>.ts.
 */
import { SUMMARIES } from "./src/cli/summaries.ts";
import { UsageError, UserError } from "./src/util/errors.ts";
import { GpuUnavailableError, KernelError } from "./src/gpu/runtime.ts";

interface Command {
  run(args: string[]): Promise<number>;
}

/** Subcommands, loaded on demand so that `--help` stays fast. */
const COMMANDS: Record<keyof typeof SUMMARIES, () => Promise<Command>> = {
  info: () => import("./src/cli/info.ts"),
  train: () => import("./src/cli/train.ts"),
  gen: () => import("./src/cli/gen.ts"),
  eval: () => import("./src/cli/eval.ts"),
  generate: () => import("./src/cli/generate.ts"),
  demo: () => import("./src/cli/demo.ts"),
};

function help(): string {
  const rows = Object.keys(COMMANDS).map((k) =>
    `  ${k.padEnd(10)} ${SUMMARIES[k as keyof typeof SUMMARIES]}`
  );
  return `infini: Gemma-style language models with Infini-attention, on WebGPU

Usage: infini <command> [options]     (from source: deno run -A main.ts <command>)

Commands:
${rows.join("\n")}

Global options:
  --debug    show stack traces on errors
  -h, --help this help; '<command> --help' for a command's own

Run 'infini <command> --help' for examples.`;
}

/**
 * The exit code of an error the user can act on, reported as one line without a stack trace:
 * 2 for bad flags or arguments, 1 for a bad input, a missing file, no GPU adapter or a kernel
 * the adapter rejects; null for anything else (a bug). The bench scripts report the same way.
 */
export function userErrorExitCode(e: unknown): 1 | 2 | null {
  if (e instanceof UsageError) return 2;
  const user = e instanceof UserError || e instanceof GpuUnavailableError ||
    e instanceof KernelError || e instanceof Deno.errors.NotFound ||
    e instanceof Deno.errors.PermissionDenied;
  return user ? 1 : null;
}

export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes("--debug");
  const args = argv.filter((a) => a !== "--debug");
  const name = args[0];
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    console.log(help());
    return name === undefined ? 2 : 0;
  }
  const load = (COMMANDS as Record<string, () => Promise<Command>>)[name];
  try {
    if (!load) {
      throw new UsageError(
        `unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(", ")})`,
      );
    }
    const cmd = await load();
    return await cmd.run(args.slice(1));
  } catch (e) {
    if (debug) console.error(e);
    const msg = e instanceof Error ? e.message : String(e);
    const code = userErrorExitCode(e);
    if (code !== null) {
      console.error(`error: ${msg}`);
      return code;
    }
    console.error(`error: ${msg}${debug ? "" : " (run with --debug for details)"}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
