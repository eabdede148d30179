import { type GateMode, InfiniMemory, type UpdateRule } from "../src/ops/infini.ts";
import type { Runtime, Tensor } from "../src/gpu/runtime.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import { assertClose, dot, f64, gradCheck, randf32 } from "./_numeric.ts";
import {
  infiniBackward,
  infiniForward,
  type InfiniInputs,
  type InfiniShape,
  naiveMemoryRead,
  rowsOf,
} from "./ref/infini.ts";
import { AssertionError } from "node:assert/strict";

type F32Inputs = { [K in keyof InfiniInputs]: Float32Array };

/** Random inputs; the incoming state is zero (start of a sequence) or a plausible later state
 * (M random, z positive as a sum of sigma(k) is). */
function inputs(rng: Rng, sh: InfiniShape, zeroState: boolean): F32Inputs {
  const rows = rowsOf(sh), { H, Hkv, D, B } = sh;
  const zin = new Float32Array(B * Hkv * D);
  if (!zeroState) { for (let i = 0; i < zin.length; i++) zin[i] = rng.uniform(0.5, 3); }
  return {
    q: randf32(rng, rows * H * D),
    k: randf32(rng, rows * Hkv * D),
    v: randf32(rng, rows * Hkv * D),
    adot: randf32(rng, rows * H * D),
    beta: randf32(rng, H, 2),
    Min: zeroState ? new Float32Array(B * Hkv * D * D) : randf32(rng, B * Hkv * D * D, 2),
    zin,
  };
}

// ---------------------------------------------------------------- reference vs finite differences

for (const rule of ["linear", "delta"] as UpdateRule[]) {
  for (const [mode, zeroState] of [[0, false], [0, true], [2, false], [1, false]] as const) {
    Deno.test(
      `ref infini ${rule} mode ${mode}${
        zeroState ? " zero state" : ""
      }: backward matches finite differences`,
      () => {
        const rng = new Rng(11 + mode);
        const sh: InfiniShape = { B: 2, nS: 3, S: 2, H: 4, Hkv: 2, D: 3 };
        const x0 = inputs(rng, sh, zeroState);
        const x = Object.fromEntries(
          Object.entries(x0).map(([k, v]) => [k, f64(v)]),
        ) as { [K in keyof InfiniInputs]: Float64Array };
        const rA = f64(randf32(rng, x.q.length));
        const rM = f64(randf32(rng, x.Min.length)), rz = f64(randf32(rng, x.zin.length));
        // L = sum(rA A) + sum(rM M_out) + sum(rz z_out): the state's gradient enters too.
        const loss = () => {
          const f = infiniForward(x, sh, rule, mode);
          return dot(f.A, rA) + dot(f.Mout, rM) + dot(f.zout, rz);
        };
        const g = infiniBackward(x, sh, rule, mode, rA, rM, rz);
        const grads: [keyof InfiniInputs, Float64Array][] = [
          ["q", g.dq],
          ["k", g.dk],
          ["v", g.dv],
          ["adot", g.dadot],
          ["beta", g.dbeta],
          ["Min", g.dMin],
          ["zin", g.dzin],
        ];
        for (const [name, grad] of grads) {
          gradCheck(loss, x[name], grad, { what: `d${name}`, atol: 1e-7, rtol: 1e-5 });
        }
        if (mode === 1) {
          for (const [name, grad] of [["dq", g.dq], ["dbeta", g.dbeta]] as const) {
            if (grad.some((v) => v !== 0)) {
              throw new AssertionError({ message: `${name} must be 0 with the memory off` });
            }
          }
        }
      },
    );
  }
}

Deno.test("ref infini: the read equals naive linear attention over all previous segments", () => {
  const rng = new Rng(5);
  const sh: InfiniShape = { B: 2, nS: 4, S: 3, H: 4, Hkv: 2, D: 5 };
  const x = inputs(rng, sh, true);
  const f = infiniForward(x, sh, "linear", 0);
  assertClose(f.Amem, naiveMemoryRead(x, sh), { atol: 1e-12, rtol: 1e-12, what: "A_mem" });
});

// ---------------------------------------------------------------- GPU

