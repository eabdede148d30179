/** f64 references for the linear layer: y = x W^T and its backward. */

/** y (M, N) = x (M, K) W^T with W (N, K). */
export function linearForward(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      y[m * N + n] = s;
    }
  }
  return y;
}

/** dx = dy W and dW = dy^T x for y = x W^T. */
export function linearBackward(
  dy: ArrayLike<number>,
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
): { dx: Float64Array; dw: Float64Array } {
  const dx = new Float64Array(M * K);
  const dw = new Float64Array(N * K);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      const g = dy[m * N + n];
      for (let k = 0; k < K; k++) {
        dx[m * K + k] += g * w[n * K + k];
        dw[n * K + k] += g * x[m * K + k];
      }
    }
  }
  return { dx, dw };
}
