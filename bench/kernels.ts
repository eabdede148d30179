/**
 * Kernel benchmark: GFLOPS of each matmul layout and time per call of every other kernel, at
 * the shapes of the `mini` model (hidden 256, MLP 1024, 2048 tokens, 4 heads / 1 KV, head dim
 * 64) and of the seed's 2B model (hidden 2048, MLP 16384, 8 heads / 1 KV, head dim 256; fewer
 * tokens so a run stays within minutes on a CPU). Prints a table and writes JSON.
 *
 *   deno task bench:kernels [--only matmul|others] [--out out/bench_kernels.json] [--quick]
 *                           [--limit NAME=BYTES ...]
 */
import { Runtime } from "../src/gpu/runtime.ts";
import { type Layout, Matmul, type MatmulVariant } from "../src/ops/matmul.ts";
import { Adamw } from "../src/ops/adamw.ts";
import { Attention } from "../src/ops/attention.ts";
import { Embedding } from "../src/ops/embedding.ts";
import { GeGLU } from "../src/ops/geglu.ts";
import { InfiniMemory } from "../src/ops/infini.ts";
import { RmsNorm } from "../src/ops/rmsnorm.ts";
import { Rope } from "../src/ops/rope.ts";
import { Xent } from "../src/ops/xent.ts";
import type { Recorder, Tensor } from "../src/gpu/runtime.ts";
import { Rng } from "../src/util/rng.ts";
import { LIMIT_OPTION, limitFlags } from "../src/cli/flags.ts";
import { benchArgs, printTable, timeGpu, writeJson } from "./_util.ts";

