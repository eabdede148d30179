/**
 * The memory plan of a training run, computed without touching the GPU: every storage buffer
 * that training allocates (the model of src/model/model.ts created with `train: true`, the
 * optimizer of ./optimizer.ts, and what chunked training adds), walked in the order those
 * files create them, with the byte counts the runtime would charge (`rt.tensor` rounds each
 * buffer up to 16 bytes). WebGPU reports no device memory size, so the plan checks every
 * buffer against the adapter's maxBufferSize, every binding against its
 * maxStorageBufferBindingSize, and the total against a budget the user gives (`--memory`).
 *
 * Shapes: B sequences of T = nS x S tokens; training runs in chunks of K segments, so the
 * model holds rows = B x K x S per call and there are nC = ceil(nS / K) chunks (the last one
 * padded when K does not divide nS).
 *
 * @example
 * ```ts
 * const cfg = resolveConfig("seed-2b", []);
 * const plan = planTraining(cfg, { batch: 1, chunk: 2, limits: H100_LIMITS, memory: 80e9 });
 * plan.totalBytes; // bytes of every buffer
 * plan.fits; // every buffer, binding and the total within the limits and the budget
 * chooseChunk(cfg, 1, H100_LIMITS, 80e9); // the default --chunk: segments per chunk
 * ```
 */
import { fmtBytes } from "../gpu/runtime.ts";
import { isInfiniLayer, type ModelConfig } from "../model/config.ts";
import { EMBED, pageLayout, paramTable } from "../model/params.ts";
import { Embedding } from "../ops/embedding.ts";
import { InfiniMemory, type InfiniShape } from "../ops/infini.ts";
import { RmsNorm } from "../ops/rmsnorm.ts";
import { Rope } from "../ops/rope.ts";
import { Xent } from "../ops/xent.ts";

/** The two limits a plan checks (rt.limits has both, after any --limit caps). */
export interface PlanLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

/**
 * An NVIDIA H100 through Deno's WebGPU (wgpu): wgpu caps a storage binding at i32::MAX even
 * where Vulkan offers 4 GiB - 1. Its maxBufferSize depends on the wgpu version and driver
 * (u64::MAX on NVIDIA Vulkan in some wgpu versions, the driver's ~4 GiB maxMemoryAllocationSize
 * in others); the plan takes the same 2 GiB - 1 as the binding, the smallest of those, so that
 * a plan that fits here fits on any of them.
 */
export const H100_LIMITS: Readonly<PlanLimits> = {
  maxBufferSize: 2_147_483_647,
  maxStorageBufferBindingSize: 2_147_483_647,
};

/** Mesa 22.3's lavapipe adapter maxima as measured here: 2 GiB - 1 per buffer, 128 MiB per binding. */
export const LAVAPIPE_LIMITS: Readonly<PlanLimits> = {
  maxBufferSize: 2_147_483_647,
  maxStorageBufferBindingSize: 134_217_728,
};

/**
 * Default memory budget on a GPU adapter: 40 GB (40e9 bytes). WebGPU reports no device memory,
 * so the default is the smaller of the A100's two sizes, the seed's own class of card: a plan
 * within it holds on a 40 GB card, and on an 80 GB one leaves half the card to the driver and
 * whatever else runs (`--memory 80GB` lets the plan use it: larger chunks, less recomputation).
 * CPU adapters (lavapipe) keep their buffers in host memory: their default is the machine's
 * memory (Deno.systemMemoryInfo().total).
 */
export const GPU_MEMORY_DEFAULT = 40e9;

/** What a planned byte belongs to. */
export type PlanPart =
  | "parameters"
  | "gradients"
  | "moments"
  | "activations"
  | "memoryState"
  | "lmHead"
  | "scratch";

export const PLAN_PARTS: readonly PlanPart[] = [
  "parameters",
  "gradients",
  "moments",
  "activations",
  "memoryState",
  "lmHead",
  "scratch",
];

