/**
 * Matmul in the three layouts a linear layer needs (see kernels/matmul.wgsl for the formula).
 * The tuning (`reg` or `tiled`) follows the runtime's profile unless one is forced.
 */
import src from "../../kernels/matmul.wgsl" with { type: "text" };
import src4 from "../../kernels/matmul_vec4.wgsl" with { type: "text" };
import srcTex from "../../kernels/matmul_tex.wgsl" with { type: "text" };
import {
  type Kernel,
  Params,
  type Pipeline,
  type Recorder,
  type Runtime,
  type Tensor,
} from "../gpu/runtime.ts";

export const matmulKernel: Kernel = { name: "kernels/matmul.wgsl", source: src };
export const matmulVec4Kernel: Kernel = { name: "kernels/matmul_vec4.wgsl", source: src4 };
export const matmulTexKernel: Kernel = { name: "kernels/matmul_tex.wgsl", source: srcTex };

/** nt: y = x W^T; nn: dx = dy W; tn: dW (+)= dy^T x. */
export type Layout = "nt" | "nn" | "tn";
export type MatmulVariant = "reg" | "tiled";

/**
 * Which compiled path a call takes (for tests and benchmarks): `tex` reads textures whose rows
 * are the operands' rows, `texp` textures packed as one run of texels (rows of any multiple
 * of 4 floats).
 */
export type MatmulPath = "reg" | "reg4" | "tex" | "texp" | "tiled";

const TRANS: Record<Layout, [boolean, boolean]> = {
  nt: [false, true],
  nn: [false, false],
  tn: [true, false],
};

export interface MatmulArgs {
  /** Output (M, N) row-major, per batch item. */
  c: Tensor;
  a: Tensor;
  b: Tensor;
  M: number;
  N: number;
  K: number;
  /** Batch items (workgroup z); strides in elements between items. */
  batch?: number;
  strideA?: number;
  strideB?: number;
  strideC?: number;
  alpha?: number;
  /** 0 overwrites C; 1 accumulates into it (dW +=). */
  beta?: number;
}

export class Matmul {
  private constructor(
    readonly variant: MatmulVariant,
    private readonly pipes: Record<Layout, Pipeline>,
    /** vec4 twins of `reg` for shapes that are multiples of 4 (absent for `tiled`). */
    private readonly pipes4: Record<Layout, Pipeline> | null,
    /**
     * Longest reduction (K) one dispatch may run. lavapipe silently stops a shader after
     * 65535 loop iterations per invocation (all loops counted), so on the CPU profile longer
     * reductions are split into several dispatches that accumulate (beta = 1).
     */
    readonly maxK: number,
    /** `reg` only: the texture-operand forward (nt) and the device it makes textures on. */
    private readonly tex:
      | {
        pipes: Record<Layout, Pipeline>;
        packed: Record<Layout, Pipeline>;
        device: GPUDevice;
        maxDim: number;
      }
      | null = null,
  ) {}

  /** Operand textures by role and size, made once and reused (queue order keeps it safe). */
  #textures = new Map<string, GPUTexture>();

