import {
  deepStrictEqual as assertEquals,
  ok as assert,
  throws as assertThrows,
} from "node:assert/strict";
import { UsageError, UserError } from "../src/util/errors.ts";
import { closest, editDistance } from "../src/util/text.ts";
import {
  CONFIG_SCHEMA,
  configDiff,
  formatConfig,
  infiniLayerList,
  PRESETS,
  sameConfig,
  validateConfig,
} from "../src/model/config.ts";
import { boolField, enumField, intField } from "../src/model/fields.ts";
import { fromHfConfig, HF_ALIASES, readHfConfig, toHfConfig } from "../src/model/hf_config.ts";
import { applyOverrides, preset, resolveConfig } from "../src/model/overrides.ts";
import {
  EMBED,
  FINAL_NORM,
  initParams,
  layerNames,
  PARAM_ALIGN,
  paramCount,
  paramTable,
} from "../src/model/params.ts";

const FIXTURE = new URL("./fixtures/infini-gemma-tiny", import.meta.url).pathname;

/** Expects `fn` to throw an error of class `cls` whose message matches `re`. */
function throwsWith(fn: () => unknown, cls: new (...a: never[]) => Error, re: RegExp): void {
  assertThrows(fn, (e: unknown) => {
    if (!(e instanceof cls)) throw new Error(`expected ${cls.name}, got ${e}`);
    assert(re.test(e.message), `message '${e.message}' does not match ${re}`);
    assert(!e.message.includes("\n"), "error messages are one line");
    return true;
  });
}

Deno.test("presets validate and have the documented sizes", () => {
  for (const name of Object.keys(PRESETS)) validateConfig(preset(name));
  const t = preset("tiny");
  assertEquals([t.hiddenSize, t.numLayers, t.numHeads, t.numKvHeads, t.headDim], [64, 2, 4, 2, 16]);
  assertEquals([t.intermediateSize, t.vocabSize, t.segmentLength], [256, 258, 32]);
  const m = preset("mini");
  assertEquals([m.hiddenSize, m.numLayers, m.numHeads, m.numKvHeads, m.headDim], [
    256,
    6,
    4,
    1,
    64,
  ]);
  assertEquals(m.intermediateSize, 1024);
  const s = preset("seed-2b");
  assertEquals([s.hiddenSize, s.numLayers, s.numHeads, s.numKvHeads, s.headDim], [
    2048,
    14,
    8,
    1,
    256,
  ]);
  assertEquals([s.intermediateSize, s.vocabSize], [16384, 151936]);
  assertEquals(infiniLayerList(s), [...Array(14).keys()], "every layer Infini by default");
});

Deno.test("seed-2b parameter count, computed by hand, without allocating", () => {
  const C = 2048, F = 16384, V = 151936, H = 8, D = 256, L = 14;
  const perLayer = 2 * C + H * D * C * 2 + D * C * 2 + 3 * F * C + H;
  const expected = V * C + C + L * perLayer;
  assertEquals(paramCount(preset("seed-2b")), expected);
  assertEquals(expected, 1_852_631_152); // "about 1.85B"
  // The flat layout is a little larger (alignment), still not allocated.
  assert(paramTable(preset("seed-2b")).total >= expected);
});

Deno.test("overrides: numbers, enums, lists and Infini layer specs are parsed and checked", () => {
  const c = resolveConfig("tiny", [
    "hiddenSize=96",
    "memoryUpdate=delta",
    "infiniLayers=last:1",
    "betaLrMult=30",
    "rms_norm_eps=1e-5", // Hugging Face alias
  ]);
  assertEquals(c.hiddenSize, 96);
  assertEquals(c.memoryUpdate, "delta");
  assertEquals(infiniLayerList(c), [1]);
  assertEquals(c.betaLrMult, 30);
  assertEquals(c.rmsNormEps, 1e-5);
  assertEquals(infiniLayerList(resolveConfig("tiny", ["infiniLayers=0"])), [0]);
  assertEquals(infiniLayerList(resolveConfig("tiny", ["infiniLayers=[1, 0]"])), [0, 1]);
  assertEquals(infiniLayerList(resolveConfig("tiny", ["infiniLayers=none"])), []);
  assertEquals(preset("tiny").hiddenSize, 64, "the preset itself is not modified");

  throwsWith(
    () => resolveConfig("tiny", ["hiddenSize=abc"]),
    UsageError,
    /hiddenSize.*positive integer/,
  );
  throwsWith(() => resolveConfig("tiny", ["hiddenSize=1.5"]), UsageError, /positive integer/);
  throwsWith(() => resolveConfig("tiny", ["hiddenSize=0"]), UsageError, /positive integer/);
  throwsWith(() => resolveConfig("tiny", ["memoryUpdate=deltaa"]), UsageError, /linear, delta/);
  throwsWith(() => resolveConfig("tiny", ["rmsNormEps=0"]), UsageError, /> 0/);
  throwsWith(() => resolveConfig("tiny", ["ropeTheta=nan"]), UsageError, /number/);
  throwsWith(() => resolveConfig("tiny", ["infiniLayers=first:1"]), UsageError, /last:k/);
  throwsWith(() => resolveConfig("tiny", ["hiddenSize"]), UsageError, /key=value/);
  // Type-correct but inconsistent values are caught by validation.
  throwsWith(() => resolveConfig("tiny", ["infiniLayers=0,5"]), UserError, /layer 5/);
  throwsWith(() => resolveConfig("tiny", ["infiniLayers=1,1"]), UserError, /twice/);
  throwsWith(
    () => resolveConfig("tiny", ["seqLength=100"]),
    UserError,
    /multiple of segmentLength/,
  );
  throwsWith(() => resolveConfig("tiny", ["numKvHeads=3"]), UserError, /multiple of numKvHeads/);
  throwsWith(() => resolveConfig("tiny", ["headDim=15"]), UserError, /even/);
});

