/**
 * The parameter table, llm.c style: one ordered list of named tensors (Hugging Face Gemma
 * names, [out, in] for linear layers) laid out in one flat f32 array. Each tensor starts at a
 * multiple of 64 elements (256 bytes) so that a GPU view can bind it on its own.
 *
 * Order follows the forward pass: embedding, then per layer input norm, q/k/v/o projections,
 * gate (Infini layers only), post-attention norm, MLP gate/up/down; then the final norm.
 *
 * On the GPU the flat array is cut into pages, one buffer each, by {@link pageLayout}: no
 * buffer exceeds the adapter's maxBufferSize, and a page is a window of this flat layout.
 *
 * @example
 * ```ts
 * const table = paramTable(preset("tiny"));
 * const params = initParams(table, preset("tiny"), 1234); // Float32Array(table.total)
 * const wq = table.get("model.layers.0.self_attn.q_proj.weight"); // {offset, shape: [H*D, C]}
 * params.subarray(wq.offset, wq.offset + wq.size);
 * ```
 */
import { isInfiniLayer, type ModelConfig } from "./config.ts";
import { fmtBytes, GpuUnavailableError } from "../gpu/runtime.ts";
import { ROW_BLOCK_ALIGN } from "../ops/row_blocks.ts";
import { Rng } from "../util/rng.ts";

/**
 * Optimizer group: "decay" gets weight decay (matrices, embedding), "no_decay" none (norm
 * weights), "gate" none and its own learning-rate multiplier (beta).
 */
export type ParamGroup = "decay" | "no_decay" | "gate";

/** How a tensor is initialised. */
export type ParamInit = "normal" | "zeros" | "beta";

/** One tensor of the table. */
export interface ParamSpec {
  /** Hugging Face Gemma name, e.g. "model.layers.0.self_attn.q_proj.weight". */
  readonly name: string;
  /** Shape; [out, in] for linear layers. */
  readonly shape: readonly number[];
  readonly group: ParamGroup;
  readonly init: ParamInit;
  /** Offset in elements into the flat array; a multiple of {@link PARAM_ALIGN}. */
  readonly offset: number;
  /** Number of elements (product of shape). */
  readonly size: number;
}

/** Alignment of each tensor in the flat array, in elements (256 bytes of f32). */
export const PARAM_ALIGN = 64;

/** The whole table. */
export interface ParamTable {
  /** Tensors in forward order. */
  readonly specs: readonly ParamSpec[];
  /** Length of the flat array (padding included). */
  readonly total: number;
  /** Number of parameters (padding excluded). */
  readonly count: number;
  /** The spec of a name; throws naming the tensor when absent. */
  get(name: string): ParamSpec;
  /** Whether a tensor of that name exists. */
  has(name: string): boolean;
}

/**
 * Where a tensor lives in a {@link PageLayout}: rows [row0, row0 + rows) of its first axis
 * (the whole tensor when it is one block) at element `offset` of page `page`.
 */
export interface TensorBlock {
  readonly page: number;
  /** Offset in elements inside the page; a multiple of {@link PARAM_ALIGN}. */
  readonly offset: number;
  readonly row0: number;
  readonly rows: number;
  /** Elements of the block: rows times the row length (product of the other axes). */
  readonly size: number;
}

/**
 * The parameter table cut into pages, each of which becomes one GPU buffer of at most the
 * adapter's maxBufferSize; gradients and the AdamW moments are paged identically, so a slot
 * is (page i, offset o) in all four.
 *
 * Rule: the pages are consecutive windows [start, start + length) of the table's flat layout
 * (page i + 1 starts where page i ends), so concatenating them gives the flat array back, and
 * every offset inside a page stays a multiple of {@link PARAM_ALIGN} (256 bytes:
 * minStorageBufferOffsetAlignment is at most 256 on every adapter). Tensors are taken in
 * table order; a tensor that does not fit in the rest of the current page starts a new one;
 * a tensor larger than a whole page (the tied embedding of a large vocabulary) is cut into
 * blocks of whole rows of its first axis, starting at multiples of ROW_BLOCK_ALIGN (64) rows:
 * it first fills what the current page has left, then whole pages, and its last block shares
 * its page with the tensors after it. Only tensors the ops take as row blocks may be split
 * (`split`, by default the tied embedding alone); any other tensor larger than a page is a
 * GpuUnavailableError naming it and the limit. With everything within one buffer there is one
 * page, the flat layout itself.
 */
