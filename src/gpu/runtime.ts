/**
 * The one GPU runtime: it owns the adapter, the device, the pipeline cache, every buffer the
 * program creates, the uniform-parameter arena and the readback staging pool.
 *
 * Work is recorded into a {@link Recorder} (one command encoder, one compute pass kept open
 * across dispatches) and submitted once. Readbacks ride along in the same submit and resolve
 * asynchronously; nothing here waits for the GPU unless the caller awaits a readback.
 *
 * @example
 * ```ts
 * const rt = await Runtime.create();
 * const x = rt.tensor("x", 4, new Float32Array([1, 2, 3, 4]));
 * const rec = rt.record();
 * const out = rec.read(x);
 * rt.submit(rec);
 * console.log(await out); // Float32Array [1, 2, 3, 4]
 * ```
 */
import { UsageError } from "../util/errors.ts";

/** A WGSL source file, named as it lives in kernels/ so that errors point at it. */
export interface Kernel {
  /** Path shown in error messages, e.g. "kernels/matmul.wgsl". */
  readonly name: string;
  readonly source: string;
}

/** How a binding is used by an entry point, in binding-number order. */
export type BindingKind = "uniform" | "read" | "rw" | "texture";

/** A compiled entry point with its explicit bind group layout. */
export interface Pipeline {
  readonly kernel: string;
  readonly entry: string;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  readonly kinds: readonly BindingKind[];
}

/** Which matmul (and similar) tuning an adapter gets: CPU rasterisers want register blocking,
 * real GPUs want workgroup-memory tiles. */
export type Profile = "cpu" | "gpu";

/** A range of a runtime-owned buffer holding 4-byte elements (f32, u32 or i32). */
export class Tensor {
  constructor(
    readonly buffer: GPUBuffer,
    /** Offset in bytes; a multiple of 256 when the tensor is bound on its own. */
    readonly offset: number,
    /** Number of 4-byte elements. */
    readonly length: number,
    readonly label: string,
  ) {}

  /** Size in bytes. */
  get size(): number {
    return this.length * 4;
  }

  /** A view of elements [start, start + length). Binding it needs start * 4 % 256 == 0. */
  view(start: number, length: number, label = `${this.label}[${start}:${start + length}]`): Tensor {
    if (start < 0 || length < 0 || start + length > this.length) {
      throw new RangeError(
        `View [${start}, ${start + length}) is outside ${this.label} (${this.length})`,
      );
    }
    return new Tensor(this.buffer, this.offset + start * 4, length, label);
  }
}

/** Raised for WGSL compilation or pipeline errors; names the file and entry point. */
export class KernelError extends Error {
  override name = "KernelError";
}

/** Raised when no WebGPU adapter exists or a request exceeds the adapter's limits. */
export class GpuUnavailableError extends Error {
  override name = "GpuUnavailableError";
}

/** Packs a kernel's uniform `Params` struct field by field (4 bytes each, in order). */
export class Params {
  readonly #view: DataView;
  #at = 0;
  constructor(fields: number) {
    // Uniform structs are 16-byte aligned in size.
    this.#view = new DataView(new ArrayBuffer(Math.max(16, Math.ceil(fields / 4) * 16)));
  }
  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`u32 param ${v}`);
    this.#view.setUint32(this.#at, v, true);
    this.#at += 4;
    return this;
  }
  i32(v: number): this {
    this.#view.setInt32(this.#at, v, true);
    this.#at += 4;
    return this;
  }
  f32(v: number): this {
    this.#view.setFloat32(this.#at, v, true);
    this.#at += 4;
    return this;
  }
  get bytes(): Uint8Array {
    return new Uint8Array(this.#view.buffer);
  }
}

const ARENA_CHUNK = 64 * 1024;
const SLOT = 256; // minUniformBufferOffsetAlignment is 256 on every adapter we know of

/** Device limits the model needs; each is requested up to what the adapter offers. */
const WANTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxUniformBuffersPerShaderStage",
  "maxBindGroups",
  "maxTextureDimension2D",
] as const;

export type LimitName = (typeof WANTED_LIMITS)[number];

/** Whether `name` is one of the limits the runtime requests (and `--limit` can lower). */
export function isLimitName(name: string): name is LimitName {
  return (WANTED_LIMITS as readonly string[]).includes(name);
}

