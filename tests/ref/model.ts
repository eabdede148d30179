/**
 * The whole Infini-Gemma model, forward and backward, in f64: the oracle for the GPU model.
 *
 * llm.c style: each layer is a pair of plain functions, `xForward(out, saved..., inputs...)`
 * and `xBackward(dinputs..., dweights..., dout, inputs..., saved...)`, side by side. Backward
 * functions ACCUMULATE (+=) into their gradient arguments. {@link modelForward} is an explicit
 * list of calls and {@link modelBackward} is the same list reversed. No autograd.
 *
 * Shapes (rows = B*T tokens, row-major): x (rows, C); q (rows, H*D) with head h in columns
 * h*D..h*D+D-1; k, v (rows, Hkv*D); query head h uses KV head floor(h / (H/Hkv)). A sequence
 * of T tokens is T/S segments of S consecutive rows; B sequences are consecutive.
 *
 * The model, per layer (Gemma pre-norm block with Infini-attention):
 *   x = E[tok] * sqrt(C)
 *   n = rmsnorm(x) * (1 + w_in)
 *   q, k, v = n Wq^T, n Wk^T, n Wv^T                 (pre-RoPE: the memory path uses these)
 *   qr, kr = rope(q), rope(k)                          (rotate-half, position = row mod S)
 *   A_dot = softmax(qr kr^T / sqrt(D) + causal mask inside the segment) v
 *   A_mem = sigma(q) M_{s-1} / (sigma(q) . z_{s-1})   (0 while z = 0; sigma = ELU + 1)
 *   A = g A_mem + (1 - g) A_dot, g = sigmoid(beta_h)   (Infini layers; else A = A_dot)
 *   memory write after the read: linear M += sigma(k)^T v, z += sum sigma(k);
 *     delta M += sigma(k)^T (v - sigma(k) M_{s-1} / (sigma(k) . z_{s-1}))
 *   x = x + A Wo^T;  m = rmsnorm(x) * (1 + w_post);  x = x + Wd (gelu_tanh(Wg m) * (Wu m))
 * then the final norm, logits = x E^T (tied), NLL of the next-token targets.
 * Memory is per layer, per sequence, per KV head, zero at each sequence start; gradients flow
 * through M and z across all segments.
 */
import type { MemoryUpdate, ModelConfig } from "../../src/model/config.ts";
import { isInfiniLayer } from "../../src/model/config.ts";
import { EMBED, FINAL_NORM, layerNames, type ParamTable } from "../../src/model/params.ts";
import { linearBackward, linearForward } from "./matmul.ts";

/** Target id meaning "no loss at this position". */
export const IGNORE = 0xffffffff;

/**
 * How Infini layers combine memory and local attention:
 * - "learned": A = g A_mem + (1 - g) A_dot with g = sigmoid(beta_h) (training and evaluation);
 * - "off": memory switched off, g forced to 0: A = A_dot (the fixture's `*_memory_off` cases);
 * - "memory_only": g forced to 1: A = A_mem;
 * - "zero_read": the memory read zeroed, learned gate kept: A = (1 - g) A_dot.
 */
export type GateMode = "learned" | "off" | "memory_only" | "zero_read";

export interface RefOptions {
  /** Memory rule; defaults to the config's. */
  memoryUpdate?: MemoryUpdate;
  /** Gate mode; defaults to "learned". */
  gate?: GateMode;
}

/** The model's dimensions for one batch. */
export interface Dims {
  B: number;
  T: number;
  S: number;
  rows: number;
  nSeg: number;
  C: number;
  F: number;
  V: number;
  H: number;
  Hkv: number;
  D: number;
}

export function dimsOf(cfg: Readonly<ModelConfig>, B: number, T: number): Dims {
  if (T % cfg.segmentLength !== 0) {
    throw new Error(`T ${T} is not a multiple of the segment length ${cfg.segmentLength}`);
  }
  return {
    B,
    T,
    S: cfg.segmentLength,
    rows: B * T,
    nSeg: T / cfg.segmentLength,
    C: cfg.hiddenSize,
    F: cfg.intermediateSize,
    V: cfg.vocabSize,
    H: cfg.numHeads,
    Hkv: cfg.numKvHeads,
    D: cfg.headDim,
  };
}

/** Next-token targets (B*T): token t+1 of the same sequence, IGNORE at each sequence's end. */
export function nextTokenTargets(tokens: ArrayLike<number>, B: number, T: number): Uint32Array {
  const out = new Uint32Array(B * T);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) out[b * T + t] = t + 1 < T ? tokens[b * T + t + 1] : IGNORE;
  }
  return out;
}

