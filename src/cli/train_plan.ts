/**
 * `train --plan`: the memory plan of a training run (src/train/plan.ts) against this machine's
 * adapter, as a table or one JSON object. It opens the adapter only to read its limits (no
 * device, no buffer); without an adapter it plans against lavapipe's limits and says so.
 */
import { type LimitName, profileFor, type Runtime } from "../gpu/runtime.ts";
import type { ModelConfig } from "../model/config.ts";
import {
  advice,
  chooseChunk,
  fmtSize,
  GPU_MEMORY_DEFAULT,
  LAVAPIPE_LIMITS,
  PART_NAMES,
  PLAN_PARTS,
  planByChunk,
  type PlanLimits,
  planTraining,
} from "../train/plan.ts";
import { UsageError } from "../util/errors.ts";
import { fmtBytes } from "../gpu/runtime.ts";

/** Where a plan's limits come from. */
export interface PlanTarget {
  /** The adapter's name, or why there is none. */
  adapter: string;
  /** Whether an adapter was found (false: lavapipe's limits stand in). */
  found: boolean;
  /** CPU adapters (lavapipe) keep buffers in host memory. */
  cpu: boolean;
  limits: PlanLimits;
}

/**
 * The adapter's maxBufferSize and maxStorageBufferBindingSize, lowered by `caps` (--limit) as
 * the runtime lowers them; lavapipe's when there is no adapter.
 */