const values = benchArgs(import.meta.url, {
  only: { type: "string" },
  out: { type: "string", default: "out/bench_kernels.json" },
  quick: { type: "boolean" },
  variant: { type: "string" },
  shapes: { type: "string", default: "mini,seed-2b" },
  ...LIMIT_OPTION,
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

const ALL_SHAPES: ModelShape[] = [
  // The demo's passkey model (39k parameters) at a batch of 32 x 128 bytes.
  { name: "passkey39k", rows: 4096, C: 32, F: 128, H: 4, Hkv: 2, D: 8, S: 32, V: 258 },
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
const SHAPES = ALL_SHAPES.filter((s) => values.shapes.split(",").includes(s.name));

const rt = await Runtime.create({ limits: limitFlags(values.limit) });
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
          // The reduction length of each layout: K, N (dx = dy W) and M (dW = dy^T x).
          const red = layout === "nt" ? K : layout === "nn" ? N : M;
          if (red > mm.maxK && layout !== "tn") {
            console.error(
              `  skip matmul.${layout} ${variant} ${lname}: reduction ${red} > ${mm.maxK} on this adapter`,
            );
            continue;
          }
          const sec = await timeGpu(rt, calls[layout], {
            reps: 1,
            minSeconds: values.quick ? 0.1 : 0.5,
          });
          results.push({
            kernel: `matmul.${layout}`,
            variant: `${variant}/${mm.path(M, N, K, [], layout)}`,
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

/** Time per call of every other kernel at a model's shapes (rows tokens at once). */
async function others(s: ModelShape): Promise<void> {
  const { rows, C, F, H, Hkv, D, S } = s;
  const T = (label: string, n: number) => rt.tensor(label, n, rand(n));
  const made: Tensor[] = [];
  const t = (label: string, n: number) => {
    const x = T(label, n);
    made.push(x);
    return x;
  };
  const add = async (kernel: string, shape: string, record: (rec: Recorder) => void) => {
    const sec = await timeGpu(rt, record, { reps: 1, minSeconds: values.quick ? 0.1 : 0.4 });
    results.push({ kernel, variant: rt.profile, model: s.name, shape, ms: sec * 1000, gflops: "" });
    console.error(`  ${kernel} ${s.name}: ${(sec * 1000).toFixed(2)} ms`);
  };
  const x = t("x", rows * C), y = t("y", rows * C), w = t("w", C), rstd = t("rstd", rows);
  // Embedding gather and scatter-add over a vocabulary of 258 (bytes) with repeated tokens.
  const emb = await Embedding.create(rt);
  const V = 258;
  const E = t("E", V * C), dE = t("dE", V * C);
  const rng2 = new Rng(5);
  const host = Embedding.buildIndex(new Uint32Array(rows).map(() => rng2.int(V)));
  const index = rt.tensor("index", host.data.length, host.data);
  made.push(index);
  await add(
    "embedding.fwd",
    `${rows}x${C}`,
    (rec) => emb.recordForward(rec, { x, weight: E, index, host, V, C }),
  );
  await add(
    "embedding.bwd",
    `${rows}x${C}`,
    (rec) => emb.recordBackward(rec, { dWeight: dE, dx: x, index, host, V, C }),
  );
  const norm = await RmsNorm.create(rt);
  const scratch = t("scratch", RmsNorm.scratchLength(rows, C));
  const dxC = t("dxC", rows * C), dw = t("dw", C);
  await add(
    "rmsnorm.fwd",
    `${rows}x${C}`,
    (rec) => norm.recordForward(rec, { x, w, y, rstd, rows, C, eps: 1e-6 }),
  );
  await add(
    "rmsnorm.bwd",
    `${rows}x${C}`,
    (rec) => norm.recordBackward(rec, { dy: y, x, w, rstd, dx: dxC, dw, scratch, rows, C }),
  );
  const rope = await Rope.create(rt);
  const table = rt.tensor("rope", Rope.tableLength(S, D), Rope.buildTable(S, D));
  made.push(table);
  const q = t("q", rows * H * D),
    qr = t("qr", rows * H * D),
    k = t("k", rows * Hkv * D),
    kr = t("kr", rows * Hkv * D);
  const v = t("v", rows * Hkv * D);
  await add("rope.qk", `${rows} x (${H}+${Hkv}) heads x ${D}`, (rec) =>
    rope.recordForward(rec, {
      table,
      rows,
      D,
      S,
      a: { src: q, dst: qr, nHeads: H },
      b: { src: k, dst: kr, nHeads: Hkv },
    }));
  const geglu = await GeGLU.create(rt);
  const g = t("g", rows * F), u = t("u", rows * F), h = t("h", rows * F);
  const dg = t("dg", rows * F), du = t("du", rows * F);
  await add(
    "geglu.fwd",
    `${rows}x${F}`,
    (rec) => geglu.recordForward(rec, { g, u, h, n: rows * F }),
  );
  await add(
    "geglu.bwd",
    `${rows}x${F}`,
    (rec) => geglu.recordBackward(rec, { dh: h, g, u, dg, du, n: rows * F }),
  );
  const attn = await Attention.create(rt, D);
  const o = t("o", rows * H * D), lse = t("lse", rows * H), dsum = t("dsum", rows * H);
  const dO = t("dO", rows * H * D);
  const dq = t("dq", rows * H * D), dk = t("dk", rows * Hkv * D), dv = t("dv", rows * Hkv * D);
  const shape = { rows, S, H, Hkv };
  await add(
    "attention.fwd",
    `${rows} rows, S ${S}, H ${H}/${Hkv}, D ${D}`,
    (rec) => attn.recordForward(rec, { q: qr, k: kr, v, o, lse }, shape),
  );
  await add(
    "attention.bwd",
    `${rows} rows, S ${S}, H ${H}/${Hkv}, D ${D}`,
    (rec) => attn.recordBackward(rec, { q: qr, k: kr, v, o, lse, dO, dsum, dq, dk, dv }, shape),
  );
  for (const rule of ["linear", "delta"] as const) {
    const mem = await InfiniMemory.create(rt, D, rule);
    const sh = { B: 1, nS: rows / S, S, H, Hkv, D };
    const z = InfiniMemory.sizes(sh, rule);
    const beta = t("beta", H), dbeta = t("dbeta", H);
    const st = {
      Min: t("Min", z.state),
      zin: t("zin", z.stateZ),
      Mout: t("Mout", z.state),
      zout: t("zout", z.stateZ),
    };
    const A = t("A", z.qLike), Mprev = t("Mprev", z.Mprev), zprev = t("zprev", z.zprev);
    const W = z.W ? t("W", z.W) : undefined;
    await add(
      `infini.${rule}.fwd`,
      `${rows} rows, ${sh.nS} segments`,
      (rec) =>
        mem.recordForward(rec, {
          shape: sh,
          mode: 0,
          q,
          k,
          v,
          adot: o,
          beta,
          ...st,
          A,
          Mprev,
          zprev,
          W,
        }),
    );
    const work = t("work", z.work),
      dadot = t("dadot", z.qLike),
      dMin = t("dMin", z.state),
      dzin = t("dzin", z.stateZ);
    await add(
      `infini.${rule}.bwd`,
      `${rows} rows, ${sh.nS} segments`,
      (rec) =>
        mem.recordBackward(rec, {
          shape: sh,
          mode: 0,
          q,
          k,
          v,
          adot: o,
          beta,
          Mprev,
          zprev,
          W,
          dA: A,
          dadot,
          dq,
          dk,
          dv,
          dbeta,
          dMin,
          dzin,
          work,
        }),
    );
  }
  // LM head + cross-entropy over the vocabulary of the model's tokenizer.
  const xr = s.name === "mini" ? rows : 16, xv = s.name === "mini" ? 258 : s.V;
  const xent = await Xent.create(rt, { maxRows: xr, V: xv, C });
  const E2 = t("E2", xv * C), dE2 = t("dE2", xv * C), dx2 = t("dx2", xr * C), x2 = t("x2", xr * C);
  const targets = rt.tensor("targets", xr, new Uint32Array(xr).map((_, i) => i % xv));
  made.push(targets);
  const loss = t("loss", 1);
  await add(
    "xent.fwd+bwd",
    `${xr} rows, V ${xv}, C ${C}, ${xent.plan.chunks} chunk(s)`,
    (rec) =>
      xent.recordForwardBackward(rec, {
        x: x2,
        E: E2,
        targets,
        scale: 1 / xr,
        loss,
        dx: dx2,
        dE: dE2,
      }),
  );
  // AdamW over one transformer block's worth of parameters (plus norm and clip).
  const n = C * (H * D + 2 * Hkv * D) + H * D * C + 3 * C * F;
  const p = t("p", n), grad = t("grad", n);
  const opt = await Adamw.create(rt, [{ name: "block", p, g: grad, weightDecay: 0.1 }]);
  await add(
    "adamw+norm",
    `${n} params`,
    (rec) =>
      opt.recordStep(rec, { step: 1, lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, maxNorm: 1 }),
  );
  for (const m of made) rt.free(m);
}

if (want("others")) {
  for (const s of SHAPES) await others(s);
}

console.log();
printTable(results.map((r) => ({ ...r }) as Record<string, string | number>));
await writeJson(values.out!, { adapter: rt.describe(), date: new Date().toISOString(), results });
rt.destroy();