/** How the text plan names each part. */
export const PART_NAMES: Record<PlanPart, string> = {
  parameters: "parameters",
  gradients: "gradients",
  moments: "AdamW moments (m, v)",
  activations: "activations (one chunk)",
  memoryState: "memory state (M, z)",
  lmHead: "LM-head scratch",
  scratch: "other scratch",
};

/** One storage buffer of the plan. */
export interface PlannedBuffer {
  label: string;
  part: PlanPart;
  /** Bytes the runtime charges for it: 4 x elements rounded up to 16, at least 16. */
  bytes: number;
  /** The largest range of it that one dispatch binds, in bytes. */
  binding: number;
  /** What that range is, when not the whole buffer (a tensor in a parameter page). */
  bindingLabel?: string;
}

export interface PlanRequest {
  /** B: sequences per micro-batch. */
  batch: number;
  /**
   * K: segments per chunk, 1..nS (default nS = seqLength / segmentLength: no chunking); when K
   * does not divide nS the last chunk is padded.
   */
  chunk?: number;
  limits: PlanLimits;
  /** Bytes the whole plan may take (--memory). */
  memory: number;
  /**
   * Lengths in segments of a mixture's batches (train --segments): without chunks, every
   * length shorter than the sequence runs on a model of its own that shares the weights and
   * gradients (its activations and scratch are extra); with chunks they all run through one.
   */
  lengths?: readonly number[];
}

export interface TrainingPlan {
  batch: number;
  seqLength: number;
  segmentLength: number;
  /** nS: segments per sequence. */
  segments: number;
  /** K: segments per chunk (nS when the whole sequence runs at once). */
  chunkSegments: number;
  /** nC = ceil(nS / K). */
  chunks: number;
  /** Rows (tokens) of one model call: B x K x S. */
  rowsPerChunk: number;
  /** Bytes per part; they add up to totalBytes. */
  parts: Record<PlanPart, number>;
  totalBytes: number;
  buffers: number;
  largestBuffer: { label: string; bytes: number };
  largestBinding: { label: string; bytes: number };
  limits: PlanLimits;
  memoryBudget: number;
  fits: boolean;
  /** Why it does not fit (empty when it does), one sentence each. */
  problems: string[];
}

/** Bytes `rt.tensor(label, n)` allocates (src/gpu/runtime.ts). */
export function tensorBytes(elements: number): number {
  return Math.max(16, Math.ceil((elements * 4) / 16) * 16);
}

/** Elements per workgroup of AdamW's gradient-norm pass (src/ops/adamw.ts PER_WG = 256 x 32). */
const ADAMW_NORM_PER_GROUP = 256 * 32;
/** Rows the embedding's token index can number (Embedding.buildIndex). */
const MAX_INDEX_ROWS = 2 ** 21;

/** The chunk sizes K a config allows: the divisors of its segments per sequence. */
export function chunkChoices(cfg: Readonly<ModelConfig>): number[] {
  const nS = cfg.seqLength / cfg.segmentLength;
  const out: number[] = [];
  for (let k = 1; k <= nS; k++) if (nS % k === 0) out.push(k);
  return out;
}

/**
 * Every storage buffer of a training run, as InfiniGemma.create (train: true, T = K x S,
 * chunks nC) and Optimizer.create allocate them; for chunked training (nC > 1) that includes
 * the staging of the whole step, per Infini layer the (M, z) entering every chunk but the
 * first, and the dM, dz carried backward across chunk boundaries. Parameters, gradients and
 * moments are laid out in pages of at most maxBufferSize (src/model/params.ts pageLayout);
 * each tensor is bound on its own (the tied embedding in vocabulary slices that fit a binding).
 */