function addInto(dst: Float64Array, src: ArrayLike<number>): void {
  for (let i = 0; i < src.length; i++) dst[i] += src[i];
}

// ---------------------------------------------------------------------------------------------
// Embedding: out (rows, C) = E[tokens] * scale, E (V, C).

function embeddingForward(
  out: Float64Array,
  tokens: ArrayLike<number>,
  wte: Float64Array,
  rows: number,
  C: number,
  scale: number,
): void {
  for (let r = 0; r < rows; r++) {
    const t = tokens[r];
    for (let c = 0; c < C; c++) out[r * C + c] = wte[t * C + c] * scale;
  }
}

function embeddingBackward(
  dwte: Float64Array,
  dout: Float64Array,
  tokens: ArrayLike<number>,
  rows: number,
  C: number,
  scale: number,
): void {
  for (let r = 0; r < rows; r++) {
    const t = tokens[r];
    for (let c = 0; c < C; c++) dwte[t * C + c] += dout[r * C + c] * scale;
  }
}

// ---------------------------------------------------------------------------------------------
// Gemma RMSNorm: out = x * rstd * (1 + w), rstd (rows) = 1 / sqrt(mean(x^2) + eps).

function rmsnormForward(
  out: Float64Array,
  rstd: Float64Array,
  x: Float64Array,
  w: Float64Array,
  rows: number,
  C: number,
  eps: number,
): void {
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[r * C + c] ** 2;
    const s = 1 / Math.sqrt(ss / C + eps);
    rstd[r] = s;
    for (let c = 0; c < C; c++) out[r * C + c] = x[r * C + c] * s * (1 + w[c]);
  }
}

/** With n = x * rstd: dw += sum_rows dout * n; dx += rstd * (dn - n * mean(dn * n)),
 * dn = dout * (1 + w). */
function rmsnormBackward(
  dx: Float64Array,
  dw: Float64Array,
  dout: Float64Array,
  x: Float64Array,
  w: Float64Array,
  rstd: Float64Array,
  rows: number,
  C: number,
): void {
  for (let r = 0; r < rows; r++) {
    const s = rstd[r];
    let dot = 0;
    for (let c = 0; c < C; c++) {
      const n = x[r * C + c] * s;
      const dn = dout[r * C + c] * (1 + w[c]);
      dw[c] += dout[r * C + c] * n;
      dot += dn * n;
    }
    dot /= C;
    for (let c = 0; c < C; c++) {
      const n = x[r * C + c] * s;
      const dn = dout[r * C + c] * (1 + w[c]);
      dx[r * C + c] += s * (dn - n * dot);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Linear layers y (M, N) = x (M, K) W^T with W (N, K): tests/ref/matmul.ts, accumulated here.

function matmulForward(x: Float64Array, w: Float64Array, M: number, N: number, K: number) {
  return linearForward(x, w, M, N, K);
}

function matmulBackward(
  dx: Float64Array,
  dw: Float64Array,
  dy: Float64Array,
  x: Float64Array,
  w: Float64Array,
  M: number,
  N: number,
  K: number,
): void {
  const g = linearBackward(dy, x, w, M, N, K);
  addInto(dx, g.dx);
  addInto(dw, g.dw);
}

// ---------------------------------------------------------------------------------------------
// RoPE, rotate-half: for i < D/2, angle = p * theta^(-2i/D) with p = row mod S (positions
// restart in every segment): out[i] = x[i] cos - x[i + D/2] sin, out[i + D/2] = x[i + D/2] cos
// + x[i] sin. x and out are (rows, heads*D). The backward rotates by the opposite angle.

function ropeForward(
  out: Float64Array,
  x: Float64Array,
  rows: number,
  heads: number,
  D: number,
  S: number,
  theta: number,
  sign = 1,
): void {
  const half = D / 2;
  for (let r = 0; r < rows; r++) {
    const p = r % S;
    for (let h = 0; h < heads; h++) {
      const base = (r * heads + h) * D;
      for (let i = 0; i < half; i++) {
        const a = p * Math.pow(theta, (-2 * i) / D);
        const c = Math.cos(a), s = sign * Math.sin(a);
        const x1 = x[base + i], x2 = x[base + i + half];
        out[base + i] = x1 * c - x2 * s;
        out[base + i + half] = x2 * c + x1 * s;
      }
    }
  }
}

function ropeBackward(
  dx: Float64Array,
  dout: Float64Array,
  rows: number,
  heads: number,
  D: number,
  S: number,
  theta: number,
): void {
  const back = new Float64Array(dout.length);
  ropeForward(back, dout, rows, heads, D, S, theta, -1);
  addInto(dx, back);
}

// ---------------------------------------------------------------------------------------------
// Local attention, causal inside each segment:
// out[r, h] = sum_{j <= i} p_ij v[r_j, kv(h)], p = softmax_j(q[r, h] . k[r_j, kv(h)] / sqrt(D)),
// where r is the i-th row of its segment and r_j the j-th. probs (rows, H, S), 0 for j > i.

function localAttentionForward(
  out: Float64Array,
  probs: Float64Array,
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  d: Dims,
): void {
  const { rows, S, H, Hkv, D } = d;
  const rep = H / Hkv, scale = 1 / Math.sqrt(D);
  for (let r = 0; r < rows; r++) {
    const i = r % S, r0 = r - i;
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / rep);
      const p = probs.subarray((r * H + h) * S, (r * H + h + 1) * S);
      let max = -Infinity;
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let e = 0; e < D; e++) s += q[(r * H + h) * D + e] * k[((r0 + j) * Hkv + g) * D + e];
        p[j] = s * scale;
        max = Math.max(max, p[j]);
      }
      let sum = 0;
      for (let j = 0; j <= i; j++) sum += p[j] = Math.exp(p[j] - max);
      for (let j = 0; j <= i; j++) p[j] /= sum;
      for (let e = 0; e < D; e++) {
        let acc = 0;
        for (let j = 0; j <= i; j++) acc += p[j] * v[((r0 + j) * Hkv + g) * D + e];
        out[(r * H + h) * D + e] = acc;
      }
    }
  }
}

