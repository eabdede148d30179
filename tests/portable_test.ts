/**
 * A user's clone has nothing beside it: no file under src/, tests/, bench/ or scripts/ (nor
 * main.ts) may name an absolute path of one machine or reach a folder outside the repository.
 * System paths every Linux machine has (/tmp, /proc, /dev, /usr, /etc, /bin) are allowed.
 */
import { ok } from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";

const ROOT = normalize(new URL("..", import.meta.url).pathname);
const FOLDERS = ["src", "tests", "bench", "scripts"];
const TEXT = /\.(ts|js|sh|wgsl|json|md)$/;

/** Absolute paths that belong to one machine: a user's or a workplace's folders. */
const MACHINE_ROOTS = ["work", "home", "root", "Users", "mnt", "media", "srv", "opt", "data"];
const ABSOLUTE = new RegExp(
  `(^|[\\s"'\`(=:])/(${MACHINE_ROOTS.join("|")})(/|[\\s"'\`)]|$)`,
  "m",
);
/** A relative path climbing out of its folder (one or more parent steps). */
const CLIMB = /(?:\.\.\/)+[^\s"'`)]*/g;
const SHARED = "shar" + "ed/" + "fixtures";
const UP = "." + "./";

async function* files(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* files(p);
    else if (e.isFile && TEXT.test(e.name)) yield p;
  }
}

/** Every way `text` (the file at `path`) names something outside the repository. */
export function outsideRefs(path: string, text: string): string[] {
  const found: string[] = [];
  text.split("\n").forEach((line, i) => {
    const where = `${relative(ROOT, path)}:${i + 1}`;
    const abs = ABSOLUTE.exec(line);
    if (abs) found.push(`${where}: absolute path '/${abs[2]}/...'`);
    if (line.includes(SHARED) || line.includes(UP + SHARED.split("/")[0])) {
      found.push(`${where}: names the workplace's shared folder`);
    }
    for (const m of line.matchAll(CLIMB)) {
      const target = relative(ROOT, join(dirname(path), m[0]));
      if (target.startsWith("..")) found.push(`${where}: '${m[0]}' leaves the repository`);
    }
  });
  return found;
}

Deno.test("portable: no code or test names a path outside the repository", async () => {
  const found: string[] = [];
  const paths = [join(ROOT, "main.ts")];
  for (const f of FOLDERS) for await (const p of files(join(ROOT, f))) paths.push(p);
  for (const p of paths) found.push(...outsideRefs(p, await Deno.readTextFile(p)));
  ok(paths.length > 50, `scanned only ${paths.length} files`);
  ok(found.length === 0, `paths outside the repository:\n${found.join("\n")}`);
});

Deno.test("portable: the check itself catches each kind of outside path", () => {
  const file = join(ROOT, "tests", "x_test.ts");
  const bad = [
    `const F = "/${MACHINE_ROOTS[0]}/${SHARED}/tiny";`,
    `const F = new URL("${UP}${UP}${SHARED.split("/")[0]}/x", import.meta.url);`,
    `cp /${MACHINE_ROOTS[1]}/me/data.bin .`,
    `/** limits (${UP}${SHARED.split("/")[0]}/notes: 128 MiB per binding) */`,
    `import x from "${UP}${UP}${UP}elsewhere/x.ts";`,
  ];
  for (const line of bad) ok(outsideRefs(file, line).length > 0, `not caught: ${line}`);
  const good = [
    `import x from "../src/cli/flags.ts";`,
    `const t = "/tmp/x"; Deno.readFile("/proc/self/stat");`,
    `new URL("./fixtures/infini-gemma-tiny/", import.meta.url)`,
    `// a/b/../c`,
  ];
  for (const line of good) ok(outsideRefs(file, line).length === 0, `false alarm: ${line}`);
});
