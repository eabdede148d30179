/**
 * The Infini-Gemma model on the GPU, llm.c style: the forward is an explicit list of kernel
 * calls, layer by layer, and the backward is that list reversed, written out below it.
 *
 * Training runs LAYER-MAJOR: each layer processes all segments of all B sequences at once
 * (rows = B * T, row (b, s, t) = (b * nS + s) * S + t); only the compressive memory runs a
 * recurrence over segments, inside the Infini op. Evaluation streams SEGMENT-MAJOR by calling
 * the same forward with T = S and carrying (M, z) between calls (`carry`). Chunked training
 * (`chunks` > 1, T = K segments) runs a sequence in chunks and recomputes each in the backward
 * from the memory saved entering it, carrying dM, dz back (see `recordChunkedGrads`).
 *
 * Per layer l (pre-norm Gemma block with Infini-attention):
 *   xn1 = RMSNorm(x_l; w_in)                          (rows, C)
 *   q, k, v = xn1 Wq^T, xn1 Wk^T, xn1 Wv^T            (rows, H*D), (rows, Hkv*D) x 2
 *   qr, kr = RoPE(q), RoPE(k)                         positions restart every segment
 *   adot, lse = causal attention(qr, kr, v) per segment
 *   A = sigmoid(beta) A_mem(q, k, v; M, z) + (1 - sigmoid(beta)) adot    (Infini layers)
 *   A = adot                                                             (plain layers)
 *   xmid = x_l + A Wo^T ; xn2 = RMSNorm(xmid; w_post)   (fused add + norm)
 *   h = gelu_tanh(xn2 Wg^T) * (xn2 Wu^T)              (rows, F)
 *   x_{l+1} = xmid + h Wd^T                           (fused into the next norm)
 * then xf = RMSNorm(x_L; w_final) and the loss of the tied LM head, fused and chunked.
 */
import type { Recorder, Runtime, Tensor } from "../gpu/runtime.ts";
import { Add } from "../ops/add.ts";
import { Attention } from "../ops/attention.ts";
import { Embedding, type TokenIndex } from "../ops/embedding.ts";
import { GeGLU } from "../ops/geglu.ts";
import { type GateMode, InfiniMemory, type InfiniShape } from "../ops/infini.ts";
import { Matmul } from "../ops/matmul.ts";
import { RmsNorm } from "../ops/rmsnorm.ts";
import { Rope } from "../ops/rope.ts";
import { Xent } from "../ops/xent.ts";
import { isInfiniLayer, type ModelConfig } from "./config.ts";
import { type RowBlocks, rowChunks } from "../ops/row_blocks.ts";
import { ParamBuffers, writeRanges } from "./param_buffers.ts";
import {
  EMBED,
  FINAL_NORM,
  initTensor,
  layerNames,
  type PageLayout,
  pageLayout,
  type ParamTable,
  paramTable,
} from "./params.ts";
import { IGNORE_TARGET as IGNORE } from "../util/targets.ts";

/** Gate modes of the memory path: learned, memory off (g = 0), memory read zeroed. */
export const GATE = { learned: 0, off: 1, zeroRead: 2 } as const satisfies Record<string, GateMode>;

/** Options of {@link InfiniGemma.recordForward}. */
export interface ForwardOptions {
  gate?: GateMode;
  backward?: boolean;
  /** Record the loss (the tied LM head over every row); default true. */
  head?: boolean;
  /** Also copy each layer's RoPE'd keys and values into this decoder's cache (B = 1, T = S). */
  kvCache?: InfiniGemma;
}

export interface ModelOptions {
  /** Sequences per call. */
  B: number;
  /** Tokens per sequence per call: the training sequence length, or S when streaming. */
  T: number;
  /** Allocate gradients and the saved activations of every layer (the optimizer is src/train's). */
  train: boolean;
  /**
   * Use this model's parameter and gradient buffers instead of allocating new ones (training
   * on batches of several lengths: one model per length, one set of weights and gradients,
   * which one optimizer updates).
   */
  share?: InfiniGemma;
  /**
   * Makes this model a one-token decoder for `decodeFor`, an inference model with B = 1 and
   * T = the segment length (generation). Needs B = 1, T = 1 and no training. It shares that
   * model's parameters and incoming memory (M_in, z_in), and keeps per layer a key/value cache
   * of the current segment: `recordDecode(rec, pos)` runs one token at position `pos` of its
   * segment against cache rows 0..pos-1 (filled by earlier decode steps, or by the segment
   * model's `recordForward(rec, { kvCache: decoder })`).
   */
  decodeFor?: InfiniGemma;
  /**
   * Chunked training: T is a chunk of K segments, and a sequence is up to `chunks` such chunks.
   * Allocates the staging of a whole step (`setChunkedBatch`) and, with `train`, per Infini
   * layer the memory entering every chunk but the first and the dM, dz carried between chunks
   * (`recordChunkedGrads`). Default 1: one call is the whole sequence, and none of that exists.
   */
  chunks?: number;
}

/** One layer's weights (views into the flat parameter buffer). */
interface LayerWeights {
  inNorm: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  gate: Tensor | null;
  postNorm: Tensor;
  mlpGate: Tensor;
  mlpUp: Tensor;
  mlpDown: Tensor;
}

/** What one layer's forward keeps for its backward. */
interface LayerActs {
  /** Input of the layer's attention norm: x_l (rows, C). */
  x: Tensor;
  xn1: Tensor;
  rstd1: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  qr: Tensor;
  kr: Tensor;
  adot: Tensor;
  lse: Tensor;
  /** Gated output (Infini layers), the input of o_proj; adot itself for plain layers. */
  A: Tensor;
  Mprev: Tensor | null;
  zprev: Tensor | null;
  W: Tensor | null;
  /** x_l + attention output (rows, C). */
  xmid: Tensor;
  xn2: Tensor;
  rstd2: Tensor;
  g: Tensor;
  u: Tensor;
  h: Tensor;
}

/** Memory state of one Infini layer: carried in, produced out (B, Hkv, D, D) and (B, Hkv, D). */
interface LayerState {
  Min: Tensor;
  zin: Tensor;
  Mout: Tensor;
  zout: Tensor;
}

/** Where one call's batch comes from: the model's own buffers (`setBatch`) or a chunk's slot. */
interface BatchIO {
  index: Tensor;
  host: TokenIndex;
  targets: Tensor;
  weights: Tensor;
  scale: number;
  /** Receives the call's loss at element `lossIndex`. */
  loss: Tensor;
  lossIndex: number;
}

