/**
 * Checkpoint fuzzing (CPU only): a small checkpoint is saved once, then damaged in hundreds of
 * seeded ways (truncation, flipped bytes, a wrong header length, a header that is not JSON or
 * has out-of-range dtype, shape or offsets, a config.json that disagrees with the tensors,
 * empty, deleted or replaced files). Every load must either succeed with exactly the params
 * the bytes on disk describe, or fail with a one-line UserError naming the file: never another
 * exception type, never a hang (each load runs in a worker with a time limit).
 */
import { deepStrictEqual, fail, ok } from "node:assert/strict";
import { CONFIG_FILE, MODEL_FILE, saveCheckpoint } from "../src/model/checkpoint.ts";
import { resolveConfig } from "../src/model/overrides.ts";
import { paramCount, paramTable } from "../src/model/params.ts";
import { Rng } from "../src/util/rng.ts";

const SEED = 60_601;
/** Cases per mutation kind; 13 kinds, 520 cases in all. */
const PER_KIND = 40;
/** A load of this 100 KB checkpoint takes milliseconds; far longer means a hang. */
const LOAD_TIMEOUT_MS = 10_000;

/** What a damaged file is replaced with: bytes, nothing (deleted) or a directory. */
type FileState = Uint8Array | "deleted" | "directory";

/**
 * What the load must do: fail; succeed with the original params or fail ("same-or-fail",
 * for damage that may be harmless, e.g. a flipped space in the header or a config field the
 * tensors do not depend on); or succeed with exactly these params (damage in the data only),
 * where `orFail` allows a clean error instead (data damage plus possibly harmful config damage).
 */
type Expect = "fail" | "same-or-fail" | { params: Uint8Array; orFail: boolean };

interface Mutation {
  note: string;
  model?: FileState;
  config?: FileState;
  expect: Expect;
}

/** The pristine checkpoint, parsed by the test itself (not by the code under test). */
interface Original {
  model: Uint8Array;
  config: Uint8Array;
  /** The header length field N, the parsed header and the data section's start (8 + N). */
  n: number;
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  dataStart: number;
  /** The flat params as bytes (padding zero), what a load must return. */
  params: Uint8Array;
  /** Flat-array byte offset of each tensor. */
  flatByteOffset: Map<string, number>;
  configJson: Record<string, unknown>;
}

const enc = new TextEncoder();

function u64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
  return b;
}

/** A safetensors file from header text (length field consistent) and data bytes. */
function fileWithHeader(text: string, data: Uint8Array): Uint8Array {
  const h = enc.encode(text);
  const out = new Uint8Array(8 + h.length + data.length);
  out.set(u64(BigInt(h.length)), 0);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.int(xs.length)];
}

/**
 * XORs `count` random bytes in [lo, hi) with non-zero masks below `maskLimit` (128 keeps ASCII
 * text ASCII, so the damage reaches past the UTF-8 check); returns the positions.
 */
function flipBytes(
  rng: Rng,
  bytes: Uint8Array,
  lo: number,
  hi: number,
  count: number,
  maskLimit = 256,
): { at: number; mask: number }[] {
  const flips: { at: number; mask: number }[] = [];
  for (let i = 0; i < count; i++) {
    const at = lo + rng.int(hi - lo), mask = 1 + rng.int(maskLimit - 1);
    bytes[at] ^= mask;
    flips.push({ at, mask });
  }
  return flips;
}

function clone<T>(x: T): T {
  return JSON.parse(JSON.stringify(x));
}

const SHAPE_KEYS = new Set([
  "vocab_size",
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
  "num_key_value_heads",
  "head_dim",
]);

const DELETE = Symbol("delete");