interface GpuOut {
  A: Float32Array;
  Mprev: Float32Array;
  zprev: Float32Array;
  Mout: Float32Array;
  zout: Float32Array;
  W: Float32Array | null;
  dadot: Float32Array;
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
  dbeta: Float32Array;
  dMin: Float32Array;
  dzin: Float32Array;
}

interface GpuRun {
  sh: InfiniShape;
  rule: UpdateRule;
  mode: GateMode;
  x: F32Inputs;
  dA: Float32Array;
  dMout?: Float32Array;
  dzout?: Float32Array;
  /** Initial contents of dq, dk, dv, dbeta; dq/dk/dv accumulate into them when given. */
  init?: { dq?: Float32Array; dk?: Float32Array; dv?: Float32Array; dbeta?: Float32Array };
  segmentsPerDispatch?: number;
  /** Row kernels (kernels/infini_rows.wgsl) forced on or off; default the adapter's choice. */
  rows?: boolean;
}

const mems = new Map<string, Promise<InfiniMemory>>();
function memFor(
  rt: Runtime,
  D: number,
  rule: UpdateRule,
  cap?: number,
  rows?: boolean,
): Promise<InfiniMemory> {
  const key = `${D}/${rule}/${cap}/${rows}`;
  if (!mems.has(key)) {
    mems.set(key, InfiniMemory.create(rt, D, rule, { segmentsPerDispatch: cap, rows }));
  }
  return mems.get(key)!;
}

/** Forward then backward in one submit; reads every output. */
async function runGpu(rt: Runtime, c: GpuRun): Promise<GpuOut> {
  const mem = await memFor(rt, c.sh.D, c.rule, c.segmentsPerDispatch, c.rows);
  if (c.rows !== undefined && mem.rows !== c.rows) throw new Error("rows option not honoured");
  const z = InfiniMemory.sizes(c.sh, c.rule);
  const made: Tensor[] = [];
  const t = (label: string, n: number, init?: Float32Array) => {
    const x = rt.tensor(label, Math.max(n, 1), init);
    made.push(x);
    return x;
  };
  const x = c.x;
  const T = {
    q: t("q", z.qLike, x.q),
    k: t("k", z.kvLike, x.k),
    v: t("v", z.kvLike, x.v),
    adot: t("adot", z.qLike, x.adot),
    beta: t("beta", c.sh.H, x.beta),
    Min: t("Min", z.state, x.Min),
    zin: t("zin", z.stateZ, x.zin),
    A: t("A", z.qLike),
    Mprev: t("Mprev", z.Mprev),
    zprev: t("zprev", z.zprev),
    W: c.rule === "delta" ? t("W", z.W) : undefined,
    Mout: t("Mout", z.state),
    zout: t("zout", z.stateZ),
    dA: t("dA", z.qLike, c.dA),
    dMout: c.dMout ? t("dMout", z.state, c.dMout) : undefined,
    dzout: c.dzout ? t("dzout", z.stateZ, c.dzout) : undefined,
    dadot: t("dadot", z.qLike),
    dq: t("dq", z.qLike, c.init?.dq),
    dk: t("dk", z.kvLike, c.init?.dk),
    dv: t("dv", z.kvLike, c.init?.dv),
    dbeta: t("dbeta", c.sh.H, c.init?.dbeta),
    dMin: t("dMin", z.state),
    dzin: t("dzin", z.stateZ),
    work: t("work", z.work),
  };
  const rec = rt.record("infini-test");
  mem.recordForward(rec, { shape: c.sh, mode: c.mode, ...T });
  mem.recordBackward(rec, {
    shape: c.sh,
    mode: c.mode,
    ...T,
    accumulate: { dq: !!c.init?.dq, dk: !!c.init?.dk, dv: !!c.init?.dv },
  });
  const names = [
    "A",
    "Mprev",
    "zprev",
    "Mout",
    "zout",
    "dadot",
    "dq",
    "dk",
    "dv",
    "dbeta",
    "dMin",
    "dzin",
  ] as const;
  const reads = names.map((n) => rec.read(T[n]));
  const wRead = T.W ? rec.read(T.W) : null;
  rt.submit(rec);
  const vals = await Promise.all(reads);
  const out = Object.fromEntries(names.map((n, i) => [n, vals[i]])) as unknown as GpuOut;
  out.W = wRead ? await wRead : null;
  for (const m of made) rt.free(m);
  return out;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/**
 * GPU (f32) vs the f64 reference. Every output is a chain of at most four f32 reductions (the
 * read sums D <= 64 products; a state-gradient slot sums S * H/Hkv <= 134 rows; the scans add
 * nS <= 4 slots; the delta rule adds one more read per row), each of at most N ~ 300 terms.
 * With u = 2^-24 and rounding errors adding like a random walk, each reduction errs by about
 * sqrt(N) u = 1e-6 of its absolute sum; four chained: 4e-6. Signed sums cancel, so small
 * entries carry the error of the large ones: the absolute part scales with the array's largest
 * magnitude. Measured worst case on these shapes: 7e-7 of that magnitude.
 */
const REL = 1e-5;
function close(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  assertClose(got, want, { atol: REL * maxAbs(want), rtol: REL, what });
}

function plus(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: a.length }, (_, i) => a[i] + b[i]);
}

