/**
 * Causal attention inside each segment with grouped-query heads, forward and backward
 * (formula in kernels/attention.wgsl). Three dispatches: `forward` (O and the log-sum-exp L),
 * then for the backward `dq` (Dsum and dQ) followed by `dkdv` (dK, dV summed over each KV
 * head's group of query heads, without atomics).
 *
 * One `Attention` serves one head dim D (its tiling depends on D); pipelines are shared by
 * every D with the same tiling.
 *
 * @example
 * ```ts
 * const attn = await Attention.create(rt, 64);
 * const shape = { rows: 2048, S: 512, H: 4, Hkv: 1 };
 * attn.recordForward(rec, { q, k, v, o, lse }, shape);
 * attn.recordBackward(rec, { q, k, v, o, lse, dO, dsum, dq, dk, dv }, shape);
 * ```
 */
import src from "../../kernels/attention.wgsl" with { type: "text" };
import decodeSrc from "../../kernels/attention_decode.wgsl" with { type: "text" };
import rowsSrc from "../../kernels/attention_rows.wgsl" with { type: "text" };
import {
  type Kernel,
  Params,
  type Pipeline,
  type Profile,
  type Recorder,
  type Runtime,
  type Tensor,
} from "../gpu/runtime.ts";

export const attentionKernel: Kernel = { name: "kernels/attention.wgsl", source: src };
export const attentionDecodeKernel: Kernel = {
  name: "kernels/attention_decode.wgsl",
  source: decodeSrc,
};

export const attentionRowsKernel: Kernel = { name: "kernels/attention_rows.wgsl", source: rowsSrc };

/** Invocations (rows) per workgroup of kernels/attention_rows.wgsl. */
const ROWS_WG = 64;
/** Largest head dim of the row kernel (MAXD4 vec4s in registers). */
export const ROWS_MAX_D = 16;
/**
 * Largest S x (H / Hkv) the row kernel takes: one invocation streams up to that many rows, so
 * its cost per row grows with it while the blocked kernel's does not. Measured on lavapipe,
 * 4096 rows (forward + backward, ms, row vs blocked, each pair in one run while a training job
 * shared the two cores): S 16 H 4/2 D 16: 164 vs 435; S 32 H 4/2 D 8: 155 vs 253; S 64 H 4/2
 * D 8: 309 vs 300; S 128 H 4/1 D 16 (2048 rows): 549 vs 285.
 */
export const ROWS_MAX_WORK = 64;

/**
 * Whether to compile the row kernel (one invocation per row and head, no workgroup memory):
 * on lavapipe for head dims up to 16 (D % 4 == 0). It runs calls with short segments
 * (S x H / Hkv <= ROWS_MAX_WORK), where the blocked kernel leaves most of its invocations
 * idle; the passkey model (S 32, H 4 / 2, D 8) is one.
 */
export function useRowsKernel(profile: Profile, D: number): boolean {
  return profile === "cpu" && D % 4 === 0 && D <= ROWS_MAX_D;
}

/** Invocations of the decode entry (WG in kernels/attention_decode.wgsl). */
const DECODE_WG = 64;
/** Largest head dim of the decode entry (4 output dims per invocation). */
export const DECODE_MAX_D = 4 * DECODE_WG;

/** Sizes of one call; D is fixed when the `Attention` is created. */
export interface AttentionShape {
  /** B*T rows, a multiple of S. */
  rows: number;
  /** Segment length: attention never crosses a segment boundary. */
  S: number;
  /** Query heads. */
  H: number;
  /** KV heads; divides H. Query head h reads KV head floor(h / (H / Hkv)). */
  Hkv: number;
}

export interface AttentionForwardArgs {
  /** (rows, H*D), RoPE applied. */
  q: Tensor;
  /** (rows, Hkv*D), RoPE applied. */
  k: Tensor;
  /** (rows, Hkv*D). */
  v: Tensor;
  /** Output (rows, H*D). */
  o: Tensor;
  /** Output (rows, H): log-sum-exp of each softmax row, kept for the backward. */
  lse: Tensor;
}