  #texture(role: string, width: number, rows: number): GPUTexture {
    const key = `${role}:${width}x${rows}`;
    let t = this.#textures.get(key);
    if (!t) {
      t = this.tex!.device.createTexture({
        label: `matmul.${key}`,
        size: [width, rows],
        format: "rgba32float",
        usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST,
      });
      this.#textures.set(key, t);
    }
    return t;
  }

  static async create(rt: Runtime, variant?: MatmulVariant): Promise<Matmul> {
    const v = variant ?? (rt.profile === "cpu" ? "reg" : "tiled");
    const kinds = ["uniform", "read", "read", "rw"] as const;
    const entries = await Promise.all(
      (Object.keys(TRANS) as Layout[]).map(async (l) =>
        [
          l,
          await rt.pipeline(matmulKernel, v, kinds, {
            TRANS_A: Number(TRANS[l][0]),
            TRANS_B: Number(TRANS[l][1]),
          }),
        ] as const
      ),
    );
    let pipes4: Record<Layout, Pipeline> | null = null;
    if (v === "reg") {
      const e4 = await Promise.all(
        (Object.keys(TRANS) as Layout[]).map(async (l) =>
          [l, await rt.pipeline(matmulVec4Kernel, l, kinds)] as const
        ),
      );
      pipes4 = Object.fromEntries(e4) as Record<Layout, Pipeline>;
    }
    // reg runs K (scalar) or K/4 (vec4) iterations; tiled about 24 per k (its inner loops count).
    const maxK = rt.profile !== "cpu" ? Infinity : v === "reg" ? 32768 : 2048;
    const texPipes = async (packed: number) =>
      Object.fromEntries(
        await Promise.all(
          (Object.keys(TRANS) as Layout[]).map(async (l) =>
            [
              l,
              await rt.pipeline(matmulTexKernel, l, ["uniform", "texture", "texture", "rw"], {
                PACKED: packed,
              }),
            ] as const
          ),
        ),
      ) as Record<Layout, Pipeline>;
    const tex = v === "reg"
      ? {
        pipes: await texPipes(0),
        packed: await texPipes(1),
        device: rt.device,
        maxDim: rt.limits.maxTextureDimension2D,
      }
      : null;
    return new Matmul(
      v,
      Object.fromEntries(entries) as Record<Layout, Pipeline>,
      pipes4,
      maxK,
      tex,
    );
  }

  /** The compiled path a call with these sizes takes. */
  path(
    M: number,
    N: number,
    K: number,
    strides: number[] = [],
    layout: Layout = "nt",
    batch = 1,
  ): MatmulPath {
    if (this.variant === "tiled") return "tiled";
    const d = this.tex?.maxDim ?? 0;
    const fits = ([w, h, cols]: number[]) => cols % 64 === 0 && w <= d && h <= d;
    const shapes = texShapes(layout, M, N, K);
    if (batch === 1 && shapes.every(fits)) return "tex";
    if (batch === 1 && this.#packWidth(shapes) > 0) return "texp";
    const aligned = [M, N, K, ...strides].every((v) => v % 4 === 0);
    return aligned && this.pipes4 ? "reg4" : "reg";
  }

  /**
   * Width in texels (a power of two, at least 64: 1 KiB rows) of packed textures that hold both
   * operands within the adapter's texture size; 0 when they cannot (rows not a multiple of 4
   * floats, or too large).
   */
  #packWidth(shapes: [number, number, number][]): number {
    const d = this.tex?.maxDim ?? 0;
    if (!shapes.every(([, , cols]) => cols % 4 === 0)) return 0;
    const texels = Math.max(...shapes.map(([w, h]) => w * h));
    const W = Math.max(64, 2 ** Math.ceil(Math.log2(Math.ceil(texels / d))));
    return W <= d && Math.ceil(texels / W) <= d ? W : 0;
  }

  /** Records C = alpha * op(A) op(B) + beta * C in the given layout. */
  record(rec: Recorder, layout: Layout, x: MatmulArgs): void {
    if (x.K > this.maxK) return this.#splitK(rec, layout, x);
    const { M, N, K } = x;
    const batch = x.batch ?? 1;
    const sA = x.strideA ?? M * K, sB = x.strideB ?? K * N, sC = x.strideC ?? M * N;
    need(x.a, (batch - 1) * sA + M * K, "A");
    need(x.b, (batch - 1) * sB + K * N, "B");
    need(x.c, (batch - 1) * sC + M * N, "C");
    const params = new Params(8).u32(M).u32(N).u32(K).u32(sA).u32(sB).u32(sC)
      .f32(x.alpha ?? 1).f32(x.beta ?? 0);
    const path = this.path(M, N, K, [sA, sB, sC], layout, batch);
    if (path === "tex" && [x.a, x.b].every((t) => t.offset % 16 === 0)) {
      const [[wa, ha], [wb, hb]] = texShapes(layout, M, N, K);
      const ta = this.#texture("A", wa, ha), tb = this.#texture("B", wb, hb);
      rec.copyToTexture(x.a, ta, wa, ha);
      rec.copyToTexture(x.b, tb, wb, hb);
      // The texture kernels' Params add three fields (packed layout only) to the common eight.
      const pt = new Params(11).u32(M).u32(N).u32(K).u32(sA).u32(sB).u32(sC)
        .f32(x.alpha ?? 1).f32(x.beta ?? 0);
      rec.dispatch(this.tex!.pipes[layout], [pt, ta.createView(), tb.createView(), x.c], [
        Math.ceil(N / 128),
        Math.ceil(M / 32),
      ]);
      return;
    }
    if (path === "texp" && [x.a, x.b].every((t) => t.offset % 16 === 0)) {
      const shapes = texShapes(layout, M, N, K);
      const W = this.#packWidth(shapes);
      const [[wa, ha], [wb, hb]] = shapes;
      const ta = this.#texture("A", W, Math.ceil((wa * ha) / W));
      const tb = this.#texture("B", W, Math.ceil((wb * hb) / W));
      rec.copyTexels(x.a, ta, W, wa * ha);
      rec.copyTexels(x.b, tb, W, wb * hb);
      const pp = new Params(11).u32(M).u32(N).u32(K).u32(sA).u32(sB).u32(sC)
        .f32(x.alpha ?? 1).f32(x.beta ?? 0).u32(wa).u32(wb).u32(Math.log2(W));
      rec.dispatch(this.tex!.packed[layout], [pp, ta.createView(), tb.createView(), x.c], [
        Math.ceil(N / 128),
        Math.ceil(M / 32),
      ]);
      return;
    }
    // A texture path whose operand views are not 16-byte aligned falls back to vec4 or scalar.
    const aligned = (path === "reg4" || path.startsWith("tex")) && this.pipes4 !== null &&
      [M, N, K, sA, sB, sC].every((v) => v % 4 === 0) &&
      [x.a, x.b, x.c].every((t) => t.offset % 16 === 0);
    const pipe = aligned ? this.pipes4![layout] : this.pipes[layout];
    rec.dispatch(pipe, [params, x.a, x.b, x.c], [
      Math.ceil(N / 64),
      Math.ceil(M / 64),
      batch,
    ]);
  }

  /**
   * A long reduction as several dispatches over K-slices. Only the `tn` layout (dW += dy^T x,
   * where K is the number of rows) can reach such K; there both operands are stored K-major,
   * so a K-slice is a contiguous view (slices of 64 rows keep views 256-byte aligned).
   */
  #splitK(rec: Recorder, layout: Layout, x: MatmulArgs): void {
    if (layout !== "tn" || (x.batch ?? 1) !== 1) {
      throw new RangeError(
        `matmul ${layout}: a reduction of ${x.K} exceeds ${this.maxK} on this adapter (lavapipe caps shader loops); reduce the model's widths`,
      );
    }
    const step = Math.floor(this.maxK / 64) * 64;
    for (let k0 = 0; k0 < x.K; k0 += step) {
      const kc = Math.min(step, x.K - k0);
      this.record(rec, layout, {
        ...x,
        a: x.a.view(k0 * x.M, kc * x.M),
        b: x.b.view(k0 * x.N, kc * x.N),
        K: kc,
        beta: k0 === 0 ? x.beta : 1,
      });
    }
  }

  /** y (M, N) = x (M, K) W^T, W (N, K). */
  forward(rec: Recorder, y: Tensor, x: Tensor, w: Tensor, M: number, N: number, K: number): void {
    this.record(rec, "nt", { c: y, a: x, b: w, M, N, K });
  }

  /** dx (M, K) = dy (M, N) W, W (N, K); beta 1 adds into dx. */
  backwardInput(
    rec: Recorder,
    dx: Tensor,
    dy: Tensor,
    w: Tensor,
    M: number,
    N: number,
    K: number,
    beta = 0,
  ): void {
    this.record(rec, "nn", { c: dx, a: dy, b: w, M, N: K, K: N, beta });
  }

  /** dW (N, K) += dy (M, N)^T x (M, K). */
  backwardWeight(
    rec: Recorder,
    dw: Tensor,
    dy: Tensor,
    x: Tensor,
    M: number,
    N: number,
    K: number,
    beta = 1,
  ): void {
    this.record(rec, "tn", { c: dw, a: dy, b: x, M: N, N: K, K: M, beta });
  }
}

/**
 * The operand textures of a layout as [width in texels, rows, floats per row]: A then B. A row
 * of floats becomes width = floats / 4 rgba32float texels.
 */
function texShapes(layout: Layout, M: number, N: number, K: number): [number, number, number][] {
  if (layout === "nt") return [[K / 4, M, K], [K / 4, N, K]];
  if (layout === "nn") return [[K / 4, M, K], [N / 4, K, N]];
  return [[M / 4, K, M], [N / 4, K, N]];
}

function need(t: Tensor, n: number, what: string): void {
  if (t.length < n) {
    throw new RangeError(`matmul ${what} ${t.label}: ${t.length} elements, needs ${n}`);
  }
}