/** dp_j = dout . v_j; dv_j += p_j dout; ds_j = p_j (dp_j - sum p dp); dq += ds_j k_j / sqrt(D);
 * dk_j += ds_j q / sqrt(D). */
function localAttentionBackward(
  dq: Float64Array,
  dk: Float64Array,
  dv: Float64Array,
  dout: Float64Array,
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  probs: Float64Array,
  d: Dims,
): void {
  const { rows, S, H, Hkv, D } = d;
  const rep = H / Hkv, scale = 1 / Math.sqrt(D);
  const dp = new Float64Array(S);
  for (let r = 0; r < rows; r++) {
    const i = r % S, r0 = r - i;
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / rep);
      const p = probs.subarray((r * H + h) * S, (r * H + h + 1) * S);
      const o = (r * H + h) * D;
      let pdp = 0;
      for (let j = 0; j <= i; j++) {
        const kv = ((r0 + j) * Hkv + g) * D;
        let s = 0;
        for (let e = 0; e < D; e++) {
          s += dout[o + e] * v[kv + e];
          dv[kv + e] += p[j] * dout[o + e];
        }
        dp[j] = s;
        pdp += p[j] * s;
      }
      for (let j = 0; j <= i; j++) {
        const ds = p[j] * (dp[j] - pdp) * scale;
        const kv = ((r0 + j) * Hkv + g) * D;
        for (let e = 0; e < D; e++) {
          dq[o + e] += ds * k[kv + e];
          dk[kv + e] += ds * q[o + e];
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Compressive memory (Infini-attention), on pre-RoPE q, k. sigma(x) = ELU(x) + 1.
// For each sequence b and KV head g: M (D x D, row i = key dim, column j = value dim), z (D),
// both 0 at the sequence start. For segment s, rows of the segment, query heads h of group g:
//   read:  A_mem[r, h] = sigma(q) M / (sigma(q) . z)     (0 when the denominator is 0)
//   write: M += sum_t sigma(k_t) (x) u_t,  z += sum_t sigma(k_t),
//          u_t = v_t (linear) or v_t - sigma(k_t) M / (sigma(k_t) . z) (delta, 0 while z = 0),
//   all of the segment's reads and delta retrievals using the state before the segment.
// states (B, Hkv, nSeg, D*D + D) keeps M_{s-1}, z_{s-1} of every segment for the backward.

const sigma = (x: number) => (x > 0 ? x + 1 : Math.exp(x));
const dsigma = (x: number) => (x > 0 ? 1 : Math.exp(x));

/** out (D) = (s M) / (s . z) with s = sigma(x[xo..xo+D)); returns the denominator (0: out = 0). */
function retrieve(
  out: Float64Array,
  x: Float64Array,
  xo: number,
  M: Float64Array,
  z: Float64Array,
  D: number,
): number {
  let den = 0;
  for (let i = 0; i < D; i++) den += sigma(x[xo + i]) * z[i];
  out.fill(0);
  if (den === 0) return 0;
  for (let i = 0; i < D; i++) {
    const si = sigma(x[xo + i]) / den;
    for (let j = 0; j < D; j++) out[j] += si * M[i * D + j];
  }
  return den;
}

/**
 * Backward of `retrieve` given dA (D) at dao: with A = n / den, n = s M, den = s . z:
 * dn = dA / den, dden = -(dA . A) / den; ds_i = sum_j M_ij dn_j + dden z_i;
 * dM_ij += s_i dn_j; dz_i += dden s_i; dx += ds * sigma'(x).
 */
function retrieveBackward(
  dx: Float64Array,
  dM: Float64Array,
  dz: Float64Array,
  dA: Float64Array,
  dao: number,
  x: Float64Array,
  xo: number,
  M: Float64Array,
  z: Float64Array,
  D: number,
): void {
  const A = new Float64Array(D);
  const den = retrieve(A, x, xo, M, z, D);
  if (den === 0) return;
  let dden = 0;
  for (let j = 0; j < D; j++) dden -= dA[dao + j] * A[j];
  dden /= den;
  for (let i = 0; i < D; i++) {
    const s = sigma(x[xo + i]);
    let ds = dden * z[i];
    for (let j = 0; j < D; j++) {
      const dn = dA[dao + j] / den;
      ds += M[i * D + j] * dn;
      dM[i * D + j] += s * dn;
    }
    dz[i] += dden * s;
    dx[xo + i] += ds * dsigma(x[xo + i]);
  }
}

function memoryForward(
  amem: Float64Array,
  states: Float64Array,
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  d: Dims,
  rule: MemoryUpdate,
): void {
  const { B, T, S, nSeg, H, Hkv, D } = d;
  const rep = H / Hkv, stateSize = D * D + D;
  const a = new Float64Array(D), u = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let g = 0; g < Hkv; g++) {
      const M = new Float64Array(D * D), z = new Float64Array(D);
      for (let s = 0; s < nSeg; s++) {
        const st = ((b * Hkv + g) * nSeg + s) * stateSize;
        states.set(M, st);
        states.set(z, st + D * D);
        const r0 = b * T + s * S;
        // Read (before write).
        for (let r = r0; r < r0 + S; r++) {
          for (let h = g * rep; h < (g + 1) * rep; h++) {
            retrieve(a, q, (r * H + h) * D, M, z, D);
            amem.set(a, (r * H + h) * D);
          }
        }
        // Write: updates computed against the state before the segment, then added.
        const dM = new Float64Array(D * D), dz = new Float64Array(D);
        for (let r = r0; r < r0 + S; r++) {
          const ko = (r * Hkv + g) * D;
          for (let j = 0; j < D; j++) u[j] = v[ko + j];
          if (rule === "delta") {
            retrieve(a, k, ko, M, z, D);
            for (let j = 0; j < D; j++) u[j] -= a[j];
          }
          for (let i = 0; i < D; i++) {
            const si = sigma(k[ko + i]);
            dz[i] += si;
            for (let j = 0; j < D; j++) dM[i * D + j] += si * u[j];
          }
        }
        addInto(M, dM);
        addInto(z, dz);
      }
    }
  }
}

/** Backpropagation through time: segments in reverse, carrying dM, dz (the gradient of the
 * state after segment s) back to the state before it. */
function memoryBackward(
  dq: Float64Array,
  dk: Float64Array,
  dv: Float64Array,
  damem: Float64Array,
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  states: Float64Array,
  d: Dims,
  rule: MemoryUpdate,
): void {
  const { B, T, S, nSeg, H, Hkv, D } = d;
  const rep = H / Hkv, stateSize = D * D + D;
  const a = new Float64Array(D), u = new Float64Array(D), du = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let g = 0; g < Hkv; g++) {
      let dM = new Float64Array(D * D), dz = new Float64Array(D);
      for (let s = nSeg - 1; s >= 0; s--) {
        const st = ((b * Hkv + g) * nSeg + s) * stateSize;
        const M = states.subarray(st, st + D * D), z = states.subarray(st + D * D, st + stateSize);
        const dMprev = Float64Array.from(dM), dzprev = Float64Array.from(dz);
        const r0 = b * T + s * S;
        // Write backward: M_s = M_{s-1} + sum_t sigma(k_t) (x) u_t, z_s = z_{s-1} + sum sigma(k_t).
        for (let r = r0; r < r0 + S; r++) {
          const ko = (r * Hkv + g) * D;
          for (let j = 0; j < D; j++) u[j] = v[ko + j];
          if (rule === "delta") {
            retrieve(a, k, ko, M, z, D);
            for (let j = 0; j < D; j++) u[j] -= a[j];
          }
          du.fill(0);
          for (let i = 0; i < D; i++) {
            const si = sigma(k[ko + i]);
            let dsi = dz[i];
            for (let j = 0; j < D; j++) {
              dsi += dM[i * D + j] * u[j];
              du[j] += si * dM[i * D + j];
            }
            dk[ko + i] += dsi * dsigma(k[ko + i]);
          }
          for (let j = 0; j < D; j++) dv[ko + j] += du[j];
          if (rule === "delta") {
            // u = v - retrieve(k): the retrieval gets -du.
            for (let j = 0; j < D; j++) du[j] = -du[j];
            retrieveBackward(dk, dMprev, dzprev, du, 0, k, ko, M, z, D);
          }
        }
        // Read backward.
        for (let r = r0; r < r0 + S; r++) {
          for (let h = g * rep; h < (g + 1) * rep; h++) {
            const o = (r * H + h) * D;
            retrieveBackward(dq, dMprev, dzprev, damem, o, q, o, M, z, D);
          }
        }
        dM = dMprev;
        dz = dzprev;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Gate: out[r, h] = g_h amem[r, h] + (1 - g_h) adot[r, h]; g_h = sigmoid(beta_h), or fixed by
// the mode. dbeta_h += sum (dout . (amem - adot)) g (1 - g) when g is learned.

function gateValue(beta: number, mode: GateMode): number {
  if (mode === "off") return 0;
  if (mode === "memory_only") return 1;
  return 1 / (1 + Math.exp(-beta));
}

function gateForward(
  out: Float64Array,
  amem: Float64Array,
  adot: Float64Array,
  beta: Float64Array,
  d: Dims,
  mode: GateMode,
): void {
  const { rows, H, D } = d;
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < H; h++) {
      const g = gateValue(beta[h], mode);
      for (let e = 0; e < D; e++) {
        const i = (r * H + h) * D + e;
        out[i] = g * amem[i] + (1 - g) * adot[i];
      }
    }
  }
}

function gateBackward(
  damem: Float64Array,
  dadot: Float64Array,
  dbeta: Float64Array,
  dout: Float64Array,
  amem: Float64Array,
  adot: Float64Array,
  beta: Float64Array,
  d: Dims,
  mode: GateMode,
): void {
  const { rows, H, D } = d;
  const learned = mode === "learned" || mode === "zero_read";
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < H; h++) {
      const g = gateValue(beta[h], mode);
      let dg = 0;
      for (let e = 0; e < D; e++) {
        const i = (r * H + h) * D + e;
        damem[i] += g * dout[i];
        dadot[i] += (1 - g) * dout[i];
        dg += dout[i] * (amem[i] - adot[i]);
      }
      if (learned) dbeta[h] += dg * g * (1 - g);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GeGLU: h = gelu_tanh(a) * u, gelu_tanh(a) = 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3))).