/** One Infini layer's memory gradients in a backward: dM_out, dz_out arriving, dM_in, dz_in out. */
interface MemGrads {
  dMout?: Tensor;
  dzout?: Tensor;
  dMin: Tensor;
  dzin: Tensor;
}

/** Chunked training's buffers (`ModelOptions.chunks` > 1). */
interface ChunkBufs {
  /** Most chunks per sequence: the slots below. */
  max: number;
  /** Per chunk, 256-byte aligned slots: its embedding index, targets and weights (B x T rows). */
  index: Tensor;
  indexStride: number;
  targets: Tensor;
  weights: Tensor;
  rowStride: number;
  /** Chunk c's share of the step's loss, at element c. */
  loss: Tensor;
  /**
   * Train only, per layer (null for plain layers): max - 1 slots of M (B, Hkv, D, D) then z
   * (B, Hkv, D); slot c holds the memory entering chunk c + 1 (chunk 0's is zero).
   */
  snap: (Tensor | null)[];
  /** Train only, per Infini layer: dM and dz carried between chunks, two each (by parity). */
  dM: ([Tensor, Tensor] | null)[];
  dz: ([Tensor, Tensor] | null)[];
}

/** The step staged by `setChunkedBatch`. */
interface ChunkedStep {
  /** Chunks per sequence (the last one padded with ignored segments when K does not divide). */
  nC: number;
  /** Tokens per sequence. */
  len: number;
  hosts: TokenIndex[];
  scale: number;
}

export class InfiniGemma {
  readonly table: ParamTable;
  readonly rows: number;
  readonly nS: number;
  /** How the table is cut into buffers (pages) within the adapter's maxBufferSize. */
  readonly layout: PageLayout;
  /** All parameters, in the table's flat layout cut into the layout's pages. */
  readonly params: ParamBuffers;
  /** Gradients, paged like the parameters (train only). */
  readonly grads: ParamBuffers | null;
  /** Loss of the last forward (1 element): scale * sum of weighted NLL. */
  readonly loss: Tensor;
  /** Per-row NLL of the last forward (rows). */
  readonly nll: Tensor;

  #host: TokenIndex | null = null;
  #scale = 0;
  #step: ChunkedStep | null = null;
  /** Decoder only: position in its segment of the token being decoded (during recordDecode). */
  #pos: number | null = null;

  private constructor(
    readonly rt: Runtime,
    readonly cfg: Readonly<ModelConfig>,
    readonly opts: Readonly<ModelOptions>,
    private readonly k: {
      mm: Matmul;
      norm: RmsNorm;
      rope: Rope;
      attn: Attention;
      mem: InfiniMemory | null;
      geglu: GeGLU;
      emb: Embedding;
      xent: Xent;
      add: Add;
    },
    private readonly b: {
      tokens: Tensor;
      index: Tensor;
      targets: Tensor;
      weights: Tensor;
      ropeTable: Tensor;
      /** Decoder only: per layer, the current segment's RoPE'd keys and values (S, Hkv*D). */
      cache: { k: Tensor[]; v: Tensor[] } | null;
      x0: Tensor;
      acts: LayerActs[];
      states: (LayerState | null)[];
      xL: Tensor;
      xf: Tensor;
      rstdF: Tensor;
      attnOut: Tensor;
      mlpOut: Tensor;
      // backward scratch (train only)
      dres: Tensor | null;
      dxf: Tensor | null;
      dh: Tensor | null;
      dg: Tensor | null;
      du: Tensor | null;
      dxn: Tensor | null;
      dA: Tensor | null;
      dadot: Tensor | null;
      dsum: Tensor | null;
      dqr: Tensor | null;
      dkr: Tensor | null;
      dvA: Tensor | null;
      dq: Tensor | null;
      dk: Tensor | null;
      dv: Tensor | null;
      normScratch: Tensor | null;
      memWork: Tensor | null;
      dMin: Tensor | null;
      dzin: Tensor | null;
      chunk: ChunkBufs | null;
    },
    private readonly w: { embed: RowBlocks; finalNorm: Tensor; layers: LayerWeights[] },
    private readonly gw: { embed: RowBlocks; finalNorm: Tensor; layers: LayerWeights[] } | null,
    table: ParamTable,
    params: ParamBuffers,
    grads: ParamBuffers | null,
    loss: Tensor,
    nll: Tensor,
  ) {
    this.table = table;
    this.layout = params.layout;
    this.rows = opts.B * opts.T;
    this.nS = opts.decodeFor ? 1 : opts.T / cfg.segmentLength;
    this.params = params;
    this.grads = grads;
    this.loss = loss;
    this.nll = nll;
  }