Deno.test("an unknown key is an error naming the key and the closest valid key", () => {
  throwsWith(
    () => resolveConfig("tiny", ["hiddenSise=8"]),
    UsageError,
    /'hiddenSise'.*'hiddenSize'/,
  );
  throwsWith(() => resolveConfig("tiny", ["segmentLen=8"]), UsageError, /'segmentLength'/);
  throwsWith(() => resolveConfig("tiny", ["hidden_sze=8"]), UsageError, /'hidden_size'/);
  throwsWith(() => preset("tiyn"), UsageError, /'tiny'/);
  assertEquals(editDistance("kitten", "sitting"), 3);
  assertEquals(editDistance("", "abc"), 3);
  assertEquals(closest("memoryupdate", Object.keys(CONFIG_SCHEMA)), "memoryUpdate");
});

Deno.test("the override parser is generic: booleans and enums for other option records", () => {
  const schema = {
    clip: boolField("", "clip gradients"),
    mode: enumField("", "mode", ["a", "b"] as const),
    steps: intField("", "steps", 0),
  };
  const base = { clip: false, mode: "a" as "a" | "b", steps: 3 };
  assertEquals(applyOverrides(base, schema, ["clip=yes", "mode=b", "steps=0"]), {
    clip: true,
    mode: "b",
    steps: 0,
  });
  assertEquals(applyOverrides(base, schema, ["clip=off"]).clip, false);
  throwsWith(() => applyOverrides(base, schema, ["clip=maybe"]), UsageError, /true or false/);
  throwsWith(() => applyOverrides(base, schema, ["clp=1"]), UsageError, /'clip'/);
});

Deno.test("the fixture's config.json loads with its Infini fields", async () => {
  const c = await readHfConfig(`${FIXTURE}/config.json`);
  assertEquals(c.vocabSize, 64);
  assertEquals([c.hiddenSize, c.intermediateSize, c.numLayers], [32, 64, 2]);
  assertEquals([c.numHeads, c.numKvHeads, c.headDim, c.segmentLength], [4, 2, 8, 8]);
  assertEquals([c.rmsNormEps, c.ropeTheta], [1e-6, 10000]);
  assertEquals(infiniLayerList(c), [0, 1]);
  assertEquals(c.memoryUpdate, "linear");
  assertEquals(c.seqLength % c.segmentLength, 0);
});

Deno.test("Hugging Face config round trip and errors", () => {
  for (const name of Object.keys(PRESETS)) {
    const c = preset(name);
    const hf = toHfConfig(c);
    assertEquals(hf.hidden_activation, "gelu_pytorch_tanh");
    assertEquals(hf.tie_word_embeddings, true);
    assert(sameConfig(fromHfConfig(JSON.parse(JSON.stringify(hf))), c), name);
  }
  const c = resolveConfig("tiny", ["infiniLayers=last:1", "memoryUpdate=delta"]);
  const hf = toHfConfig(c);
  assertEquals(hf.infini_layers, [1]);
  assertEquals(hf.memory_update, "delta");
  assertEquals(configDiff(c, preset("tiny")), [
    "infiniLayers 1 -> 0,1",
    "memoryUpdate delta -> linear",
  ]);

  const base = toHfConfig(preset("tiny")) as unknown as Record<string, unknown>;
  const without = (k: string) => Object.fromEntries(Object.entries(base).filter(([x]) => x !== k));
  throwsWith(
    () => fromHfConfig(without("hidden_size"), "x.json"),
    UserError,
    /x\.json: missing field 'hidden_size'/,
  );
  throwsWith(
    () => fromHfConfig({ ...base, head_dim: "8" }),
    UserError,
    /'head_dim' must be an integer/,
  );
  throwsWith(
    () => fromHfConfig({ ...base, hidden_activation: "relu" }),
    UserError,
    /not supported/,
  );
  throwsWith(() => fromHfConfig({ ...base, memory_update: "gru" }), UserError, /memory_update/);
  throwsWith(() => fromHfConfig({ ...base, infini_layers: [0, 9] }), UserError, /layer 9/);
  throwsWith(() => fromHfConfig([1, 2]), UserError, /JSON object/);
  // Optional fields get their documented defaults; unknown fields are ignored.
  const minimal = fromHfConfig({ ...without("num_key_value_heads"), torch_dtype: "float32" });
  assertEquals(minimal.numKvHeads, minimal.numHeads);
});

