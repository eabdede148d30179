/**
 * f64 reference for the optimizer step: global gradient norm, clipping and AdamW with
 * decoupled weight decay and bias correction, per parameter tensor with its own learning-rate
 * multiplier and weight decay:
 *   norm = sqrt(sum over all tensors of sum g^2);  clip = min(1, maxNorm / (norm + 1e-6))
 *   g' = g * clip;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2
 *   p -= lr_t * (mhat / (sqrt(vhat) + eps) + wd_t * p),  mhat = m / (1 - b1^t), vhat = v / (1 - b2^t)
 * A non-finite norm skips the update (p, m, v unchanged), as the GPU op does.
 */

export interface AdamwRefSlot {
  p: Float64Array;
  g: ArrayLike<number>;
  m: Float64Array;
  v: Float64Array;
  lrScale: number;
  weightDecay: number;
}

export interface AdamwRefHyper {
  step: number; // t, 1-based
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  maxNorm: number;
}

/** sqrt of the sum of squares over all gradients. */
export function globalNorm(grads: ArrayLike<number>[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return Math.sqrt(s);
}

/** The clip factor applied to every gradient. */
export function clipFactor(norm: number, maxNorm: number): number {
  return Math.min(1, maxNorm / (norm + 1e-6));
}

/** One AdamW step over all slots, in place; returns the norm, the clip and whether it skipped. */
export function adamwStep(
  slots: AdamwRefSlot[],
  h: AdamwRefHyper,
): { norm: number; clip: number; skipped: boolean } {
  const norm = globalNorm(slots.map((s) => s.g));
  if (!Number.isFinite(norm)) return { norm, clip: 0, skipped: true };
  const clip = clipFactor(norm, h.maxNorm);
  const bc1 = 1 - h.beta1 ** h.step, bc2 = 1 - h.beta2 ** h.step;
  for (const s of slots) {
    const lr = h.lr * s.lrScale;
    for (let i = 0; i < s.p.length; i++) {
      const g = s.g[i] * clip;
      s.m[i] = h.beta1 * s.m[i] + (1 - h.beta1) * g;
      s.v[i] = h.beta2 * s.v[i] + (1 - h.beta2) * g * g;
      const mhat = s.m[i] / bc1, vhat = s.v[i] / bc2;
      s.p[i] -= lr * (mhat / (Math.sqrt(vhat) + h.eps) + s.weightDecay * s.p[i]);
    }
  }
  return { norm, clip, skipped: false };
}
