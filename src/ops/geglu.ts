/**
 * GeGLU, h = gelu_tanh(g) * u, and its backward (see kernels/geglu.wgsl). g and u are separate
 * (rows, F) tensors: the outputs of gate_proj and up_proj. Finite for any finite input (no
 * tanh overflow).
 *
 * Tensors larger than one storage binding (rows 8192 x F 16384 f32 is 512 MiB) are processed
 * in chunks of at most `maxChunkBytes`, one dispatch each. Every tensor must start on a
 * 256-byte boundary (WebGPU's storage-binding offset alignment).
 *
 * @example
 * ```ts
 * const geglu = await GeGLU.create(rt);
 * geglu.recordForward(rec, { g, u, h, n: rows * F });
 * geglu.recordBackward(rec, { dh, g, u, dg, du, n: rows * F });
 * ```
 */
import src from "../../kernels/geglu.wgsl" with { type: "text" };
import {
  type Kernel,
  Params,
  type Pipeline,
  type Recorder,
  type Runtime,
  type Tensor,
} from "../gpu/runtime.ts";

export const gegluKernel: Kernel = { name: "kernels/geglu.wgsl", source: src };

const WG = 256;
const MAX_GROUPS = 65535;

export interface GegluOptions {
  /** Largest binding per dispatch, in bytes; defaults to maxStorageBufferBindingSize. */
  maxChunkBytes?: number;
  /** Compile the 4-elements-per-invocation kernels (default: on CPU adapters). */
  vec4?: boolean;
}

export interface GegluForwardArgs {
  /** gate_proj output (rows, F). */
  g: Tensor;
  /** up_proj output (rows, F). */
  u: Tensor;
  /** Output (rows, F), may not alias g or u. */
  h: Tensor;
  /** rows * F. */
  n: number;
}

export interface GegluBackwardArgs {
  /** Gradient of h (rows, F). */
  dh: Tensor;
  g: Tensor;
  u: Tensor;
  /** Outputs (rows, F), overwritten. */
  dg: Tensor;
  du: Tensor;
  n: number;
}

export class GeGLU {
  private constructor(
    private readonly fwd: Pipeline,
    private readonly bwd: Pipeline,
    /** Elements per chunk: a multiple of 64 so that chunk views start on 256-byte boundaries. */
    private readonly chunk: number,
    /** forward4 and backward4 (4 elements per invocation), used when n % 4 == 0; or null. */
    private readonly vec4: { fwd: Pipeline; bwd: Pipeline } | null,
  ) {}

  /**
   * Compiles the pipelines; `opts.vec4` adds the 4-elements-per-invocation kernels, used when
   * n % 4 == 0 (default: on CPU adapters, where they measured faster).
   */
  static async create(rt: Runtime, opts: GegluOptions = {}): Promise<GeGLU> {
    const v4 = opts.vec4 ?? rt.profile === "cpu";
    const fk = ["uniform", "read", "read", "rw"] as const;
    const bk = ["uniform", "read", "read", "read", "rw", "rw"] as const;
    const [fwd, bwd, fwd4, bwd4] = await Promise.all([
      rt.pipeline(gegluKernel, "forward", fk),
      rt.pipeline(gegluKernel, "backward", bk),
      v4 ? rt.pipeline(gegluKernel, "forward4", fk) : null,
      v4 ? rt.pipeline(gegluKernel, "backward4", bk) : null,
    ]);
    const cap = rt.limits.maxStorageBufferBindingSize;
    const bytes = Math.min(cap, opts.maxChunkBytes ?? cap);
    const chunk = Math.floor(bytes / 256) * 64;
    if (chunk === 0) throw new RangeError(`GeGLU: maxChunkBytes ${bytes} is below 256`);
    return new GeGLU(fwd, bwd, chunk, fwd4 && bwd4 ? { fwd: fwd4, bwd: bwd4 } : null);
  }

  /** Records h = gelu_tanh(g) * u over n elements. One dispatch per chunk. */
  recordForward(rec: Recorder, f: GegluForwardArgs): void {
    this.#each(rec, f.n, [f.g, f.u, f.h], "forward", this.fwd, this.vec4?.fwd);
  }

  /** Records dg = dh * u * gelu_tanh'(g), du = dh * gelu_tanh(g). One dispatch per chunk. */
  recordBackward(rec: Recorder, b: GegluBackwardArgs): void {
    this.#each(rec, b.n, [b.dh, b.g, b.u, b.dg, b.du], "backward", this.bwd, this.vec4?.bwd);
  }

  /**
   * Checks the tensors and dispatches `pipe` over each chunk of their first n elements, or
   * `pipe4` (4 elements per invocation) when it exists and n % 4 == 0.
   */
  #each(
    rec: Recorder,
    n: number,
    ts: Tensor[],
    what: string,
    pipe: Pipeline,
    pipe4: Pipeline | undefined,
  ): void {
    for (const t of ts) {
      if (t.length < n) {
        throw new RangeError(`GeGLU ${what}: ${t.label} has ${t.length} elements, needs ${n}`);
      }
      if (t.offset % 256 !== 0) {
        throw new RangeError(`GeGLU ${what}: ${t.label} must start on a 256-byte boundary`);
      }
    }
    // Chunks are multiples of 64 elements, so n % 4 == 0 makes every chunk's length one too.
    const four = pipe4 !== undefined && n % 4 === 0;
    for (let start = 0; start < n; start += this.chunk) {
      const len = Math.min(this.chunk, n - start), m = four ? len / 4 : len;
      const [gx, gy] = grid(m);
      const params = new Params(2).u32(m).u32(gx * WG);
      rec.dispatch(four ? pipe4 : pipe, [params, ...ts.map((t) => t.view(start, len))], [gx, gy]);
    }
  }
}

/** Workgroups for `len` threads as a 2-D grid within the adapter's per-dimension limit. */
function grid(len: number): [number, number] {
  const groups = Math.ceil(len / WG);
  const gx = Math.max(1, Math.min(groups, MAX_GROUPS));
  return [gx, Math.ceil(groups / gx)];
}