/** The names `--limit` accepts. */
export const LIMIT_NAMES: readonly LimitName[] = WANTED_LIMITS;

export interface RuntimeOptions {
  /** Force a tuning profile instead of choosing it from the adapter. */
  profile?: Profile;
  powerPreference?: GPUPowerPreference;
  /**
   * Limits lowered below what the device grants (`--limit NAME=BYTES`): everything that plans
   * buffers and bindings reads `rt.limits`, so a small model can be run as if on an adapter
   * with small buffers. A cap above the adapter's own value is an error.
   */
  limits?: Partial<Record<LimitName, number>>;
}

/** Maps an adapter description to its tuning profile. */
export function profileFor(info: GPUAdapterInfo, fallback: boolean): Profile {
  const d = `${info.description} ${info.device} ${info.vendor}`.toLowerCase();
  if (fallback || /llvmpipe|lavapipe|swiftshader|softpipe|warp/.test(d)) return "cpu";
  return "gpu";
}

export class Runtime {
  readonly device: GPUDevice;
  readonly adapterInfo: GPUAdapterInfo;
  readonly isFallbackAdapter: boolean;
  readonly adapterLimits: Record<LimitName, number>;
  readonly features: readonly string[];
  profile: Profile;
  #pipelines = new Map<string, Promise<Pipeline>>();
  #arenaFree: GPUBuffer[] = [];
  #stagingFree: GPUBuffer[] = [];
  #buffers = new Set<GPUBuffer>();
  #bytes = 0;
  #lost: string | null = null;
  #limits: GPUSupportedLimits;
  /** The limits lowered by RuntimeOptions.limits (empty when none). */
  readonly caps: Readonly<Partial<Record<LimitName, number>>>;