const GELU_K = Math.sqrt(2 / Math.PI);

function gelu(a: number): number {
  return 0.5 * a * (1 + Math.tanh(GELU_K * (a + 0.044715 * a ** 3)));
}

function dgelu(a: number): number {
  const t = Math.tanh(GELU_K * (a + 0.044715 * a ** 3));
  return 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * GELU_K * (1 + 3 * 0.044715 * a * a);
}

function gegluForward(out: Float64Array, a: Float64Array, u: Float64Array): void {
  for (let i = 0; i < out.length; i++) out[i] = gelu(a[i]) * u[i];
}

function gegluBackward(
  da: Float64Array,
  du: Float64Array,
  dout: Float64Array,
  a: Float64Array,
  u: Float64Array,
): void {
  for (let i = 0; i < dout.length; i++) {
    da[i] += dout[i] * u[i] * dgelu(a[i]);
    du[i] += dout[i] * gelu(a[i]);
  }
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy over logits (rows, V): nll[r] = logsumexp(logits[r]) - logits[r, target[r]],
// loss = sum_r weight[r] nll[r] / (number of rows with a target). probs (rows, V) saved.

function crossEntropyForward(
  nll: Float64Array,
  probs: Float64Array,
  logits: Float64Array,
  targets: ArrayLike<number>,
  weights: ArrayLike<number> | undefined,
  rows: number,
  V: number,
): number {
  let count = 0, total = 0;
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, logits[r * V + v]);
    let sum = 0;
    for (let v = 0; v < V; v++) sum += probs[r * V + v] = Math.exp(logits[r * V + v] - max);
    for (let v = 0; v < V; v++) probs[r * V + v] /= sum;
    const t = targets[r];
    if (t === IGNORE) continue;
    if (!(t >= 0 && t < V)) throw new Error(`target ${t} at row ${r} is outside the vocabulary`);
    nll[r] = max + Math.log(sum) - logits[r * V + t];
    total += (weights ? weights[r] : 1) * nll[r];
    count++;
  }
  return count > 0 ? total / count : 0;
}