export function trainingBuffers(cfg: Readonly<ModelConfig>, req: PlanRequest): PlannedBuffer[] {
  const { B, K, nS, nC } = shapeOf(cfg, req);
  const C = cfg.hiddenSize, F = cfg.intermediateSize, H = cfg.numHeads, Hkv = cfg.numKvHeads;
  const D = cfg.headDim, V = cfg.vocabSize, L = cfg.numLayers, S = cfg.segmentLength;
  const cap = req.limits.maxStorageBufferBindingSize;
  const out: PlannedBuffer[] = [];
  let prefix = "";
  const add = (
    label: string,
    part: PlanPart,
    elements: number,
    binding = elements * 4,
    bindingLabel?: string,
  ) => {
    out.push({ label: prefix + label, part, bytes: tensorBytes(elements), binding, bindingLabel });
  };
  const infini = Array.from({ length: L }, (_, l) => isInfiniLayer(cfg, l));
  const anyInfini = infini.some(Boolean);

  // Parameters, gradients (model.ts) and moments (optimizer.ts): the same pages, each a window
  // of the table's flat layout (pageLayout), the embedding in row blocks when over a page.
  const table = paramTable(cfg);
  const layout = pageLayout(table, req.limits.maxBufferSize);
  const embedRows = layout.blocks(EMBED).map((b) => b.rows);

  const bindings = table.specs.map((s) =>
    s.name === EMBED ? Math.min(s.size * 4, embedSliceBytes(cap, C)) : s.size * 4
  );
  const widest = Math.max(...bindings);
  const widestSpec = table.specs[bindings.indexOf(widest)];
  const widestName = widestSpec.name === EMBED && widest < widestSpec.size * 4
    ? `${EMBED} (one vocabulary slice)`
    : widestSpec.name;
  const pages = layout.pages.map((p) => p.length);
  const paged = (tag: string, part: PlanPart) => {
    pages.forEach((n, i) => {
      const label = pages.length === 1 ? tag : `${tag}.page${i}`;
      add(label, part, n, Math.min(widest, n * 4), `${tag}: ${widestName}`);
    });
  };
  paged("params", "parameters");
  paged("grads", "gradients");

  // The model's own buffers at K segments per call; a mixture's shorter lengths (without
  // chunks) each add a model of that length sharing the parameters and gradients.
  modelBuffers(K, nC);
  if (nC === 1) {
    for (const n of new Set(req.lengths ?? [])) {
      if (!Number.isInteger(n) || n < 1 || n > nS) {
        throw new RangeError(`plan: a batch of ${n} segments is outside 1..${nS}`);
      }
      if (n === nS) continue;
      prefix = `len${n}:`;
      modelBuffers(n, 1);
      prefix = "";
    }
  }

  // Optimizer.create: the moments, then Adamw.create's statistics and per-workgroup partial
  // sums of the gradient norm (one per 8,192 elements of each binding-sized piece of each
  // gradient page).
  paged("adam.m", "moments");
  paged("adam.v", "moments");
  const pe = Math.floor(cap / 4 / 64) * 64;
  let partials = 0;
  for (const n of pages) {
    for (let s = 0; s < n; s += pe) {
      partials += Math.ceil(Math.min(pe, n - s) / ADAMW_NORM_PER_GROUP);
    }
  }
  add("adamw.stats", "scratch", 4);
  add("adamw.partials", "scratch", Math.max(1, partials));
  return out;

  /** InfiniGemma.create's buffers but the parameters and gradients: K segments per call. */
  function modelBuffers(K: number, nC: number): void {
    const T = K * S, rows = B * T;
    // Xent.create (inside InfiniGemma.create): chunk logits, row state, NLL fallback, and the
    // zero-padded copy of a last chunk whose length is not a multiple of 4, with its dE. Chunks
    // of Vc rows run within each embedding block, so the last is what the last block leaves.
    const xp = Xent.plan(cap, rows, V, C);
    add("xent.logits", "lmHead", xp.logitsElements);
    add("xent.state", "lmHead", 4 * rows);
    add("xent.nll", "lmHead", rows);
    const lastBlock = embedRows[embedRows.length - 1];
    const last = lastBlock - Math.floor((lastBlock - 1) / xp.chunk) * xp.chunk;
    if (last % 4 !== 0) {
      add("xent.padE", "lmHead", round4(last) * C);
      add("xent.paddE", "lmHead", round4(last) * C);
    }

    // Per layer, what its forward keeps for the backward (model.ts makeActs).
    const shape: InfiniShape = { B, nS: K, S, H, Hkv, D };
    const msz = InfiniMemory.sizes(shape, cfg.memoryUpdate);
    for (let l = 0; l < L; l++) {
      const t = (name: string, n: number) => add(`L${l}.${name}`, "activations", n);
      t("adot", rows * H * D);
      t("x", rows * C);
      t("xn1", rows * C);
      t("rstd1", rows);
      t("q", rows * H * D);
      t("k", rows * Hkv * D);
      t("v", rows * Hkv * D);
      t("qr", rows * H * D);
      t("kr", rows * Hkv * D);
      t("lse", rows * H);
      if (infini[l]) {
        t("A", rows * H * D);
        t("Mprev", msz.Mprev);
        t("zprev", msz.zprev);
        if (cfg.memoryUpdate === "delta") t("W", msz.W);
      }
      t("xmid", rows * C);
      t("xn2", rows * C);
      t("rstd2", rows);
      t("g", rows * F);
      t("u", rows * F);
      t("h", rows * F);
    }
    // Memory state of each Infini layer: carried in and produced out, (B, Hkv, D, D) and (B, Hkv, D).
    for (let l = 0; l < L; l++) {
      if (!infini[l]) continue;
      add(`L${l}.Min`, "memoryState", msz.state);
      add(`L${l}.zin`, "memoryState", msz.stateZ);
      add(`L${l}.Mout`, "memoryState", msz.state);
      add(`L${l}.zout`, "memoryState", msz.stateZ);
    }
    add("tokens", "scratch", rows);
    add("tokens.index", "scratch", Embedding.indexLength(rows));
    add("targets", "scratch", rows);
    add("weights", "scratch", rows);
    add("rope.table", "scratch", Rope.tableLength(S, D));
    add("xL", "activations", rows * C);
    add("xf", "activations", rows * C);
    add("rstdF", "activations", rows);
    add("attnOut", "scratch", rows * C);
    add("mlpOut", "scratch", rows * C);
    // Backward scratch, shared by all layers.
    const d = (name: string, n: number) => add(`d.${name}`, "scratch", n);
    d("res", rows * C);
    d("xf", rows * C);
    d("h", rows * F);
    d("g", rows * F);
    d("u", rows * F);
    d("xn", rows * C);
    d("A", rows * H * D);
    d("adot", rows * H * D);
    d("sum", rows * H);
    d("qr", rows * H * D);
    d("kr", rows * Hkv * D);
    d("vA", rows * Hkv * D);
    d("q", rows * H * D);
    d("k", rows * Hkv * D);
    d("v", rows * Hkv * D);
    d("normScratch", RmsNorm.scratchLength(rows, C));
    if (anyInfini) {
      d("memWork", msz.work);
      add("d.Min", "memoryState", msz.state);
      add("d.zin", "memoryState", msz.stateZ);
    }
    add("loss", "scratch", 1);
    add("nll", "scratch", rows);

    // Chunked training (model.ts chunkBufs): the whole step's batch in one 256-byte aligned slot
    // per chunk (embedding index, targets, weights) and each chunk's loss; per Infini layer the
    // (M, z) entering chunks 1..nC-1 and two dM, dz carried backward across chunk boundaries.
    if (nC > 1) {
      const align = (n: number) => Math.ceil(n / 64) * 64;
      add("chunk.index", "scratch", nC * align(Embedding.indexLength(rows)));
      add("chunk.targets", "scratch", nC * align(rows));
      add("chunk.weights", "scratch", nC * align(rows));
      add("chunk.loss", "scratch", nC);
      for (let l = 0; l < L; l++) {
        if (!infini[l]) continue;
        add(`L${l}.snap`, "memoryState", (nC - 1) * (msz.state + msz.stateZ));
        add(`L${l}.dM0`, "memoryState", msz.state);
        add(`L${l}.dM1`, "memoryState", msz.state);
        add(`L${l}.dz0`, "memoryState", msz.stateZ);
        add(`L${l}.dz1`, "memoryState", msz.stateZ);
      }
    }
  }
}