  private constructor(
    device: GPUDevice,
    adapter: GPUAdapter,
    profile: Profile,
    caps: Partial<Record<LimitName, number>> = {},
  ) {
    this.device = device;
    this.adapterInfo = adapter.info;
    this.isFallbackAdapter = (adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean })
      .isFallbackAdapter ?? false;
    const lim = {} as Record<LimitName, number>;
    for (const k of WANTED_LIMITS) lim[k] = adapter.limits[k] as number;
    this.adapterLimits = lim;
    this.features = [...adapter.features].sort();
    this.profile = profile;
    this.caps = { ...caps };
    // A plain copy of the granted limits with the caps applied (GPUSupportedLimits' fields are
    // getters on its prototype, so they are copied by name).
    const granted: Record<string, number> = {};
    for (const k in device.limits) {
      const v = (device.limits as unknown as Record<string, number>)[k];
      if (typeof v === "number") granted[k] = v;
    }
    for (const [k, v] of Object.entries(caps)) granted[k] = Math.min(granted[k] ?? v, v);
    this.#limits = granted as unknown as GPUSupportedLimits;
    device.lost.then((info) => {
      this.#lost = info.message || info.reason || "unknown reason";
    });
    device.addEventListener("uncapturederror", (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      console.error(`GPU error: ${e.message}`);
    });
  }

  /** Requests an adapter and a device with the limits this program needs. */
  static async create(opts: RuntimeOptions = {}): Promise<Runtime> {
    quietVulkanLoader();
    if (typeof navigator === "undefined" || !("gpu" in navigator)) {
      throw new GpuUnavailableError("WebGPU is not available in this runtime (run with Deno 2.x)");
    }
    const adapter = await navigator.gpu.requestAdapter({
      powerPreference: opts.powerPreference ?? "high-performance",
    });
    if (!adapter) {
      throw new GpuUnavailableError(
        "No WebGPU adapter found. Without a GPU install the software Vulkan driver: " +
          "apt-get install -y mesa-vulkan-drivers",
      );
    }
    const requiredLimits: Record<string, number> = {};
    for (const k of WANTED_LIMITS) requiredLimits[k] = adapter.limits[k] as number;
    for (const [k, v] of Object.entries(opts.limits ?? {})) {
      const have = adapter.limits[k as LimitName] as number;
      if (!isLimitName(k)) throw new UsageError(`--limit ${k}: not a limit this program uses`);
      if (!(Number.isSafeInteger(v) && v > 0 && v <= have)) {
        throw new UsageError(
          `--limit ${k}=${v}: must be a positive integer no larger than the adapter's ${have}`,
        );
      }
    }
    const requiredFeatures: GPUFeatureName[] = [];
    if (adapter.features.has("timestamp-query")) requiredFeatures.push("timestamp-query");
    const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
    const fallback =
      (adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ??
        false;
    const envProfile = Deno.env.get("INFINI_PROFILE");
    const profile = opts.profile ??
      (envProfile === "cpu" || envProfile === "gpu" ? envProfile : undefined) ??
      profileFor(adapter.info, fallback);
    return new Runtime(device, adapter, profile, opts.limits);
  }

  /** The device's granted limits, lowered by any caps (RuntimeOptions.limits). */
  get limits(): GPUSupportedLimits {
    return this.#limits;
  }

  /** Bytes currently held in runtime-owned storage buffers. */
  get allocatedBytes(): number {
    return this.#bytes;
  }

  /** A one-line description of the adapter. */
  describe(): string {
    const i = this.adapterInfo;
    const name = i.description || [i.vendor, i.architecture, i.device].filter(Boolean).join(" ");
    return `${name}${
      this.isFallbackAdapter ? " (software fallback)" : ""
    }, profile ${this.profile}`;
  }

  /** Throws a clear error if the device was lost. */
  checkAlive(): void {
    if (this.#lost !== null) {
      throw new GpuUnavailableError(
        `The GPU device was lost (${this.#lost}). Reduce batch, sequence or segment length and retry.`,
      );
    }
  }

  /** Creates a labelled storage tensor of `length` 4-byte elements, optionally initialised. */
  tensor(label: string, length: number, init?: Float32Array | Uint32Array | Int32Array): Tensor {
    this.checkAlive();
    if (!Number.isInteger(length) || length < 0) throw new RangeError(`${label}: length ${length}`);
    const size = Math.max(16, Math.ceil((length * 4) / 16) * 16);
    const maxBuf = this.limits.maxBufferSize;
    if (size > maxBuf) {
      throw new GpuUnavailableError(
        `${label} needs ${fmtBytes(size)} but the adapter's maxBufferSize is ${
          fmtBytes(maxBuf)
        }; ` +
          `reduce batch, sequence or segment length (for weights, the model's size)`,
      );
    }
    const buffer = this.device.createBuffer({
      label,
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      mappedAtCreation: init !== undefined,
    });
    if (init !== undefined) {
      if (init.length !== length) {
        throw new RangeError(`${label}: init has ${init.length} elements, expected ${length}`);
      }
      new Uint8Array(buffer.getMappedRange()).set(
        new Uint8Array(init.buffer, init.byteOffset, init.byteLength),
      );
      buffer.unmap();
    }
    this.#buffers.add(buffer);
    this.#bytes += size;
    return new Tensor(buffer, 0, length, label);
  }

  /** Releases a tensor's buffer (the whole buffer, not a view). */
  free(t: Tensor): void {
    if (this.#buffers.delete(t.buffer)) {
      this.#bytes -= t.buffer.size;
      t.buffer.destroy();
    }
  }

  /** Overwrites a tensor's contents from the host (queue-ordered, no wait). */
  write(t: Tensor, data: Float32Array | Uint32Array | Int32Array, elemOffset = 0): void {
    if (data.length + elemOffset > t.length) {
      throw new RangeError(
        `${t.label}: writing ${data.length} at ${elemOffset} overflows ${t.length}`,
      );
    }
    this.device.queue.writeBuffer(
      t.buffer,
      t.offset + elemOffset * 4,
      data.buffer as ArrayBuffer,
      data.byteOffset,
      data.byteLength,
    );
  }

  /**
   * Compiles (once) an entry point of a kernel with override constants. Creation runs inside
   * error scopes, so a WGSL mistake is reported with the file, the entry point and the line.
   */
  pipeline(
    kernel: Kernel,
    entry: string,
    kinds: readonly BindingKind[],
    constants: Record<string, number> = {},
  ): Promise<Pipeline> {
    const key = `${kernel.name}#${entry}#${kinds.join(",")}#${
      Object.entries(constants).sort().map(([k, v]) => `${k}=${v}`).join(",")
    }`;
    let p = this.#pipelines.get(key);
    if (!p) {
      p = this.#compile(kernel, entry, kinds, constants);
      this.#pipelines.set(key, p);
      p.catch(() => this.#pipelines.delete(key));
    }
    return p;
  }

  async #compile(
    kernel: Kernel,
    entry: string,
    kinds: readonly BindingKind[],
    constants: Record<string, number>,
  ): Promise<Pipeline> {
    const d = this.device;
    d.pushErrorScope("validation");
    d.pushErrorScope("internal");
    const module = d.createShaderModule({ label: kernel.name, code: kernel.source });
    const layout = d.createBindGroupLayout({
      label: `${kernel.name}#${entry}`,
      entries: kinds.map((k, i): GPUBindGroupLayoutEntry =>
        k === "texture"
          ? {
            binding: i,
            visibility: GPUShaderStage.COMPUTE,
            texture: { sampleType: "unfilterable-float", viewDimension: "2d" },
          }
          : {
            binding: i,
            visibility: GPUShaderStage.COMPUTE,
            buffer: {
              type: k === "uniform" ? "uniform" : k === "read" ? "read-only-storage" : "storage",
            },
          }
      ),
    });
    const pipeline = d.createComputePipeline({
      label: `${kernel.name}#${entry}`,
      layout: d.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: entry, constants },
    });
    const internal = await d.popErrorScope();
    const validation = await d.popErrorScope();
    const err = validation ?? internal;
    if (err) {
      let where = "";
      try {
        const info = await module.getCompilationInfo();
        const first = info.messages.find((m) => m.type === "error");
        if (first) where = ` at line ${first.lineNum}:${first.linePos}: ${first.message}`;
      } catch {
        // getCompilationInfo is optional; the scope's message is enough.
      }
      const msg = err.message.split("\n").map((s) => s.trim()).filter(Boolean).join(" | ");
      throw new KernelError(`${kernel.name} entry '${entry}'${where || `: ${msg}`}`);
    }
    return { kernel: kernel.name, entry, pipeline, layout, kinds };
  }

  /** Starts recording a batch of GPU work. */
  record(label = "step"): Recorder {
    this.checkAlive();
    return new Recorder(this, label);
  }

  /** Submits everything recorded, then starts the recorder's pending readbacks. */
  submit(rec: Recorder): void {
    this.checkAlive();
    rec.finish();
  }

  /** Reads a tensor back (one submit, one wait). Prefer `Recorder.read` inside a step. */
  read(t: Tensor): Promise<Float32Array> {
    const rec = this.record("read");
    const p = rec.read(t);
    this.submit(rec);
    return p;
  }

  /** Reads a tensor back as unsigned integers. */
  async readU32(t: Tensor): Promise<Uint32Array> {
    const f = await this.read(t);
    return new Uint32Array(f.buffer, f.byteOffset, f.length);
  }

  /** Waits until all submitted work has finished. */
  async sync(): Promise<void> {
    await this.device.queue.onSubmittedWorkDone();
    this.checkAlive();
  }

  /** @internal */
  takeArenaChunk(): GPUBuffer {
    return this.#arenaFree.pop() ?? this.device.createBuffer({
      label: "params-arena",
      size: ARENA_CHUNK,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
  }

  /** @internal Queue ordering makes a chunk reusable as soon as its writes are enqueued. */
  returnArenaChunks(chunks: GPUBuffer[]): void {
    this.#arenaFree.push(...chunks);
  }

  /** @internal */
  takeStaging(size: number): GPUBuffer {
    const i = this.#stagingFree.findIndex((b) => b.size >= size && b.size <= size * 4 + 4096);
    if (i >= 0) return this.#stagingFree.splice(i, 1)[0];
    return this.device.createBuffer({
      label: "readback-staging",
      size: Math.max(16, Math.ceil(size / 16) * 16),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
  }

  /** @internal */
  returnStaging(b: GPUBuffer): void {
    if (this.#stagingFree.length < 16) this.#stagingFree.push(b);
    else b.destroy();
  }

  /** Releases every buffer and the device. */
  destroy(): void {
    for (const b of this.#buffers) b.destroy();
    this.#buffers.clear();
    this.#bytes = 0;
    this.device.destroy();
  }
}

/**
 * One command encoder with one compute pass kept open across dispatches. Each dispatch is its
 * own usage scope in WebGPU, so a dispatch sees the writes of the ones recorded before it.
 */
export class Recorder {
  readonly encoder: GPUCommandEncoder;
  #pass: GPUComputePassEncoder | null = null;
  #chunks: GPUBuffer[] = [];
  #chunkData: Uint8Array<ArrayBuffer>[] = [];
  #used = ARENA_CHUNK; // forces a chunk on first use
  #reads: {
    staging: GPUBuffer;
    size: number;
    resolve: (a: Float32Array) => void;
    reject: (e: unknown) => void;
  }[] = [];
  #done = false;
  /** Number of dispatches recorded so far (for benchmarks and tests). */
  dispatches = 0;

  constructor(readonly rt: Runtime, label: string) {
    this.encoder = rt.device.createCommandEncoder({ label });
  }

  #computePass(): GPUComputePassEncoder {
    if (!this.#pass) this.#pass = this.encoder.beginComputePass();
    return this.#pass;
  }

  #endPass(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
  }

  #paramSlot(bytes: Uint8Array): { buffer: GPUBuffer; offset: number; size: number } {
    const size = Math.ceil(bytes.length / SLOT) * SLOT;
    if (this.#used + size > ARENA_CHUNK) {
      this.#chunks.push(this.rt.takeArenaChunk());
      this.#chunkData.push(new Uint8Array(ARENA_CHUNK));
      this.#used = 0;
    }
    const buffer = this.#chunks[this.#chunks.length - 1];
    const offset = this.#used;
    this.#chunkData[this.#chunkData.length - 1].set(bytes, offset);
    this.#used += size;
    return { buffer, offset, size: bytes.length };
  }

  /**
   * Records one dispatch. `bindings` follow the pipeline's binding kinds in order; a `Params`
   * goes where the kind is "uniform".
   */
  dispatch(
    p: Pipeline,
    bindings: readonly (Tensor | Params | GPUTextureView)[],
    groups: readonly [number, number?, number?],
  ): void {
    if (this.#done) throw new Error("Recorder already submitted");
    if (bindings.length !== p.kinds.length) {
      throw new Error(
        `${p.kernel}#${p.entry}: ${bindings.length} bindings given, ${p.kinds.length} expected`,
      );
    }
    const maxGroups = this.rt.limits.maxComputeWorkgroupsPerDimension;
    const [x, y = 1, z = 1] = groups;
    if (x > maxGroups || y > maxGroups || z > maxGroups) {
      throw new GpuUnavailableError(
        `${p.kernel}#${p.entry}: ${x}x${y}x${z} workgroups exceed the adapter's ` +
          `maxComputeWorkgroupsPerDimension ${maxGroups}; reduce batch or sequence length`,
      );
    }
    if (x === 0 || y === 0 || z === 0) return;
    const entries: GPUBindGroupEntry[] = bindings.map((b, i) => {
      const kind = p.kinds[i];
      if (b instanceof GPUTextureView) {
        if (kind !== "texture") throw new Error(`${p.kernel}#${p.entry}: binding ${i} is ${kind}`);
        return { binding: i, resource: b };
      }
      if (kind === "texture") {
        throw new Error(`${p.kernel}#${p.entry}: binding ${i} wants a texture`);
      }
      if (b instanceof Params) {
        if (kind !== "uniform") throw new Error(`${p.kernel}#${p.entry}: binding ${i} is ${kind}`);
        return { binding: i, resource: this.#paramSlot(b.bytes) };
      }
      if (kind === "uniform") throw new Error(`${p.kernel}#${p.entry}: binding ${i} wants Params`);
      const size = Math.max(4, b.size);
      if (size > this.rt.limits.maxStorageBufferBindingSize) {
        throw new GpuUnavailableError(
          `${p.kernel}#${p.entry}: binding ${b.label} is ${fmtBytes(size)}, over the adapter's ` +
            `maxStorageBufferBindingSize ${
              fmtBytes(this.rt.limits.maxStorageBufferBindingSize)
            }; ` +
            `reduce batch, sequence or segment length`,
        );
      }
      return { binding: i, resource: { buffer: b.buffer, offset: b.offset, size } };
    });
    const group = this.rt.device.createBindGroup({ layout: p.layout, entries });
    const pass = this.#computePass();
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(x, y, z);
    this.dispatches++;
  }

  /** Fills a tensor with zeros. */
  clear(t: Tensor): void {
    this.#endPass();
    this.encoder.clearBuffer(t.buffer, t.offset, Math.ceil(t.size / 4) * 4);
  }

  /**
   * Copies a row-major (rows, 4 * width) f32 tensor into an rgba32float texture of
   * width x rows texels (one texel = 4 consecutive values). width * 16 must be a multiple of
   * 256 (WebGPU's bytesPerRow rule) and the tensor's offset a multiple of 16.
   */
  copyToTexture(src: Tensor, dst: GPUTexture, width: number, rows: number): void {
    if (src.length < width * 4 * rows) {
      throw new RangeError(`${src.label}: too short for ${rows} x ${width} texels`);
    }
    this.#endPass();
    this.encoder.copyBufferToTexture(
      { buffer: src.buffer, offset: src.offset, bytesPerRow: width * 16, rowsPerImage: rows },
      { texture: dst },
      [width, rows],
    );
  }

  /**
   * Copies the first `texels` texels (4 floats each) of `src` into `dst` as one run, `width`
   * texels per row (a multiple of 16: 256-byte rows); the last row may be partial.
   */
  copyTexels(src: Tensor, dst: GPUTexture, width: number, texels: number): void {
    if (src.length < texels * 4) {
      throw new RangeError(`${src.label}: too short for ${texels} texels`);
    }
    this.#endPass();
    const full = Math.floor(texels / width), rest = texels - full * width;
    if (full > 0) {
      this.encoder.copyBufferToTexture(
        { buffer: src.buffer, offset: src.offset, bytesPerRow: width * 16, rowsPerImage: full },
        { texture: dst },
        [width, full],
      );
    }
    if (rest > 0) {
      this.encoder.copyBufferToTexture(
        { buffer: src.buffer, offset: src.offset + full * width * 16, bytesPerRow: width * 16 },
        { texture: dst, origin: [0, full] },
        [rest, 1],
      );
    }
  }

  /** Copies `src` into `dst` (same length). */
  copy(src: Tensor, dst: Tensor): void {
    if (src.length !== dst.length) {
      throw new RangeError(`copy ${src.label} -> ${dst.label}: lengths differ`);
    }
    this.#endPass();
    this.encoder.copyBufferToBuffer(src.buffer, src.offset, dst.buffer, dst.offset, src.size);
  }

  /** Schedules a readback of `t` after this recorder's work; resolves after submit. */
  read(t: Tensor): Promise<Float32Array> {
    this.#endPass();
    const staging = this.rt.takeStaging(t.size);
    this.encoder.copyBufferToBuffer(t.buffer, t.offset, staging, 0, t.size);
    return new Promise((resolve, reject) => {
      this.#reads.push({ staging, size: t.size, resolve, reject });
    });
  }

  /** @internal Called by Runtime.submit. */
  finish(): void {
    if (this.#done) throw new Error("Recorder already submitted");
    this.#done = true;
    this.#endPass();
    const q = this.rt.device.queue;
    this.#chunks.forEach((c, i) => {
      const used = i === this.#chunks.length - 1 ? this.#used : ARENA_CHUNK;
      q.writeBuffer(c, 0, this.#chunkData[i], 0, used);
    });
    q.submit([this.encoder.finish()]);
    this.rt.returnArenaChunks(this.#chunks);
    for (const r of this.#reads) {
      r.staging.mapAsync(GPUMapMode.READ, 0, Math.ceil(r.size / 4) * 4).then(() => {
        const out = new Float32Array(
          r.staging.getMappedRange(0, Math.ceil(r.size / 4) * 4).slice(0),
        );
        r.staging.unmap();
        this.rt.returnStaging(r.staging);
        r.resolve(out);
      }, (e) => {
        this.rt.checkAlive();
        r.reject(e);
      });
    }
  }
}

/** The Vulkan loader complains on stderr when XDG_RUNTIME_DIR is unset; give it a value. */
function quietVulkanLoader(): void {
  try {
    if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", "/tmp");
  } catch {
    // No env permission: the loader's warning is harmless.
  }
}

export function fmtBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}
