/**
 * Standalone-binary readiness (`deno task compile`). Compiling downloads Deno's runtime, which
 * this machine cannot, so these tests check what the binary depends on instead:
 *   - every worker the code starts is an `--include` of the compile task, and no source file
 *     reads a file located relative to itself (such a read would miss the embedded set);
 *   - the CLI, run from another working directory with read permission limited to its inputs
 *     and outputs, the module graphs of the included workers and the npm packages (all of
 *     which `deno compile` embeds), does its work: `gen` (JSONL and parquet, Qwen and byte
 *     tokenizers), `info`, `train` and `--resume`, `eval`, `generate`. A read of anything else
 *     at run time (a kernel, a tokenizer file, deno.json) is a permission error and fails it.
 */
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { DOCS, writeParquet } from "./gen_fixtures.ts";
import { gpuTest } from "./_gpu.ts";
import { WORKERS } from "../scripts/compile.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The `--include` paths of the compile task, repo-relative. */
async function compileIncludes(): Promise<string[]> {
  const deno = JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`));
  const task: string = deno.tasks?.compile ?? "";
  ok(
    task.endsWith("scripts/compile.ts"),
    `deno.json's compile task is not scripts/compile.ts: '${task}'`,
  );
  return [...WORKERS];
}

/** Every .ts file under `dir`, repo-relative. */
async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${REPO}/${dir}`)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await sources(p));
    else if (e.name.endsWith(".ts")) out.push(p);
  }
  return out.sort();
}

/** Local files (absolute paths) of a module's static graph, as `deno info` reports it. */
async function localGraph(module: string): Promise<string[]> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", module],
    cwd: REPO,
    stdout: "piped",
    stderr: "piped",
  }).output();
  equal(code, 0, new TextDecoder().decode(stderr));
  const info = JSON.parse(new TextDecoder().decode(stdout));
  return info.modules.map((m: { specifier: string }) => m.specifier)
    .filter((s: string) => s.startsWith("file://")).map((s: string) => new URL(s).pathname);
}

Deno.test("compile-ready: every worker is an --include of the compile task; no source reads a file beside itself", async () => {
  const includes = await compileIncludes();
  const workers: string[] = [];
  const relativeUse: string[] = [];
  for (const file of [...await sources("src"), "main.ts"]) {
    const text = await Deno.readTextFile(`${REPO}/${file}`);
    const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/")) : ".";
    for (const m of text.matchAll(/new Worker\(\s*new URL\(\s*"([^"]+)",\s*import\.meta\.url/g)) {
      workers.push(new URL(m[1], `file:///${dir}/`).pathname.slice(1));
    }
    // import.meta.url may only locate a worker's module: anything else relative to the source
    // (a data file read next to it, import.meta.dirname/filename, fromFileUrl) is a run-time
    // read outside what the binary embeds.
    const lines = text.split("\n");
    lines.forEach((line, i) => {
      if (!/import\.meta\.(url|dirname|filename|resolve)|fromFileUrl/.test(line)) return;
      const around = lines.slice(Math.max(0, i - 2), i + 1).join("\n");
      if (/new Worker\(/.test(around)) return;
      relativeUse.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  ok(workers.length > 0, "no workers found: the pattern no longer matches the code");
  deepStrictEqual(
    [...new Set(workers)].sort(),
    [...includes].sort(),
    "the compile task's --include list and the workers the code starts differ",
  );
  for (const inc of includes) ok((await Deno.stat(`${REPO}/${inc}`)).isFile, inc);
  deepStrictEqual(relativeUse, [], "source-relative file access outside a Worker:");
});

/** A sandbox: a temporary working directory and the read allowlist of the embedded set. */
interface Sandbox {
  dir: string;
  /** Runs `main.ts ...args` there; returns exit code and output. */
  cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

async function sandbox(): Promise<Sandbox> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "infini-standalone-" }));
  // What `deno compile` embeds besides main.ts's own graph (which `deno run` loads without
  // read permission): the included workers' graphs and the npm packages.
  const embedded = new Set<string>([`${REPO}/node_modules`]);
  for (const inc of await compileIncludes()) {
    for (const f of await localGraph(`${REPO}/${inc}`)) embedded.add(f);
  }
  const readable = [dir, ...embedded].join(",");
  return {
    dir,
    async cli(args: string[]) {
      const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          `--config=${REPO}/deno.json`,
          `--allow-read=${readable}`,
          `--allow-write=${dir}`,
          "--allow-env",
          `${REPO}/main.ts`,
          ...args,
        ],
        cwd: dir,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      const res = { code, stdout: dec.decode(stdout), stderr: dec.decode(stderr) };
      ok(
        !/Requires (read|write) access|NotCapable|PermissionDenied/.test(res.stderr + res.stdout),
        `'${args.join(" ")}' read or wrote outside the sandbox:\n${res.stderr}`,
      );
      equal(res.code, 0, `'${args.join(" ")}' failed:\n${res.stderr}`);
      return res;
    },
  };
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

