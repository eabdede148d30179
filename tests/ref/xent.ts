/**
 * f64 reference for the fused LM head + cross-entropy over a tied embedding E (V, C):
 *   logits (rows, V) = x (rows, C) E^T
 *   nll_r = logsumexp_v(logits_rv) - logits_{r, t_r}     (0 where t_r is IGNORE)
 *   loss  = scale * sum_r w_r nll_r                      (w_r = 1 when unweighted)
 * and its backward, dlogits = scale * w_r * (softmax_r - onehot(t_r)) (0 on ignored rows),
 * dx = dlogits E, dE = dlogits^T x. Not chunked: this is the plain formula the chunked GPU
 * version must reproduce.
 */

/** Target value of a row that takes no part in the loss. */
export const IGNORE = 0xffffffff;

export interface XentRefArgs {
  x: ArrayLike<number>; // (rows, C)
  e: ArrayLike<number>; // (V, C)
  targets: ArrayLike<number>; // (rows)
  weights?: ArrayLike<number>; // (rows), optional
  scale: number;
  rows: number;
  V: number;
  C: number;
}

/** logits (rows, V), lse (rows), nll (rows) and loss. */
export function xentForward(a: XentRefArgs): {
  logits: Float64Array;
  lse: Float64Array;
  nll: Float64Array;
  loss: number;
} {
  const { x, e, targets, rows, V, C } = a;
  const logits = new Float64Array(rows * V);
  const lse = new Float64Array(rows);
  const nll = new Float64Array(rows);
  let loss = 0;
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let k = 0; k < C; k++) s += x[r * C + k] * e[v * C + k];
      logits[r * V + v] = s;
      mx = Math.max(mx, s);
    }
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(logits[r * V + v] - mx);
    lse[r] = mx + Math.log(sum);
    const t = targets[r];
    if (t === IGNORE) continue;
    nll[r] = lse[r] - logits[r * V + t];
    loss += (a.weights ? a.weights[r] : 1) * nll[r];
  }
  return { logits, lse, nll, loss: a.scale * loss };
}

/** dlogits (rows, V), dx (rows, C) and dE (V, C) of the loss. */
export function xentBackward(a: XentRefArgs): {
  dlogits: Float64Array;
  dx: Float64Array;
  de: Float64Array;
} {
  const { x, e, targets, rows, V, C } = a;
  const { logits, lse } = xentForward(a);
  const dlogits = new Float64Array(rows * V);
  const dx = new Float64Array(rows * C);
  const de = new Float64Array(V * C);
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === IGNORE) continue;
    const f = a.scale * (a.weights ? a.weights[r] : 1);
    for (let v = 0; v < V; v++) {
      const d = f * (Math.exp(logits[r * V + v] - lse[r]) - (v === t ? 1 : 0));
      dlogits[r * V + v] = d;
      for (let k = 0; k < C; k++) {
        dx[r * C + k] += d * e[v * C + k];
        de[v * C + k] += d * x[r * C + k];
      }
    }
  }
  return { dlogits, dx, de };
}
