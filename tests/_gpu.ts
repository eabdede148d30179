/**
 * Shared GPU access for tests: one runtime for the whole test process. Where no adapter
 * exists, GPU tests are reported as ignored with the reason in their name, never silently
 * passed.
 */
import { GpuUnavailableError, Runtime } from "../src/gpu/runtime.ts";

let shared: Promise<Runtime | string> | null = null;

/** The shared runtime, or the reason there is none. */
export function sharedRuntime(): Promise<Runtime | string> {
  shared ??= Runtime.create().catch((e) => {
    if (e instanceof GpuUnavailableError) return e.message;
    throw e;
  });
  return shared;
}

const probe = await sharedRuntime();
/** Why GPU tests are skipped, or null when an adapter exists. */
export const noGpuReason: string | null = typeof probe === "string" ? probe : null;

/** Registers a test that needs the GPU; skipped visibly (with the reason) without an adapter. */
export function gpuTest(name: string, fn: (rt: Runtime) => Promise<void>): void {
  Deno.test({
    name: noGpuReason ? `${name} [skipped: ${noGpuReason}]` : name,
    ignore: noGpuReason !== null,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      const rt = await sharedRuntime();
      if (typeof rt === "string") throw new Error(rt);
      await fn(rt);
    },
  });
}