/** Bytes of the largest vocabulary slice of the embedding that one binding holds. */
function embedSliceBytes(cap: number, C: number): number {
  return Math.floor(cap / (C * 4) / 64) * 64 * C * 4;
}

function round4(n: number): number {
  return Math.ceil(n / 4) * 4;
}

function shapeOf(cfg: Readonly<ModelConfig>, req: PlanRequest) {
  const S = cfg.segmentLength, nS = cfg.seqLength / S;
  const B = req.batch, K = req.chunk ?? nS;
  if (!Number.isInteger(B) || B < 1) throw new RangeError(`plan: batch ${B} must be >= 1`);
  if (!Number.isInteger(K) || K < 1 || K > nS) {
    throw new RangeError(`plan: a chunk of ${K} segments is outside 1..${nS} (seqLength / S)`);
  }
  // A K that does not divide nS pads the last chunk with ignored segments (trainer.ts).
  return { B, K, nS, nC: Math.ceil(nS / K) };
}

/** The plan of a training run: bytes per part, the largest buffer and binding, whether it fits. */
export function planTraining(cfg: Readonly<ModelConfig>, req: PlanRequest): TrainingPlan {
  const { B, K, nS, nC } = shapeOf(cfg, req);
  const S = cfg.segmentLength, rows = B * K * S;
  const parts = Object.fromEntries(PLAN_PARTS.map((p) => [p, 0])) as Record<PlanPart, number>;
  const problems: string[] = [];
  let buffers: PlannedBuffer[] = [];
  try {
    buffers = trainingBuffers(cfg, req);
  } catch (e) {
    // Xent.plan: not even the smallest vocabulary chunk's logits fit one binding.
    problems.push(e instanceof Error ? e.message : String(e));
  }
  let total = 0;
  let big = { label: "-", bytes: 0 }, bind = { label: "-", bytes: 0 };
  for (const b of buffers) {
    parts[b.part] += b.bytes;
    total += b.bytes;
    if (b.bytes > big.bytes) big = { label: b.label, bytes: b.bytes };
    if (b.binding > bind.bytes) bind = { label: b.bindingLabel ?? b.label, bytes: b.binding };
  }
  const { maxBufferSize, maxStorageBufferBindingSize } = req.limits;
  const over = buffers.filter((b) => b.bytes > maxBufferSize);
  if (over.length) {
    problems.push(
      `${over.length} buffer(s) over maxBufferSize ${fmtBytes(maxBufferSize)}, the largest ` +
        `${big.label} (${fmtBytes(big.bytes)})`,
    );
  }
  const overBind = buffers.filter((b) => b.binding > maxStorageBufferBindingSize);
  if (overBind.length) {
    problems.push(
      `${overBind.length} binding(s) over maxStorageBufferBindingSize ` +
        `${fmtBytes(maxStorageBufferBindingSize)}, the largest ${bind.label} ` +
        `(${fmtBytes(bind.bytes)})`,
    );
  }
  if (rows >= MAX_INDEX_ROWS) {
    problems.push(
      `${rows} rows per chunk: the embedding's token index takes under ${MAX_INDEX_ROWS}`,
    );
  }
  if (buffers.length && total > req.memory) {
    problems.push(`total ${fmtSize(total)} is over the budget ${fmtSize(req.memory)} (--memory)`);
  }
  return {
    batch: B,
    seqLength: cfg.seqLength,
    segmentLength: S,
    segments: nS,
    chunkSegments: K,
    chunks: nC,
    rowsPerChunk: rows,
    parts,
    totalBytes: total,
    buffers: buffers.length,
    largestBuffer: big,
    largestBinding: bind,
    limits: { maxBufferSize, maxStorageBufferBindingSize },
    memoryBudget: req.memory,
    fits: problems.length === 0,
    problems,
  };
}