export async function planTarget(
  caps: Partial<Record<LimitName, number>> = {},
): Promise<PlanTarget> {
  try {
    if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", "/tmp");
  } catch {
    // No env permission: the Vulkan loader's warning is harmless.
  }
  const adapter = typeof navigator !== "undefined" && "gpu" in navigator
    ? await navigator.gpu.requestAdapter({ powerPreference: "high-performance" })
    : null;
  const lim = (name: keyof PlanLimits, have: number) => {
    const cap = caps[name];
    if (cap === undefined) return have;
    if (!(Number.isSafeInteger(cap) && cap > 0 && cap <= have)) {
      throw new UsageError(
        `--limit ${name}=${cap}: must be a positive integer no larger than the adapter's ${have}`,
      );
    }
    return cap;
  };
  if (!adapter) {
    return {
      adapter: "no WebGPU adapter: planned against lavapipe's limits",
      found: false,
      cpu: true,
      limits: {
        maxBufferSize: lim("maxBufferSize", LAVAPIPE_LIMITS.maxBufferSize),
        maxStorageBufferBindingSize: lim(
          "maxStorageBufferBindingSize",
          LAVAPIPE_LIMITS.maxStorageBufferBindingSize,
        ),
      },
    };
  }
  const info = adapter.info;
  const fallback = (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ??
    false;
  const name = info.description || [info.vendor, info.architecture, info.device]
    .filter(Boolean).join(" ") ||
    "unnamed adapter";
  return {
    adapter: name,
    found: true,
    cpu: profileFor(info, fallback) === "cpu",
    limits: {
      maxBufferSize: lim("maxBufferSize", adapter.limits.maxBufferSize),
      maxStorageBufferBindingSize: lim(
        "maxStorageBufferBindingSize",
        adapter.limits.maxStorageBufferBindingSize,
      ),
    },
  };
}

/**
 * train's default --chunk on `rt`: undefined (the whole sequence) when it fits the adapter's
 * limits and the budget (`memory`, default as for --plan), otherwise the largest chunk dividing
 * the segments that does (chooseChunk), said in a line to `info`. When nothing fits, undefined
 * too: the run then stops with the runtime's own one-line error naming the buffer or binding
 * (`train --plan` says what would fit).
 */
export function defaultChunk(
  cfg: Readonly<ModelConfig>,
  batch: number,
  rt: Runtime,
  memory: number | undefined,
  info: (line: string) => void,
  lengths?: readonly number[],
): number | undefined {
  const limits = {
    maxBufferSize: rt.limits.maxBufferSize,
    maxStorageBufferBindingSize: rt.limits.maxStorageBufferBindingSize,
  };
  const target = { adapter: rt.describe(), found: true, cpu: rt.profile === "cpu", limits };
  const mem = memory === undefined ? defaultMemory(target) : { bytes: memory, source: "--memory" };
  const nS = cfg.seqLength / cfg.segmentLength;
  const k = chooseChunk(cfg, batch, limits, mem.bytes, lengths);
  if (k === nS || k === null) return undefined;
  const whole = planTraining(cfg, { batch, limits, memory: mem.bytes, lengths });
  const p = planTraining(cfg, { batch, chunk: k, limits, memory: mem.bytes, lengths });
  info(
    `train: the whole sequence does not fit (${whole.problems.join("; ")}); training in ` +
      `chunks of ${k} segment${k === 1 ? "" : "s"} (--chunk ${k}, ${fmtSize(p.totalBytes)} ` +
      `planned of ${fmtSize(mem.bytes)}, ${mem.source})`,
  );
  return k;
}

/**
 * The default --memory for a target, and how it was chosen. On a CPU adapter without permission
 * to read the machine's memory (--allow-sys) there is no budget (Infinity): only the limits
 * are checked.
 */
export function defaultMemory(target: PlanTarget): { bytes: number; source: string } {
  if (target.cpu) {
    const total = systemMemory();
    const why = target.found ? "CPU adapter" : "no adapter";
    if (total === null) {
      return {
        bytes: Infinity,
        source: `none: this machine's memory (${why}) is unreadable without --allow-sys; ` +
          `give --memory`,
      };
    }
    return { bytes: total, source: `this machine's memory (${why})` };
  }
  return {
    bytes: GPU_MEMORY_DEFAULT,
    source: "40 GB (GPU adapter default; --memory 80GB on an 80 GB card)",
  };
}

/** The machine's memory, or null without permission to read it (never prompts). */
function systemMemory(): number | null {
  try {
    const q = Deno.permissions.querySync({ name: "sys", kind: "systemMemoryInfo" });
    return q.state === "granted" ? Deno.systemMemoryInfo().total : null;
  } catch {
    return null;
  }
}

/**
 * Prints the plan of training `cfg` (preset `presetName`) with `batch` sequences and `chunk`
 * segments per chunk (default: chooseChunk's), against `target` and a budget of `memory`
 * bytes (default: defaultMemory). Returns the exit code, 0 whether it fits or not (the
 * output says).
 */
export function printPlan(
  cfg: Readonly<ModelConfig>,
  o: {
    preset: string;
    batch: number;
    chunk?: number;
    memory?: number;
    target: PlanTarget;
    json: boolean;
    /** A mixture's lengths in segments (train --segments). */
    lengths?: readonly number[];
  },
): number {
  const mem = o.memory === undefined
    ? defaultMemory(o.target)
    : { bytes: o.memory, source: "--memory" };
  const { limits } = o.target;
  const nS = cfg.seqLength / cfg.segmentLength;
  const { lengths } = o;
  const chosen = chooseChunk(cfg, o.batch, limits, mem.bytes, lengths);
  const chunk = o.chunk ?? chosen ?? 1;
  const chunkSource = o.chunk !== undefined
    ? "--chunk"
    : chosen === nS
    ? "default: the whole sequence fits"
    : chosen !== null
    ? "default: the largest chunk that fits"
    : "default: nothing fits; shown at one segment";
  const req = { batch: o.batch, chunk, limits, memory: mem.bytes, lengths };
  const plan = planTraining(cfg, req);
  const tips = advice(cfg, req);
  const byChunk = planByChunk(cfg, { batch: o.batch, limits, memory: mem.bytes, lengths });
  if (o.json) {
    console.log(JSON.stringify(
      {
        preset: o.preset,
        adapter: o.target.adapter,
        adapterFound: o.target.found,
        cpuAdapter: o.target.cpu,
        memorySource: mem.source,
        chunkSource,
        ...plan,
        advice: tips,
        byChunk: byChunk.map((p) => ({
          chunkSegments: p.chunkSegments,
          totalBytes: p.totalBytes,
          fits: p.fits,
        })),
      },
      null,
      2,
    ));
    return 0;
  }
  const n = (x: number) => x.toLocaleString("en-US");
  const S = cfg.segmentLength;
  console.log(
    `plan: preset ${o.preset}, batch ${o.batch} x ${n(cfg.seqLength)} tokens ` +
      `(${nS} segments of ${n(S)}); chunk ${chunk} segment${chunk === 1 ? "" : "s"} ` +
      `(${plan.chunks} chunk${plan.chunks === 1 ? "" : "s"} of ${n(plan.rowsPerChunk)} rows; ` +
      `${chunkSource})`,
  );
  console.log(`adapter: ${o.target.adapter}`);
  console.log(`budget: ${fmtSize(mem.bytes)} (${mem.source})`);
  console.log();
  const rows = PLAN_PARTS.map((p) => [PART_NAMES[p], plan.parts[p]] as const);
  const w = Math.max(...rows.map(([k]) => k.length), 5);
  const line = (k: string, b: number) =>
    console.log(`  ${k.padEnd(w)}  ${n(b).padStart(17)}  ${fmtSize(b).padStart(10)}`);
  for (const [k, b] of rows) line(k, b);
  line("total", plan.totalBytes);
  console.log();
  console.log(
    `largest buffer   ${plan.largestBuffer.label}: ${fmtBytes(plan.largestBuffer.bytes)} ` +
      `(maxBufferSize ${fmtBytes(limits.maxBufferSize)})`,
  );
  console.log(
    `largest binding  ${plan.largestBinding.label}: ${fmtBytes(plan.largestBinding.bytes)} ` +
      `(maxStorageBufferBindingSize ${fmtBytes(limits.maxStorageBufferBindingSize)})`,
  );
  console.log(`buffers          ${n(plan.buffers)}`);
  console.log();
  console.log("by chunk (segments per chunk: total, fits):");
  for (const p of byChunk) {
    console.log(
      `  ${String(p.chunkSegments).padStart(4)}  ${fmtSize(p.totalBytes).padStart(10)}  ${
        p.fits ? "fits" : "does not fit"
      }`,
    );
  }
  console.log();
  if (plan.fits) {
    console.log(`fits: yes, ${fmtSize(plan.totalBytes)} of ${fmtSize(mem.bytes)}`);
  } else {
    console.log("fits: no");
    for (const p of plan.problems) console.log(`  - ${p}`);
    if (tips.length) console.log(`to fit, any one of: ${tips.join("; ")}`);
  }
  return 0;
}
