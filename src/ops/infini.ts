/**
 * Infini-attention's compressive memory for one layer, forward and backward (formulas in
 * kernels/infini.wgsl and kernels/infini_backward.wgsl). Layer-major: all segments of all B
 * sequences in one call; the state (M, z) enters as M_in, z_in (zeros at the start of a
 * sequence) and leaves as M_out, z_out, so streaming evaluation can call it one segment at a
 * time. The gradient flows through M and z across every segment of the call, and on into
 * dM_in, dz_in (a caller that chains calls passes them on as the previous call's dM_out, dz_out).
 *
 * The forward saves the state before every segment (Mprev, zprev) and, for the delta rule, the
 * values actually written (W = V - retrieval); the backward reads them instead of recomputing.
 * Dispatches per call: forward 3 (linear) or 1 + c (delta), backward 4 (linear) or 3 + 2c (delta),
 * where c = 1 unless one sequence's segments exceed lavapipe's loop limit (see LOOP_BUDGET).
 *
 * @example
 * ```ts
 * const mem = await InfiniMemory.create(rt, 64, "linear");
 * const shape = { B: 1, nS: 4, S: 512, H: 4, Hkv: 1, D: 64 };
 * const sz = InfiniMemory.sizes(shape, "linear"); // element counts of every buffer
 * // Tensors of sz.qLike (q, adot, A, dA, dadot, dq), sz.kvLike (k, v, dk, dv), sz.state (Min,
 * // Mout, dMin), sz.stateZ (zin, zout, dzin), sz.Mprev, sz.zprev, H (beta, dbeta), sz.work.
 * mem.recordForward(rec, {
 *   shape, mode: 0, q, k, v, adot, beta, Min, zin, A, Mprev, zprev, Mout, zout,
 * });
 * mem.recordBackward(rec, {
 *   shape, mode: 0, q, k, v, adot, beta, Mprev, zprev, dA, dadot, dq, dk, dv, dbeta, dMin, dzin,
 *   work, accumulate: { dq: true, dk: true, dv: true },
 * });
 * ```
 */
import fwdSrc from "../../kernels/infini.wgsl" with { type: "text" };
import bwdSrc from "../../kernels/infini_backward.wgsl" with { type: "text" };
import rowsSrc from "../../kernels/infini_rows.wgsl" with { type: "text" };
import {
  type BindingKind,
  type Kernel,
  Params,
  type Pipeline,
  type Profile,
  type Recorder,
  type Runtime,
  type Tensor,
} from "../gpu/runtime.ts";

export const infiniKernel: Kernel = { name: "kernels/infini.wgsl", source: fwdSrc };
export const infiniBackwardKernel: Kernel = {
  name: "kernels/infini_backward.wgsl",
  source: bwdSrc,
};
export const infiniRowsKernel: Kernel = { name: "kernels/infini_rows.wgsl", source: rowsSrc };

/** Largest head dim of kernels/infini_rows.wgsl (4 * MAXD4 there). */
export const INFINI_ROWS_MAX_D = 16;
/** Invocations (rows) per workgroup of kernels/infini_rows.wgsl. */
const ROWS_WG = 64;

/**
 * Whether the memory read, its backward, the state gradients and the linear rule's update and
 * dk/dv use the one-invocation-per-row kernels (kernels/infini_rows.wgsl): on lavapipe for head
 * dims up to 16 (D % 4 == 0). Same shape (tiny, 2048 rows, H 4/2), one dispatch, blocked vs
 * rows: retrieve D 16 10.1 vs 2.9 ms, D 8 6.5 vs 0.7 ms.
 */
export function useInfiniRows(profile: Profile, D: number): boolean {
  return profile === "cpu" && D % 4 === 0 && D <= INFINI_ROWS_MAX_D;
}

/** How a segment is written into memory: M += sigma(K)^T V, or the delta rule's V - retrieval. */
export type UpdateRule = "linear" | "delta";
/** 0 learned gate; 1 memory off (A = A_dot); 2 memory read zeroed, learned gate kept ((1-g) A_dot). */
export type GateMode = 0 | 1 | 2;

