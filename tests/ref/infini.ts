/**
 * f64 reference for the Infini-attention compressive memory (kernels/infini.wgsl), forward and
 * backward side by side, written segment by segment as the paper states it:
 *   sigma(x) = ELU(x) + 1
 *   A_mem[t, h] = sigma(q_t) M_{s-1} / (sigma(q_t) . z_{s-1})    (0 where the denominator is 0)
 *   A = gm A_mem + ga A_dot, (gm, ga) = (g, 1 - g) learned, (0, 1) memory off,
 *       (0, 1 - g) read zeroed, g = sigmoid(beta_h)
 *   linear: M_s = M_{s-1} + sigma(K_s)^T V_s
 *   delta:  M_s = M_{s-1} + sigma(K_s)^T W_s, W_t = V_t - sigma(K_t) M_{s-1} / (sigma(K_t) z_{s-1})
 *   z_s = z_{s-1} + sum_t sigma(K_t)
 * Shapes: q, A_dot, A (rows, H*D); k, v, W (rows, Hkv*D); rows = B*nS*S with row (b, s, t) =
 * (b*nS + s)*S + t; M_in, M_out (B, Hkv, D, D); z_in, z_out (B, Hkv, D); Mprev (B, Hkv, nS, D, D)
 * and zprev (B, Hkv, nS, D) hold the state before each segment. Query head h reads KV head
 * floor(h / (H / Hkv)).
 */

export type UpdateRule = "linear" | "delta";
/** 0 learned gate; 1 memory off (A = A_dot); 2 memory read zeroed, learned gate kept. */
export type GateMode = 0 | 1 | 2;

export interface InfiniShape {
  B: number;
  nS: number;
  S: number;
  H: number;
  Hkv: number;
  D: number;
}

export interface InfiniInputs {
  q: ArrayLike<number>; // (rows, H*D), before RoPE
  k: ArrayLike<number>; // (rows, Hkv*D), before RoPE
  v: ArrayLike<number>; // (rows, Hkv*D)
  adot: ArrayLike<number>; // (rows, H*D), local attention output
  beta: ArrayLike<number>; // (H)
  Min: ArrayLike<number>; // (B, Hkv, D, D)
  zin: ArrayLike<number>; // (B, Hkv, D)
}

export interface InfiniForwardRef {
  A: Float64Array; // (rows, H*D)
  Amem: Float64Array; // (rows, H*D), the retrieval alone
  Mprev: Float64Array; // (B, Hkv, nS, D, D)
  zprev: Float64Array; // (B, Hkv, nS, D)
  Mout: Float64Array; // (B, Hkv, D, D)
  zout: Float64Array; // (B, Hkv, D)
  W: Float64Array; // (rows, Hkv*D): what was written, V (linear) or V - retrieval (delta)
}

export interface InfiniGrads {
  dadot: Float64Array;
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  dbeta: Float64Array;
  dMin: Float64Array;
  dzin: Float64Array;
}

export const sigma = (x: number): number => x > 0 ? x + 1 : Math.exp(x);
export const dsigma = (x: number): number => x > 0 ? 1 : Math.exp(x);

/** (gm, ga, g): weights of A_mem and A_dot, and sigmoid(beta). */
export function gateWeights(beta: number, mode: GateMode): [number, number, number] {
  const g = 1 / (1 + Math.exp(-beta));
  if (mode === 1) return [0, 1, g];
  if (mode === 2) return [0, 1 - g, g];
  return [g, 1 - g, g];
}

export function rowsOf(sh: InfiniShape): number {
  return sh.B * sh.nS * sh.S;
}

