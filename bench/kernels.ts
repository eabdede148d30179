/**
 * Kernel benchmark: GFLOPS of each matmul layout and time per call of every other kernel, at
 * the shapes of the `mini` model (hidden 256, MLP 1024, 2048 tokens, 4 heads / 1 KV, head dim
 * 64) and of the seed's 2B model (hidden 2048, MLP 16384, 8 heads / 1 KV, head dim 256; fewer
 * tokens so a run stays within minutes on a CPU). Prints a table and writes JSON.
 *
 *   deno task bench:kernels [--only matmul] [--out out/bench_kernels.json] [--quick]
 */
import { parseArgs } from "node:util";
import { Runtime } from "../src/gpu/runtime.ts";
import { type Layout, Matmul, type MatmulVariant } from "../src/ops/matmul.ts";
import { Rng } from "../src/util/rng.ts";
import { printTable, timeGpu, writeJson } from "./_util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    only: { type: "string" },
    out: { type: "string", default: "out/bench_kernels.json" },
    quick: { type: "boolean" },
    variant: { type: "string" },
  },
});

interface ModelShape {
  name: string;
  rows: number;
  C: number;
  F: number;
  H: number;
  Hkv: number;
  D: number;
  S: number;
  V: number;
}

const SHAPES: ModelShape[] = [
  { name: "mini", rows: 2048, C: 256, F: 1024, H: 4, Hkv: 1, D: 64, S: 512, V: 151936 },
  {
    name: "seed-2b",
    rows: values.quick ? 64 : 256,
    C: 2048,
    F: 16384,
    H: 8,
    Hkv: 1,
    D: 256,
    S: values.quick ? 64 : 256,
    V: 151936,
  },
];

const rt = await Runtime.create();
console.log(`adapter: ${rt.describe()}`);
const rng = new Rng(1);
const results: Record<string, unknown>[] = [];
const want = (k: string) => !values.only || values.only.split(",").includes(k);

function rand(n: number): Float32Array {
  return rng.normals(n, 0.5);
}

if (want("matmul")) {
  const variants: MatmulVariant[] = values.variant
    ? [values.variant as MatmulVariant]
    : rt.profile === "cpu"
    ? ["reg", "tiled"]
    : ["tiled", "reg"];
  for (const variant of variants) {
    const mm = await Matmul.create(rt, variant);
    for (const s of SHAPES) {
      // The linear layers of one block: (name, N_out, N_in).
      const linears: [string, number, number][] = [
        ["q_proj", s.H * s.D, s.C],
        ["mlp.gate_proj", s.F, s.C],
        ["mlp.down_proj", s.C, s.F],
      ];
      for (const [lname, N, K] of linears) {
        const M = s.rows;
        const x = rt.tensor("x", M * K, rand(M * K)), w = rt.tensor("w", N * K, rand(N * K));
        const y = rt.tensor("y", M * N, rand(M * N));
        const dx = rt.tensor("dx", M * K), dw = rt.tensor("dw", N * K);
        const calls: Record<Layout, (rec: Parameters<typeof mm.forward>[0]) => void> = {
          nt: (rec) => mm.forward(rec, y, x, w, M, N, K),
          nn: (rec) => mm.backwardInput(rec, dx, y, w, M, N, K),
          tn: (rec) => mm.backwardWeight(rec, dw, y, x, M, N, K),
        };
        for (const layout of ["nt", "nn", "tn"] as Layout[]) {
          const sec = await timeGpu(rt, calls[layout], {
            reps: 1,
            minSeconds: values.quick ? 0.1 : 0.5,
          });
          results.push({
            kernel: `matmul.${layout}`,
            variant: `${variant}/${mm.path(M, N, K)}`,
            model: s.name,
            shape: `${lname} ${M}x${N}x${K}`,
            ms: sec * 1000,
            gflops: (2 * M * N * K) / sec / 1e9,
          });
          console.error(
            `  ${results.at(-1)!.kernel} ${variant} ${s.name} ${lname}: ${
              (sec * 1000).toFixed(1)
            } ms`,
          );
        }
        for (const t of [x, w, y, dx, dw]) rt.free(t);
      }
    }
  }
}

console.log();
printTable(results.map((r) => ({ ...r }) as Record<string, string | number>));
await writeJson(values.out!, { adapter: rt.describe(), date: new Date().toISOString(), results });
rt.destroy();
