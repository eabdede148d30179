/** y += x elementwise (see kernels/add.wgsl). */
import src from "../../kernels/add.wgsl" with { type: "text" };
import {
  type Kernel,
  Params,
  type Pipeline,
  type Recorder,
  type Runtime,
  type Tensor,
} from "../gpu/runtime.ts";

export const addKernel: Kernel = { name: "kernels/add.wgsl", source: src };

const WG = 256;
const MAX_GROUPS = 65535;

export class Add {
  private constructor(private readonly pipe: Pipeline) {}

  static async create(rt: Runtime): Promise<Add> {
    return new Add(await rt.pipeline(addKernel, "add", ["uniform", "read", "rw"]));
  }

  /** Records y[0..n) += x[0..n). x and y must be different buffers or disjoint views. */
  record(rec: Recorder, y: Tensor, x: Tensor, n = y.length): void {
    if (x.length < n || y.length < n) {
      throw new RangeError(`add: ${x.label} or ${y.label} shorter than ${n}`);
    }
    const groups = Math.ceil(n / WG);
    const gx = Math.max(1, Math.min(groups, MAX_GROUPS)), gy = Math.ceil(groups / gx);
    rec.dispatch(this.pipe, [new Params(2).u32(n).u32(gx * WG), x, y], [gx, gy]);
  }
}