/** The mutation kinds; each case draws its details from its own seeded generator. */
const KINDS: Record<string, (rng: Rng, o: Original) => Mutation> = {
  "model truncated": (rng, o) => {
    const at = rng.int(o.model.length);
    return { note: `cut at ${at}`, model: o.model.slice(0, at), expect: "fail" };
  },
  "model header bytes flipped": (rng, o) => {
    const m = o.model.slice();
    const flips = flipBytes(rng, m, 8, o.dataStart, 1 + rng.int(8), pick(rng, [128, 256]));
    return { note: `flips ${JSON.stringify(flips)}`, model: m, expect: "same-or-fail" };
  },
  "model data bytes flipped": (rng, o) => {
    const m = o.model.slice();
    const flips = flipBytes(rng, m, o.dataStart, m.length, 1 + rng.int(8));
    // The expected params: the original with the same bytes flipped where that tensor lives
    // in the flat layout (located through the header as parsed by this test).
    const params = o.params.slice();
    for (const { at, mask } of flips) {
      const rel = at - o.dataStart;
      const [name, e] = Object.entries(o.header).find(([name, e]) =>
        name !== "__metadata__" && e.data_offsets[0] <= rel && rel < e.data_offsets[1]
      )!;
      params[o.flatByteOffset.get(name)! + rel - e.data_offsets[0]] ^= mask;
    }
    return {
      note: `flips ${JSON.stringify(flips)}`,
      model: m,
      expect: { params, orFail: false },
    };
  },
  "model header length overwritten": (rng, o) => {
    const choices: bigint[] = [
      (BigInt(rng.u32()) << 32n) | BigInt(rng.u32()),
      2n ** 64n - 1n,
      2n ** 63n,
      2n ** 53n + 1n,
      100_000_001n,
      BigInt(o.model.length),
      BigInt(o.model.length - 8),
      BigInt(o.n + 1 + rng.int(16)),
      BigInt(Math.max(0, o.n - 1 - rng.int(16))),
      BigInt(rng.int(o.n)),
      0n,
    ];
    const v = pick(rng, choices);
    const m = o.model.slice();
    m.set(u64(v), 0);
    return { note: `length ${v}`, model: m, expect: v === BigInt(o.n) ? "same-or-fail" : "fail" };
  },
  "model header not JSON": (rng, o) => {
    const data = o.model.subarray(o.dataStart);
    const junk = Array.from(
      { length: 1 + rng.int(o.n) },
      () => String.fromCharCode(32 + rng.int(95)),
    )
      .join("");
    const bytes = new Uint8Array(1 + rng.int(64)).map(() => rng.int(256));
    const texts = [
      junk,
      "{" + junk,
      "[]",
      "null",
      "42",
      '"safetensors"',
      // Cut before the closing brace: never complete JSON.
      JSON.stringify(o.header).slice(0, 1 + rng.int(JSON.stringify(o.header).length - 2)),
      "",
    ];
    const choice = rng.int(texts.length + 1);
    if (choice === texts.length) {
      const m = new Uint8Array(8 + bytes.length + data.length);
      m.set(u64(BigInt(bytes.length)), 0);
      m.set(bytes, 8);
      m.set(data, 8 + bytes.length);
      return { note: `random header bytes ${bytes.length}`, model: m, expect: "fail" };
    }
    return {
      note: `header ${JSON.stringify(texts[choice].slice(0, 40))}`,
      model: fileWithHeader(texts[choice], data),
      expect: "fail",
    };
  },
  "model header fields out of range": (rng, o) => {
    const h = clone(o.header) as Record<string, Record<string, unknown>>;
    const names = Object.keys(h).filter((k) => k !== "__metadata__");
    const name = pick(rng, names);
    const e = h[name];
    const [b, end] = e.data_offsets as number[];
    const shape = e.shape as number[];
    const dataSize = o.model.length - o.dataStart;
    const edits: [string, () => void][] = [
      [
        "dtype",
        () =>
          e.dtype = pick(rng, [
            "I32",
            "F8_E4M3",
            "",
            "f32",
            null,
            4,
            ["F32"],
            "F64",
            "F16",
            "BF16",
          ]),
      ],
      ["shape", () =>
        e.shape = pick(rng, [
          [-1],
          [1e20],
          [2 ** 53],
          [2 ** 31, 2 ** 31, 2 ** 31],
          [],
          [0],
          shape.map(String),
          null,
          [1.5],
          shape.map((d, i) => i === 0 ? d + 1 : d),
          [...shape].reverse().concat(shape.length === 1 ? [2] : []),
          [shape.reduce((a, c) => a * c, 1) / 2, 2],
        ])],
      ["data_offsets", () =>
        e.data_offsets = pick(rng, [
          [end, b],
          [b, end + 4],
          [b - 4, end],
          [0, 2 ** 64],
          [-1, end],
          [b + 0.5, end],
          null,
          [b],
          [b, end, 0],
          [String(b), String(end)],
          [b + 4 * (1 + rng.int(64)), end + 4 * (1 + rng.int(64))],
          [dataSize + 8, dataSize + 8 + end - b],
          [1e300, 1e300],
        ])],
      ["removed", () => delete h[name]],
      ["renamed", () => {
        h[name.replace("weight", "weigth")] = e;
        delete h[name];
      }],
      ["extra", () => h["lm_head.weight"] = { dtype: "F32", shape: [0], data_offsets: [0, 0] }],
      ["entry not an object", () => h[name] = pick(rng, [null, 1, "x", [b, end]]) as never],
      ["metadata", () => h.__metadata__ = pick(rng, [[], { step: 1 }, "x", null]) as never],
    ];
    const [what, edit] = pick(rng, edits);
    edit();
    return {
      note: `${what} of '${name}'`,
      model: fileWithHeader(JSON.stringify(h), o.model.subarray(o.dataStart)),
      expect: "fail",
    };
  },
  "model empty, deleted or a directory": (rng) => {
    const m = pick<FileState>(rng, [new Uint8Array(0), new Uint8Array(7), "deleted", "directory"]);
    return { note: typeof m === "string" ? m : `${m.length} bytes`, model: m, expect: "fail" };
  },
  "config field changed": (rng, o) => {
    const j = clone(o.configJson);
    const key = pick(rng, Object.keys(j));
    const orig = j[key];
    const value = pick<unknown>(rng, [
      typeof orig === "number" ? orig + 1 : 1,
      typeof orig === "number" ? orig * 2 : 2,
      1 + rng.int(64),
      0,
      -1,
      1.5,
      1e15,
      2 ** 53 - 1,
      1e300,
      "12",
      null,
      true,
      [],
      {},
      [0],
      [5],
      [0, 0],
      DELETE,
    ]);
    if (value === DELETE) delete j[key];
    else j[key] = value;
    const shapeChange = SHAPE_KEYS.has(key) && typeof value === "number" &&
      Number.isSafeInteger(value) && value > 0 && value !== orig;
    return {
      note: `${key}: ${JSON.stringify(orig)} -> ${
        value === DELETE ? "deleted" : JSON.stringify(value)
      }`,
      config: enc.encode(JSON.stringify(j, null, 2)),
      expect: shapeChange ? "fail" : "same-or-fail",
    };
  },
  "config field set to a chosen value": (rng, o) => {
    const j = clone(o.configJson);
    const [key, value, expect] = pick<[string, unknown, Expect]>(rng, [
      ["infini_layers", [], "fail"],
      ["infini_layers", [0], "fail"],
      ["infini_layers", [1], "fail"],
      ["infini_layers", [1, 0], "same-or-fail"],
      ["infini_layers", [0, 1, 2], "fail"],
      ["infini_layers", [-1], "fail"],
      ["infini_layers", [0.5], "fail"],
      ["infini_layers", "all", "fail"],
      ["memory_update", "delta", "same-or-fail"],
      ["memory_update", "quadratic", "fail"],
      ["hidden_activation", "relu", "fail"],
      ["tie_word_embeddings", false, "fail"],
      ["segment_size", 7, "fail"],
      ["segment_size", 8, "same-or-fail"],
      ["sequence_length", 33, "fail"],
      ["sequence_length", 2 ** 40, "same-or-fail"],
      // Sizes whose tables could never be built: rejected against the file's size first.
      ["num_hidden_layers", 1e15, "fail"],
      ["num_hidden_layers", 2 ** 40, "fail"],
      ["vocab_size", 2 ** 52, "fail"],
      ["intermediate_size", 1e12, "fail"],
    ]);
    j[key] = value;
    return {
      note: `${key} -> ${JSON.stringify(value)}`,
      config: enc.encode(JSON.stringify(j)),
      expect,
    };
  },
  "config not JSON or wrong type": (rng, o) => {
    const text = new TextDecoder().decode(o.config);
    const cut = rng.int(text.trimEnd().length);
    const t = pick(rng, [
      text.slice(0, cut),
      "[]",
      "null",
      "42",
      '"config"',
      "{'vocab_size': 258}",
      text.replace(/:/, ""),
      String.fromCharCode(...Array.from({ length: 1 + rng.int(200) }, () => 32 + rng.int(95))),
    ]);
    return { note: JSON.stringify(t.slice(0, 40)), config: enc.encode(t), expect: "fail" };
  },
  "config bytes flipped": (rng, o) => {
    const c = o.config.slice();
    const flips = flipBytes(rng, c, 0, c.length, 1 + rng.int(4), pick(rng, [128, 256]));
    return { note: `flips ${JSON.stringify(flips)}`, config: c, expect: "same-or-fail" };
  },
  "config empty, deleted or a directory": (rng) => {
    const c = pick<FileState>(rng, [new Uint8Array(0), enc.encode("\n"), "deleted", "directory"]);
    return { note: typeof c === "string" ? c : `${c.length} bytes`, config: c, expect: "fail" };
  },
  "both files damaged": (rng, o) => {
    const modelKinds = [
      "model truncated",
      "model header bytes flipped",
      "model data bytes flipped",
    ];
    const configKinds = ["config field changed", "config bytes flipped"];
    const m = KINDS[pick(rng, modelKinds)](rng, o), c = KINDS[pick(rng, configKinds)](rng, o);
    // With both damaged: an error when either must fail; otherwise the data flip's params (or
    // the original ones) unless the config change turns out harmful, which must be an error.
    const expect: Expect = m.expect === "fail" || c.expect === "fail"
      ? "fail"
      : typeof m.expect === "object"
      ? { params: m.expect.params, orFail: true }
      : "same-or-fail";
    return { note: `${m.note} + ${c.note}`, model: m.model, config: c.config, expect };
  },
};