/** One new token against its segment's key/value cache (generation). */
export interface AttentionDecodeArgs {
  /** (H*D): the token's query, RoPE applied. */
  q: Tensor;
  /** (>= n rows, Hkv*D): the segment's keys so far (RoPE applied), the token's own last. */
  k: Tensor;
  /** (>= n rows, Hkv*D). */
  v: Tensor;
  /** Output (H*D). */
  o: Tensor;
}

export interface AttentionBackwardArgs extends AttentionForwardArgs {
  /** Gradient of the output (rows, H*D). `o` and `lse` are the forward's outputs (read). */
  dO: Tensor;
  /** Scratch output (rows, H): Dsum = rowsum(dO * O). */
  dsum: Tensor;
  /** Output (rows, H*D). */
  dq: Tensor;
  /** Outputs (rows, Hkv*D), overwritten (not accumulated). */
  dk: Tensor;
  dv: Tensor;
}

/**
 * How the work is split (override constants of kernels/attention.wgsl). A workgroup of WG
 * invocations owns BQ rows (queries, or keys for dK/dV) of one head and streams BK rows per
 * step; each invocation computes SR x SC scores and OR x OC outputs. `vec` (D % 4 == 0) loads
 * vec4s and needs SC, OC, BK multiples of 4; `scalar` takes any D.
 */
export interface AttentionTiling {
  kind: "vec" | "scalar";
  WG: number;
  BQ: number;
  BK: number;
  SR: number;
  SC: number;
  OR: number;
  OC: number;
}

// Private array bounds in kernels/attention.wgsl: MAXS, MAXR, MAXC, MAXO (and MAXO4 * 4).
const MAX_SCORES = 128, MAX_ROWS = 16, MAX_COLS = 64, MAX_OUT = 64;

/**
 * The tiling for a head dim on a profile.
 *
 * CPU (lavapipe), D <= 256: a storage or workgroup load costs several multiply-adds there (a
 * vec4 load about two scalar ones), so each invocation computes 8 x 16 scores (8 + 16 loads
 * per 128 products along D, vec4 loads where D % 4 == 0) and 8 x 8 outputs, in workgroups of
 * 32. The owned block shrinks as D grows (BQ * D <= 2048, so 32 invocations cover the (BQ, D)
 * outputs) and BK = 4096 / BQ keeps the score tile at 16 KiB. D is a run-time parameter, so
 * every D with the same BQ shares the pipelines (one JIT compile of several seconds). Measured
 * on lavapipe at D 64 and 256: 8 x 16 beat 8 x 8 by 6-15%, 16 x 16 (spills) lost 20%.
 *
 * GPU (and CPU beyond D 256): 64 x 32 blocks, 256 invocations (1024 beyond D 256) with small
 * tiles, for occupancy and registers; scalar loads.
 */
export function attentionTiling(profile: Profile, D: number): AttentionTiling {
  if (!Number.isInteger(D) || D < 1 || D > 1024) {
    throw new RangeError(`Attention head dim ${D} is outside 1..1024`);
  }
  let t: AttentionTiling;
  if (profile === "cpu" && D <= 256) {
    const BQ = Math.min(32, Math.max(8, 2 ** Math.floor(Math.log2(2048 / D))));
    if (D % 4 === 0) {
      t = { kind: "vec", WG: 32, BQ, BK: 4096 / BQ, SR: 8, SC: 16, OR: 8, OC: 8 };
    } else {
      // Scalar tiles are padded (BK + 1 per row), so BK halves to fit two in 32 KiB.
      t = { kind: "scalar", WG: 32, BQ, BK: 2048 / BQ, SR: 8, SC: 8, OR: 8, OC: 8 };
    }
  } else {
    const WG = D > 256 ? 1024 : 256;
    const SR = D > 256 ? 2 : 4, OR = 4;
    t = {
      kind: "scalar",
      WG,
      BQ: 64,
      BK: 32,
      SR,
      SC: 2048 / WG / SR,
      OR,
      OC: Math.ceil(D / (WG / (64 / OR))),
    };
  }
  checkTiling(t, D);
  return t;
}