/** dlogits[r, v] = weight[r] / count * (p[r, v] - [v = target[r]]). */
function crossEntropyBackward(
  dlogits: Float64Array,
  probs: Float64Array,
  targets: ArrayLike<number>,
  weights: ArrayLike<number> | undefined,
  rows: number,
  V: number,
): void {
  let count = 0;
  for (let r = 0; r < rows; r++) if (targets[r] !== IGNORE) count++;
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === IGNORE) continue;
    const w = (weights ? weights[r] : 1) / count;
    for (let v = 0; v < V; v++) dlogits[r * V + v] += w * (probs[r * V + v] - (v === t ? 1 : 0));
  }
}

// ---------------------------------------------------------------------------------------------
// The model.

/** The model: config, parameter table, and the parameters in the table's flat layout (f64). */
export interface RefModel {
  readonly cfg: Readonly<ModelConfig>;
  readonly table: ParamTable;
  readonly params: Float64Array;
}

/** One batch: B sequences of T tokens (T a multiple of S). */
export interface RefBatch {
  /** (B*T) token ids. */
  readonly tokens: ArrayLike<number>;
  /** (B*T) next-token targets, IGNORE where there is no loss. */
  readonly targets: ArrayLike<number>;
  readonly B: number;
  /** (B*T) per-token loss weights (default 1); the loss is sum(w * nll) / count(targets). */
  readonly weights?: ArrayLike<number>;
}