/** Dimensions of one call. rows = B * nS * S; row (b, s, t) = (b*nS + s)*S + t. */
export interface InfiniShape {
  /** Sequences. */
  B: number;
  /** Segments per sequence in this call. */
  nS: number;
  /** Segment length. */
  S: number;
  /** Query heads. */
  H: number;
  /** KV heads (H % Hkv == 0; query head h reads KV head floor(h / (H / Hkv))). */
  Hkv: number;
  /** Head dim (<= 256); must equal the D the op was created for. */
  D: number;
}

export interface InfiniForwardArgs {
  shape: InfiniShape;
  mode: GateMode;
  /** (rows, H*D), before RoPE. */
  q: Tensor;
  /** (rows, Hkv*D), before RoPE. */
  k: Tensor;
  /** (rows, Hkv*D). */
  v: Tensor;
  /** Local attention output (rows, H*D). */
  adot: Tensor;
  /** Gate logits (H). */
  beta: Tensor;
  /** Incoming state (B, Hkv, D, D) and (B, Hkv, D); zeros at the start of a sequence. */
  Min: Tensor;
  zin: Tensor;
  /** Output (rows, H*D). */
  A: Tensor;
  /** Saved: the state before each segment, (B, Hkv, nS, D, D) and (B, Hkv, nS, D). */
  Mprev: Tensor;
  zprev: Tensor;
  /** Saved, delta rule only: W = V - retrieval (rows, Hkv*D). */
  W?: Tensor;
  /** Outgoing state (B, Hkv, D, D) and (B, Hkv, D). */
  Mout: Tensor;
  zout: Tensor;
}

export interface InfiniBackwardArgs {
  shape: InfiniShape;
  mode: GateMode;
  /** The forward's inputs and saved tensors, unchanged. */
  q: Tensor;
  k: Tensor;
  v: Tensor;
  adot: Tensor;
  beta: Tensor;
  Mprev: Tensor;
  zprev: Tensor;
  /** Delta rule only. */
  W?: Tensor;
  /** Gradient of A (rows, H*D). Must not alias dadot: a later dispatch reads dA again. */
  dA: Tensor;
  /** Gradient arriving at M_out, z_out (from a later call); zero when absent. */
  dMout?: Tensor;
  dzout?: Tensor;
  /** Output, overwritten: gradient of A_dot (rows, H*D). */
  dadot: Tensor;
  /** Memory path's gradient w.r.t. the pre-RoPE q (rows, H*D). */
  dq: Tensor;
  /** Memory path's gradients w.r.t. k and v (rows, Hkv*D). */
  dk: Tensor;
  dv: Tensor;
  /** (H), always accumulated (+=). */
  dbeta: Tensor;
  /** Outputs, overwritten: gradient w.r.t. M_in (B, Hkv, D, D) and z_in (B, Hkv, D). */
  dMin: Tensor;
  dzin: Tensor;
  /** Scratch of at least {@link InfiniMemory.sizes}(shape, rule).work f32, overwritten. */
  work: Tensor;
  /** Add into dq, dk, dv instead of overwriting them (each false by default). */
  accumulate?: { dq?: boolean; dk?: boolean; dv?: boolean };
}

/** Element counts of every buffer a call needs, for laying them out once. */
export interface InfiniSizes {
  rows: number;
  /** q, adot, A and their gradients. */
  qLike: number;
  /** k, v, W and their gradients. */
  kvLike: number;
  /** Min, Mout, dMin, dMout. */
  state: number;
  /** zin, zout, dzin, dzout. */
  stateZ: number;
  Mprev: number;
  zprev: number;
  /** W: delta rule only (0 for linear). */
  W: number;
  /** Backward scratch. */
  work: number;
}

const MAX_D = 256;
/**
 * Row kernels (retrieve, retrieve_bwd, kv_bwd_*) give each thread 8 rows and 8 columns; their
 * 8-row blocks are numbered over all segments, so a workgroup of 64 threads may span segments
 * and short segments or small head dims leave no thread idle. Threads along columns: CX =
 * min(8, ceil(D / 8)) (retrieve_bwd: DB = ceil(D / 8), its row sums go through workgroup
 * memory); blocks per workgroup: RY = 64 / CX (RB = floor(64 / DB)).
 */
