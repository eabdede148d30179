/**
 * `deno task compile`: builds the standalone binary dist/infini (or --out PATH).
 *
 * `deno compile` embeds the code, the WGSL kernels (text imports), Qwen's tokenizer (a JSON
 * import) and the npm packages; the workers, started by URL, are added with --include (the
 * list below; tests/compile_ready_test.ts checks it against the code). It needs Deno's
 * runtime (denort), which it downloads once; without network, point DENORT_BIN at a local
 * denort. A failure is reported in one line and leaves no output folder behind.
 */
import { dirname } from "node:path";

/** Workers the program starts by URL: not found by import analysis, so included by hand. */
export const WORKERS = [
  "src/data/tokenize_worker.ts",
  "src/data/parquet_worker.ts",
  "src/train/interrupt_worker.ts",
];

const USAGE = "usage: deno task compile [--out PATH]   (default dist/infini)";

async function main(args: string[]): Promise<number> {
  let out = "dist/infini";
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "-h" || args[i] === "--help") {
      console.log(USAGE);
      return 0;
    }
    if (args[i] === "--out" && args[i + 1]) out = args[++i];
    else {
      console.error(`compile: unexpected argument '${args[i]}' (${USAGE})`);
      return 2;
    }
  }
  const dir = dirname(out);
  const dirExisted = await Deno.stat(dir).then(() => true, () => false);
  const root = new URL("..", import.meta.url).pathname;
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "--allow-all",
      ...WORKERS.flatMap((w) => ["--include", `${root}${w}`]),
      "--output",
      out,
      `${root}main.ts`,
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
  const r = await cmd.output();
  if (r.code === 0) {
    const mb = (await Deno.stat(out)).size / 1e6;
    console.log(`compile: wrote ${out} (${mb.toFixed(0)} MB)`);
    return 0;
  }
  if (!dirExisted) await Deno.remove(dir, { recursive: true }).catch(() => {});
  console.error(`compile: ${why(new TextDecoder().decode(r.stderr))}`);
  return 1;
}

/** One line from deno compile's error report: its innermost cause, said for a user. */
export function why(stderr: string): string {
  const denort = stderr.match(/Could not find denort at '([^']*)'/);
  if (denort) return `DENORT_BIN points at '${denort[1]}', which does not exist`;
  if (/error sending request|dns error|Connect/.test(stderr)) {
    return "deno compile could not download Deno's runtime (denort): no network? " +
      "Set DENORT_BIN to a local denort binary and run it again";
  }
  const err = stderr.split("\n").map((l) => l.trim()).find((l) => l.startsWith("error:"));
  return err?.replace(/^error:\s*/, "") ?? "deno compile failed";
}

if (import.meta.main) Deno.exit(await main(Deno.args));
