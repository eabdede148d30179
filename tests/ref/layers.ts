/**
 * f64 references for the row-wise and elementwise layers of a Gemma block: token embedding,
 * Gemma RMSNorm, rotate-half RoPE and GeGLU. Forward and backward side by side; shapes use the
 * project's letters (rows = B*T tokens, C hidden, V vocab, D head dim, S segment length, F MLP).
 */

/** x (rows, C) = sqrt(C) * E[tokens[row], :], E (V, C). */
export function embeddingForward(
  E: ArrayLike<number>,
  tokens: ArrayLike<number>,
  C: number,
): Float64Array {
  const rows = tokens.length, scale = Math.sqrt(C);
  const x = new Float64Array(rows * C);
  for (let r = 0; r < rows; r++) {
    const t = tokens[r];
    for (let c = 0; c < C; c++) x[r * C + c] = scale * E[t * C + c];
  }
  return x;
}

/** dE (V, C) = sqrt(C) * sum over rows with token v of dx[row, :] (not accumulated). */
export function embeddingBackward(
  dx: ArrayLike<number>,
  tokens: ArrayLike<number>,
  V: number,
  C: number,
): Float64Array {
  const scale = Math.sqrt(C);
  const dE = new Float64Array(V * C);
  for (let r = 0; r < tokens.length; r++) {
    const t = tokens[r];
    for (let c = 0; c < C; c++) dE[t * C + c] += scale * dx[r * C + c];
  }
  return dE;
}

/** Gemma RMSNorm per row: y = x * rstd * (1 + w), rstd = 1 / sqrt(mean(x^2) + eps). */
export function rmsnormForward(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  C: number,
  eps: number,
): { y: Float64Array; rstd: Float64Array } {
  const y = new Float64Array(rows * C), rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[r * C + c] ** 2;
    const rs = 1 / Math.sqrt(ss / C + eps);
    rstd[r] = rs;
    for (let c = 0; c < C; c++) y[r * C + c] = x[r * C + c] * rs * (1 + w[c]);
  }
  return { y, rstd };
}

/**
 * Backward of Gemma RMSNorm, with g = dy * (1 + w):
 *   dx = rstd * (g - x * rstd^2 * sum_c(g x) / C),   dw = sum over rows of dy * x * rstd.
 */
export function rmsnormBackward(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  rows: number,
  C: number,
  eps: number,
): { dx: Float64Array; dw: Float64Array } {
  const { rstd } = rmsnormForward(x, w, rows, C, eps);
  const dx = new Float64Array(rows * C), dw = new Float64Array(C);
  for (let r = 0; r < rows; r++) {
    const rs = rstd[r];
    let t = 0;
    for (let c = 0; c < C; c++) t += dy[r * C + c] * (1 + w[c]) * x[r * C + c];
    const k = rs * rs * t / C;
    for (let c = 0; c < C; c++) {
      const i = r * C + c;
      dx[i] = rs * (dy[i] * (1 + w[c]) - x[i] * k);
      dw[c] += dy[i] * x[i] * rs;
    }
  }
  return { dx, dw };
}

/**
 * Rotate-half RoPE on x (rows, nHeads * D): for i < D/2, angle = (row mod S) * theta^(-2i/D),
 *   y_i = x_i cos - x_{i+D/2} sin,  y_{i+D/2} = x_{i+D/2} cos + x_i sin.
 * `inverse` applies the transposed rotation (the backward: dx from dy).
 */
export function ropeForward(
  x: ArrayLike<number>,
  rows: number,
  nHeads: number,
  D: number,
  S: number,
  theta: number,
  inverse = false,
): Float64Array {
  const half = D / 2, sign = inverse ? -1 : 1;
  const y = new Float64Array(rows * nHeads * D);
  for (let r = 0; r < rows; r++) {
    const pos = r % S;
    for (let h = 0; h < nHeads; h++) {
      const base = (r * nHeads + h) * D;
      for (let i = 0; i < half; i++) {
        const ang = pos * Math.pow(theta, -2 * i / D);
        const c = Math.cos(ang), s = sign * Math.sin(ang);
        const a = x[base + i], b = x[base + i + half];
        y[base + i] = a * c - b * s;
        y[base + i + half] = b * c + a * s;
      }
    }
  }
  return y;
}

/** dx = R^T dy: the inverse rotation. */
export function ropeBackward(
  dy: ArrayLike<number>,
  rows: number,
  nHeads: number,
  D: number,
  S: number,
  theta: number,
): Float64Array {
  return ropeForward(dy, rows, nHeads, D, S, theta, true);
}

const GELU_K = Math.sqrt(2 / Math.PI), GELU_A = 0.044715;

/** gelu_tanh(x) = 0.5 x (1 + tanh(z)) = x * sigmoid(2z), z = k (x + a x^3); no overflow. */
export function geluTanh(x: number): number {
  const z = GELU_K * (x + GELU_A * x * x * x);
  return x / (1 + Math.exp(-2 * z));
}

/** d gelu_tanh / dx = s + x * 2 s (1 - s) * k (1 + 3 a x^2), s = sigmoid(2z). */
export function geluTanhGrad(x: number): number {
  const z = GELU_K * (x + GELU_A * x * x * x);
  const e = Math.exp(-2 * Math.abs(z)); // s (1 - s) = e / (1 + e)^2 without cancellation
  const s = z >= 0 ? 1 / (1 + e) : e / (1 + e);
  return s + x * 2 * (e / ((1 + e) * (1 + e))) * GELU_K * (1 + 3 * GELU_A * x * x);
}

/** h = gelu_tanh(g) * u, elementwise over (rows, F). */
export function gegluForward(g: ArrayLike<number>, u: ArrayLike<number>): Float64Array {
  const h = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) h[i] = geluTanh(g[i]) * u[i];
  return h;
}

/** dg = dh * u * gelu'(g), du = dh * gelu(g). */
export function gegluBackward(
  dh: ArrayLike<number>,
  g: ArrayLike<number>,
  u: ArrayLike<number>,
): { dg: Float64Array; du: Float64Array } {
  const dg = new Float64Array(g.length), du = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) {
    dg[i] = dh[i] * u[i] * geluTanhGrad(g[i]);
    du[i] = dh[i] * geluTanh(g[i]);
  }
  return { dg, du };
}