function rowTiling(D: number): { CX: number; RY: number; DB: number; RB: number } {
  const CX = Math.min(8, Math.ceil(D / 8)), DB = Math.ceil(D / 8);
  return { CX, RY: Math.floor(64 / CX), DB, RB: Math.floor(64 / DB) };
}

/** 8-row blocks over all segments of a call. */
function rowBlocks(sh: InfiniShape): number {
  return sh.B * sh.nS * Math.ceil(sh.S / 8);
}

/** Workgroups of update_rows and state_grads_rows: one invocation per row of every state. */
function stateRowGroups(sh: InfiniShape): number {
  return Math.ceil(sh.B * sh.Hkv * sh.nS * sh.D / ROWS_WG);
}

/** Workgroups of retrieve_bwd along x: one dbeta partial each. */
function rbTiles(sh: InfiniShape, rows: boolean): number {
  return rows
    ? Math.ceil(sh.B * sh.nS * sh.S / ROWS_WG)
    : Math.ceil(rowBlocks(sh) / rowTiling(sh.D).RB);
}
const UPDATE_TILE = 64; // update and state_grads tile of (D, D)
const ALIGN = 64; // elements: 256-byte offsets for scratch views
/**
 * Mesa 22.3's lavapipe silently ends an invocation's loops after 65535 iterations in total, so
 * every kernel keeps its count below this: the longest loops run over S (linear update), over
 * S * H / Hkv (state_grads) and, for the delta rule's sequential kernels, over S per segment;
 * those run as many segments per dispatch as fit.
 */
const LOOP_BUDGET = 60000;

/** Loop iterations one invocation of delta_states, delta_bwd or delta_zgrad spends per segment. */
function deltaCostPerSegment(sh: InfiniShape): number {
  const phaseA = Math.ceil(Math.ceil(sh.S / 8) / 64) * (sh.D + 80);
  const zgradA = Math.ceil(sh.S / 256) * sh.D;
  return Math.max(phaseA, zgradA) + sh.S + 80;
}

/** Segment ranges [s0, s1) of the sequential delta-rule dispatches, in forward order. */
function deltaChunks(sh: InfiniShape, cap: number): [number, number][] {
  const per = Math.max(1, Math.min(cap, Math.floor(LOOP_BUDGET / deltaCostPerSegment(sh))));
  const out: [number, number][] = [];
  for (let s0 = 0; s0 < sh.nS; s0 += per) out.push([s0, Math.min(sh.nS, s0 + per)]);
  return out;
}

interface WorkLayout {
  coef: [number, number];
  dbpart: [number, number];
  Gslot: [number, number];
  gzslot: [number, number];
  dRs: [number, number];
  eps: [number, number];
  total: number;
}

function workLayout(sh: InfiniShape, rule: UpdateRule): WorkLayout {
  const rows = sh.B * sh.nS * sh.S;
  // Room for either retrieve_bwd's partials (the layout does not depend on the kernel chosen).
  const nTiles = Math.max(rbTiles(sh, false), rbTiles(sh, true));
  const bgs = sh.B * sh.Hkv * sh.nS;
  const parts: [keyof Omit<WorkLayout, "total">, number][] = [
    ["coef", rows * sh.H * 2],
    ["dbpart", sh.H * nTiles],
    ["Gslot", bgs * sh.D * sh.D],
    ["gzslot", bgs * sh.D],
    ["dRs", rule === "delta" ? rows * sh.Hkv * sh.D : 0],
    ["eps", rule === "delta" ? rows * sh.Hkv : 0],
  ];
  const out = {} as WorkLayout;
  let at = 0;
  for (const [name, n] of parts) {
    out[name] = [at, n];
    at += Math.ceil(n / ALIGN) * ALIGN;
  }
  out.total = at;
  return out;
}