Deno.test("pretty printer shows every field, the Infini layers and the parameter count", () => {
  const c = preset("seed-2b");
  const text = formatConfig(c, "seed-2b", paramCount(c));
  for (const key of Object.keys(CONFIG_SCHEMA)) assert(text.includes(key), key);
  assert(text.includes("1,852,631,152"), text);
  assert(text.includes("1.85B"), text);
  assert(/infini layers\s+0-13\s+of 14/.test(text), text);
  assertEquals(Object.values(HF_ALIASES).every((k) => k in CONFIG_SCHEMA), true);
});

Deno.test("parameter table: Hugging Face names, shapes, groups, 256-byte aligned offsets", () => {
  const c = resolveConfig("tiny", ["infiniLayers=1"]);
  const t = paramTable(c);
  const {
    vocabSize: V,
    hiddenSize: C,
    intermediateSize: F,
    numHeads: H,
    numKvHeads: Hkv,
    headDim: D,
  } = c;
  assertEquals(t.get(EMBED).shape, [V, C]);
  assertEquals(t.get(FINAL_NORM).shape, [C]);
  for (let l = 0; l < 2; l++) {
    const n = layerNames(l);
    assertEquals(t.get(n.inputNorm).shape, [C]);
    assertEquals(t.get(n.postNorm).shape, [C]);
    assertEquals(t.get(n.q).shape, [H * D, C]);
    assertEquals(t.get(n.k).shape, [Hkv * D, C]);
    assertEquals(t.get(n.v).shape, [Hkv * D, C]);
    assertEquals(t.get(n.o).shape, [C, H * D]);
    assertEquals(t.get(n.mlpGate).shape, [F, C]);
    assertEquals(t.get(n.mlpUp).shape, [F, C]);
    assertEquals(t.get(n.mlpDown).shape, [C, F]);
    assertEquals(t.has(n.gate), l === 1, "gates only on Infini layers");
  }
  assertEquals(t.get(layerNames(1).gate).shape, [H]);
  assertEquals(t.specs.length, 1 + 2 * 9 + 1 + 1);
  assertEquals(t.get(layerNames(0).q).name, "model.layers.0.self_attn.q_proj.weight");
  assertEquals(t.get(layerNames(1).mlpDown).name, "model.layers.1.mlp.down_proj.weight");
  assertEquals(t.get(layerNames(1).gate).name, "model.layers.1.self_attn.gate");
  let end = 0, count = 0;
  for (const s of t.specs) {
    assertEquals(s.offset % PARAM_ALIGN, 0, s.name);
    assert(s.offset >= end, `${s.name} overlaps the previous tensor`);
    end = s.offset + s.size;
    count += s.size;
    const want = s.name.endsWith("norm.weight")
      ? "no_decay"
      : s.name.endsWith(".gate")
      ? "gate"
      : "decay";
    assertEquals(s.group, want, s.name);
  }
  assertEquals(t.count, count);
  assert(t.total >= end && t.total - end < PARAM_ALIGN);
  assertThrows(() => t.get("lm_head.weight"), /lm_head\.weight/);
});

Deno.test("seeded init: N(0, 0.02) matrices, zero norms, beta init, reproducible", () => {
  const c = resolveConfig("tiny", ["betaInit=0.25"]);
  const t = paramTable(c);
  const p = initParams(t, c, 7);
  assertEquals(p, initParams(t, c, 7), "same seed, same bits");
  assert(p.some((x, i) => x !== initParams(t, c, 8)[i]), "another seed differs");
  const e = t.get(EMBED);
  const emb = p.subarray(e.offset, e.offset + e.size);
  const mean = emb.reduce((a, b) => a + b, 0) / emb.length;
  const std = Math.sqrt(emb.reduce((a, b) => a + (b - mean) ** 2, 0) / emb.length);
  // 16,512 samples: the sample std is within ~1% (3 sigma) of 0.02, the mean within 5e-4.
  assert(Math.abs(std - 0.02) < 0.0005, `std ${std}`);
  assert(Math.abs(mean) < 0.0005, `mean ${mean}`);
  for (const s of t.specs) {
    const x = p.subarray(s.offset, s.offset + s.size);
    if (s.init === "zeros") assert(x.every((v) => v === 0), s.name);
    if (s.init === "beta") assert(x.every((v) => v === 0.25), s.name);
    if (s.init === "normal") assert(x.some((v) => v !== 0), s.name);
  }
  // A tensor's values depend on (seed, name) only: changing the Infini layers keeps them.
  const c2 = resolveConfig("tiny", ["infiniLayers=none"]);
  const t2 = paramTable(c2), p2 = initParams(t2, c2, 7);
  const name = layerNames(1).mlpUp;
  const a = t.get(name), b = t2.get(name);
  assertEquals(p.subarray(a.offset, a.offset + a.size), p2.subarray(b.offset, b.offset + b.size));
});