function checkTiling(t: AttentionTiling, D: number): void {
  const int = (...xs: number[]) => xs.every((x) => Number.isInteger(x) && x >= 1);
  const ok = int(t.WG, t.BQ, t.BK, t.SR, t.SC, t.OR, t.OC) && t.BQ % t.SR === 0 &&
    t.BK % t.SC === 0 && t.BQ % t.OR === 0 && (t.BQ / t.SR) * (t.BK / t.SC) === t.WG &&
    (t.BQ / t.OR) * Math.ceil(D / t.OC) <= t.WG && t.SR * t.SC <= MAX_SCORES &&
    t.OR * t.OC <= MAX_OUT && t.SR <= MAX_ROWS && t.OR <= MAX_ROWS && t.SC <= MAX_COLS &&
    t.OC <= MAX_COLS &&
    (t.kind === "scalar" || (D % 4 === 0 && t.SC % 4 === 0 && t.OC % 4 === 0 && t.BK % 4 === 0));
  if (!ok) throw new RangeError(`Attention tiling ${JSON.stringify(t)} is invalid for D ${D}`);
}

/** Workgroup memory of the hungriest entry point: two score tiles (dkdv), or one plus the
 * three per-row arrays (forward). */
export function attentionWorkgroupBytes(t: AttentionTiling): number {
  const tile = t.BQ * (t.BK + (t.kind === "scalar" ? 1 : 0)) * 4;
  return Math.max(2 * tile, tile + 3 * t.BQ * 4);
}

const FORWARD_KINDS = ["uniform", "read", "read", "read", "rw", "rw"] as const;
const DQ_KINDS = ["uniform", "read", "read", "read", "rw", "rw", "read", "rw", "rw"] as const;
const DKDV_KINDS = [...DQ_KINDS, "rw"] as const;

export class Attention {
  private constructor(
    readonly D: number,
    readonly tiling: AttentionTiling,
    private readonly fwd: Pipeline,
    private readonly dqPipe: Pipeline,
    private readonly dkdvPipe: Pipeline,
    private readonly decodePipe: Pipeline,
    private readonly rowsPipes: { fwd: Pipeline; dq: Pipeline; dkdv: Pipeline } | undefined,
  ) {}

  /** Whether calls of this shape run the row kernel (kernels/attention_rows.wgsl). */
  usesRows(sh: { S: number; H: number; Hkv: number }): boolean {
    return this.rowsPipes !== undefined && sh.S * (sh.H / sh.Hkv) <= ROWS_MAX_WORK;
  }

  /**
   * Compiles the three entry points for head dim D with the runtime's (or a forced) profile,
   * plus the row kernel where `rows` (default: `useRowsKernel`); a shape beyond the row
   * kernel's limits falls back to the blocked one.
   */
  static async create(
    rt: Runtime,
    D: number,
    profile: Profile = rt.profile,
    tiling: AttentionTiling = attentionTiling(profile, D),
    rows: boolean = useRowsKernel(profile, D),
  ): Promise<Attention> {
    if (rows && (D % 4 !== 0 || D > ROWS_MAX_D)) {
      throw new RangeError(
        `Attention row kernel needs D % 4 == 0 and D <= ${ROWS_MAX_D}, got ${D}`,
      );
    }
    checkTiling(tiling, D);
    const bytes = attentionWorkgroupBytes(tiling);
    if (bytes > rt.limits.maxComputeWorkgroupStorageSize) {
      throw new RangeError(
        `Attention tiling ${JSON.stringify(tiling)} needs ${bytes} bytes of workgroup memory; ` +
          `the device allows ${rt.limits.maxComputeWorkgroupStorageSize}`,
      );
    }
    const t = tiling;
    const constants = { WG: t.WG, BQ: t.BQ, BK: t.BK, SR: t.SR, SC: t.SC, OR: t.OR, OC: t.OC };
    const [f, q, kv, dec] = await Promise.all([
      rt.pipeline(attentionKernel, `forward_${t.kind}`, FORWARD_KINDS, constants),
      rt.pipeline(attentionKernel, `dq_${t.kind}`, DQ_KINDS, constants),
      rt.pipeline(attentionKernel, `dkdv_${t.kind}`, DKDV_KINDS, constants),
      rt.pipeline(attentionDecodeKernel, "decode", ["uniform", "read", "read", "read", "rw"]),
    ]);
    let rowsPipes: { fwd: Pipeline; dq: Pipeline; dkdv: Pipeline } | undefined;
    if (rows) {
      const c = { WG: ROWS_WG, D4: D / 4 };
      const [rf, rq, rkv] = await Promise.all([
        rt.pipeline(attentionRowsKernel, "forward", FORWARD_KINDS, c),
        rt.pipeline(attentionRowsKernel, "dq", DQ_KINDS, c),
        rt.pipeline(attentionRowsKernel, "dkdv", DKDV_KINDS, c),
      ]);
      rowsPipes = { fwd: rf, dq: rq, dkdv: rkv };
    }
    return new Attention(D, tiling, f, q, kv, dec, rowsPipes);
  }

