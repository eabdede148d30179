/**
 * Gemma RMSNorm, y = x * rsqrt(mean(x^2) + eps) * (1 + w), forward (optionally fused with the
 * residual add) and backward with a deterministic dw (see kernels/rmsnorm.wgsl).
 *
 * The backward needs a scratch tensor of {@link RmsNorm.scratchLength} f32 for the per-block
 * partial sums of dw; allocate it once for the largest rows and reuse it (it is overwritten).
 *
 * @example
 * ```ts
 * const norm = await RmsNorm.create(rt);
 * norm.recordForward(rec, { x, w, y, rstd, rows, C, eps: 1e-6 });
 * const scratch = rt.tensor("rmsnorm-scratch", RmsNorm.scratchLength(rows, C));
 * norm.recordBackward(rec, { dy, x, w, rstd, dx, dw, scratch, rows, C });
 * ```
 */
import src from "../../kernels/rmsnorm.wgsl" with { type: "text" };
import {
  type Kernel,
  Params,
  type Pipeline,
  type Profile,
  type Recorder,
  type Runtime,
  type Tensor,
} from "../gpu/runtime.ts";

export const rmsnormKernel: Kernel = { name: "kernels/rmsnorm.wgsl", source: src };

/** Rows per block of dw partial sums (RB in the kernel). */
const RB = 32;
/** Invocations per workgroup of the row kernels (RWG in the kernel). */
const RWG = 64;
const MAX_GROUPS = 65535;
/** Threads per workgroup (WG in the kernel) per tuning profile; see the kernel's header. */
const THREADS: Record<Profile, number> = { cpu: 8, gpu: 64 };

export interface RmsNormForwardArgs {
  /** Input (rows, C). With `residual`, the first summand. */
  x: Tensor;
  /** Scale (C); the layer multiplies by 1 + w (Gemma's zero-centred weight). */
  w: Tensor;
  /** Output (rows, C). */
  y: Tensor;
  /** Saved for the backward: 1 / sqrt(mean(x^2) + eps), (rows). */
  rstd: Tensor;
  rows: number;
  C: number;
  eps: number;
  /**
   * Fused residual add: sum = x + a (both (rows, C)) is written and normalised. The sum is
   * what the backward must be given as its `x`. It may not alias x or a (WebGPU forbids a
   * writable binding aliasing another binding in one dispatch).
   */
  residual?: { a: Tensor; sum: Tensor };
}

export interface RmsNormBackwardArgs {
  /** Gradient of the output (rows, C). */
  dy: Tensor;
  /** The forward's input (rows, C) (the residual sum when the add was fused). */
  x: Tensor;
  /** (C). */
  w: Tensor;
  /** (rows), from the forward. */
  rstd: Tensor;
  /** Input gradient (rows, C): overwritten, or added to when `accumulate` is true. */
  dx: Tensor;
  /** Weight gradient (C), always accumulated (+=). */
  dw: Tensor;
  /** Scratch of at least {@link RmsNorm.scratchLength}(rows, C) f32. */
  scratch: Tensor;
  rows: number;
  C: number;
  /** dx += instead of dx = (fuses the residual stream's gradient sum). Default false. */
  accumulate?: boolean;
}

export class RmsNorm {
  private constructor(
    /** Threads per workgroup; a row's sums are reduced over this many partials. */
    readonly threads: number,
    private readonly fwd: Pipeline,
    private readonly fwdAdd: Pipeline,
    private readonly bwdRows: Pipeline,
    private readonly bwdDw: Pipeline,
    /** CPU adapters: the row kernels, used when C % 4 == 0. */
    private readonly rowPipes: {
      fwd: Pipeline;
      fwdAdd: Pipeline;
      dx: Pipeline;
      partial: Pipeline;
    } | null,
  ) {}

  /** Whether width C runs the row kernels (one invocation per row), forward and backward. */
  rowKernels(C: number): boolean {
    return this.rowPipes !== null && C % 4 === 0;
  }