  /** Compiles the kernels and allocates every buffer once. */
  static async create(
    rt: Runtime,
    cfg: Readonly<ModelConfig>,
    opts: ModelOptions,
  ): Promise<InfiniGemma> {
    const { B, T, train } = opts;
    const S = cfg.segmentLength;
    const dec = opts.decodeFor;
    if (dec) {
      if (B !== 1 || T !== 1 || train || dec.opts.B !== 1 || dec.opts.T !== S || dec.opts.train) {
        throw new RangeError(
          "decoder: needs B = 1, T = 1, no training, for an inference model with B = 1 and T = S",
        );
      }
    } else if (!Number.isInteger(T / S) || T < S) {
      throw new RangeError(
        `sequence length ${T} must be a positive multiple of the segment length ${S}`,
      );
    }
    const nChunks = opts.chunks ?? 1;
    if (!Number.isInteger(nChunks) || nChunks < 1 || (dec && nChunks > 1)) {
      throw new RangeError(`chunks: ${nChunks} must be an integer >= 1 (1 for a decoder)`);
    }
    const C = cfg.hiddenSize, F = cfg.intermediateSize, H = cfg.numHeads, Hkv = cfg.numKvHeads;
    const D = cfg.headDim, V = cfg.vocabSize, L = cfg.numLayers;
    const rows = B * T, nS = dec ? 1 : T / S;
    const table = paramTable(cfg);
    const share = opts.share ?? dec;
    if (share && (share.table.total !== table.total || (train && !share.grads))) {
      throw new Error("share: the shared model has another config or no gradients");
    }
    // Parameters and gradients in pages of at most maxBufferSize (one page when they fit);
    // the embedding may span several pages, as row blocks, every other tensor lies in one.
    const layout = share ? share.layout : pageLayout(table, rt.limits.maxBufferSize);
    const embedRows = layout.blocks(EMBED).map((b) => b.rows);
    const anyInfini = Array.from({ length: L }, (_, l) => isInfiniLayer(cfg, l)).some(Boolean);
    const mm = await Matmul.create(rt);
    const [norm, rope, attn, mem, geglu, emb, xent, add] = await Promise.all([
      RmsNorm.create(rt),
      Rope.create(rt),
      Attention.create(rt, D),
      anyInfini ? InfiniMemory.create(rt, D, cfg.memoryUpdate) : Promise.resolve(null),
      GeGLU.create(rt),
      Embedding.create(rt),
      Xent.create(rt, { maxRows: rows, V, C, mm, blockRows: embedRows }),
      Add.create(rt),
    ]);

    const params = share ? share.params : ParamBuffers.create(rt, layout, "params");
    const grads = train ? (share ? share.grads! : ParamBuffers.create(rt, layout, "grads")) : null;
    const views = (buf: ParamBuffers, tag: string) => {
      const v = (name: string) => buf.view(name, tag);
      return {
        embed: buf.rowBlocks(EMBED, tag),
        finalNorm: v(FINAL_NORM),
        layers: Array.from({ length: L }, (_, l): LayerWeights => {
          const n = layerNames(l);
          return {
            inNorm: v(n.inputNorm),
            q: v(n.q),
            k: v(n.k),
            v: v(n.v),
            o: v(n.o),
            gate: isInfiniLayer(cfg, l) ? v(n.gate) : null,
            postNorm: v(n.postNorm),
            mlpGate: v(n.mlpGate),
            mlpUp: v(n.mlpUp),
            mlpDown: v(n.mlpDown),
          };
        }),
      };
    };

    const t = (label: string, n: number) => rt.tensor(label, n);
    // A decoder's memory op sees one segment of one row (it only reads M_in; what it writes to
    // its own M_out is never carried: the segment model folds each segment in when complete).
    const shape: InfiniShape = { B, nS, S: dec ? 1 : S, H, Hkv, D };
    const msz = InfiniMemory.sizes(shape, cfg.memoryUpdate);
    // Training keeps every layer's activations; inference reuses one set for all layers.
    const makeActs = (tag: string, l: number): LayerActs => {
      const inf = isInfiniLayer(cfg, l);
      const adot = t(`${tag}.adot`, rows * H * D);
      return {
        x: t(`${tag}.x`, rows * C),
        xn1: t(`${tag}.xn1`, rows * C),
        rstd1: t(`${tag}.rstd1`, rows),
        q: t(`${tag}.q`, rows * H * D),
        k: t(`${tag}.k`, rows * Hkv * D),
        v: t(`${tag}.v`, rows * Hkv * D),
        qr: t(`${tag}.qr`, rows * H * D),
        kr: t(`${tag}.kr`, rows * Hkv * D),
        adot,
        lse: t(`${tag}.lse`, rows * H),
        A: inf ? t(`${tag}.A`, rows * H * D) : adot,
        Mprev: inf ? t(`${tag}.Mprev`, msz.Mprev) : null,
        zprev: inf ? t(`${tag}.zprev`, msz.zprev) : null,
        W: inf && cfg.memoryUpdate === "delta" ? t(`${tag}.W`, msz.W) : null,
        xmid: t(`${tag}.xmid`, rows * C),
        xn2: t(`${tag}.xn2`, rows * C),
        rstd2: t(`${tag}.rstd2`, rows),
        g: t(`${tag}.g`, rows * F),
        u: t(`${tag}.u`, rows * F),
        h: t(`${tag}.h`, rows * F),
      };
    };
    let acts: LayerActs[];
    if (train) acts = Array.from({ length: L }, (_, l) => makeActs(`L${l}`, l));
    else {
      // One set serves every layer (x_l is only read inside layer l, and x_{l+1} is formed
      // from xmid_l, a different buffer); it has the Infini buffers if any layer needs them.
      const shared = makeActs("act", anyInfini ? infiniIndex(cfg) : 0);
      acts = Array.from(
        { length: L },
        (_, l) =>
          isInfiniLayer(cfg, l)
            ? shared
            : { ...shared, A: shared.adot, Mprev: null, zprev: null, W: null },
      );
    }
    const states = Array.from({ length: L }, (_, l): LayerState | null =>
      isInfiniLayer(cfg, l)
        ? {
          Min: dec ? dec.b.states[l]!.Min : t(`L${l}.Min`, msz.state),
          zin: dec ? dec.b.states[l]!.zin : t(`L${l}.zin`, msz.stateZ),
          Mout: t(`L${l}.Mout`, msz.state),
          zout: t(`L${l}.zout`, msz.stateZ),
        }
        : null);
    const tr = (label: string, n: number) => (train ? t(label, n) : null);
    const bufs = {
      tokens: t("tokens", rows),
      index: t("tokens.index", Embedding.indexLength(rows)),
      targets: t("targets", rows),
      weights: t("weights", rows),
      // A decoder's table is one position's row, copied in from the segment model's per step.
      ropeTable: dec ? t("rope.row", Rope.tableLength(1, D)) : rt.tensor(
        "rope.table",
        Rope.tableLength(S, D),
        Rope.buildTable(S, D, cfg.ropeTheta),
      ),
      cache: dec
        ? {
          k: Array.from({ length: L }, (_, l) => t(`L${l}.kcache`, S * Hkv * D)),
          v: Array.from({ length: L }, (_, l) => t(`L${l}.vcache`, S * Hkv * D)),
        }
        : null,
      x0: acts[0].x,
      acts,
      states,
      xL: t("xL", rows * C),
      xf: t("xf", rows * C),
      rstdF: t("rstdF", rows),
      attnOut: t("attnOut", rows * C),
      mlpOut: t("mlpOut", rows * C),
      dres: tr("d.res", rows * C),
      dxf: tr("d.xf", rows * C),
      dh: tr("d.h", rows * F),
      dg: tr("d.g", rows * F),
      du: tr("d.u", rows * F),
      dxn: tr("d.xn", rows * C),
      dA: tr("d.A", rows * H * D),
      dadot: tr("d.adot", rows * H * D),
      dsum: tr("d.sum", rows * H),
      dqr: tr("d.qr", rows * H * D),
      dkr: tr("d.kr", rows * Hkv * D),
      dvA: tr("d.vA", rows * Hkv * D),
      dq: tr("d.q", rows * H * D),
      dk: tr("d.k", rows * Hkv * D),
      dv: tr("d.v", rows * Hkv * D),
      normScratch: tr("d.normScratch", RmsNorm.scratchLength(rows, C)),
      memWork: train && anyInfini ? t("d.memWork", msz.work) : null,
      dMin: train && anyInfini ? t("d.Min", msz.state) : null,
      dzin: train && anyInfini ? t("d.zin", msz.stateZ) : null,
      chunk: nChunks > 1 ? chunkBufs(rt, cfg, B, T, nChunks, train) : null,
    };
    const loss = t("loss", 1);
    const nll = t("nll", rows);
    return new InfiniGemma(
      rt,
      cfg,
      { B, T, train, share: opts.share, decodeFor: dec, chunks: nChunks },
      { mm, norm, rope, attn, mem, geglu, emb, xent, add },
      bufs,
      views(params, "p"),
      grads ? views(grads, "g") : null,
      table,
      params,
      grads,
      loss,
      nll,
    );
  }

