/**
 * `deno task check:gpu --quick` (scripts/check_gpu.ts) on whatever adapter is here (lavapipe in
 * CI): the JSON it writes names the adapter and its limits, ran the tests with the GPU profile,
 * and holds at least one timing; its children ran offline (--cached-only).
 */
import { equal, ok } from "node:assert/strict";
import { runScript } from "./_cli.ts";
import { gpuTest } from "./_gpu.ts";

const SCRIPT = new URL("../scripts/check_gpu.ts", import.meta.url).pathname;

gpuTest(
  "check:gpu --quick: adapter, limits, profile gpu, test results and timings in one JSON",
  async () => {
    const out = await Deno.makeTempDir({ prefix: "infini-checkgpu-" });
    try {
      const t0 = performance.now();
      const r = await runScript(SCRIPT, "--quick", "--out", out);
      const seconds = (performance.now() - t0) / 1000;
      console.log(`  check:gpu --quick took ${seconds.toFixed(1)} s`);
      equal(r.code, 0, r.stderr);
      const j = JSON.parse(await Deno.readTextFile(`${out}/check_gpu.json`));
      equal(j.quick, true);
      equal(typeof j.adapter.description, "string");
      equal(j.profile, "gpu");
      ok(j.limits.maxStorageBufferBindingSize >= 128 * 2 ** 20, JSON.stringify(j.limits));
      ok(j.limits.maxBufferSize > 0);
      ok(j.tests.passed > 0, JSON.stringify(j.tests));
      equal(j.tests.failed, 0, JSON.stringify(j.tests));
      ok(j.tests.files.length >= 1);
      ok(j.timings.kernels.length >= 1, "no matmul timing");
      ok(j.timings.kernels.every((k: { gflops: number }) => k.gflops > 0));
      ok(j.timings.train.length >= 1, "no training-step timing");
      ok(j.timings.train[0]["tokens/s"] > 0);
      ok(typeof j.timings.seed2b.skipped === "string");
      for (const p of j.phases) ok(p.ok, `${p.name}: ${p.note}`);
      // Every child ran without network: --cached-only, as on a machine with none.
      for (const p of j.phases) ok(p.command.includes("--cached-only"), p.command);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
);

gpuTest("check:gpu: --out is required", async () => {
  const r = await runScript(SCRIPT, "--quick");
  equal(r.code, 2);
  ok(r.stderr.includes("--out DIR is required"), r.stderr);
});
