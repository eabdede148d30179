/**
 * Rotate-half RoPE with positions restarting at every segment of S rows, out of place (the
 * memory path keeps the pre-RoPE q and k). See kernels/rope.wgsl for the formula.
 *
 * Angles: cos and sin come from a table the host builds once in f64 ({@link Rope.buildTable},
 * (S, D/2, 2) f32), so every position up to S (65536 and beyond) is exact to f32 rounding; an
 * f32 pos * inv_freq would be off by up to ~4e-3 rad at pos 65536.
 *
 * Q (rows, H*D) and K (rows, Hkv*D) can be rotated in one dispatch by passing both.
 *
 * @example
 * ```ts
 * const rope = await Rope.create(rt);
 * const table = rt.tensor("rope", Rope.tableLength(S, D), Rope.buildTable(S, D, 10000));
 * const args = { table, rows, D, S };
 * rope.recordForward(rec, { ...args, a: { src: q, dst: qRot, nHeads: H },
 *   b: { src: k, dst: kRot, nHeads: Hkv } });
 * rope.recordBackward(rec, { ...args, a: { src: dqRot, dst: dq, nHeads: H } });
 * ```
 */
import src from "../../kernels/rope.wgsl" with { type: "text" };
import {
  type Kernel,
  Params,
  type Pipeline,
  type Recorder,
  type Runtime,
  type Tensor,
} from "../gpu/runtime.ts";

export const ropeKernel: Kernel = { name: "kernels/rope.wgsl", source: src };

const WG = 256;
/** Invocations per workgroup of the row kernels (RWG in the kernel). */
const RWG = 64;
const MAX_GROUPS = 65535;

/** One tensor to rotate: src and dst are (rows, nHeads * D) and must not alias. */
export interface RopeTensor {
  /** Forward: the pre-RoPE q or k. Backward: the gradient of the rotated tensor. */
  src: Tensor;
  /** Forward: the rotated tensor. Backward: the gradient of the pre-RoPE tensor. */
  dst: Tensor;
  nHeads: number;
}

export interface RopeArgs {
  /** (S, D/2, 2) f32 from {@link Rope.buildTable}. */
  table: Tensor;
  /** B*T; position of a row is row mod S. */
  rows: number;
  /** Head dim, even. */
  D: number;
  /** Segment length: positions restart every S rows. */
  S: number;
  a: RopeTensor;
  /** Optional second tensor rotated in the same dispatch (e.g. K next to Q). */
  b?: RopeTensor;
  /** Add the result to dst instead of overwriting it (default false). */
  accumulate?: boolean;
}

export class Rope {
  private constructor(
    private readonly one: Pipeline,
    private readonly two: Pipeline,
    /** rotate_rows and rotate_qk_rows, used when D % 8 == 0; null when not compiled. */
    private readonly rowPipes: { one: Pipeline; two: Pipeline } | null,
  ) {}

  /**
   * Compiles the pipelines. `rows` adds the one-invocation-per-(row, head) kernels, used for
   * head dims that are a multiple of 8 (default: on CPU adapters, where they measured faster).
   */
  static async create(rt: Runtime, opts: { rows?: boolean } = {}): Promise<Rope> {
    const rows = opts.rows ?? rt.profile === "cpu";
    const k1 = ["uniform", "read", "read", "rw"] as const;
    const k2 = ["uniform", "read", "read", "rw", "read", "rw"] as const;
    const [one, two, oneRows, twoRows] = await Promise.all([
      rt.pipeline(ropeKernel, "rotate", k1),
      rt.pipeline(ropeKernel, "rotate_qk", k2),
      rows ? rt.pipeline(ropeKernel, "rotate_rows", k1) : null,
      rows ? rt.pipeline(ropeKernel, "rotate_qk_rows", k2) : null,
    ]);
    return new Rope(one, two, oneRows && twoRows ? { one: oneRows, two: twoRows } : null);
  }

  /** Whether a head dim D runs the row kernels. */
  rowsFor(D: number): boolean {
    return this.rowPipes !== null && D % 8 === 0;
  }

  /** f32 elements of the table for segment length S and head dim D: S * D. */
  static tableLength(S: number, D: number): number {
    return S * D;
  }

  /** table[(pos * D/2 + i) * 2 + {0, 1}] = {cos, sin}(pos * theta^(-2i/D)), computed in f64. */
  static buildTable(S: number, D: number, theta = 10000): Float32Array {
    if (D % 2 !== 0) throw new RangeError(`RoPE head dim ${D} must be even`);
    const half = D / 2;
    const t = new Float32Array(S * D);
    const inv = Array.from({ length: half }, (_, i) => Math.pow(theta, -2 * i / D));
    for (let pos = 0; pos < S; pos++) {
      for (let i = 0; i < half; i++) {
        const ang = pos * inv[i];
        t[(pos * half + i) * 2] = Math.cos(ang);
        t[(pos * half + i) * 2 + 1] = Math.sin(ang);
      }
    }
    return t;
  }

  /** Records dst = R(pos) src for `a` (and `b`). One dispatch. */
  recordForward(rec: Recorder, args: RopeArgs): void {
    this.#record(rec, args, 1);
  }

  /** Records dst = R(pos)^T src (the backward: src = dy, dst = dx). One dispatch. */
  recordBackward(rec: Recorder, args: RopeArgs): void {
    this.#record(rec, args, -1);
  }

  #record(rec: Recorder, x: RopeArgs, sign: number): void {
    const { rows, D, S, a, b } = x;
    if (D % 2 !== 0 || D === 0) throw new RangeError(`RoPE head dim ${D} must be even`);
    if (S < 1) throw new RangeError(`RoPE segment length ${S} must be positive`);
    need(x.table, Rope.tableLength(Math.min(S, rows), D), "table");
    for (const t of b ? [a, b] : [a]) {
      need(t.src, rows * t.nHeads * D, "src");
      need(t.dst, rows * t.nHeads * D, "dst");
    }
    const nB = b?.nHeads ?? 0;
    const rowPipes = this.rowsFor(D) ? this.rowPipes : null;
    // One thread per pair, or per (row, head) on the row kernels.
    const wg = rowPipes ? RWG : WG;
    const threads = rows * (a.nHeads + nB) * (rowPipes ? 1 : D / 2);
    const groups = Math.ceil(threads / wg);
    const gx = Math.max(1, Math.min(groups, MAX_GROUPS)), gy = Math.ceil(groups / gx);
    const params = new Params(8).u32(rows).u32(a.nHeads).u32(nB).u32(D).u32(S).u32(gx * wg)
      .f32(sign).u32(x.accumulate ? 1 : 0);
    const { one, two } = rowPipes ?? { one: this.one, two: this.two };
    if (b) rec.dispatch(two, [params, x.table, a.src, a.dst, b.src, b.dst], [gx, gy]);
    else rec.dispatch(one, [params, x.table, a.src, a.dst], [gx, gy]);
  }
}

function need(t: Tensor, n: number, what: string): void {
  if (t.length < n) {
    throw new RangeError(`rope ${what} ${t.label}: ${t.length} elements, needs ${n}`);
  }
}