async function writeInputs(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/in`);
  await Deno.writeTextFile(
    `${dir}/in/a.jsonl`,
    DOCS.map((d) => JSON.stringify({ completion: d })).join("\n") + "\n",
  );
  await writeParquet(`${dir}/in/b.parquet`, DOCS);
  await Deno.writeTextFile(`${dir}/prompt.txt`, "The pass key is 12345. Remember it. ");
}

Deno.test("compile-ready: gen runs from another directory reading only its inputs and the embedded set", async () => {
  const sb = await sandbox();
  try {
    await writeInputs(sb.dir);
    const help = await sb.cli(["--help"]);
    ok(help.stdout.includes("Commands:"));
    // Relative paths resolve against the working directory, not the source tree.
    await sb.cli(["gen", "-i", "in", "-o", "qwen", "--seq-len", "64", "--quiet"]);
    await sb.cli(["gen", "-i", "in", "-o", "bytes", "-t", "bytes", "--seq-len", "32", "--quiet"]);
    for (const out of ["qwen", "bytes"]) {
      const m = JSON.parse(await Deno.readTextFile(`${sb.dir}/${out}/manifest.json`));
      equal(m.tokenizer.name, out);
      // Every document of both files (the JSONL and the parquet copy) was read.
      equal(m.splits.train.documents + m.splits.val.documents, 2 * DOCS.length, out);
    }
  } finally {
    await Deno.remove(sb.dir, { recursive: true });
  }
});

gpuTest(
  "compile-ready: info, train, resume, eval and generate run from another directory likewise",
  async () => {
    const sb = await sandbox();
    try {
      await writeInputs(sb.dir);
      const info = await sb.cli(["info", "--json"]);
      ok(JSON.parse(info.stdout).limits, "info --json has no limits");
      await sb.cli([
        "gen",
        "-i",
        "in",
        "-o",
        "shards",
        "-t",
        "bytes",
        "--seq-len",
        "32",
        "--quiet",
      ]);
      const train = ["train", "--preset", "micro", "--data", "shards", "--batch", "2"];
      await sb.cli([...train, "--steps", "2", "--eval-every", "0", "--out", "run"]);
      ok(await exists(`${sb.dir}/run/checkpoint/model.safetensors`));
      await sb.cli([...train, "--steps", "3", "--eval-every", "0", "--out", "run", "--resume"]);
      const ev = await sb.cli([
        ...["eval", "ppl", "--checkpoint", "run", "--text", "prompt.txt"],
        ...["--variants", "memory", "--batch", "1", "--out", "ev", "--json"],
      ]);
      ok(ev.stdout.trim().length > 0, "eval printed nothing");
      const gen = await sb.cli([
        ...["generate", "--checkpoint", "run", "--prompt-file", "prompt.txt"],
        ...["--max-tokens", "4", "--temperature", "0"],
      ]);
      ok(gen.stdout.length > 0, "generate printed nothing");
    } finally {
      await Deno.remove(sb.dir, { recursive: true });
    }
  },
);

Deno.test("compile: a failure (here: no runtime to embed) is one line, exit 1, and leaves no output folder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "infini-compile-" });
  try {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${REPO}/scripts/compile.ts`, "--out", `${dir}/dist/infini`],
      env: { DENORT_BIN: `${dir}/no-denort` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(r.stderr);
    equal(r.code, 1, err);
    equal(err.trim().split("\n").length, 1, `one line, got: ${err}`);
    ok(err.includes("DENORT_BIN") && !err.includes("Stack backtrace"), err);
    equal(await Deno.stat(`${dir}/dist`).then(() => true, () => false), false, "dist/ left behind");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