  /**
   * Compiles the pipelines, tuned for `profile` (default: the runtime's); on "cpu" also the row
   * kernels (forward and backward).
   */
  static async create(rt: Runtime, profile: Profile = rt.profile): Promise<RmsNorm> {
    const threads = THREADS[profile];
    const c = { WG: threads };
    const bwdKinds = ["uniform", "read", "read", "read", "read", "rw", "rw"] as const;
    const fwdKinds = ["uniform", "read", "read", "rw", "rw"] as const;
    const addKinds = [...fwdKinds, "read", "rw"] as const;
    const rowPipes = profile === "cpu"
      ? Promise.all([
        rt.pipeline(rmsnormKernel, "forward_rows", fwdKinds, c),
        rt.pipeline(rmsnormKernel, "forward_add_rows", addKinds, c),
        rt.pipeline(rmsnormKernel, "backward_dx_rows", bwdKinds, c),
        rt.pipeline(rmsnormKernel, "backward_partial_rows", bwdKinds, c),
      ])
      : null;
    const [fwd, fwdAdd, bwdRows, bwdDw] = await Promise.all([
      rt.pipeline(rmsnormKernel, "forward", fwdKinds, c),
      rt.pipeline(rmsnormKernel, "forward_add", addKinds, c),
      rt.pipeline(rmsnormKernel, "backward_rows", bwdKinds, c),
      rt.pipeline(rmsnormKernel, "backward_dw", ["uniform", "read", "rw"], c),
    ]);
    const rows = rowPipes ? await rowPipes : null;
    return new RmsNorm(
      threads,
      fwd,
      fwdAdd,
      bwdRows,
      bwdDw,
      rows ? { fwd: rows[0], fwdAdd: rows[1], dx: rows[2], partial: rows[3] } : null,
    );
  }

  /** f32 elements of the backward's scratch: (ceil(rows / 32), C). */
  static scratchLength(rows: number, C: number): number {
    return Math.ceil(rows / RB) * C;
  }

  /** Records y = norm(x) (or sum = x + a; y = norm(sum)) and saves rstd. One dispatch. */
  recordForward(rec: Recorder, f: RmsNormForwardArgs): void {
    const { rows, C } = f;
    need(f.x, rows * C, "x");
    need(f.w, C, "w");
    need(f.y, rows * C, "y");
    need(f.rstd, rows, "rstd");
    // A workgroup per row, or per RWG rows on the row kernels.
    const rp = this.rowPipes && this.rowKernels(C) ? this.rowPipes : null;
    const [gx, gy] = grid(rp ? Math.ceil(rows / RWG) : rows);
    const params = new Params(6).u32(rows).u32(C).f32(f.eps).u32(gx).u32(0).u32(0);
    if (f.residual) {
      need(f.residual.a, rows * C, "residual a");
      need(f.residual.sum, rows * C, "residual sum");
      const pipe = rp ? rp.fwdAdd : this.fwdAdd;
      rec.dispatch(pipe, [params, f.x, f.w, f.y, f.rstd, f.residual.a, f.residual.sum], [gx, gy]);
    } else {
      rec.dispatch(rp ? rp.fwd : this.fwd, [params, f.x, f.w, f.y, f.rstd], [gx, gy]);
    }
  }

  /** Records dx (+)= d norm / dx and dw += d norm / dw. Two dispatches (three on the rows path). */
  recordBackward(rec: Recorder, b: RmsNormBackwardArgs): void {
    const { rows, C } = b;
    need(b.dy, rows * C, "dy");
    need(b.x, rows * C, "x");
    need(b.w, C, "w");
    need(b.rstd, rows, "rstd");
    need(b.dx, rows * C, "dx");
    need(b.dw, C, "dw");
    need(b.scratch, RmsNorm.scratchLength(rows, C), "scratch");
    const nblocks = Math.ceil(rows / RB);
    const params = (gx: number) =>
      new Params(6).u32(rows).u32(C).f32(0).u32(gx).u32(b.accumulate ? 1 : 0).u32(nblocks);
    const bind = [b.dy, b.x, b.w, b.rstd, b.dx, b.scratch];
    if (this.rowPipes && this.rowKernels(C)) {
      // Row kernels: one invocation per row (dx), then per block and 4 columns (partials).
      const run = (pipe: Pipeline, invocations: number) => {
        const [gx, gy] = grid(Math.ceil(invocations / RWG));
        rec.dispatch(pipe, [params(gx), ...bind], [gx, gy]);
      };
      run(this.rowPipes.dx, rows);
      run(this.rowPipes.partial, nblocks * C / 4);
    } else {
      const [gx, gy] = grid(nblocks);
      rec.dispatch(this.bwdRows, [params(gx), ...bind], [gx, gy]);
    }
    rec.dispatch(this.bwdDw, [params(1), b.scratch, b.dw], [Math.ceil(C / this.threads)]);
  }
}

/** A 2-D grid of at least n workgroups, each dimension within the adapter's limit. */
function grid(n: number): [number, number] {
  const gx = Math.max(1, Math.min(n, MAX_GROUPS));
  return [gx, Math.ceil(n / gx)];
}

function need(t: Tensor, n: number, what: string): void {
  if (t.length < n) {
    throw new RangeError(`rmsnorm ${what} ${t.label}: ${t.length} elements, needs ${n}`);
  }
}