interface LayerActs {
  xIn: Float64Array; // (rows, C) residual stream entering the layer
  ln1: Float64Array; // (rows, C)
  rstd1: Float64Array; // (rows)
  q: Float64Array; // (rows, H*D) pre-RoPE
  k: Float64Array; // (rows, Hkv*D) pre-RoPE
  v: Float64Array; // (rows, Hkv*D)
  qr: Float64Array; // (rows, H*D) RoPE'd
  kr: Float64Array; // (rows, Hkv*D) RoPE'd
  probs: Float64Array; // (rows, H, S)
  adot: Float64Array; // (rows, H*D)
  amem: Float64Array | null; // (rows, H*D), Infini layers whose memory is read
  states: Float64Array | null; // (B, Hkv, nSeg, D*D + D)
  att: Float64Array; // (rows, H*D) gated output
  x1: Float64Array; // (rows, C) residual after attention
  ln2: Float64Array; // (rows, C)
  rstd2: Float64Array; // (rows)
  a: Float64Array; // (rows, F) gate_proj output
  u: Float64Array; // (rows, F) up_proj output
  hm: Float64Array; // (rows, F) gelu(a) * u
}

/** Everything the forward pass computed, for inspection and for {@link modelBackward}. */
export interface RefForward {
  /** sum(weights * nll) / count(targets); the mean NLL without weights. */
  readonly loss: number;
  /** (rows) NLL per position (0 where the target is IGNORE). */
  readonly nll: Float64Array;
  /** (rows, V) logits. */
  readonly logits: Float64Array;
  readonly dims: Dims;
  readonly batch: RefBatch;
  readonly options: Required<RefOptions>;
  readonly layers: LayerActs[];
  readonly xOut: Float64Array; // (rows, C) residual stream after the last layer
  readonly lnf: Float64Array; // (rows, C)
  readonly rstdf: Float64Array; // (rows)
  readonly probs: Float64Array; // (rows, V)
}