  /** Records O (rows, H*D) and L (rows, H) from Q, K, V. */
  recordForward(
    rec: Recorder,
    a: AttentionForwardArgs,
    sh: AttentionShape,
    scale = 1 / Math.sqrt(this.D),
  ): void {
    this.#check(a, sh);
    if (this.usesRows(sh)) {
      const g = this.#rowsGrid(rec, sh, scale, sh.H);
      rec.dispatch(this.rowsPipes!.fwd, [g.params, a.q, a.k, a.v, a.o, a.lse], g.groups);
      return;
    }
    const g = this.#grid(rec, sh, scale, "owned rows");
    rec.dispatch(this.fwd, [g.params, a.q, a.k, a.v, a.o, a.lse], g.groups);
  }

  /**
   * Records the output of one token that sees the first `n` cached keys and values: row n - 1
   * of `recordForward` over a segment whose first n rows are the cache's. One dispatch, one
   * workgroup per query head.
   */
  recordDecode(
    rec: Recorder,
    a: AttentionDecodeArgs,
    sh: { n: number; H: number; Hkv: number },
    scale = 1 / Math.sqrt(this.D),
  ): void {
    const { n, H, Hkv } = sh, D = this.D;
    if (![n, H, Hkv].every((x) => Number.isInteger(x) && x > 0)) {
      throw new RangeError(`Attention decode shape ${JSON.stringify(sh)} needs positive integers`);
    }
    if (H % Hkv !== 0) throw new RangeError(`Attention heads ${H} is not a multiple of Hkv ${Hkv}`);
    if (D > DECODE_MAX_D) {
      throw new RangeError(`Attention decode: head dim ${D} is above ${DECODE_MAX_D}`);
    }
    // lavapipe stops a shader after 65535 loop iterations of one invocation (see the kernel).
    const loops = Math.ceil(n / DECODE_WG) * (D + 2 * Math.log2(DECODE_WG) + 4 * DECODE_WG);
    if (loops > 65535) {
      throw new RangeError(
        `Attention decode: ${n} cached keys at head dim ${D} need ${loops} loop iterations in one ` +
          `invocation; lavapipe stops at 65535`,
      );
    }
    need(a.q, H * D, "q");
    need(a.k, n * Hkv * D, "k");
    need(a.v, n * Hkv * D, "v");
    need(a.o, H * D, "o");
    const params = new Params(5).u32(n).u32(H).u32(Hkv).u32(D).f32(scale);
    rec.dispatch(this.decodePipe, [params, a.q, a.k, a.v, a.o], [H, 1, 1]);
  }