  /**
   * Per row after a forward: (running max logit, sum, target logit, log-sum-exp), (rows, 4).
   * The target is the arg-max exactly when its logit equals the max; read it back and ask
   * `targetIsArgmax`.
   */
  get headState(): Tensor {
    return this.k.xent.state;
  }

  /**
   * Uploads all parameters (flat, in table layout: small models and tests; checkpoints stream
   * tensor by tensor through `params.write`).
   */
  setParams(flat: Float32Array): void {
    if (flat.length !== this.table.total) {
      throw new RangeError(`params: ${flat.length} values, the model has ${this.table.total}`);
    }
    this.params.write(this.rt, flat);
  }

  /**
   * Uploads the seeded initial parameters of `initParams(table, cfg, seed)`, tensor by tensor
   * (never the flat array: 7.4 GB at seed-2b), letting the queue catch up every STREAM_BYTES.
   */
  async initParams(seed: number): Promise<void> {
    const { cfg, params, rt } = this;
    const specs = this.table.specs;
    await writeRanges(
      rt,
      params,
      (async function* () {
        for (const s of specs) yield { start: s.offset, data: initTensor(s, cfg, seed) };
      })(),
    );
  }

  /** Reads all parameters back (flat, in table layout). */
  readParams(): Promise<Float32Array> {
    return this.#readAll(this.params);
  }

  /** Reads all gradients back (train only). */
  readGrads(): Promise<Float32Array> {
    if (!this.grads) throw new Error("model was created without gradients");
    return this.#readAll(this.grads);
  }

