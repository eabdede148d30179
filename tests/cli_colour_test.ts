/**
 * Colours only on a terminal, never with NO_COLOR: the CLI prints no escape codes at all into
 * a pipe or file, and on a terminal (a pseudo-terminal made by util-linux `script`) with
 * NO_COLOR set it prints no colour (SGR) codes. The line redraw of progress output
 * (`\r ESC[2K`) is cursor control, not colour: it appears on a terminal only.
 */
import { equal, ok } from "node:assert/strict";
import { gpuTest } from "./_gpu.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const ESC = "\x1b";
/** Select Graphic Rendition: colours, bold, dim... `ESC [ params m`. */
const SGR = new RegExp(`${ESC}\\[[0-9;]*m`);

/** Commands that print help, a usage error, and an error with a stack trace (--debug). */
const COMMANDS = [
  ["--help"],
  ["train", "--help"],
  ["train", "--no-such-flag"],
  ["train", "--preset", "nope", "--debug"],
];

/** The environment without NO_COLOR, plus `extra`. */
function env(extra: Record<string, string> = {}): Record<string, string> {
  const e = Deno.env.toObject();
  delete e.NO_COLOR;
  return { ...e, ...extra };
}

async function piped(args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${REPO}/main.ts`, ...args],
    clearEnv: true,
    env: env(),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return dec.decode(out.stdout) + dec.decode(out.stderr);
}

function quote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Runs on a pseudo-terminal through `script`; stdout and stderr come back together. */
async function onTerminal(args: string[], extraEnv: Record<string, string>): Promise<string> {
  const cmd = [Deno.execPath(), "run", "-A", `${REPO}/main.ts`, ...args].map(quote).join(" ");
  const out = await new Deno.Command("script", {
    args: ["-qec", cmd, "/dev/null"],
    clearEnv: true,
    env: env(extraEnv),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout);
}

const hasScript = await new Deno.Command("script", { args: ["--version"], stdout: "null" })
  .output().then((o) => o.success, () => false);

Deno.test("cli: no escape codes when the output is not a terminal", async () => {
  for (const args of COMMANDS) {
    const text = await piped(args);
    ok(text.length > 0, `${args.join(" ")}: no output`);
    ok(
      !text.includes(ESC),
      `${args.join(" ")}: escape codes in piped output: ${JSON.stringify(text)}`,
    );
  }
});

Deno.test({
  name: `cli: on a terminal with NO_COLOR, no colour codes${
    hasScript ? "" : " [skipped: util-linux 'script' is not installed]"
  }`,
  ignore: !hasScript,
  fn: async () => {
    // Without NO_COLOR the --debug stack trace is coloured: proof that `script` gives a
    // terminal, so that the check below is not passed vacuously.
    const coloured = await onTerminal(["train", "--preset", "nope", "--debug"], {});
    ok(SGR.test(coloured), `no colour even without NO_COLOR: ${JSON.stringify(coloured)}`);
    for (const args of COMMANDS) {
      const text = await onTerminal(args, { NO_COLOR: "1" });
      ok(text.length > 0, `${args.join(" ")}: no output`);
      ok(!SGR.test(text), `${args.join(" ")}: colour with NO_COLOR: ${JSON.stringify(text)}`);
    }
  },
});

const PROGRESS =
  "cli: train progress on a terminal redraws its line, without colour under NO_COLOR";
if (hasScript) {
  gpuTest(PROGRESS, async () => {
    const out = await Deno.makeTempDir({ prefix: "infini-colour-" });
    try {
      const args = ["train", "--preset", "micro", "--data", "recall", "--steps", "2"];
      const flags = ["--batch", "2", "--log-every", "1", "--out", out];
      const tty = await onTerminal([...args, ...flags], { NO_COLOR: "1" });
      ok(tty.includes(`\r${ESC}[2K`), `no line redraw on a terminal: ${JSON.stringify(tty)}`);
      ok(!SGR.test(tty), `colour with NO_COLOR: ${JSON.stringify(tty)}`);
      const text = await piped([...args, ...flags, "--overwrite"]);
      equal(text.includes(ESC), false, `escape codes in piped output: ${JSON.stringify(text)}`);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  });
} else {
  Deno.test({
    name: `${PROGRESS} [skipped: util-linux 'script' is not installed]`,
    ignore: true,
    fn: () => {},
  });
}