function slice(m: RefModel, name: string): Float64Array {
  const s = m.table.get(name);
  return m.params.subarray(s.offset, s.offset + s.size);
}

/** Whether layer l is an Infini layer, and whether it reads its memory under a gate mode. */
function layerKind(cfg: Readonly<ModelConfig>, l: number, mode: GateMode) {
  const infini = isInfiniLayer(cfg, l);
  return { infini, readsMemory: infini && mode !== "off" && mode !== "zero_read" };
}

/** The forward pass over a batch. */
export function modelForward(m: RefModel, batch: RefBatch, opts: RefOptions = {}): RefForward {
  const cfg = m.cfg;
  const options: Required<RefOptions> = {
    memoryUpdate: opts.memoryUpdate ?? cfg.memoryUpdate,
    gate: opts.gate ?? "learned",
  };
  const T = batch.tokens.length / batch.B;
  const d = dimsOf(cfg, batch.B, T);
  const { rows, C, F, V, H, Hkv, D, S } = d;
  const eps = cfg.rmsNormEps, theta = cfg.ropeTheta;
  const wte = slice(m, EMBED);

  let x = new Float64Array(rows * C);
  embeddingForward(x, batch.tokens, wte, rows, C, Math.sqrt(C));
  const layers: LayerActs[] = [];
  for (let l = 0; l < cfg.numLayers; l++) {
    const n = layerNames(l);
    const { infini, readsMemory } = layerKind(cfg, l, options.gate);
    const xIn = x;
    const ln1 = new Float64Array(rows * C), rstd1 = new Float64Array(rows);
    rmsnormForward(ln1, rstd1, xIn, slice(m, n.inputNorm), rows, C, eps);
    const q = matmulForward(ln1, slice(m, n.q), rows, H * D, C);
    const k = matmulForward(ln1, slice(m, n.k), rows, Hkv * D, C);
    const v = matmulForward(ln1, slice(m, n.v), rows, Hkv * D, C);
    const qr = new Float64Array(q.length), kr = new Float64Array(k.length);
    ropeForward(qr, q, rows, H, D, S, theta);
    ropeForward(kr, k, rows, Hkv, D, S, theta);
    const probs = new Float64Array(rows * H * S), adot = new Float64Array(rows * H * D);
    localAttentionForward(adot, probs, qr, kr, v, d);
    let amem: Float64Array | null = null, states: Float64Array | null = null;
    let att = adot;
    if (infini) {
      amem = new Float64Array(rows * H * D);
      if (readsMemory) {
        states = new Float64Array(d.B * Hkv * d.nSeg * (D * D + D));
        memoryForward(amem, states, q, k, v, d, options.memoryUpdate);
      }
      att = new Float64Array(rows * H * D);
      gateForward(att, amem, adot, slice(m, n.gate), d, options.gate);
    }
    const o = matmulForward(att, slice(m, n.o), rows, C, H * D);
    const x1 = new Float64Array(rows * C);
    for (let i = 0; i < x1.length; i++) x1[i] = xIn[i] + o[i];
    const ln2 = new Float64Array(rows * C), rstd2 = new Float64Array(rows);
    rmsnormForward(ln2, rstd2, x1, slice(m, n.postNorm), rows, C, eps);
    const a = matmulForward(ln2, slice(m, n.mlpGate), rows, F, C);
    const u = matmulForward(ln2, slice(m, n.mlpUp), rows, F, C);
    const hm = new Float64Array(rows * F);
    gegluForward(hm, a, u);
    const mlp = matmulForward(hm, slice(m, n.mlpDown), rows, C, F);
    x = new Float64Array(rows * C);
    for (let i = 0; i < x.length; i++) x[i] = x1[i] + mlp[i];
    layers.push({
      xIn,
      ln1,
      rstd1,
      q,
      k,
      v,
      qr,
      kr,
      probs,
      adot,
      amem,
      states,
      att,
      x1,
      ln2,
      rstd2,
      a,
      u,
      hm,
    });
  }
  const lnf = new Float64Array(rows * C), rstdf = new Float64Array(rows);
  rmsnormForward(lnf, rstdf, x, slice(m, FINAL_NORM), rows, C, eps);
  const logits = matmulForward(lnf, wte, rows, V, C);
  const nll = new Float64Array(rows), probs = new Float64Array(rows * V);
  const loss = crossEntropyForward(nll, probs, logits, batch.targets, batch.weights, rows, V);
  return {
    loss,
    nll,
    logits,
    dims: d,
    batch,
    options,
    layers,
    xOut: x,
    lnf,
    rstdf,
    probs,
  };
}