  /** Records Dsum (rows, H), dQ (rows, H*D), then dK and dV (rows, Hkv*D). */
  recordBackward(
    rec: Recorder,
    a: AttentionBackwardArgs,
    sh: AttentionShape,
    scale = 1 / Math.sqrt(this.D),
  ): void {
    this.#check(a, sh);
    const { rows, H, Hkv } = sh;
    need(a.dO, rows * H * this.D, "dO");
    need(a.dq, rows * H * this.D, "dq");
    need(a.dsum, rows * H, "dsum");
    need(a.dk, rows * Hkv * this.D, "dk");
    need(a.dv, rows * Hkv * this.D, "dv");
    const common = [a.q, a.k, a.v, a.o, a.lse, a.dO, a.dsum] as const;
    if (this.usesRows(sh)) {
      const g1 = this.#rowsGrid(rec, sh, scale, H);
      rec.dispatch(this.rowsPipes!.dq, [g1.params, ...common, a.dq], g1.groups);
      const g2 = this.#rowsGrid(rec, sh, scale, Hkv);
      rec.dispatch(this.rowsPipes!.dkdv, [g2.params, ...common, a.dk, a.dv], g2.groups);
      return;
    }
    const g1 = this.#grid(rec, sh, scale, "owned rows");
    rec.dispatch(this.dqPipe, [g1.params, ...common, a.dq], g1.groups);
    const g2 = this.#grid(rec, sh, scale, "owned keys");
    rec.dispatch(this.dkdvPipe, [g2.params, ...common, a.dk, a.dv], g2.groups);
  }

  #check(a: AttentionForwardArgs, sh: AttentionShape): void {
    const { rows, S, H, Hkv } = sh;
    const D = this.D;
    if (![rows, S, H, Hkv].every((n) => Number.isInteger(n) && n > 0)) {
      throw new RangeError(`Attention shape ${JSON.stringify(sh)} needs positive integers`);
    }
    if (rows % S !== 0) throw new RangeError(`Attention rows ${rows} is not a multiple of S ${S}`);
    if (H % Hkv !== 0) throw new RangeError(`Attention heads ${H} is not a multiple of Hkv ${Hkv}`);
    need(a.q, rows * H * D, "q");
    need(a.k, rows * Hkv * D, "k");
    need(a.v, rows * Hkv * D, "v");
    need(a.o, rows * H * D, "o");
    need(a.lse, rows * H, "lse");
  }

  /** The row kernel's grid: workgroups of ROWS_WG rows folded into 2-D, heads along z. */
  #rowsGrid(
    rec: Recorder,
    sh: AttentionShape,
    scale: number,
    heads: number,
  ): { params: Params; groups: [number, number, number] } {
    const nwg = Math.ceil(sh.rows / ROWS_WG);
    const gx = Math.min(nwg, rec.rt.limits.maxComputeWorkgroupsPerDimension);
    const params = new Params(6).u32(sh.S).u32(sh.H).u32(sh.Hkv).u32(sh.rows).u32(gx).f32(scale);
    return { params, groups: [gx, Math.ceil(nwg / gx), heads] };
  }

  /** Work items (segment, block of owned rows) folded into a 2-D grid, heads along z. */
  #grid(
    rec: Recorder,
    sh: AttentionShape,
    scale: number,
    owner: "owned rows" | "owned keys",
  ): { params: Params; groups: [number, number, number] } {
    const nblk = Math.ceil(sh.S / this.tiling.BQ);
    const heads = owner === "owned rows" ? sh.H : sh.Hkv;
    const nwork = (sh.rows / sh.S) * nblk;
    const gx = Math.min(nwork, rec.rt.limits.maxComputeWorkgroupsPerDimension);
    const params = new Params(8).u32(sh.S).u32(sh.H).u32(sh.Hkv).u32(nblk).u32(nwork).u32(gx)
      .f32(scale).u32(this.D);
    return { params, groups: [gx, Math.ceil(nwork / gx), heads] };
  }
}

function need(t: Tensor, n: number, what: string): void {
  if (t.length < n) {
    throw new RangeError(`attention ${what} ${t.label}: ${t.length} elements, needs ${n}`);
  }
}