/** Every output of a GPU run against the reference (dq, dk, dv, dbeta accumulated onto init). */
function checkAgainstRef(tag: string, c: GpuRun, got: GpuOut): void {
  const f = infiniForward(c.x, c.sh, c.rule, c.mode);
  const g = infiniBackward(c.x, c.sh, c.rule, c.mode, c.dA, c.dMout, c.dzout);
  const init = c.init ?? {};
  close(`${tag} A`, got.A, f.A);
  close(`${tag} Mprev`, got.Mprev, f.Mprev);
  close(`${tag} zprev`, got.zprev, f.zprev);
  close(`${tag} Mout`, got.Mout, f.Mout);
  close(`${tag} zout`, got.zout, f.zout);
  if (c.rule === "delta") close(`${tag} W`, got.W!, f.W);
  close(`${tag} dadot`, got.dadot, g.dadot);
  close(`${tag} dq`, got.dq, init.dq ? plus(g.dq, init.dq) : g.dq);
  close(`${tag} dk`, got.dk, init.dk ? plus(g.dk, init.dk) : g.dk);
  close(`${tag} dv`, got.dv, init.dv ? plus(g.dv, init.dv) : g.dv);
  close(`${tag} dbeta`, got.dbeta, init.dbeta ? plus(g.dbeta, init.dbeta) : g.dbeta);
  close(`${tag} dMin`, got.dMin, g.dMin);
  close(`${tag} dzin`, got.dzin, g.dzin);
}

/** A full run with random inputs, gradients and accumulation targets. */
function randomRun(
  rng: Rng,
  sh: InfiniShape,
  rule: UpdateRule,
  mode: GateMode,
  zeroState: boolean,
): GpuRun {
  const x = inputs(rng, sh, zeroState);
  return {
    sh,
    rule,
    mode,
    x,
    dA: randf32(rng, x.q.length),
    dMout: randf32(rng, x.Min.length),
    dzout: randf32(rng, x.zin.length),
    init: {
      dq: randf32(rng, x.q.length),
      dk: randf32(rng, x.k.length),
      dv: randf32(rng, x.v.length),
      dbeta: randf32(rng, sh.H),
    },
  };
}

function assertExact(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) {
      throw new AssertionError({ message: `${what}[${i}]: got ${got[i]}, expected ${want[i]}` });
    }
  }
}

const SHAPES: InfiniShape[] = [
  { B: 2, nS: 4, S: 5, H: 4, Hkv: 2, D: 6 },
  { B: 2, nS: 4, S: 7, H: 8, Hkv: 1, D: 8 },
  { B: 1, nS: 2, S: 67, H: 2, Hkv: 1, D: 64 }, // 9 row blocks per segment, 8 per workgroup
  // Row kernels' workgroups span segments and end part-way: D 8 puts 64 blocks in one
  // (81 blocks here); D 24 makes 3 x 21 threads (20 blocks); D 72 two column groups and 9 x 7.
  { B: 3, nS: 9, S: 20, H: 4, Hkv: 2, D: 8 },
  { B: 2, nS: 5, S: 13, H: 2, Hkv: 2, D: 24 },
  { B: 1, nS: 3, S: 9, H: 2, Hkv: 1, D: 72 },
];

