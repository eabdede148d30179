/** The CLI's one flag convention (src/cli/flags.ts), without spawning the program. */
import { deepEqual, equal, throws } from "node:assert/strict";
import { choiceFlag, intFlag, listFlag, numFlag, parseCommand } from "../src/cli/flags.ts";
import { closest } from "../src/util/text.ts";
import { UsageError } from "../src/util/errors.ts";

const SPEC = {
  name: "cmd",
  help: "help text",
  options: {
    steps: { type: "string" },
    out: { type: "string", short: "o" },
    json: { type: "boolean" },
    text: { type: "string", multiple: true },
  },
  aliases: { output: "out" },
  elsewhere: { text: "other" },
} as const;

Deno.test("flags: values may be negative, '=' works, aliases and shorts map to one name", () => {
  const p = parseCommand(SPEC, ["--steps", "-3", "--output", "a", "--json"])!;
  deepEqual({ ...p.values }, { steps: "-3", out: "a", json: true });
  const q = parseCommand(SPEC, ["--steps=-1e-3", "-o", "b"])!;
  deepEqual({ ...q.values }, { steps: "-1e-3", out: "b" });
  const r = parseCommand(SPEC, ["-ob"])!;
  equal(r.values.out, "b");
});

Deno.test("flags: each mistake is a UsageError that names the flag", () => {
  const cases: [string[], RegExp][] = [
    [["--steps"], /^cmd: --steps needs a value \(see 'cmd --help'\)$/],
    [["--steps", "--json"], /^cmd: --steps needs a value, got '--json'/],
    [["--steps", "-o"], /^cmd: --steps needs a value, got '-o'/],
    [["--json=1"], /^cmd: --json takes no value/],
    [["--stpes", "1"], /^cmd: unknown option '--stpes' \(did you mean '--steps'\?\)/],
    [["-x"], /^cmd: unknown option '-x'/],
    [["loose"], /^cmd: unexpected argument 'loose'/],
    [["--text", "a"], /^cmd: --text is an option of 'other', not of 'cmd'/],
  ];
  for (const [args, want] of cases) {
    throws(() => parseCommand(SPEC, args), (e) => e instanceof UsageError && want.test(e.message));
  }
});

Deno.test("flags: --help prints the help and returns null", () => {
  const log = console.log;
  let shown = "";
  console.log = (s: string) => (shown = s);
  try {
    equal(parseCommand(SPEC, ["--steps", "2", "-h"]), null);
  } finally {
    console.log = log;
  }
  equal(shown, "help text");
});

Deno.test("flags: number helpers say what is wrong with the value", () => {
  equal(intFlag("n", undefined, 7), 7);
  equal(intFlag("n", "1_000", 7), 1000);
  equal(intFlag("n", "0", 7, 0), 0);
  throws(() => intFlag("n", "-3", 7), /--n '-3': expected an integer >= 1/);
  throws(() => intFlag("n", "2.5", 7), /expected an integer/);
  throws(() => intFlag("n", "9", 7, 0, 8), /--n '9': expected an integer in \[0, 8\]/);
  equal(numFlag("x", "1e-3", 0), 0.001);
  throws(() => numFlag("x", "-1", 0), /--x '-1': expected a number >= 0/);
  throws(() => numFlag("x", "1", 0, { below: 1 }), /expected a number >= 0 and < 1/);
  throws(() => numFlag("x", "0", 0, { above: 0, max: 1 }), /expected a number > 0 and <= 1/);
  throws(() => numFlag("x", "", 0), /expected a number/);
  throws(() => numFlag("x", "NaN", 0), /expected a number/);
  deepEqual(listFlag("l", "1, 2,3", true), [1, 2, 3]);
  throws(() => listFlag("l", "1,x", true), /positive integers/);
  equal(choiceFlag("c", "b", ["a", "b"], "a"), "b");
  throws(() => choiceFlag("c", "z", ["a", "b"], "a"), /--c 'z': expected one of a, b/);
  equal(closest("stpes", ["steps", "seed"]), "steps");
  equal(closest("zzzzzz", ["steps"], 2), undefined);
});