export interface PageLayout {
  readonly table: ParamTable;
  /** Most elements a page may hold (maxBufferSize / 4, rounded down to PARAM_ALIGN). */
  readonly pageElements: number;
  /** The pages as windows of the flat layout, in order; they tile [0, table.total). */
  readonly pages: readonly { readonly start: number; readonly length: number }[];
  /** The blocks of a tensor, in row order (one unless it is larger than a page). */
  blocks(name: string): readonly TensorBlock[];
}

/** Lays the table out in pages of at most `maxBufferBytes` bytes (see {@link PageLayout}). */
export function pageLayout(
  table: ParamTable,
  maxBufferBytes: number,
  opts: { split?: (name: string) => boolean } = {},
): PageLayout {
  const split = opts.split ?? ((name: string) => name === EMBED);
  const cap = Math.floor(maxBufferBytes / 4 / PARAM_ALIGN) * PARAM_ALIGN;
  if (!(cap >= PARAM_ALIGN)) {
    throw new RangeError(`page layout: maxBufferSize ${maxBufferBytes} is below 256 bytes`);
  }
  const pages: { start: number; length: number }[] = [];
  const blocks = new Map<string, TensorBlock[]>();
  // The open page: flat window [start, end).
  let start = 0, end = 0;
  const open = (at: number) => {
    if (end > start) pages.push({ start, length: end - start });
    start = end = at;
  };
  const place = (flat: number, row0: number, rows: number, size: number, padded: number) => {
    end = flat + padded;
    return { page: pages.length, offset: flat - start, row0, rows, size };
  };
  for (const s of table.specs) {
    const padded = Math.ceil(s.size / PARAM_ALIGN) * PARAM_ALIGN;
    const R = s.shape[0] ?? 1, rowLen = s.size / R;
    if (s.offset + padded - start > cap && padded <= cap) open(s.offset);
    if (s.offset + padded - start <= cap) {
      blocks.set(s.name, [place(s.offset, 0, R, s.size, padded)]);
      continue;
    }
    // Larger than a page: blocks of whole rows, each a multiple of ROW_BLOCK_ALIGN rows but
    // the last.
    const rowsIn = (room: number) => Math.floor(room / rowLen / ROW_BLOCK_ALIGN) * ROW_BLOCK_ALIGN;
    if (!split(s.name) || rowsIn(cap) === 0) {
      const what = split(s.name)
        ? `${ROW_BLOCK_ALIGN} rows of ${s.name} [${s.shape}] need ${
          fmtBytes(4 * ROW_BLOCK_ALIGN * rowLen)
        }`
        : `${s.name} [${s.shape}] needs ${fmtBytes(4 * s.size)}`;
      throw new GpuUnavailableError(
        `${what} but the adapter's maxBufferSize is ${fmtBytes(maxBufferBytes)} (only the ` +
          `embedding is split across buffers, in blocks of ${ROW_BLOCK_ALIGN} rows); reduce ` +
          `the model's size (hiddenSize, intermediateSize, heads x headDim)`,
      );
    }
    const list: TensorBlock[] = [];
    let r = 0;
    while (r < R) {
      let n = Math.min(R - r, rowsIn(cap - (s.offset + r * rowLen - start)));
      if (n === 0) {
        open(s.offset + r * rowLen);
        n = Math.min(R - r, rowsIn(cap));
      }
      const last = r + n === R;
      list.push(
        place(s.offset + r * rowLen, r, n, n * rowLen, last ? padded - r * rowLen : n * rowLen),
      );
      r += n;
    }
    blocks.set(s.name, list);
  }
  open(end);
  return {
    table,
    pageElements: cap,
    pages,
    blocks(name: string) {
      const b = blocks.get(name);
      if (!b) throw new Error(`no parameter named '${name}' in this model`);
      return b;
    },
  };
}

/** Names of one layer's tensors, shared by the table, the reference model and the GPU model. */
export function layerNames(l: number) {
  const p = `model.layers.${l}`;
  return {
    inputNorm: `${p}.input_layernorm.weight`,
    q: `${p}.self_attn.q_proj.weight`,
    k: `${p}.self_attn.k_proj.weight`,
    v: `${p}.self_attn.v_proj.weight`,
    o: `${p}.self_attn.o_proj.weight`,
    gate: `${p}.self_attn.gate`,
    postNorm: `${p}.post_attention_layernorm.weight`,
    mlpGate: `${p}.mlp.gate_proj.weight`,
    mlpUp: `${p}.mlp.up_proj.weight`,
    mlpDown: `${p}.mlp.down_proj.weight`,
  };
}

/** Names of the tensors outside the layers. */
export const EMBED = "model.embed_tokens.weight";
export const FINAL_NORM = "model.norm.weight";