// Shapes the row kernels take (D % 4 == 0, D <= 16), run with both kernel families: rows that
// end part-way through a workgroup of 64 (90, 91, 195 rows), segments that straddle
// workgroups, D 4, 12 and 16, query groups of 1, 2 and 4 heads.
const ROW_SHAPES: InfiniShape[] = [
  { B: 2, nS: 3, S: 15, H: 2, Hkv: 2, D: 4 },
  { B: 1, nS: 7, S: 13, H: 4, Hkv: 2, D: 12 },
  { B: 3, nS: 5, S: 13, H: 4, Hkv: 1, D: 16 },
  { B: 2, nS: 4, S: 32, H: 4, Hkv: 2, D: 8 }, // the passkey model's layer: 256 rows
];

for (const rule of ["linear", "delta"] as UpdateRule[]) {
  gpuTest(`infini ${rule}: GPU matches the f64 reference on odd shapes`, async (rt) => {
    const rng = new Rng(21);
    for (const sh of SHAPES) {
      for (const zeroState of [true, false]) {
        const c = randomRun(rng, sh, rule, 0, zeroState);
        checkAgainstRef(
          `${rule} ${JSON.stringify(sh)} zero state ${zeroState}`,
          c,
          await runGpu(rt, c),
        );
      }
    }
  });

  gpuTest(
    `infini ${rule}: row kernels and blocked kernels both match the reference`,
    async (rt) => {
      const rng = new Rng(23);
      for (const sh of ROW_SHAPES) {
        for (const rows of [true, false]) {
          for (const [mode, zeroState] of [[0, false], [0, true], [2, false]] as const) {
            const c = { ...randomRun(rng, sh, rule, mode, zeroState), rows };
            checkAgainstRef(
              `${rule} rows ${rows} mode ${mode} ${JSON.stringify(sh)} zero ${zeroState}`,
              c,
              await runGpu(rt, c),
            );
          }
        }
      }
      // The adapter's default: row kernels on lavapipe for these head dims, blocked elsewhere.
      const mem = await InfiniMemory.create(rt, 8, rule);
      if (mem.rows !== (rt.profile === "cpu")) {
        throw new AssertionError({ message: `profile ${rt.profile}: rows ${mem.rows}` });
      }
      const wide = await InfiniMemory.create(rt, 24, rule);
      if (wide.rows) throw new AssertionError({ message: "D 24 must use the blocked kernels" });
    },
  );

  gpuTest(`infini ${rule}: gate modes 1 (memory off) and 2 (read zeroed)`, async (rt) => {
    const rng = new Rng(31);
    for (
      const [sh, mode, rows] of [
        [SHAPES[0], 1, undefined],
        [SHAPES[0], 2, undefined],
        [ROW_SHAPES[1], 1, true],
        [ROW_SHAPES[1], 2, true],
      ] as const
    ) {
      const c = { ...randomRun(rng, sh, rule, mode, false), rows };
      const got = await runGpu(rt, c);
      checkAgainstRef(`${rule} mode ${mode}`, c, got);
      // Nothing is read from memory: A and dA_dot are the local path alone, dq gets nothing.
      const HD = sh.H * sh.D;
      const ga = (h: number) => mode === 1 ? 1 : 1 - 1 / (1 + Math.exp(-c.x.beta[h]));
      const wantA = c.x.adot.map((a, i) => ga(Math.floor((i % HD) / sh.D)) * a);
      const wantDadot = c.dA.map((d, i) => ga(Math.floor((i % HD) / sh.D)) * d);
      if (mode === 1) {
        assertExact("mode 1 A = A_dot", got.A, c.x.adot);
        assertExact("mode 1 dA_dot = dA", got.dadot, c.dA);
        assertExact("mode 1 dbeta unchanged", got.dbeta, c.init!.dbeta!);
      } else {
        // (1 - g) differs from the f64 value by a few ulp of g.
        assertClose(got.A, wantA, { atol: 0, rtol: 1e-6, what: "mode 2 A = (1 - g) A_dot" });
        assertClose(got.dadot, wantDadot, { atol: 0, rtol: 1e-6, what: "mode 2 dA_dot" });
      }
      assertExact(`mode ${mode} dq unchanged`, got.dq, c.init!.dq!);
      // The state is still written and carried: M_out matches the memory-on forward.
      const on = infiniForward(c.x, sh, rule, 0);
      close(`mode ${mode} M_out`, got.Mout, on.Mout);
    }
  });

  gpuTest(`infini ${rule}: the first segment reads nothing from a zero state`, async (rt) => {
    const rng = new Rng(41);
    const sh: InfiniShape = { B: 2, nS: 3, S: 7, H: 4, Hkv: 2, D: 8 };
    const c = randomRun(rng, sh, rule, 0, true);
    const got = await runGpu(rt, c);
    const HD = sh.H * sh.D;
    for (let b = 0; b < sh.B; b++) {
      for (let t = 0; t < sh.S; t++) {
        const row = b * sh.nS * sh.S + t;
        for (let e = 0; e < HD; e++) {
          const h = Math.floor(e / sh.D), g = 1 / (1 + Math.exp(-c.x.beta[h]));
          const want = (1 - g) * c.x.adot[row * HD + e];
          const a = got.A[row * HD + e];
          if (Math.abs(a - want) > 1e-6 * Math.abs(want)) {
            throw new AssertionError({
              message: `segment 0 A_mem != 0: A ${a}, (1-g) A_dot ${want}`,
            });
          }
          if (got.dq[row * HD + e] !== c.init!.dq![row * HD + e]) {
            throw new AssertionError({ message: "segment 0 dq_mem != 0" });
          }
        }
        if (rule === "delta") {
          // The delta rule's subtracted read is 0 too: the first write is V itself.
          const o = row * sh.Hkv * sh.D;
          assertExact(
            "segment 0 W = V",
            got.W!.subarray(o, o + sh.Hkv * sh.D),
            c.x.v.subarray(o, o + sh.Hkv * sh.D),
          );
        }
      }
    }
  });

  gpuTest(
    `infini ${rule}: two segments in one call equal two calls carrying (M, z)`,
    async (rt) => {
      const rng = new Rng(51);
      const sh: InfiniShape = { B: 2, nS: 2, S: 5, H: 4, Hkv: 2, D: 6 };
      const one = randomRun(rng, sh, rule, 0, false);
      one.init = undefined;
      const full = await runGpu(rt, one);
      const sh1: InfiniShape = { ...sh, nS: 1 };
      const HD = sh.H * sh.D, KD = sh.Hkv * sh.D;
      // Rows of segment s of every sequence, as a one-segment call sees them.
      const seg = (a: Float32Array, width: number, s: number) => {
        const out = new Float32Array(sh.B * sh.S * width);
        for (let b = 0; b < sh.B; b++) {
          const from = ((b * sh.nS + s) * sh.S) * width;
          out.set(a.subarray(from, from + sh.S * width), b * sh.S * width);
        }
        return out;
      };
      const call = (
        s: number,
        Min: Float32Array,
        zin: Float32Array,
        dMout: Float32Array,
        dzout: Float32Array,
      ) =>
        runGpu(rt, {
          sh: sh1,
          rule,
          mode: 0,
          x: {
            q: seg(one.x.q, HD, s),
            k: seg(one.x.k, KD, s),
            v: seg(one.x.v, KD, s),
            adot: seg(one.x.adot, HD, s),
            beta: one.x.beta,
            Min,
            zin,
          },
          dA: seg(one.dA, HD, s),
          dMout,
          dzout,
        });
      // Forward of call 0 (its backward is redone below once call 1 has sent dM back).
      const first = await call(0, one.x.Min, one.x.zin, one.dMout!, one.dzout!);
      const second = await call(1, first.Mout, first.zout, one.dMout!, one.dzout!);
      const firstB = await call(0, one.x.Min, one.x.zin, second.dMin, second.dzin);
      const parts: [string, keyof GpuOut, number][] = [
        ["A", "A", HD],
        ["dA_dot", "dadot", HD],
        ["dq", "dq", HD],
        ["dk", "dk", KD],
        ["dv", "dv", KD],
      ];
      for (const [what, key, width] of parts) {
        const a = full[key] as Float32Array;
        close(`${what} segment 0`, seg(a, width, 0), firstB[key] as Float32Array);
        close(`${what} segment 1`, seg(a, width, 1), second[key] as Float32Array);
      }
      close("M_out", full.Mout, second.Mout);
      close("z_out", full.zout, second.zout);
      close("dM_in", full.dMin, firstB.dMin);
      close("dz_in", full.dzin, firstB.dzin);
      close("dbeta", full.dbeta, plus(firstB.dbeta, second.dbeta));
    },
  );

  gpuTest(
    `infini ${rule}: changing k or v of segment s changes no output at segments <= s`,
    async (rt) => {
      const rng = new Rng(61);
      const sh: InfiniShape = { B: 2, nS: 4, S: 5, H: 4, Hkv: 2, D: 6 };
      const base = randomRun(rng, sh, rule, 0, false);
      const ref = await runGpu(rt, base);
      const HD = sh.H * sh.D, KD = sh.Hkv * sh.D;
      for (let s = 0; s < sh.nS; s++) {
        for (const which of ["k", "v"] as const) {
          const x = { ...base.x, [which]: Float32Array.from(base.x[which]) };
          for (let b = 0; b < sh.B; b++) {
            const row0 = (b * sh.nS + s) * sh.S;
            for (let e = row0 * KD; e < (row0 + sh.S) * KD; e++) x[which][e] += 0.5;
          }
          const got = await runGpu(rt, { ...base, x });
          let later = 0;
          for (let b = 0; b < sh.B; b++) {
            for (let s2 = 0; s2 < sh.nS; s2++) {
              const from = (b * sh.nS + s2) * sh.S * HD, to = from + sh.S * HD;
              if (s2 <= s) {
                assertExact(
                  `A at segment ${s2} after changing ${which} of segment ${s}`,
                  got.A.subarray(from, to),
                  ref.A.subarray(from, to),
                );
              } else {
                for (let e = from; e < to; e++) {
                  later = Math.max(later, Math.abs(got.A[e] - ref.A[e]));
                }
              }
            }
          }
          if (s < sh.nS - 1 && !(later > 1e-4)) {
            throw new AssertionError({
              message: `changing ${which} of segment ${s} did not reach later segments`,
            });
          }
        }
      }
    },
  );

  gpuTest(
    `infini ${rule}: reproducible bit for bit, and independent of segments per dispatch`,
    async (rt) => {
      const rng = new Rng(81);
      const sh: InfiniShape = { B: 2, nS: 4, S: 7, H: 4, Hkv: 2, D: 8 };
      const c = randomRun(rng, sh, rule, 0, false);
      const a = await runGpu(rt, c);
      const b = await runGpu(rt, c);
      const chunked = await runGpu(rt, { ...c, segmentsPerDispatch: 1 });
      for (const key of Object.keys(a) as (keyof GpuOut)[]) {
        if (a[key] === null) continue;
        assertExact(`${key} run twice`, a[key]!, b[key]!);
        assertExact(`${key} one segment per dispatch`, a[key]!, chunked[key]!);
      }
    },
  );
}

gpuTest(
  "infini linear: the read equals naive linear attention over previous segments",
  async (rt) => {
    const rng = new Rng(71);
    const sh: InfiniShape = { B: 2, nS: 4, S: 7, H: 8, Hkv: 1, D: 8 };
    const c = randomRun(rng, sh, "linear", 0, true);
    c.x.adot.fill(0); // A = g A_mem
    const got = await runGpu(rt, c);
    const naive = naiveMemoryRead(c.x, sh);
    const HD = sh.H * sh.D;
    const want = naive.map((a, i) => a / (1 + Math.exp(-c.x.beta[Math.floor((i % HD) / sh.D)])));
    close("g A_mem vs naive", got.A, want);
  },
);