  #readAll(bufs: ParamBuffers): Promise<Float32Array> {
    const rec = this.rt.record("read");
    const out = bufs.read(rec);
    this.rt.submit(rec);
    return out;
  }

  /**
   * Uploads a batch: tokens (rows), next-token targets (rows, IGNORE where none) and optional
   * per-row loss weights. The loss is sum(w * nll) / lossDenominator, by default the number of
   * rows with a target (the mean NLL); gradient accumulation passes the total over micro-batches.
   */
  setBatch(
    tokens: Uint32Array,
    targets: Uint32Array,
    opts: { weights?: Float32Array; lossDenominator?: number } = {},
  ): void {
    const { rows } = this;
    if (tokens.length !== rows || targets.length !== rows) {
      throw new RangeError(
        `batch: ${tokens.length} tokens / ${targets.length} targets, expected ${rows}`,
      );
    }
    const count = checkBatch(tokens, targets, this.cfg.vocabSize);
    const denom = opts.lossDenominator ?? count;
    this.#scale = denom > 0 ? 1 / denom : 0;
    this.#host = Embedding.buildIndex(tokens);
    this.rt.write(this.b.tokens, tokens);
    this.rt.write(this.b.index, this.#host.data);
    this.rt.write(this.b.targets, targets);
    this.rt.write(this.b.weights, opts.weights ?? new Float32Array(rows).fill(1));
  }

  /** Zeroes the memory of every Infini layer (start of new sequences). */
  resetMemory(rec: Recorder): void {
    for (const s of this.b.states) {
      if (s) {
        rec.clear(s.Min);
        rec.clear(s.zin);
      }
    }
  }

  /** Moves each layer's outgoing memory to its incoming slot (streaming, segment by segment). */
  carryMemory(rec: Recorder): void {
    for (const s of this.b.states) {
      if (s) {
        rec.copy(s.Mout, s.Min);
        rec.copy(s.zout, s.zin);
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // Forward
  // ---------------------------------------------------------------------------------------

  /**
   * Records the forward pass and the loss (and, with `backward`, the LM head's gradients).
   * The memory enters from each layer's M_in/z_in: call `resetMemory` first for new sequences.
   */
  recordForward(rec: Recorder, opts: ForwardOptions = {}): void {
    this.#forward(rec, opts, this.#ownBatch("recordForward"));
  }

  /** The batch of `setBatch`, in the model's own buffers. */
  #ownBatch(what: string): BatchIO {
    if (!this.#host) throw new Error(`setBatch before ${what}`);
    const b = this.b;
    return {
      index: b.index,
      host: this.#host,
      targets: b.targets,
      weights: b.weights,
      scale: this.#scale,
      loss: this.loss,
      lossIndex: 0,
    };
  }

  /**
   * The forward of `recordForward` on the batch `io`. With `memoryOnly` it stops once the last
   * Infini layer has written its M_out, z_out (all a chunk's successor needs from it).
   */
  #forward(rec: Recorder, opts: ForwardOptions, io: BatchIO, memoryOnly = false): void {
    const { cfg, rows, k, b, w } = this;
    const C = cfg.hiddenSize, F = cfg.intermediateSize, H = cfg.numHeads, Hkv = cfg.numKvHeads;
    const D = cfg.headDim, S = cfg.segmentLength, L = cfg.numLayers, V = cfg.vocabSize;
    const eps = cfg.rmsNormEps;
    const gate = opts.gate ?? GATE.learned;
    const lastInfini = memoryOnly ? lastInfiniIndex(cfg) : -1;
    const pos = this.#pos;
    const cache = opts.kvCache?.b.cache;
    if (opts.kvCache && (opts.kvCache.opts.decodeFor !== this || !cache)) {
      throw new Error("kvCache: not a decoder of this model");
    }
    if (this.opts.decodeFor && pos === null) throw new Error("a decoder runs through recordDecode");
    if (pos !== null) {
      rec.copy(this.opts.decodeFor!.b.ropeTable.view(pos * D, D), b.ropeTable);
    }

    // x_0 = sqrt(C) * E[tokens]
    k.emb.recordForward(rec, { x: b.x0, weight: w.embed, index: io.index, host: io.host, V, C });

    for (let l = 0; l < L; l++) {
      const a = b.acts[l], lw = w.layers[l], st = b.states[l];
      // xn1 = norm(x_l); for l > 0, x_l = xmid_{l-1} + mlpOut is formed by the fused add.
      if (l === 0) {
        k.norm.recordForward(rec, { x: a.x, w: lw.inNorm, y: a.xn1, rstd: a.rstd1, rows, C, eps });
      } else {
        k.norm.recordForward(rec, {
          x: b.acts[l - 1].xmid,
          w: lw.inNorm,
          y: a.xn1,
          rstd: a.rstd1,
          rows,
          C,
          eps,
          residual: { a: b.mlpOut, sum: a.x },
        });
      }
      k.mm.forward(rec, a.q, a.xn1, lw.q, rows, H * D, C);
      k.mm.forward(rec, a.k, a.xn1, lw.k, rows, Hkv * D, C);
      k.mm.forward(rec, a.v, a.xn1, lw.v, rows, Hkv * D, C);
      k.rope.recordForward(rec, {
        table: b.ropeTable,
        rows,
        D,
        S: pos === null ? S : 1,
        a: { src: a.q, dst: a.qr, nHeads: H },
        b: { src: a.k, dst: a.kr, nHeads: Hkv },
      });
      if (pos !== null) {
        // One token: its key and value join the segment's cache, its query sees rows 0..pos.
        const c = b.cache!, width = Hkv * D;
        rec.copy(a.kr, c.k[l].view(pos * width, width));
        rec.copy(a.v, c.v[l].view(pos * width, width));
        k.attn.recordDecode(rec, { q: a.qr, k: c.k[l], v: c.v[l], o: a.adot }, {
          n: pos + 1,
          H,
          Hkv,
        });
      } else {
        k.attn.recordForward(rec, { q: a.qr, k: a.kr, v: a.v, o: a.adot, lse: a.lse }, {
          rows,
          S,
          H,
          Hkv,
        });
        if (cache) {
          rec.copy(a.kr, cache.k[l]);
          rec.copy(a.v, cache.v[l]);
        }
      }
      if (st && lw.gate && k.mem) {
        k.mem.recordForward(rec, {
          shape: this.#memShape(),
          mode: gate,
          q: a.q,
          k: a.k,
          v: a.v,
          adot: a.adot,
          beta: lw.gate,
          Min: st.Min,
          zin: st.zin,
          A: a.A,
          Mprev: a.Mprev!,
          zprev: a.zprev!,
          W: a.W ?? undefined,
          Mout: st.Mout,
          zout: st.zout,
        });
      }
      if (l === lastInfini) return;
      k.mm.forward(rec, b.attnOut, a.A, lw.o, rows, C, H * D);
      // xmid = x_l + attnOut; xn2 = norm(xmid)
      k.norm.recordForward(rec, {
        x: a.x,
        w: lw.postNorm,
        y: a.xn2,
        rstd: a.rstd2,
        rows,
        C,
        eps,
        residual: { a: b.attnOut, sum: a.xmid },
      });
      k.mm.forward(rec, a.g, a.xn2, lw.mlpGate, rows, F, C);
      k.mm.forward(rec, a.u, a.xn2, lw.mlpUp, rows, F, C);
      k.geglu.recordForward(rec, { g: a.g, u: a.u, h: a.h, n: rows * F });
      k.mm.forward(rec, b.mlpOut, a.h, lw.mlpDown, rows, C, F);
    }
    // x_L = xmid_{L-1} + mlpOut; xf = norm(x_L)
    k.norm.recordForward(rec, {
      x: b.acts[L - 1].xmid,
      w: w.finalNorm,
      y: b.xf,
      rstd: b.rstdF,
      rows,
      C,
      eps,
      residual: { a: b.mlpOut, sum: b.xL },
    });
    const head = {
      x: b.xf,
      E: w.embed,
      targets: io.targets,
      scale: io.scale,
      loss: io.loss,
      lossIndex: io.lossIndex,
      nll: this.nll,
      weights: io.weights,
      rows,
    };
    if (opts.backward) {
      k.xent.recordForwardBackward(rec, { ...head, dx: b.dxf!, dE: this.gw!.embed });
    } else if (opts.head ?? true) {
      k.xent.recordForward(rec, head);
    }
  }

  /**
   * Decoder only: records the forward of the one token set by `setBatch`, at position `pos`
   * of its segment (0 <= pos < S), against cache rows 0..pos-1 and the segment model's M_in.
   * Its key and value are written to cache row pos. No loss; read its logits with
   * `recordLogits(rec, 0)`.
   */
  recordDecode(rec: Recorder, pos: number, opts: { gate?: GateMode } = {}): void {
    const S = this.cfg.segmentLength;
    if (!this.opts.decodeFor) throw new Error("recordDecode: this model is not a decoder");
    if (!Number.isInteger(pos) || pos < 0 || pos >= S) {
      throw new RangeError(`recordDecode: position ${pos} is outside 0..${S - 1}`);
    }
    this.#pos = pos;
    try {
      this.recordForward(rec, { gate: opts.gate, head: false });
    } finally {
      this.#pos = null;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Backward: the forward above, reversed. Gradients ACCUMULATE into `grads` (clear them at
  // the start of an optimizer step), so micro-batches add up.
  // ---------------------------------------------------------------------------------------

  /** Records the backward pass; must follow `recordForward(rec, { backward: true })`. */
  recordBackward(rec: Recorder, opts: { gate?: GateMode } = {}): void {
    const io = this.#ownBatch("recordBackward"), b = this.b;
    this.#backward(rec, opts, io, () => ({ dMin: b.dMin!, dzin: b.dzin! }));
  }

  /**
   * The backward of `recordBackward` on the batch `io`; `mem(l)` gives Infini layer l's memory
   * gradients (dM_out, dz_out from a later chunk, if any; dM_in, dz_in written).
   */
  #backward(
    rec: Recorder,
    opts: { gate?: GateMode },
    io: BatchIO,
    mem: (l: number) => MemGrads,
  ): void {
    const { cfg, rows, k, b, w } = this;
    const g = this.gw;
    if (!g) throw new Error("model was created without gradients (train: false)");
    const C = cfg.hiddenSize, F = cfg.intermediateSize, H = cfg.numHeads, Hkv = cfg.numKvHeads;
    const D = cfg.headDim, S = cfg.segmentLength, L = cfg.numLayers, V = cfg.vocabSize;
    const gate = opts.gate ?? GATE.learned;
    const dres = b.dres!;

    // Final norm: dres = d x_L.
    k.norm.recordBackward(rec, {
      dy: b.dxf!,
      x: b.xL,
      w: w.finalNorm,
      rstd: b.rstdF,
      dx: dres,
      dw: g.finalNorm,
      scratch: b.normScratch!,
      rows,
      C,
    });

    for (let l = L - 1; l >= 0; l--) {
      const a = b.acts[l], lw = w.layers[l], lg = g.layers[l], st = b.states[l];
      // MLP: mlpOut = h Wd^T
      k.mm.backwardInput(rec, b.dh!, dres, lw.mlpDown, rows, C, F);
      k.mm.backwardWeight(rec, lg.mlpDown, dres, a.h, rows, C, F);
      k.geglu.recordBackward(rec, { dh: b.dh!, g: a.g, u: a.u, dg: b.dg!, du: b.du!, n: rows * F });
      k.mm.backwardInput(rec, b.dxn!, b.dg!, lw.mlpGate, rows, F, C);
      k.mm.backwardInput(rec, b.dxn!, b.du!, lw.mlpUp, rows, F, C, 1);
      k.mm.backwardWeight(rec, lg.mlpGate, b.dg!, a.xn2, rows, F, C);
      k.mm.backwardWeight(rec, lg.mlpUp, b.du!, a.xn2, rows, F, C);
      // xn2 = norm(xmid): dres (= d xmid) += norm backward
      k.norm.recordBackward(rec, {
        dy: b.dxn!,
        x: a.xmid,
        w: lw.postNorm,
        rstd: a.rstd2,
        dx: dres,
        dw: lg.postNorm,
        scratch: b.normScratch!,
        rows,
        C,
        accumulate: true,
      });
      // attnOut = A Wo^T
      k.mm.backwardInput(rec, b.dA!, dres, lw.o, rows, C, H * D);
      k.mm.backwardWeight(rec, lg.o, dres, a.A, rows, C, H * D);
      // Gate and memory: dA -> d adot, and the memory path's dq, dk, dv (overwritten).
      let dadot = b.dA!;
      const inf = st && lw.gate && lg.gate && k.mem;
      if (inf) {
        dadot = b.dadot!;
        k.mem!.recordBackward(rec, {
          shape: this.#memShape(),
          mode: gate,
          q: a.q,
          k: a.k,
          v: a.v,
          adot: a.adot,
          beta: lw.gate!,
          Mprev: a.Mprev!,
          zprev: a.zprev!,
          W: a.W ?? undefined,
          dA: b.dA!,
          dadot,
          dq: b.dq!,
          dk: b.dk!,
          dv: b.dv!,
          dbeta: lg.gate!,
          ...mem(l),
          work: b.memWork!,
        });
      }
      // Local attention (post-RoPE q, k); its dq, dk go back through RoPE.
      k.attn.recordBackward(rec, {
        q: a.qr,
        k: a.kr,
        v: a.v,
        o: a.adot,
        lse: a.lse,
        dO: dadot,
        dsum: b.dsum!,
        dq: b.dqr!,
        dk: b.dkr!,
        dv: inf ? b.dvA! : b.dv!,
      }, { rows, S, H, Hkv });
      // With memory, dq and dk already hold the memory path's share: RoPE's backward adds to it.
      k.rope.recordBackward(rec, {
        table: b.ropeTable,
        rows,
        D,
        S,
        a: { src: b.dqr!, dst: b.dq!, nHeads: H },
        b: { src: b.dkr!, dst: b.dk!, nHeads: Hkv },
        accumulate: !!inf,
      });
      if (inf) k.add.record(rec, b.dv!, b.dvA!, rows * Hkv * D);
      // q, k, v = xn1 W^T
      k.mm.backwardInput(rec, b.dxn!, b.dq!, lw.q, rows, H * D, C);
      k.mm.backwardInput(rec, b.dxn!, b.dk!, lw.k, rows, Hkv * D, C, 1);
      k.mm.backwardInput(rec, b.dxn!, b.dv!, lw.v, rows, Hkv * D, C, 1);
      k.mm.backwardWeight(rec, lg.q, b.dq!, a.xn1, rows, H * D, C);
      k.mm.backwardWeight(rec, lg.k, b.dk!, a.xn1, rows, Hkv * D, C);
      k.mm.backwardWeight(rec, lg.v, b.dv!, a.xn1, rows, Hkv * D, C);
      // xn1 = norm(x_l): dres (= d x_l) += norm backward
      k.norm.recordBackward(rec, {
        dy: b.dxn!,
        x: a.x,
        w: lw.inNorm,
        rstd: a.rstd1,
        dx: dres,
        dw: lg.inNorm,
        scratch: b.normScratch!,
        rows,
        C,
        accumulate: true,
      });
    }
    // x_0 = sqrt(C) E[tokens]: scatter-add into dE (the LM head already added its part).
    k.emb.recordBackward(rec, {
      dWeight: g.embed,
      dx: dres,
      index: io.index,
      host: io.host,
      V,
      C,
    });
  }

  #logits: { row: Tensor; out: Tensor; chunk: number } | null = null;

  /**
   * Records the logits of one row of the last forward, xf[row] E^T (V values), into a tensor
   * it returns (reused by the next call). Generation samples from them; the vocabulary is cut
   * into chunks whose embedding slice fits one storage binding (and one buffer: a chunk never
   * spans two row blocks of E).
   */
  recordLogits(rec: Recorder, row: number): Tensor {
    const { cfg, rt, b, w } = this;
    const C = cfg.hiddenSize, V = cfg.vocabSize;
    if (!Number.isInteger(row) || row < 0 || row >= this.rows) {
      throw new RangeError(`logits: row ${row} is outside 0..${this.rows - 1}`);
    }
    if (!this.#logits) {
      const cap = rt.limits.maxStorageBufferBindingSize;
      const chunk = Math.min(V, Math.max(64, Math.floor(cap / (C * 4) / 64) * 64));
      this.#logits = { row: rt.tensor("logits.x", C), out: rt.tensor("logits", V), chunk };
    }
    const { row: x, out, chunk } = this.#logits;
    rec.copy(b.xf.view(row * C, C), x);
    for (const e of rowChunks(w.embed, C, chunk)) {
      this.k.mm.forward(rec, out.view(e.row0, e.rows), x, e.tensor, 1, e.rows, C);
    }
    return out;
  }

  #memShape(): InfiniShape {
    const c = this.cfg;
    return {
      B: this.opts.B,
      nS: this.nS,
      S: this.opts.T / this.nS, // the segment length; 1 for a decoder
      H: c.numHeads,
      Hkv: c.numKvHeads,
      D: c.headDim,
    };
  }

  // ---------------------------------------------------------------------------------------
  // Training: the gradients of a batch (the optimizer that applies them is src/train's)
  // ---------------------------------------------------------------------------------------

  /**
   * Records the gradients of the uploaded batch: clear them (unless `clear: false`, for
   * micro-batches that add up), reset the memory, forward, backward.
   */
  recordGrads(rec: Recorder, opts: { clear?: boolean } = {}): void {
    if (opts.clear ?? true) this.grads!.clear(rec);
    this.resetMemory(rec);
    this.recordForward(rec, { backward: true });
    this.recordBackward(rec);
  }

  // ---------------------------------------------------------------------------------------
  // Chunked training: a step's sequences of nC chunks of K segments (this model's T = K x S),
  // recorded at once, with the activations of one chunk. The forward sweep runs chunks
  // 0..nC-2 carrying (M, z) and keeps only the memory entering each next chunk; the backward
  // sweep walks the chunks in reverse, recomputes each one's forward (with the LM head and its
  // gradients) from its staged tokens and saved memory, and carries dM, dz back into the chunk
  // before. Loss and gradients are those of one call over the whole sequence, summed in
  // another order.
  // ---------------------------------------------------------------------------------------

  /** Whether the model was created for chunked training (`chunks` > 1). */
  get chunked(): boolean {
    return this.b.chunk !== null;
  }

  /**
   * Stages a whole step's batch on a chunked model: B sequences of `len` tokens, whole segments
   * up to `chunks` x T, laid out (B, len) as for `setBatch`. Each chunk's B x T rows get their
   * own slot; when T does not divide len the last chunk is padded with segments of token 0 and
   * ignored targets (after every real token, so no real row sees them and they add no loss or
   * gradient). The loss is sum(w * nll) / lossDenominator over the whole step, by default the
   * step's number of targets.
   */
  setChunkedBatch(
    tokens: Uint32Array,
    targets: Uint32Array,
    opts: { weights?: Float32Array; lossDenominator?: number } = {},
  ): void {
    const ch = this.b.chunk;
    if (!ch) throw new Error("setChunkedBatch: the model was created without chunks");
    const { B, T } = this.opts, S = this.cfg.segmentLength, n = tokens.length, len = n / B;
    if (targets.length !== n || (opts.weights && opts.weights.length !== n)) {
      throw new RangeError(
        `chunked batch: ${n} tokens, ${targets.length} targets, ${opts.weights?.length} weights`,
      );
    }
    if (!Number.isInteger(len / S) || len < S || len > ch.max * T) {
      throw new RangeError(
        `chunked batch: ${n} rows are not ${B} sequences of whole segments (${S}) up to ` +
          `${ch.max} chunks of ${T} tokens`,
      );
    }
    const count = checkBatch(tokens, targets, this.cfg.vocabSize);
    const denom = opts.lossDenominator ?? count;
    const nC = Math.ceil(len / T);
    const index = new Uint32Array(nC * ch.indexStride);
    const tg = new Uint32Array(nC * ch.rowStride).fill(IGNORE);
    const wt = new Float32Array(nC * ch.rowStride);
    const tok = new Uint32Array(this.rows);
    const hosts: TokenIndex[] = [];
    for (let c = 0; c < nC; c++) {
      const at = c * ch.rowStride, m = Math.min(T, len - c * T); // real tokens per sequence
      tok.fill(0);
      for (let bi = 0; bi < B; bi++) {
        const src = bi * len + c * T, dst = bi * T;
        tok.set(tokens.subarray(src, src + m), dst);
        tg.set(targets.subarray(src, src + m), at + dst);
        if (opts.weights) wt.set(opts.weights.subarray(src, src + m), at + dst);
        else wt.fill(1, at + dst, at + dst + m);
      }
      const host = Embedding.buildIndex(tok);
      index.set(host.data, c * ch.indexStride);
      hosts.push(host);
    }
    this.rt.write(ch.index, index);
    this.rt.write(ch.targets, tg);
    this.rt.write(ch.weights, wt);
    this.#step = { nC, len, hosts, scale: denom > 0 ? 1 / denom : 0 };
  }

  /** Chunk c of the staged step, as a call's batch (its loss goes to element c). */
  #chunkBatch(c: number): BatchIO {
    const ch = this.b.chunk!, step = this.#step!, rows = this.rows;
    return {
      index: ch.index.view(c * ch.indexStride, Embedding.indexLength(rows)),
      host: step.hosts[c],
      targets: ch.targets.view(c * ch.rowStride, rows),
      weights: ch.weights.view(c * ch.rowStride, rows),
      scale: step.scale,
      loss: ch.loss,
      lossIndex: c,
    };
  }

  #staged(what: string): { ch: ChunkBufs; step: ChunkedStep } {
    const ch = this.b.chunk, step = this.#step;
    if (!ch) throw new Error(`${what}: the model was created without chunks`);
    if (!step) throw new Error(`setChunkedBatch before ${what}`);
    return { ch, step };
  }

  /** Saves each Infini layer's M_out, z_out as the memory entering chunk `slot` + 1, or restores it into M_in, z_in. */
  #snapMemory(rec: Recorder, slot: number, dir: "save" | "restore"): void {
    const ch = this.b.chunk!;
    this.b.states.forEach((st, l) => {
      const snap = ch.snap[l];
      if (!st || !snap) return;
      const nM = st.Min.length, nz = st.zin.length, at = slot * (nM + nz);
      const M = snap.view(at, nM), z = snap.view(at + nM, nz);
      if (dir === "save") {
        rec.copy(st.Mout, M);
        rec.copy(st.zout, z);
      } else {
        rec.copy(M, st.Min);
        rec.copy(z, st.zin);
      }
    });
  }

  /**
   * Records the gradients of the step staged by `setChunkedBatch` (cleared first unless
   * `clear: false`): the forward sweep, then the backward sweep, all into `rec`. The step's loss
   * is read with `readChunkedLoss`.
   */
  recordChunkedGrads(rec: Recorder, opts: { clear?: boolean } = {}): void {
    const { ch, step } = this.#staged("recordChunkedGrads");
    if (!this.grads) throw new Error("model was created without gradients (train: false)");
    if (opts.clear ?? true) this.grads.clear(rec);
    const nC = step.nC;
    // Forward sweep: up to the last Infini layer's memory write (all the next chunk needs).
    if (lastInfiniIndex(this.cfg) >= 0) {
      for (let c = 0; c < nC - 1; c++) {
        if (c === 0) this.resetMemory(rec);
        else this.carryMemory(rec);
        this.#forward(rec, { head: false }, this.#chunkBatch(c), true);
        this.#snapMemory(rec, c, "save");
      }
    }
    // Backward sweep: chunk c recomputed from the memory entering it; dM, dz arrive from chunk
    // c + 1 in one buffer of each pair and leave for chunk c - 1 in the other.
    for (let c = nC - 1; c >= 0; c--) {
      if (c === 0) this.resetMemory(rec);
      else this.#snapMemory(rec, c - 1, "restore");
      const io = this.#chunkBatch(c), p = c % 2;
      this.#forward(rec, { backward: true }, io);
      this.#backward(rec, {}, io, (l) => {
        const dM = ch.dM[l]!, dz = ch.dz[l]!;
        const later = c < nC - 1 ? { dMout: dM[1 - p], dzout: dz[1 - p] } : {};
        return { ...later, dMin: dM[p], dzin: dz[p] };
      });
    }
  }

  /**
   * Records the forward (no gradients) of the staged step chunk by chunk, the memory carried
   * from zero: chunk c's loss goes to `readChunkedLoss`'s element c, and `each(c)` runs after
   * chunk c's head (`headState` and `nll` then hold that chunk's rows).
   */
  recordChunkedForward(
    rec: Recorder,
    opts: { gate?: GateMode; each?: (c: number) => void } = {},
  ): void {
    const { step } = this.#staged("recordChunkedForward");
    for (let c = 0; c < step.nC; c++) {
      if (c === 0) this.resetMemory(rec);
      else this.carryMemory(rec);
      this.#forward(rec, { gate: opts.gate }, this.#chunkBatch(c));
      opts.each?.(c);
    }
  }

  /** The staged step's loss (the sum of its chunks'), read after the recorded sweeps. */
  readChunkedLoss(rec: Recorder): Promise<number> {
    const { ch, step } = this.#staged("readChunkedLoss");
    const nC = step.nC;
    return rec.read(ch.loss).then((x) => {
      let sum = 0;
      for (let c = 0; c < nC; c++) sum += x[c];
      return sum;
    });
  }

  /**
   * Records an evaluation forward of the staged batch from zero memory: one call after
   * `setBatch`, or chunk by chunk after `setChunkedBatch` on a chunked model. Resolves to the
   * loss and, with `headState`, every row's head state in the batch's (B, len) layout.
   */
  recordEvalForward(
    rec: Recorder,
    opts: { gate?: GateMode; headState?: boolean } = {},
  ): { loss: Promise<number>; headState: Promise<Float32Array> | null } {
    if (!this.chunked) {
      this.resetMemory(rec);
      this.recordForward(rec, { gate: opts.gate });
      const loss = rec.read(this.loss).then((x) => x[0]);
      return { loss, headState: opts.headState ? rec.read(this.headState) : null };
    }
    const { step } = this.#staged("recordEvalForward");
    const parts: Promise<Float32Array>[] = [];
    this.recordChunkedForward(rec, {
      gate: opts.gate,
      each: () => {
        if (opts.headState) parts.push(rec.read(this.headState));
      },
    });
    const loss = this.readChunkedLoss(rec);
    if (!opts.headState) return { loss, headState: null };
    const { B, T } = this.opts, { len } = step;
    const headState = Promise.all(parts).then((ps) => {
      const out = new Float32Array(B * len * 4);
      ps.forEach((part, c) => {
        const m = Math.min(T, len - c * T);
        for (let bi = 0; bi < B; bi++) {
          out.set(part.subarray(bi * T * 4, (bi * T + m) * 4), (bi * len + c * T) * 4);
        }
      });
      return out;
    });
    return { loss, headState };
  }
}