/**
 * The default --chunk: the whole sequence (nS segments) when its plan fits, otherwise the
 * largest K dividing nS whose plan fits; null when none does.
 */
export function chooseChunk(
  cfg: Readonly<ModelConfig>,
  batch: number,
  limits: PlanLimits,
  memory: number,
  lengths?: readonly number[],
): number | null {
  const ks = chunkChoices(cfg).reverse();
  return ks.find((chunk) => planTraining(cfg, { batch, chunk, limits, memory, lengths }).fits) ??
    null;
}

/** The plan at every chunk size the config allows, smallest chunk first. */
export function planByChunk(
  cfg: Readonly<ModelConfig>,
  req: Omit<PlanRequest, "chunk">,
): TrainingPlan[] {
  return chunkChoices(cfg).map((chunk) => planTraining(cfg, { ...req, chunk }));
}

/**
 * What to reduce when a plan does not fit, each a change that makes it fit (the others held):
 * the chunk, the batch, the sequence length; or, when even the parameters, gradients and
 * moments alone are over the budget or a weight over a binding, the model itself.
 */
export function advice(cfg: Readonly<ModelConfig>, req: PlanRequest): string[] {
  const plan = planTraining(cfg, req);
  if (plan.fits) return [];
  const out: string[] = [];
  const fixed = plan.parts.parameters + plan.parts.gradients + plan.parts.moments;
  if (fixed > req.memory) {
    out.push(
      `the parameters, gradients and AdamW moments alone are ${fmtSize(fixed)}, over the budget: ` +
        `no batch, chunk or sequence length fits; use a smaller model or a larger --memory`,
    );
    return out;
  }
  const k = chooseChunk(cfg, req.batch, req.limits, req.memory, req.lengths);
  if (k !== null && k !== plan.chunkSegments) {
    const p = planTraining(cfg, { ...req, chunk: k });
    out.push(`--chunk ${k} (${fmtSize(p.totalBytes)})`);
  }
  for (let b = req.batch - 1; b >= 1; b--) {
    const kb = chooseChunk(cfg, b, req.limits, req.memory, req.lengths);
    if (kb !== null) {
      const p = planTraining(cfg, { ...req, batch: b, chunk: kb });
      out.push(`--batch ${b} with --chunk ${kb} (${fmtSize(p.totalBytes)})`);
      break;
    }
  }
  const S = cfg.segmentLength;
  for (let n = cfg.seqLength / S - 1; n >= 1; n--) {
    const shorter = { ...cfg, seqLength: n * S };
    const lengths = req.lengths?.filter((m) => m <= n);
    const kt = chooseChunk(shorter, req.batch, req.limits, req.memory, lengths);
    if (kt !== null) {
      const p = planTraining(shorter, { ...req, chunk: kt, lengths });
      out.push(`--set seqLength=${n * S} with --chunk ${kt} (${fmtSize(p.totalBytes)})`);
      break;
    }
  }
  if (!out.length) {
    out.push(
      `nothing fits at one segment of ${S} tokens per chunk: reduce segmentLength, ` +
        `hiddenSize or intermediateSize, or raise --memory`,
    );
  }
  return out;
}

/** Bytes in decimal units, as memory budgets are quoted ("80.00 GB", "4.92 MB"). */
export function fmtSize(n: number): string {
  if (n === Infinity) return "unlimited";
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(2)} kB`;
  return `${n} B`;
}