/** The backward pass: the gradient of `fwd.loss` for every parameter, in the table's layout. */
export function modelBackward(m: RefModel, fwd: RefForward): Float64Array {
  const cfg = m.cfg;
  const grads = new Float64Array(m.table.total);
  const grad = (name: string) => {
    const s = m.table.get(name);
    return grads.subarray(s.offset, s.offset + s.size);
  };
  const d = fwd.dims;
  const { rows, C, F, V, H, Hkv, D, S } = d;
  const theta = cfg.ropeTheta;
  const wte = slice(m, EMBED), dwte = grad(EMBED);

  const dlogits = new Float64Array(rows * V);
  crossEntropyBackward(dlogits, fwd.probs, fwd.batch.targets, fwd.batch.weights, rows, V);
  const dlnf = new Float64Array(rows * C);
  matmulBackward(dlnf, dwte, dlogits, fwd.lnf, wte, rows, V, C);
  let dx = new Float64Array(rows * C); // gradient of the residual stream
  rmsnormBackward(dx, grad(FINAL_NORM), dlnf, fwd.xOut, slice(m, FINAL_NORM), fwd.rstdf, rows, C);
  for (let l = cfg.numLayers - 1; l >= 0; l--) {
    const n = layerNames(l);
    const L = fwd.layers[l];
    const { infini, readsMemory } = layerKind(cfg, l, fwd.options.gate);
    // x = x1 + mlp: both get dx.
    const dx1 = Float64Array.from(dx);
    const dhm = new Float64Array(rows * F);
    matmulBackward(dhm, grad(n.mlpDown), dx, L.hm, slice(m, n.mlpDown), rows, C, F);
    const da = new Float64Array(rows * F), du = new Float64Array(rows * F);
    gegluBackward(da, du, dhm, L.a, L.u);
    const dln2 = new Float64Array(rows * C);
    matmulBackward(dln2, grad(n.mlpGate), da, L.ln2, slice(m, n.mlpGate), rows, F, C);
    matmulBackward(dln2, grad(n.mlpUp), du, L.ln2, slice(m, n.mlpUp), rows, F, C);
    rmsnormBackward(dx1, grad(n.postNorm), dln2, L.x1, slice(m, n.postNorm), L.rstd2, rows, C);
    // x1 = xIn + o: both get dx1.
    const dxIn = Float64Array.from(dx1);
    const datt = new Float64Array(rows * H * D);
    matmulBackward(datt, grad(n.o), dx1, L.att, slice(m, n.o), rows, C, H * D);
    let dadot = datt;
    const dq = new Float64Array(rows * H * D), dk = new Float64Array(rows * Hkv * D);
    const dv = new Float64Array(rows * Hkv * D);
    if (infini) {
      dadot = new Float64Array(rows * H * D);
      const damem = new Float64Array(rows * H * D);
      const beta = slice(m, n.gate);
      gateBackward(damem, dadot, grad(n.gate), datt, L.amem!, L.adot, beta, d, fwd.options.gate);
      if (readsMemory) {
        memoryBackward(dq, dk, dv, damem, L.q, L.k, L.v, L.states!, d, fwd.options.memoryUpdate);
      }
    }
    const dqr = new Float64Array(rows * H * D), dkr = new Float64Array(rows * Hkv * D);
    localAttentionBackward(dqr, dkr, dv, dadot, L.qr, L.kr, L.v, L.probs, d);
    ropeBackward(dq, dqr, rows, H, D, S, theta);
    ropeBackward(dk, dkr, rows, Hkv, D, S, theta);
    const dln1 = new Float64Array(rows * C);
    matmulBackward(dln1, grad(n.q), dq, L.ln1, slice(m, n.q), rows, H * D, C);
    matmulBackward(dln1, grad(n.k), dk, L.ln1, slice(m, n.k), rows, Hkv * D, C);
    matmulBackward(dln1, grad(n.v), dv, L.ln1, slice(m, n.v), rows, Hkv * D, C);
    rmsnormBackward(dxIn, grad(n.inputNorm), dln1, L.xIn, slice(m, n.inputNorm), L.rstd1, rows, C);
    dx = dxIn;
  }
  embeddingBackward(dwte, dx, fwd.batch.tokens, rows, C, Math.sqrt(C));
  return grads;
}