/**
 * Whether the target of `row` is the arg-max (greedy) prediction, from `headState` read back
 * after a forward: exactly when the target's logit reaches the row's running max.
 */
export function targetIsArgmax(headState: Float32Array, row: number): boolean {
  return headState[row * 4 + 2] >= headState[row * 4];
}

/**
 * The buffers of chunked training (see ChunkBufs): the staging of a step of `max` chunks of
 * B x T rows, and with `train` per Infini layer the memory entering chunks 1..max-1 and two
 * dM, dz carries.
 */
function chunkBufs(
  rt: Runtime,
  cfg: Readonly<ModelConfig>,
  B: number,
  T: number,
  max: number,
  train: boolean,
): ChunkBufs {
  const rows = B * T, Hkv = cfg.numKvHeads, D = cfg.headDim;
  const align = (n: number) => Math.ceil(n / 64) * 64; // 256-byte slots bind as views
  const indexStride = align(Embedding.indexLength(rows)), rowStride = align(rows);
  const state = B * Hkv * D * D, stateZ = B * Hkv * D;
  const inf = (l: number) => train && isInfiniLayer(cfg, l);
  const layers = Array.from({ length: cfg.numLayers }, (_, l) => l);
  return {
    max,
    index: rt.tensor("chunk.index", max * indexStride),
    indexStride,
    targets: rt.tensor("chunk.targets", max * rowStride),
    weights: rt.tensor("chunk.weights", max * rowStride),
    rowStride,
    loss: rt.tensor("chunk.loss", max),
    snap: layers.map((l) => inf(l) ? rt.tensor(`L${l}.snap`, (max - 1) * (state + stateZ)) : null),
    dM: layers.map((l) =>
      inf(l) ? [rt.tensor(`L${l}.dM0`, state), rt.tensor(`L${l}.dM1`, state)] : null
    ),
    dz: layers.map((l) =>
      inf(l) ? [rt.tensor(`L${l}.dz0`, stateZ), rt.tensor(`L${l}.dz1`, stateZ)] : null
    ),
  };
}

/** Checks a batch's tokens and targets against the vocabulary; the number of targets. */
function checkBatch(tokens: Uint32Array, targets: Uint32Array, V: number): number {
  let count = 0;
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] >= V) {
      throw new RangeError(
        `batch: token ${tokens[i]} at row ${i} is outside the vocabulary (${V})`,
      );
    }
    if (targets[i] !== IGNORE && targets[i] >= V) {
      throw new RangeError(
        `batch: target ${targets[i]} at row ${i} is outside the vocabulary (${V})`,
      );
    }
    if (targets[i] !== IGNORE) count++;
  }
  return count;
}

/** The last Infini layer (-1 when there is none). */
function lastInfiniIndex(cfg: Readonly<ModelConfig>): number {
  for (let l = cfg.numLayers - 1; l >= 0; l--) if (isInfiniLayer(cfg, l)) return l;
  return -1;
}

function infiniIndex(cfg: Readonly<ModelConfig>): number {
  for (let l = 0; l < cfg.numLayers; l++) if (isInfiniLayer(cfg, l)) return l;
  return 0;
}
