/**
 * Long-context perplexity: every document streamed segment by segment with the memory
 * carried, under each variant on the same tokens; the token-weighted NLL and the NLL per
 * segment index (how the loss evolves as the context grows), each split into long-range
 * targets (those only the memory can help with, see `longRangeTargets`) and the rest.
 */
import type { Sequence, Streamer, Variant } from "./stream.ts";
import { IGNORE_TARGET } from "../util/targets.ts";

/** Mean NLL (nats) of a set of targets, and how many there were (nll NaN when none). */
export interface NllPart {
  tokens: number;
  nll: number;
}

export interface PplVariantResult {
  variant: Variant;
  /** Token-weighted mean NLL (nats) over every scored target. */
  nll: number;
  ppl: number;
  tokens: number;
  /** The long-range targets (`longRangeTargets`) and all others: they weight back to `nll`. */
  longRange: NllPart;
  rest: NllPart;
  /**
   * Mean NLL of the targets at segment index s (s = position / S), how many there were, and
   * the same for that segment's long-range targets and the rest.
   */
  perSegment: { segment: number; nll: number; tokens: number; longRange: NllPart; rest: NllPart }[];
  seconds: number;
}

export interface PplResult {
  documents: number;
  tokens: number;
  segmentLength: number;
  variants: PplVariantResult[];
}

/**
 * Which targets are long-range: target p (the prediction of token j = p + 1 from the tokens up
 * to p) is long-range when the trigram ending at it, (t[j-2], t[j-1], t[j]), occurred earlier
 * in the same document wholly before the current segment (ending before a = floor(p / S) * S,
 * so only the memory holds it), and no occurrence lies wholly inside the current segment
 * before it (starting at or after a and ending before j, where local attention sees it). An
 * occurrence straddling the segment start counts as neither. Ignored targets (IGNORE_TARGET)
 * and the first two positions (no two tokens before the target) are never long-range.
 */
export function longRangeTargets(
  tokens: Uint32Array,
  targets: Uint32Array,
  S: number,
): Uint8Array {
  const n = tokens.length;
  const out = new Uint8Array(n);
  // The stream t[0..n]: the tokens, then the last target (the token after the last position).
  const t = (j: number) => (j < n ? tokens[j] : targets[n - 1]);
  // Trigram -> the end positions of its first and latest occurrence so far (ends < j).
  const first = new Map<string | number, number>(), last = new Map<string | number, number>();
  let big = false;
  for (let j = 0; j < n; j++) if (tokens[j] >= 2 ** 17) big = true;
  const key = (j: number) =>
    big ? `${t(j - 2)},${t(j - 1)},${t(j)}` : (t(j - 2) * 2 ** 17 + t(j - 1)) * 2 ** 17 + t(j);
  for (let j = 2; j <= n; j++) {
    const p = j - 1;
    if (j === n && targets[p] === IGNORE_TARGET) break;
    const k = key(j);
    if (targets[p] !== IGNORE_TARGET) {
      const a = Math.floor(p / S) * S;
      const f = first.get(k), l = last.get(k);
      if (f !== undefined && f < a && !(l! - 2 >= a)) out[p] = 1;
    }
    if (!first.has(k)) first.set(k, j);
    last.set(k, j);
  }
  return out;
}

/** Scores `docs` under each variant. */
export async function evalPerplexity(
  streamer: Streamer,
  docs: readonly Sequence[],
  variants: readonly Variant[],
  onProgress?: (variant: Variant, done: number, total: number) => void,
): Promise<PplResult> {
  const S = streamer.cfg.segmentLength;
  const masks = docs.map((d) => longRangeTargets(d.tokens, d.targets, S));
  const results: PplVariantResult[] = [];
  let tokens = 0;
  for (const v of variants) {
    const t0 = performance.now();
    const scored = await streamer.score(docs, v, {
      onChunk: (d, n) => onProgress?.(v, d, n),
    });
    // Per segment index: [sum, count] of long-range targets and of the rest.
    const segs: { lr: [number, number]; rest: [number, number] }[] = [];
    scored.forEach((s, i) => {
      const tg = docs[i].targets, lr = masks[i];
      for (let p = 0; p < tg.length; p++) {
        if (tg[p] === IGNORE_TARGET) continue;
        const seg = segs[Math.floor(p / S)] ??= { lr: [0, 0], rest: [0, 0] };
        const acc = lr[p] ? seg.lr : seg.rest;
        acc[0] += s.nll[p];
        acc[1]++;
      }
    });
    const part = (sum: number, n: number): NllPart => ({ tokens: n, nll: n ? sum / n : NaN });
    const perSegment = [];
    let lrSum = 0, lrN = 0, restSum = 0, restN = 0;
    for (let i = 0; i < segs.length; i++) {
      const g = segs[i];
      if (!g) continue;
      const n = g.lr[1] + g.rest[1];
      if (n === 0) continue;
      perSegment.push({
        segment: i,
        nll: (g.lr[0] + g.rest[0]) / n,
        tokens: n,
        longRange: part(g.lr[0], g.lr[1]),
        rest: part(g.rest[0], g.rest[1]),
      });
      lrSum += g.lr[0];
      lrN += g.lr[1];
      restSum += g.rest[0];
      restN += g.rest[1];
    }
    const n = lrN + restN;
    tokens = n;
    const nll = n ? (lrSum + restSum) / n : NaN;
    results.push({
      variant: v,
      nll,
      ppl: Math.exp(nll),
      tokens: n,
      longRange: part(lrSum, lrN),
      rest: part(restSum, restN),
      perSegment,
      seconds: (performance.now() - t0) / 1000,
    });
  }
  return { documents: docs.length, tokens, segmentLength: S, variants: results };
}