export interface InfiniOptions {
  /**
   * Most segments one dispatch of the delta rule's sequential kernels runs (default: as many as
   * lavapipe's loop limit allows). Results do not depend on it; tests lower it to cover the
   * hand-over between dispatches.
   */
  segmentsPerDispatch?: number;
  /**
   * Use kernels/infini_rows.wgsl for the read, its backward and the linear rule's dk/dv
   * (default: `useInfiniRows(rt.profile, D)`); needs D % 4 == 0 and D <= INFINI_ROWS_MAX_D.
   */
  rows?: boolean;
}

export class InfiniMemory {
  private constructor(
    readonly D: number,
    readonly rule: UpdateRule,
    private readonly pipes: Record<string, Pipeline>,
    private readonly segCap: number,
    /** Whether the row kernels (kernels/infini_rows.wgsl) are in use. */
    readonly rows: boolean,
  ) {}

  /** Compiles the pipelines for head dim D and one update rule. */
  static async create(
    rt: Runtime,
    D: number,
    rule: UpdateRule,
    opts: InfiniOptions = {},
  ): Promise<InfiniMemory> {
    if (!Number.isInteger(D) || D < 1 || D > MAX_D) {
      throw new RangeError(`Infini memory: head dim ${D} must be an integer in 1..${MAX_D}`);
    }
    const rows = opts.rows ?? useInfiniRows(rt.profile, D);
    if (rows && (D % 4 !== 0 || D > INFINI_ROWS_MAX_D)) {
      throw new RangeError(
        `Infini memory: the row kernels need D % 4 == 0 and D <= ${INFINI_ROWS_MAX_D}, got ${D}`,
      );
    }
    const u: BindingKind = "uniform", r: BindingKind = "read", w: BindingKind = "rw";
    const fwd: [string, BindingKind[]][] = rule === "linear"
      ? [
        ["update", [u, r, r, w, w]],
        ["scan", [u, r, r, w, w, w, w]],
        ["retrieve", [u, r, r, r, r, r, w]],
      ]
      : [
        ["delta_states", [u, r, r, r, r, w, w, w, w, w]],
        ["retrieve", [u, r, r, r, r, r, w]],
      ];
    const bwd: [string, BindingKind[]][] = [
      ["retrieve_bwd", [u, r, r, r, r, r, r, w, w, w, w]],
      ["state_grads", [u, r, r, w, w, w, w, w]],
      ...(rule === "linear"
        ? [["kv_bwd_linear", [u, r, r, r, r, w, w]]] as [string, BindingKind[]][]
        : [
          ["delta_bwd", [u, r, r, r, w, w, w, w]],
          ["delta_zgrad", [u, r, r, r, w, r, w, w, w]],
          ["kv_bwd_delta", [u, r, r, r, r, r, r, r, r, w]],
        ] as [string, BindingKind[]][]),
    ];
    // D is a uniform (one compiled pipeline serves every head dim) except for the row
    // kernels' workgroup shapes (rowTiling).
    const rt8 = rowTiling(D);
    const rowC = { CX: rt8.CX, RY: rt8.RY };
    const constants = (e: string): Record<string, number> =>
      e === "retrieve_bwd"
        ? { DB: rt8.DB, RB: rt8.RB }
        : ["retrieve", "kv_bwd_linear", "kv_bwd_delta"].includes(e)
        ? rowC
        : {};
    // The row kernels replace these entry points, with the same bindings; the read kernels
    // also come in a version that reads two query heads of a KV group per invocation ("@2":
    // GH = 2, for groups of an even size), so that one load of M serves both.
    const rowEntries = ["update", "retrieve", "retrieve_bwd", "state_grads", "kv_bwd_linear"];
    const rowPipe = (e: string, kinds: BindingKind[], GH = 1) =>
      rt.pipeline(infiniRowsKernel, `${e}_rows`, kinds, { WG: ROWS_WG, D4: D / 4, GH });
    const pipes = (kernel: Kernel, list: [string, BindingKind[]][]) =>
      list.flatMap(([e, kinds]): Promise<[string, Pipeline]>[] => {
        if (!rows || !rowEntries.includes(e)) {
          return [rt.pipeline(kernel, e, kinds, constants(e)).then((p) => [e, p])];
        }
        const one = rowPipe(e, kinds).then((p): [string, Pipeline] => [e, p]);
        if (e !== "retrieve" && e !== "retrieve_bwd") return [one];
        return [one, rowPipe(e, kinds, 2).then((p): [string, Pipeline] => [`${e}@2`, p])];
      });
    const entries = await Promise.all([
      ...pipes(infiniKernel, fwd),
      ...pipes(infiniBackwardKernel, bwd),
    ]);
    const cap = opts.segmentsPerDispatch ?? Infinity;
    if (!(cap >= 1)) throw new RangeError(`Infini memory: segmentsPerDispatch ${cap}`);
    return new InfiniMemory(D, rule, Object.fromEntries(entries), cap, rows);
  }