/** Forward of one layer over all segments of all sequences. */
export function infiniForward(
  x: InfiniInputs,
  sh: InfiniShape,
  rule: UpdateRule,
  mode: GateMode,
): InfiniForwardRef {
  const { B, nS, S, H, Hkv, D } = sh;
  const rows = rowsOf(sh), HD = H * D, KD = Hkv * D, grp = H / Hkv;
  const out: InfiniForwardRef = {
    A: new Float64Array(rows * HD),
    Amem: new Float64Array(rows * HD),
    Mprev: new Float64Array(B * Hkv * nS * D * D),
    zprev: new Float64Array(B * Hkv * nS * D),
    Mout: new Float64Array(B * Hkv * D * D),
    zout: new Float64Array(B * Hkv * D),
    W: new Float64Array(rows * KD),
  };
  for (let b = 0; b < B; b++) {
    for (let g = 0; g < Hkv; g++) {
      const bg = b * Hkv + g;
      const M = Float64Array.from({ length: D * D }, (_, e) => x.Min[bg * D * D + e]);
      const z = Float64Array.from({ length: D }, (_, i) => x.zin[bg * D + i]);
      for (let s = 0; s < nS; s++) {
        const bgs = bg * nS + s, row0 = (b * nS + s) * S;
        out.Mprev.set(M, bgs * D * D);
        out.zprev.set(z, bgs * D);
        // Read before write.
        for (let hh = 0; hh < grp; hh++) {
          const h = g * grp + hh;
          const [gm, ga] = gateWeights(x.beta[h], mode);
          for (let t = 0; t < S; t++) {
            const o = (row0 + t) * HD + h * D;
            const u = Array.from({ length: D }, (_, i) => sigma(x.q[o + i]));
            const am = retrieve(u, M, z, D);
            for (let j = 0; j < D; j++) {
              out.Amem[o + j] = am[j];
              out.A[o + j] = gm * am[j] + ga * x.adot[o + j];
            }
          }
        }
        // Write: every row's W uses M_{s-1}; the update is applied after all of them.
        const us: number[][] = [];
        for (let t = 0; t < S; t++) {
          const o = (row0 + t) * KD + g * D;
          const u = Array.from({ length: D }, (_, i) => sigma(x.k[o + i]));
          us.push(u);
          const r = rule === "delta" ? retrieve(u, M, z, D) : new Float64Array(D);
          for (let j = 0; j < D; j++) out.W[o + j] = x.v[o + j] - r[j];
        }
        for (let t = 0; t < S; t++) {
          const o = (row0 + t) * KD + g * D;
          for (let i = 0; i < D; i++) {
            z[i] += us[t][i];
            for (let j = 0; j < D; j++) M[i * D + j] += us[t][i] * out.W[o + j];
          }
        }
      }
      out.Mout.set(M, bg * D * D);
      out.zout.set(z, bg * D);
    }
  }
  return out;
}

/** u M / (u . z), or 0 where u . z == 0. */
function retrieve(u: ArrayLike<number>, M: ArrayLike<number>, z: ArrayLike<number>, D: number) {
  let den = 0;
  for (let i = 0; i < D; i++) den += u[i] * z[i];
  const a = new Float64Array(D);
  if (den === 0) return a;
  for (let i = 0; i < D; i++) {
    for (let j = 0; j < D; j++) a[j] += u[i] * M[i * D + j];
  }
  for (let j = 0; j < D; j++) a[j] /= den;
  return a;
}

/**
 * Backward of a = u M / (u . z) for an upstream da: returns du and adds into dM, dz.
 * With den = u . z, e = da . a:  du = (M da - e z) / den,  dM += u^T da / den,  dz -= u e / den.
 */
function retrieveBackward(
  u: ArrayLike<number>,
  M: ArrayLike<number>,
  z: ArrayLike<number>,
  da: ArrayLike<number>,
  dM: Float64Array,
  dz: Float64Array,
  D: number,
): Float64Array {
  const du = new Float64Array(D);
  let den = 0;
  for (let i = 0; i < D; i++) den += u[i] * z[i];
  if (den === 0) return du;
  const a = retrieve(u, M, z, D);
  let e = 0;
  for (let j = 0; j < D; j++) e += da[j] * a[j];
  for (let i = 0; i < D; i++) {
    let w = 0;
    for (let j = 0; j < D; j++) {
      w += M[i * D + j] * da[j];
      dM[i * D + j] += u[i] * da[j] / den;
    }
    du[i] = (w - e * z[i]) / den;
    dz[i] -= u[i] * e / den;
  }
  return du;
}

/**
 * Gradients of L = sum(dA * A) + sum(dMout * M_out) + sum(dzout * z_out) with respect to every
 * input. The gradient flows back through M and z across all segments (no detaching).
 */