/** Builds the table from a config; allocates nothing (fine for seed-2b). */
export function paramTable(cfg: Readonly<ModelConfig>): ParamTable {
  const { vocabSize: V, hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: Hkv } = cfg;
  const D = cfg.headDim;
  const specs: ParamSpec[] = [];
  let offset = 0, count = 0;
  const add = (name: string, shape: number[], group: ParamGroup, init: ParamInit) => {
    const size = shape.reduce((a, b) => a * b, 1);
    specs.push({ name, shape, group, init, offset, size });
    count += size;
    offset += Math.ceil(size / PARAM_ALIGN) * PARAM_ALIGN;
  };
  add(EMBED, [V, C], "decay", "normal");
  for (let l = 0; l < cfg.numLayers; l++) {
    const n = layerNames(l);
    add(n.inputNorm, [C], "no_decay", "zeros");
    add(n.q, [H * D, C], "decay", "normal");
    add(n.k, [Hkv * D, C], "decay", "normal");
    add(n.v, [Hkv * D, C], "decay", "normal");
    add(n.o, [C, H * D], "decay", "normal");
    if (isInfiniLayer(cfg, l)) add(n.gate, [H], "gate", "beta");
    add(n.postNorm, [C], "no_decay", "zeros");
    add(n.mlpGate, [F, C], "decay", "normal");
    add(n.mlpUp, [F, C], "decay", "normal");
    add(n.mlpDown, [C, F], "decay", "normal");
  }
  add(FINAL_NORM, [C], "no_decay", "zeros");
  const byName = new Map(specs.map((s) => [s.name, s]));
  return {
    specs,
    total: offset,
    count,
    get(name: string): ParamSpec {
      const s = byName.get(name);
      if (!s) throw new Error(`no parameter named '${name}' in this model`);
      return s;
    },
    has: (name: string) => byName.has(name),
  };
}

/**
 * Number of parameters of a config in closed form: no table, no loop over layers, so it is
 * instant for any config, even a damaged one with 10^15 layers (a loader checks it against
 * the file's size before building anything). Equals `paramTable(cfg).count`.
 */
export function paramCount(cfg: Readonly<ModelConfig>): number {
  const { vocabSize: V, hiddenSize: C, intermediateSize: F, numHeads: H, numKvHeads: Hkv } = cfg;
  const D = cfg.headDim, L = cfg.numLayers, il = cfg.infiniLayers;
  const infini = il === "all"
    ? L
    : il === "none"
    ? 0
    : Array.isArray(il)
    ? new Set(il.filter((l) => l >= 0 && l < L)).size
    : Math.min(il.last, L);
  // Per layer: two norms [C], q and o [H*D, C], k and v [Hkv*D, C], MLP gate, up, down [F, C].
  const perLayer = 2 * C + 2 * H * D * C + 2 * Hkv * D * C + 3 * F * C;
  // Embedding [V, C], the layers, a gate [H] per Infini layer, the final norm [C].
  return V * C + L * perLayer + infini * H + C;
}

/**
 * Seeded initialisation into a new flat Float32Array (padding left at 0): N(0, initStd) for
 * the embedding and every linear, 0 for norm weights (Gemma stores w in x * (1 + w), so 0 is
 * the identity scale), betaInit for the gates. Each tensor draws from its own generator seeded
 * by (seed, name), so a tensor's values do not depend on which other tensors exist (e.g. the
 * Infini layer choice leaves the shared weights unchanged).
 */
export function initParams(
  table: ParamTable,
  cfg: Readonly<ModelConfig>,
  seed: number,
): Float32Array {
  const out = new Float32Array(table.total);
  for (const s of table.specs) initTensor(s, cfg, seed, out.subarray(s.offset, s.offset + s.size));
  return out;
}

/**
 * One tensor's values of {@link initParams} (into `out` when given, of s.size elements), so
 * that a large model can be initialised tensor by tensor without the flat array.
 */
export function initTensor(
  s: ParamSpec,
  cfg: Readonly<ModelConfig>,
  seed: number,
  out = new Float32Array(s.size),
): Float32Array {
  if (s.init === "normal") {
    const rng = new Rng(tensorSeed(seed, s.name));
    for (let i = 0; i < s.size; i++) out[i] = rng.normal() * cfg.initStd;
  } else if (s.init === "beta") {
    out.fill(cfg.betaInit);
  } else {
    out.fill(0);
  }
  return out;
}

/** FNV-1a of the name mixed with the seed: a per-tensor seed. */
function tensorSeed(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ (seed >>> 0)) >>> 0;
  for (let i = 0; i < name.length; i++) {
    h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  }
  return (h ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0;
}
