/**
 * f64 reference for causal attention inside a segment with grouped-query heads.
 *
 * Rows are B*T tokens, cut into segments of S consecutive rows. Q (rows, H*D); K, V
 * (rows, Hkv*D); query head h reads KV head g = floor(h / (H / Hkv)). For row t of a segment
 * and head h, over the keys u <= t of the same segment:
 *   s_tu = scale * q_t . k_u,  L_t = log sum_u exp(s_tu),  P_tu = exp(s_tu - L_t)
 *   O_t = sum_u P_tu v_u
 * Backward, with dO given and Dsum_t = dO_t . O_t:
 *   dP_tu = dO_t . v_u,  dS_tu = P_tu (dP_tu - Dsum_t)
 *   dq_t = scale sum_u dS_tu k_u,  dk_u = scale sum_{h in group} sum_t dS_tu q_t,
 *   dv_u = sum_{h in group} sum_t P_tu dO_t
 */

/** Shape of one attention call. */
export interface AttentionShape {
  /** B*T rows, a multiple of S. */
  rows: number;
  /** Segment length. */
  S: number;
  /** Query heads. */
  H: number;
  /** KV heads; divides H. */
  Hkv: number;
  /** Head dim. */
  D: number;
}

/** Forward: O (rows, H*D) and the log-sum-exp L (rows, H). */
export function attentionForward(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  sh: AttentionShape,
  scale: number,
): { o: Float64Array; lse: Float64Array } {
  const { rows, S, H, Hkv, D } = sh;
  const group = H / Hkv;
  const o = new Float64Array(rows * H * D);
  const lse = new Float64Array(rows * H);
  const s = new Float64Array(S);
  for (let t = 0; t < rows; t++) {
    const seg0 = t - (t % S);
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / group);
      const qo = (t * H + h) * D;
      let m = -Infinity;
      for (let u = seg0; u <= t; u++) {
        const ko = (u * Hkv + g) * D;
        let acc = 0;
        for (let d = 0; d < D; d++) acc += q[qo + d] * k[ko + d];
        s[u - seg0] = acc * scale;
        m = Math.max(m, s[u - seg0]);
      }
      let sum = 0;
      for (let u = seg0; u <= t; u++) sum += Math.exp(s[u - seg0] - m);
      const L = m + Math.log(sum);
      lse[t * H + h] = L;
      for (let u = seg0; u <= t; u++) {
        const p = Math.exp(s[u - seg0] - L);
        const vo = (u * Hkv + g) * D;
        for (let d = 0; d < D; d++) o[qo + d] += p * v[vo + d];
      }
    }
  }
  return { o, lse };
}

/** Backward: dq (rows, H*D), dk and dv (rows, Hkv*D), and Dsum (rows, H), P recomputed. */
export function attentionBackward(
  dO: ArrayLike<number>,
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  sh: AttentionShape,
  scale: number,
): { dq: Float64Array; dk: Float64Array; dv: Float64Array; dsum: Float64Array } {
  const { rows, S, H, Hkv, D } = sh;
  const group = H / Hkv;
  const { o, lse } = attentionForward(q, k, v, sh, scale);
  const dq = new Float64Array(rows * H * D);
  const dk = new Float64Array(rows * Hkv * D);
  const dv = new Float64Array(rows * Hkv * D);
  const dsum = new Float64Array(rows * H);
  for (let t = 0; t < rows; t++) {
    const seg0 = t - (t % S);
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / group);
      const qo = (t * H + h) * D;
      let ds = 0;
      for (let d = 0; d < D; d++) ds += dO[qo + d] * o[qo + d];
      dsum[t * H + h] = ds;
      for (let u = seg0; u <= t; u++) {
        const ko = (u * Hkv + g) * D;
        let s = 0, dp = 0;
        for (let d = 0; d < D; d++) {
          s += q[qo + d] * k[ko + d];
          dp += dO[qo + d] * v[ko + d];
        }
        const p = Math.exp(s * scale - lse[t * H + h]);
        const dS = p * (dp - ds);
        for (let d = 0; d < D; d++) {
          dq[qo + d] += scale * dS * k[ko + d];
          dk[ko + d] += scale * dS * q[qo + d];
          dv[ko + d] += p * dO[qo + d];
        }
      }
    }
  }
  return { dq, dk, dv, dsum };
}