export function infiniBackward(
  x: InfiniInputs,
  sh: InfiniShape,
  rule: UpdateRule,
  mode: GateMode,
  dA: ArrayLike<number>,
  dMout?: ArrayLike<number>,
  dzout?: ArrayLike<number>,
): InfiniGrads {
  const { B, nS, S, H, Hkv, D } = sh;
  const rows = rowsOf(sh), HD = H * D, KD = Hkv * D, grp = H / Hkv;
  const f = infiniForward(x, sh, rule, mode);
  const gr: InfiniGrads = {
    dadot: new Float64Array(rows * HD),
    dq: new Float64Array(rows * HD),
    dk: new Float64Array(rows * KD),
    dv: new Float64Array(rows * KD),
    dbeta: new Float64Array(H),
    dMin: new Float64Array(B * Hkv * D * D),
    dzin: new Float64Array(B * Hkv * D),
  };
  for (let b = 0; b < B; b++) {
    for (let g = 0; g < Hkv; g++) {
      const bg = b * Hkv + g;
      // Gradient with respect to the state after the segment being visited.
      let GM = Float64Array.from({ length: D * D }, (_, e) => dMout ? dMout[bg * D * D + e] : 0);
      let gz = Float64Array.from({ length: D }, (_, i) => dzout ? dzout[bg * D + i] : 0);
      for (let s = nS - 1; s >= 0; s--) {
        const bgs = bg * nS + s, row0 = (b * nS + s) * S;
        const Ms = f.Mprev.subarray(bgs * D * D, (bgs + 1) * D * D);
        const zs = f.zprev.subarray(bgs * D, (bgs + 1) * D);
        const dMs = Float64Array.from(GM), dzs = Float64Array.from(gz);
        // Write: M_s = M_{s-1} + sigma(K)^T W, z_s = z_{s-1} + sum sigma(K).
        for (let t = 0; t < S; t++) {
          const o = (row0 + t) * KD + g * D;
          const u = Array.from({ length: D }, (_, i) => sigma(x.k[o + i]));
          const dW = new Float64Array(D), du = new Float64Array(D);
          for (let i = 0; i < D; i++) {
            du[i] = gz[i];
            for (let j = 0; j < D; j++) {
              dW[j] += u[i] * GM[i * D + j];
              du[i] += GM[i * D + j] * f.W[o + j];
            }
          }
          for (let j = 0; j < D; j++) gr.dv[o + j] += dW[j];
          if (rule === "delta") {
            // W = V - R with R = u M_{s-1} / (u . z_{s-1}): dR = -dW.
            const dR = dW.map((d) => -d);
            const duR = retrieveBackward(u, Ms, zs, dR, dMs, dzs, D);
            for (let i = 0; i < D; i++) du[i] += duR[i];
          }
          for (let i = 0; i < D; i++) gr.dk[o + i] += du[i] * dsigma(x.k[o + i]);
        }
        // Read: A = gm A_mem + ga A_dot.
        for (let hh = 0; hh < grp; hh++) {
          const h = g * grp + hh;
          const [gm, ga, gs] = gateWeights(x.beta[h], mode);
          for (let t = 0; t < S; t++) {
            const o = (row0 + t) * HD + h * D;
            const u = Array.from({ length: D }, (_, i) => sigma(x.q[o + i]));
            const da = new Float64Array(D);
            let dg = 0;
            for (let j = 0; j < D; j++) {
              gr.dadot[o + j] = ga * dA[o + j];
              da[j] = gm * dA[o + j];
              // dA/dg: A_mem - A_dot (learned), -A_dot (read zeroed), 0 (memory off).
              if (mode === 0) dg += dA[o + j] * (f.Amem[o + j] - x.adot[o + j]);
              if (mode === 2) dg -= dA[o + j] * x.adot[o + j];
            }
            gr.dbeta[h] += dg * gs * (1 - gs);
            const du = retrieveBackward(u, Ms, zs, da, dMs, dzs, D);
            for (let i = 0; i < D; i++) gr.dq[o + i] += du[i] * dsigma(x.q[o + i]);
          }
        }
        GM = dMs;
        gz = dzs;
      }
      gr.dMin.set(GM, bg * D * D);
      gr.dzin.set(gz, bg * D);
    }
  }
  return gr;
}

/**
 * The memory read as plain linear attention, with no state: for a query in segment s of a
 * sequence that starts from zero memory, sum over every key/value of segments 0..s-1 of
 * (sigma(q) . sigma(k)) v, divided by the sum of the weights (0 on segment 0). (rows, H*D).
 */
export function naiveMemoryRead(x: InfiniInputs, sh: InfiniShape): Float64Array {
  const { B, nS, S, H, Hkv, D } = sh;
  const HD = H * D, KD = Hkv * D, grp = H / Hkv;
  const out = new Float64Array(rowsOf(sh) * HD);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < nS; s++) {
      for (let t = 0; t < S; t++) {
        const row = (b * nS + s) * S + t;
        for (let h = 0; h < H; h++) {
          const g = Math.floor(h / grp), o = row * HD + h * D;
          const acc = new Float64Array(D);
          let wsum = 0;
          for (let p = b * nS * S; p < (b * nS + s) * S; p++) {
            let w = 0;
            for (let i = 0; i < D; i++) w += sigma(x.q[o + i]) * sigma(x.k[p * KD + g * D + i]);
            wsum += w;
            for (let j = 0; j < D; j++) acc[j] += w * x.v[p * KD + g * D + j];
          }
          for (let j = 0; j < D; j++) out[o + j] = wsum === 0 ? 0 : acc[j] / wsum;
        }
      }
    }
  }
  return out;
}
