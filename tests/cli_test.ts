/** The command line as a user meets it: help, usage errors, exit codes, one-line messages. */
import { equal, match, ok } from "node:assert/strict";
import { cli } from "./_cli.ts";
import { gpuTest } from "./_gpu.ts";

Deno.test("cli: --help lists the commands; no command is a usage error", async () => {
  const h = await cli("--help");
  equal(h.code, 0);
  for (const c of ["info", "gen", "train", "eval", "generate", "demo"]) {
    match(h.stdout, new RegExp(`\\n  ${c} `));
  }
  const none = await cli();
  equal(none.code, 2);
});

Deno.test("cli: every command has --help with examples", async () => {
  for (const c of ["info", "gen", "train", "eval", "generate", "demo"]) {
    const h = await cli(c, "--help");
    equal(h.code, 0, `${c} --help exit code`);
    match(h.stdout, /Usage: infini /);
    match(h.stdout, /Examples?:/);
  }
});

Deno.test("cli: unknown command, unknown flag and bad values are one-line usage errors (exit 2)", async () => {
  for (
    const [args, want] of [
      [["frobnicate"], /unknown command 'frobnicate'/],
      [["train", "--bogus"], /train: .*bogus/],
      [["train", "--steps", "ten"], /--steps 'ten': expected an integer >= 1/],
      [["train", "--steps", "-3"], /--steps '-3': expected an integer >= 1/],
      [["train", "--lr", "-1"], /--lr '-1': expected a number >= 0/],
      [["train", "--steps", "--out", "x"], /train: --steps needs a value, got '--out'/],
      [["train", "--steps"], /train: --steps needs a value \(see/],
      [["train", "--resume=yes"], /train: --resume takes no value/],
      [["train", "--stepz", "3"], /unknown option '--stepz' \(did you mean '--steps'\?\)/],
      [
        ["eval", "passkey", "--checkpoint", "x", "--text", "a.txt"],
        /--text is an option of 'eval ppl'/,
      ],
      [
        ["eval", "passkey", "--frob"],
        /^error: eval passkey: unknown option '--frob' \(see 'eval passkey --help'\)\n$/,
      ],
      [
        ["eval", "ppl", "--checkpoint", "x", "--trials", "3"],
        /--trials is an option of 'eval passkey'/,
      ],
      [["gen", "--output"], /gen: --output needs a value/],
      [
        ["train", "--data", "runs/shards", "--segments", "2,4"],
        /--segments is for --data passkey or recall/,
      ],
      [["demo", "--task", "sort"], /--task 'sort': expected one of recall, passkey/],
      [
        ["info", "--limit", "maxBufferSise=4"],
        /unknown limit 'maxBufferSise' \(did you mean maxBufferSize\?\)/,
      ],
      [
        ["info", "--limit", "maxBufferSize=lots"],
        /--limit maxBufferSize 'lots': expected a byte count/,
      ],
      [["info", "--limit", "maxBufferSize"], /--limit 'maxBufferSize': expected NAME=BYTES/],
      [["train", "--set", "hiddenSise=64"], /hiddenSise.*hiddenSize/],
      [["train", "--preset", "huge"], /unknown preset 'huge'/],
    ] as [string[], RegExp][]
  ) {
    const r = await cli(...args);
    equal(r.code, 2, `${args.join(" ")}: exit code (stderr: ${r.stderr})`);
    match(r.stderr, want);
    equal(r.stderr.trim().split("\n").length, 1, `${args.join(" ")}: one line, got ${r.stderr}`);
    ok(!r.stderr.includes("    at "), "no stack trace");
  }
});

Deno.test("cli: train --print-config builds seed-2b without allocating and counts its parameters", async () => {
  const r = await cli("train", "--preset", "seed-2b", "--print-config");
  equal(r.code, 0, r.stderr);
  match(r.stdout, /1,852,631,152/);
});

gpuTest("cli: info prints the adapter and its limits as JSON", async () => {
  const r = await cli("info", "--json");
  equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  ok(typeof j.adapter.description === "string");
  ok(j.limits.maxStorageBufferBindingSize.device >= 128 * 2 ** 20);
  ok(!r.stderr.includes("XDG_RUNTIME_DIR"), "no Vulkan loader noise");
});

gpuTest(
  "cli: --limit lowers a device limit as every command sees it; above the adapter is an error",
  async () => {
    const r = await cli(
      "info",
      "--json",
      "--limit",
      "maxStorageBufferBindingSize=1MiB",
      "--limit",
      "maxBufferSize=4194304",
    );
    equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    equal(j.limits.maxStorageBufferBindingSize.device, 2 ** 20);
    equal(j.limits.maxBufferSize.device, 4 * 2 ** 20);
    ok(j.limits.maxBufferSize.adapter > 4 * 2 ** 20);
    const over = await cli("info", "--limit", "maxBufferSize=1000GiB");
    equal(over.code, 2, over.stderr);
    match(over.stderr, /no larger than the adapter's/);
  },
);
