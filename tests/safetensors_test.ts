import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { UserError } from "../src/util/errors.ts";
import { loadCheckpoint, saveCheckpoint, tensorsToFlat } from "../src/model/checkpoint.ts";
import { readHfConfig } from "../src/model/hf_config.ts";
import { preset, resolveConfig } from "../src/model/overrides.ts";
import { initParams, layerNames, paramTable } from "../src/model/params.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  halfToFloat,
  readSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from "../src/model/safetensors.ts";
import { writeFileAtomic } from "../src/util/files.ts";

const FIXTURE = new URL("./fixtures/infini-gemma-tiny", import.meta.url).pathname;

/** Expects `fn` to reject with a one-line UserError whose message matches every pattern. */
async function failsWith(fn: () => Promise<unknown>, ...patterns: RegExp[]): Promise<void> {
  await rejects(fn, (e: unknown) => {
    if (!(e instanceof UserError)) throw new Error(`expected a UserError, got ${e}`);
    for (const re of patterns) {
      if (!re.test(e.message)) throw new Error(`message '${e.message}' does not match ${re}`);
    }
    if (e.message.includes("\n")) throw new Error(`message is not one line: ${e.message}`);
    return true;
  });
}

/** A raw file: 8-byte length, the header text as given, then `data`. */
function rawFile(header: string, data: Uint8Array, lengthField?: number): Uint8Array {
  const h = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(lengthField ?? h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

const sample: [string, TensorToWrite][] = [
  ["a", { dtype: "F32", shape: [2, 3], data: new Float32Array([1, -2, 3.5, 0, 1e-30, 7]) }],
  ["b.c", { dtype: "F64", shape: [3], data: new Float64Array([Math.PI, -1e300, 5e-324]) }],
  ["empty", { dtype: "F32", shape: [0, 4], data: new Float32Array(0) }],
  ["scalar", { dtype: "F32", shape: [], data: new Float32Array([42]) }],
];

Deno.test("safetensors: F32 and F64 round trip through a file, with metadata", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/t.safetensors`;
    await writeSafetensors(path, sample, { step: "12", note: "héllo" });
    const bytes = await Deno.readFile(path);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assertEquals(n % 8, 0, "header padded so the data starts 8-byte aligned");
    const got = await readSafetensors(path);
    assertEquals(got.metadata, { step: "12", note: "héllo" });
    assertEquals([...got.tensors.keys()], ["a", "b.c", "empty", "scalar"]);
    for (const [name, t] of sample) {
      const r = got.tensors.get(name)!;
      assertEquals(r.dtype, t.dtype);
      assertEquals(r.shape, t.shape);
      assertEquals(r.data, t.data, name);
    }
    // In-memory encoding gives the same bytes, and decodes the same way.
    assertEquals(encodeSafetensors(sample, { step: "12", note: "héllo" }), bytes);
    assertEquals(decodeSafetensors(bytes).tensors.get("b.c")!.data, sample[1][1].data);
    assertEquals([...Deno.readDirSync(dir)].length, 1, "no temporary file left behind");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("safetensors: BF16 and F16 are read as f32", () => {
  // F16: 1, -2, 0.5, 2^-24 (smallest subnormal), 65504 (largest), +inf.
  const f16 = new Uint16Array([0x3c00, 0xc000, 0x3800, 0x0001, 0x7bff, 0x7c00]);
  // BF16: 1, -2.5, 3.140625.
  const bf16 = new Uint16Array([0x3f80, 0xc020, 0x4049]);
  const data = new Uint8Array(18);
  data.set(new Uint8Array(f16.buffer), 0);
  data.set(new Uint8Array(bf16.buffer), 12);
  const header = JSON.stringify({
    h: { dtype: "F16", shape: [6], data_offsets: [0, 12] },
    b: { dtype: "BF16", shape: [3], data_offsets: [12, 18] },
  });
  const f = decodeSafetensors(rawFile(header, data));
  assertEquals(f.tensors.get("h")!.data, new Float32Array([1, -2, 0.5, 2 ** -24, 65504, Infinity]));
  assertEquals(f.tensors.get("b")!.data, new Float32Array([1, -2.5, 3.140625]));
  assertEquals(f.tensors.get("b")!.dtype, "BF16");
  assert(Number.isNaN(halfToFloat(0x7e00)));
});

Deno.test("safetensors: every malformed header is rejected with a one-line error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/bad.safetensors`;
    const ok = encodeSafetensors(sample);
    const entry = (o: unknown) => JSON.stringify({ t: o });
    const cases: [string, Uint8Array, RegExp][] = [
      ["too short", new Uint8Array(5), /too short/],
      ["length past end", rawFile("{}", new Uint8Array(0), 1000), /header length 1000 exceeds/],
      ["huge length", rawFile("{}", new Uint8Array(0), 2 ** 40), /exceeds/],
      ["truncated data", ok.subarray(0, ok.length - 3), /tensor 'scalar'.*run past the data/],
      ["not JSON", rawFile("{nope", new Uint8Array(0)), /not valid JSON/],
      ["not UTF-8", rawFile("{}", new Uint8Array(0)).fill(0xff, 8), /not valid UTF-8/],
      ["JSON array", rawFile("[1]", new Uint8Array(0)), /not a JSON object/],
      [
        "metadata",
        rawFile(JSON.stringify({ __metadata__: { a: 1 } }), new Uint8Array(0)),
        /__metadata__ 'a'/,
      ],
      [
        "dtype",
        rawFile(entry({ dtype: "I64", shape: [1], data_offsets: [0, 8] }), new Uint8Array(8)),
        /tensor 't'.*dtype "I64"/,
      ],
      [
        "shape",
        rawFile(entry({ dtype: "F32", shape: [-1], data_offsets: [0, 4] }), new Uint8Array(4)),
        /tensor 't'.*shape/,
      ],
      [
        "shape 2",
        rawFile(entry({ dtype: "F32", shape: [1.5], data_offsets: [0, 4] }), new Uint8Array(4)),
        /shape/,
      ],
      [
        "offsets",
        rawFile(entry({ dtype: "F32", shape: [1], data_offsets: [0] }), new Uint8Array(4)),
        /data_offsets/,
      ],
      [
        "reversed",
        rawFile(entry({ dtype: "F32", shape: [0], data_offsets: [4, 0] }), new Uint8Array(4)),
        /reversed/,
      ],
      [
        "out of range",
        rawFile(entry({ dtype: "F32", shape: [2], data_offsets: [0, 8] }), new Uint8Array(4)),
        /run past/,
      ],
      [
        "size",
        rawFile(entry({ dtype: "F32", shape: [2], data_offsets: [0, 4] }), new Uint8Array(8)),
        /needs 8/,
      ],
      ["entry", rawFile(entry(7), new Uint8Array(0)), /not an object/],
      [
        "overlap",
        rawFile(
          JSON.stringify({
            x: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
            y: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
          }),
          new Uint8Array(12),
        ),
        /'y'.*overlaps tensor 'x'/,
      ],
    ];
    for (const [what, bytes, re] of cases) {
      await Deno.writeFile(path, bytes);
      await failsWith(() => readSafetensors(path), /bad\.safetensors: /, re).catch((e) => {
        throw new Error(`${what}: ${e.message}`);
      });
      await failsWith(
        () => Promise.resolve().then(() => decodeSafetensors(bytes, "mem")),
        /^mem: /,
        re,
      ).catch((e) => {
        throw new Error(`${what} (in memory): ${e.message}`);
      });
    }
    await failsWith(
      () => readSafetensors(`${dir}/missing.safetensors`),
      /missing\.safetensors: no such file/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Chunks that fail half-way, like a full disk. */
function* failing() {
  yield new Uint8Array([9, 9]);
  throw new Error("disk full");
}

Deno.test("atomic write: a failed write leaves the old file and no temporary file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/f.bin`;
    await writeFileAtomic(path, [new Uint8Array([1, 2, 3])]);
    await rejects(() => writeFileAtomic(path, failing()), /disk full/);
    assertEquals(await Deno.readFile(path), new Uint8Array([1, 2, 3]));
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["f.bin"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkpoint: save and load round trip bit for bit", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cfg = resolveConfig("tiny", ["infiniLayers=last:1", "memoryUpdate=delta"]);
    const params = initParams(paramTable(cfg), cfg, 3);
    await saveCheckpoint(`${dir}/run`, cfg, params, { step: "5" });
    const ck = await loadCheckpoint(`${dir}/run`, { expect: cfg });
    assertEquals(ck.params, params);
    assertEquals(ck.config, { ...cfg, infiniLayers: [1] });
    assertEquals(ck.metadata, { format: "pt", step: "5" });
    const hf = JSON.parse(await Deno.readTextFile(`${dir}/run/config.json`));
    assertEquals(hf.infini_layers, [1]);
    assertEquals(hf.memory_update, "delta");
    assertEquals((await readHfConfig(`${dir}/run/config.json`)).memoryUpdate, "delta");
    await failsWith(
      () => loadCheckpoint(`${dir}/run`, { expect: preset("tiny") }),
      /infiniLayers 0,1 -> 1/,
    );
    await failsWith(() => loadCheckpoint(`${dir}/nothing`), /no config\.json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkpoint: the golden fixture loads, its tensors in the table layout", async () => {
  const ck = await loadCheckpoint(FIXTURE);
  assertEquals(ck.table.specs.length, 22); // embedding, 2 x 10 per layer, final norm
  const raw = await readSafetensors(`${FIXTURE}/model.safetensors`);
  for (const s of ck.table.specs) {
    assertEquals(ck.params.subarray(s.offset, s.offset + s.size), raw.tensors.get(s.name)!.data);
  }
  // Gradients (F64) map onto the same layout.
  const g = await readSafetensors(`${FIXTURE}/grad_linear.safetensors`);
  const flat = tensorsToFlat(ck.table, g.tensors, new Float64Array(ck.table.total), "grad");
  assert(flat.some((x) => x !== 0));
});

Deno.test("checkpoint: config and tensors must agree (missing, unexpected, wrong shape)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cfg = preset("tiny");
    const table = paramTable(cfg);
    const params = initParams(table, cfg, 1);
    await saveCheckpoint(dir, cfg, params);
    const named = table.specs.map((s): [string, TensorToWrite] => [
      s.name,
      { dtype: "F32", shape: s.shape, data: params.subarray(s.offset, s.offset + s.size) },
    ]);
    const gate = layerNames(1).gate;
    const model = `${dir}/model.safetensors`;
    await writeSafetensors(model, named.filter(([n]) => n !== gate));
    await failsWith(
      () => loadCheckpoint(dir),
      /model\.safetensors.*missing tensor 'model\.layers\.1\.self_attn\.gate' \[4\]/,
    );
    const extra: TensorToWrite = { dtype: "F32", shape: [1], data: new Float32Array(1) };
    await writeSafetensors(model, [...named, ["lm_head.weight", extra], ["x", extra]]);
    await failsWith(
      () => loadCheckpoint(dir),
      /unexpected tensor 'lm_head\.weight' \(and 1 more\)/,
    );
    const bad = named.map(([n, t]): [string, TensorToWrite] =>
      n === gate ? [n, { dtype: "F32", shape: [2, 2], data: t.data }] : [n, t]
    );
    await writeSafetensors(model, bad);
    await failsWith(
      () => loadCheckpoint(dir),
      /'model\.layers\.1\.self_attn\.gate' has shape \[2,2\], the config requires \[4\]/,
    );
    await Deno.writeTextFile(`${dir}/config.json`, "{");
    await failsWith(() => loadCheckpoint(dir), /config\.json: not valid JSON/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkpoint: a process killed while saving leaves a readable checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A child saves versions 1, 2, 3... of a small model in a loop (every element of version
    // k equals k); we kill it at several moments and load what is there.
    const script = `${dir}/saver.ts`;
    const url = new URL("../src/model/checkpoint.ts", import.meta.url).href;
    const cfgUrl = new URL("../src/model/overrides.ts", import.meta.url).href;
    const pUrl = new URL("../src/model/params.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { saveCheckpoint } from "${url}";
import { resolveConfig } from "${cfgUrl}";
import { paramTable } from "${pUrl}";
const cfg = resolveConfig("tiny", ["vocabSize=4096"]);
const params = new Float32Array(paramTable(cfg).total);
for (let k = 1; ; k++) {
  params.fill(k);
  await saveCheckpoint(Deno.args[0], cfg, params, { step: String(k) });
  if (k === 1) console.log("first");
}
`,
    );
    const ckDir = `${dir}/ck`;
    for (const delayMs of [5, 40, 120]) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--no-check", script, ckDir],
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const reader = child.stdout.getReader();
      await reader.read(); // the first save is complete
      await new Promise((r) => setTimeout(r, delayMs));
      child.kill("SIGKILL");
      await child.status;
      reader.releaseLock();
      await child.stdout.cancel();
      const ck = await loadCheckpoint(ckDir);
      const k = Number(ck.metadata.step);
      assert(k >= 1, `step ${ck.metadata.step}`);
      for (const s of ck.table.specs) {
        assert(
          ck.params.subarray(s.offset, s.offset + s.size).every((x) => x === k),
          `${s.name} is not all ${k} (torn save) after a kill at ${delayMs} ms`,
        );
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