async function writeState(path: string, state: FileState): Promise<void> {
  if (state === "deleted") return;
  if (state === "directory") await Deno.mkdir(path);
  else await Deno.writeFile(path, state);
}

/** First index where two byte arrays differ, or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

type Reply =
  | { id: number; ok: true; params: Uint8Array }
  | { id: number; ok: false; userError: boolean; name: string; message: string };

Deno.test("checkpoint fuzz: 520 damaged checkpoints load exactly or fail with a one-line UserError naming the file", async () => {
  const root = await Deno.makeTempDir({ prefix: "infini-fuzz-" });
  let worker = new Worker(new URL("./_checkpoint_load_worker.ts", import.meta.url).href, {
    type: "module",
  });
  try {
    // The pristine checkpoint: micro's table, random normal params (padding zero).
    const cfg = resolveConfig("micro");
    const table = paramTable(cfg);
    const rng0 = new Rng(SEED);
    const flat = new Float32Array(table.total);
    for (const s of table.specs) flat.set(rng0.normals(s.size), s.offset);
    const pristine = `${root}/pristine`;
    await saveCheckpoint(pristine, cfg, flat, { step: "7" });
    const model = await Deno.readFile(`${pristine}/${MODEL_FILE}`);
    const config = await Deno.readFile(`${pristine}/${CONFIG_FILE}`);
    const n = Number(new DataView(model.buffer).getBigUint64(0, true));
    const o: Original = {
      model,
      config,
      n,
      header: JSON.parse(new TextDecoder().decode(model.subarray(8, 8 + n))),
      dataStart: 8 + n,
      params: new Uint8Array(flat.buffer),
      flatByteOffset: new Map(table.specs.map((s) => [s.name, s.offset * 4])),
      configJson: JSON.parse(new TextDecoder().decode(config)),
    };

    let nextId = 0;
    const load = (dir: string): Promise<Reply> => {
      const id = nextId++;
      return new Promise<Reply>((resolve) => {
        const timer = setTimeout(() => {
          worker.terminate();
          worker = new Worker(new URL("./_checkpoint_load_worker.ts", import.meta.url).href, {
            type: "module",
          });
          resolve({
            id,
            ok: false,
            userError: false,
            name: "a hang",
            message: `the load did not finish in ${LOAD_TIMEOUT_MS} ms`,
          });
        }, LOAD_TIMEOUT_MS);
        worker.onmessage = (ev: MessageEvent<Reply>) => {
          if (ev.data.id !== id) return;
          clearTimeout(timer);
          resolve(ev.data);
        };
        worker.onerror = (ev) => {
          clearTimeout(timer);
          ev.preventDefault();
          resolve({ id, ok: false, userError: false, name: "a crash", message: ev.message });
        };
        worker.postMessage({ id, dir });
      });
    };

    // The pristine checkpoint itself loads exactly (the oracle and the loader agree).
    const base = await load(pristine);
    ok(base.ok, `pristine checkpoint failed: ${!base.ok && base.message}`);
    deepStrictEqual(firstDifference(base.params, o.params), -1);

    const counts = new Map<
      string,
      { same: number; changed: number; error: number; other: number }
    >();
    const examples = new Map<string, string>();
    const dir = `${root}/case`;
    let caseNo = 0;
    // Every case runs; the failures are reported together at the end.
    const problems: string[] = [];
    const problem = (msg: string) => problems.push(msg);
    for (const [kind, make] of Object.entries(KINDS)) {
      const c = { same: 0, changed: 0, error: 0, other: 0 };
      counts.set(kind, c);
      for (let i = 0; i < PER_KIND; i++, caseNo++) {
        const m = make(new Rng(SEED * 1000 + caseNo), o);
        const what = `case ${caseNo} (${kind}: ${m.note})`;
        await Deno.remove(dir, { recursive: true }).catch(() => {});
        await Deno.mkdir(dir);
        await writeState(`${dir}/${MODEL_FILE}`, m.model ?? o.model);
        await writeState(`${dir}/${CONFIG_FILE}`, m.config ?? o.config);
        const r = await load(dir);
        if (r.ok) {
          if (m.expect === "fail") {
            problem(`${what}: loaded, but the damage must be detected`);
            continue;
          }
          const want = m.expect === "same-or-fail" ? o.params : m.expect.params;
          const at = firstDifference(r.params, want);
          if (at >= 0) {
            problem(`${what}: loaded with params differing from the bytes on disk at byte ${at}`);
            continue;
          }
          if (firstDifference(r.params, o.params) < 0) c.same++;
          else c.changed++;
        } else {
          if (typeof m.expect === "object" && !m.expect.orFail) {
            problem(`${what}: damage in the data only must load, got ${r.name}: ${r.message}`);
          } else if (!r.userError) {
            problem(`${what}: ${r.name} instead of a UserError: ${r.message}`);
          } else if (r.message.includes("\n")) {
            problem(`${what}: message is not one line: ${r.message}`);
          } else if (
            !r.message.includes(dir) || !/model\.safetensors|config\.json/.test(r.message)
          ) {
            problem(`${what}: message does not name the file: ${r.message}`);
          }
          if (r.userError) c.error++;
          else c.other++;
          if (!examples.has(kind)) examples.set(kind, r.message.replaceAll(dir, "DIR"));
        }
      }
    }

    // Outcomes: loaded with the original params, loaded with the flipped data, a UserError, or
    // anything else (another exception, a hang or a crash: each also listed as a problem).
    type Count = { same: number; changed: number; error: number; other: number };
    const total: Count = { same: 0, changed: 0, error: 0, other: 0 };
    for (const c of counts.values()) {
      for (const k of Object.keys(total) as (keyof Count)[]) total[k] += c[k];
    }
    const w = Math.max(...[...counts.keys()].map((k) => k.length));
    const row = (name: string, c: Count | string[]) =>
      `  ${name.padEnd(w)}  ${
        (Array.isArray(c) ? c : [c.same, c.changed, c.error, c.other].map(String))
          .map((x, i) => x.padStart([6, 7, 9, 5][i])).join("  ")
      }`;
    console.log(`${caseNo} cases, seed ${SEED}:`);
    console.log(row("mutation", ["loaded", "changed", "UserError", "other"]));
    for (const [kind, c] of counts) console.log(row(kind, c));
    console.log(row("total", total));
    for (const [kind, msg] of examples) console.log(`  e.g. ${kind}: ${msg}`);
    ok(caseNo >= 300, `only ${caseNo} cases`);
    if (problems.length > 0) {
      fail(`${problems.length} of ${caseNo} cases failed:\n${problems.slice(0, 20).join("\n")}`);
    }
    // Data flips must all load (with the flipped values), and the fuzzer must reach errors.
    deepStrictEqual(counts.get("model data bytes flipped")!.error, 0);
    ok(counts.get("model data bytes flipped")!.changed > 0);
    ok(total.error > caseNo / 2, `only ${total.error} of ${caseNo} cases were errors`);
  } finally {
    worker.terminate();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("paramCount: the closed form the loader checks first equals the table's count", () => {
  const variants = ["infiniLayers=none", "infiniLayers=last:1", "infiniLayers=0", "numKvHeads=2"];
  for (const name of ["micro", "tiny", "mini", "seed-2b"]) {
    for (const sets of [[], ...variants.map((v) => [v])]) {
      const cfg = resolveConfig(name, sets);
      deepStrictEqual(paramCount(cfg), paramTable(cfg).count, `${name} ${sets.join(" ")}`);
    }
  }
});