  /** Element counts of the inputs, saved tensors, outputs and backward scratch for a shape. */
  static sizes(sh: InfiniShape, rule: UpdateRule): InfiniSizes {
    const rows = sh.B * sh.nS * sh.S;
    return {
      rows,
      qLike: rows * sh.H * sh.D,
      kvLike: rows * sh.Hkv * sh.D,
      state: sh.B * sh.Hkv * sh.D * sh.D,
      stateZ: sh.B * sh.Hkv * sh.D,
      Mprev: sh.B * sh.Hkv * sh.nS * sh.D * sh.D,
      zprev: sh.B * sh.Hkv * sh.nS * sh.D,
      W: rule === "delta" ? rows * sh.Hkv * sh.D : 0,
      work: workLayout(sh, rule).total,
    };
  }

  /** Query heads one invocation of the row read kernels handles: 2 for even groups, else 1. */
  #headsPerInvocation(sh: InfiniShape): 1 | 2 {
    return this.rows && (sh.H / sh.Hkv) % 2 === 0 ? 2 : 1;
  }

  /** Grid of retrieve and kv_bwd_*: column groups, blocks of RY 8-row blocks, heads. */
  #rowGrid(sh: InfiniShape, heads: number, rows = this.rows): [number, number, number] {
    if (rows) return [rbTiles(sh, true), 1, heads];
    const { CX, RY } = rowTiling(sh.D);
    return [Math.ceil(sh.D / (8 * CX)), Math.ceil(rowBlocks(sh) / RY), heads];
  }

  #params(sh: InfiniShape, mode: GateMode, extra: Partial<Record<ParamFlag, number>> = {}) {
    return new Params(15).u32(sh.B).u32(sh.nS).u32(sh.S).u32(sh.H).u32(sh.Hkv).u32(mode)
      .u32(extra.reverse ?? 0).u32(extra.hasBase ?? 0).u32(extra.accDq ?? 0)
      .u32(extra.accDk ?? 0).u32(extra.accDv ?? 0).u32(extra.nTiles ?? 0).u32(sh.D)
      .u32(extra.s0 ?? 0).u32(extra.s1 ?? 0);
  }

  #check(sh: InfiniShape, mode: GateMode, t: Record<string, [Tensor | undefined, number]>): void {
    const { B, nS, S, H, Hkv, D } = sh;
    for (const [k, v] of Object.entries({ B, nS, S, H, Hkv, D })) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`Infini memory: ${k} = ${v}`);
    }
    if (D !== this.D) {
      throw new RangeError(`Infini memory: created for head dim ${this.D}, called with ${D}`);
    }
    if (H % Hkv !== 0) {
      throw new RangeError(`Infini memory: H ${H} is not a multiple of Hkv ${Hkv}`);
    }
    // The longest loops of one invocation: state_grads (and update), the delta rule's
    // sequential kernels per segment, retrieve_bwd, and the dbeta sum over row tiles.
    const nTiles = rbTiles(sh, this.rows);
    if (this.rows && nTiles > 65535) {
      throw new RangeError(
        `Infini memory: ${B * nS * S} rows need ${nTiles} workgroups of the row kernels; ` +
          `at most 65535`,
      );
    }
    const loops = Math.max(
      // update and state_grads: rows (x H / Hkv heads), row kernels also over D / 4 each.
      S * (H / Hkv) * (this.rows ? 1 + D / 4 : 1) + 80,
      deltaCostPerSegment(sh),
      2 * D + 400,
      Math.ceil(H / 64) * nTiles,
    );
    if (loops > LOOP_BUDGET) {
      throw new RangeError(
        `Infini memory: segment length ${S} with ${H / Hkv} query heads per KV head needs ` +
          `${loops} loop iterations in one invocation; lavapipe stops at 65535. Use shorter segments.`,
      );
    }
    if (mode !== 0 && mode !== 1 && mode !== 2) {
      throw new RangeError(`Infini memory: gate mode ${mode}`);
    }
    for (const [name, [tensor, n]] of Object.entries(t)) {
      if (!tensor) {
        if (n > 0) throw new RangeError(`Infini memory (${this.rule}): ${name} is required`);
        continue;
      }
      if (tensor.length < n) {
        throw new RangeError(
          `Infini memory: ${name} (${tensor.label}) has ${tensor.length} elements, needs ${n}`,
        );
      }
    }
  }

  /** Records the forward: A, the saved states (and W for delta), M_out and z_out. */
  recordForward(rec: Recorder, a: InfiniForwardArgs): void {
    const sh = a.shape, z = InfiniMemory.sizes(sh, this.rule);
    this.#check(sh, a.mode, {
      q: [a.q, z.qLike],
      k: [a.k, z.kvLike],
      v: [a.v, z.kvLike],
      adot: [a.adot, z.qLike],
      beta: [a.beta, sh.H],
      Min: [a.Min, z.state],
      zin: [a.zin, z.stateZ],
      A: [a.A, z.qLike],
      Mprev: [a.Mprev, z.Mprev],
      zprev: [a.zprev, z.zprev],
      W: [a.W, z.W],
      Mout: [a.Mout, z.state],
      zout: [a.zout, z.stateZ],
    });
    const { B, nS, H, Hkv, D } = sh;
    const P = this.pipes;
    if (this.rule === "linear") {
      const t = Math.ceil(D / UPDATE_TILE);
      rec.dispatch(
        P.update,
        [this.#params(sh, a.mode), a.k, a.v, a.Mprev, a.zprev],
        this.rows ? [stateRowGroups(sh), 1, 1] : [t, t, B * Hkv * nS],
      );
      rec.dispatch(P.scan, [
        this.#params(sh, a.mode, { hasBase: 1 }),
        a.Min,
        a.zin,
        a.Mprev,
        a.zprev,
        a.Mout,
        a.zout,
      ], [Math.ceil((D * D + D) / 64), B * Hkv]);
    } else {
      for (const [s0, s1] of deltaChunks(sh, this.segCap)) {
        rec.dispatch(P.delta_states, [
          this.#params(sh, a.mode, { s0, s1 }),
          a.k,
          a.v,
          a.Min,
          a.zin,
          a.Mprev,
          a.zprev,
          a.Mout,
          a.zout,
          a.W!,
        ], [Math.ceil(D / 8), B * Hkv]);
      }
    }
    const gh = this.#headsPerInvocation(sh);
    rec.dispatch(gh === 2 ? P["retrieve@2"] : P.retrieve, [
      this.#params(sh, a.mode),
      a.q,
      a.adot,
      a.beta,
      a.Mprev,
      a.zprev,
      a.A,
    ], this.#rowGrid(sh, H / gh));
  }

  /** Records the backward: dA_dot, dq, dk, dv, dbeta (+=), dM_in and dz_in. */
  recordBackward(rec: Recorder, a: InfiniBackwardArgs): void {
    const sh = a.shape, z = InfiniMemory.sizes(sh, this.rule), L = workLayout(sh, this.rule);
    this.#check(sh, a.mode, {
      q: [a.q, z.qLike],
      k: [a.k, z.kvLike],
      v: [a.v, z.kvLike],
      adot: [a.adot, z.qLike],
      beta: [a.beta, sh.H],
      Mprev: [a.Mprev, z.Mprev],
      zprev: [a.zprev, z.zprev],
      W: [a.W, z.W],
      dA: [a.dA, z.qLike],
      dMout: [a.dMout, a.dMout ? z.state : 0],
      dzout: [a.dzout, a.dzout ? z.stateZ : 0],
      dadot: [a.dadot, z.qLike],
      dq: [a.dq, z.qLike],
      dk: [a.dk, z.kvLike],
      dv: [a.dv, z.kvLike],
      dbeta: [a.dbeta, sh.H],
      dMin: [a.dMin, z.state],
      dzin: [a.dzin, z.stateZ],
      work: [a.work, z.work],
    });
    if (!!a.dMout !== !!a.dzout) {
      throw new RangeError("Infini memory: give both dMout and dzout, or neither");
    }
    const { B, nS, H, Hkv, D } = sh;
    const P = this.pipes;
    const view = (name: keyof Omit<WorkLayout, "total">) =>
      a.work.view(L[name][0], Math.max(1, L[name][1]), `infini-work.${name}`);
    const coef = view("coef"), dbpart = view("dbpart"), Gslot = view("Gslot");
    const gzslot = view("gzslot");
    const nTiles = rbTiles(sh, this.rows);
    const hasBase = a.dMout ? 1 : 0;
    const flags = {
      nTiles,
      hasBase,
      accDq: a.accumulate?.dq ? 1 : 0,
      accDk: a.accumulate?.dk ? 1 : 0,
      accDv: a.accumulate?.dv ? 1 : 0,
    };
    const prm = this.#params(sh, a.mode, flags);
    const gh = this.#headsPerInvocation(sh);
    rec.dispatch(gh === 2 ? P["retrieve_bwd@2"] : P.retrieve_bwd, [
      prm,
      a.q,
      a.adot,
      a.beta,
      a.Mprev,
      a.zprev,
      a.dA,
      a.dadot,
      a.dq,
      coef,
      dbpart,
    ], this.rows ? [nTiles, 1, H / gh] : [nTiles, H]);
    const t = Math.ceil(D / UPDATE_TILE);
    rec.dispatch(
      P.state_grads,
      [prm, a.q, a.dA, coef, dbpart, Gslot, gzslot, a.dbeta],
      this.rows ? [stateRowGroups(sh) + 1, 1, 1] : [t, t, B * Hkv * nS + 1],
    );
    // With no dMout the base bindings are never read; any read-only tensor fills the slot.
    const dMout = a.dMout ?? a.Mprev, dzout = a.dzout ?? a.zprev;
    const rowGrid = this.#rowGrid(sh, Hkv);
    if (this.rule === "linear") {
      rec.dispatch(P.scan, [
        this.#params(sh, a.mode, { reverse: 1, hasBase }),
        dMout,
        dzout,
        Gslot,
        gzslot,
        a.dMin,
        a.dzin,
      ], [Math.ceil((D * D + D) / 64), B * Hkv]);
      rec.dispatch(P.kv_bwd_linear, [prm, a.k, a.v, Gslot, gzslot, a.dk, a.dv], rowGrid);
    } else {
      const dRs = view("dRs"), eps = view("eps");
      // From the last segment back; G and gz are carried between dispatches in dM_in, dz_in.
      const chunks = deltaChunks(sh, this.segCap).reverse();
      for (const [s0, s1] of chunks) {
        const pc = this.#params(sh, a.mode, { ...flags, s0, s1 });
        rec.dispatch(P.delta_bwd, [pc, a.k, a.zprev, dMout, Gslot, dRs, a.dv, a.dMin], [
          Math.ceil(D / 8),
          B * Hkv,
        ]);
      }
      for (const [s0, s1] of chunks) {
        const pc = this.#params(sh, a.mode, { ...flags, s0, s1 });
        rec.dispatch(P.delta_zgrad, [pc, a.k, a.v, a.W!, dRs, dzout, gzslot, eps, a.dzin], [
          B * Hkv,
        ]);
      }
      rec.dispatch(P.kv_bwd_delta, [
        prm,
        a.k,
        a.W!,
        dRs,
        eps,
        a.Mprev,
        a.zprev,
        Gslot,
        gzslot,
        a.dk,
      ], this.#rowGrid(sh, Hkv, false)); // no row version of kv_bwd_delta
    }
  }
}

type ParamFlag = "reverse" | "hasBase" | "accDq" | "accDk" | "accDv" | "nTiles" | "s0" | "s1";
