/**
 * Long-context perplexity: every document streamed segment by segment with the memory
 * carried, under each variant on the same tokens; the token-weighted NLL and the NLL per
 * segment index (how the loss evolves as the context grows).
 */
import type { Sequence, Streamer, Variant } from "./stream.ts";
import { IGNORE_TARGET } from "../util/targets.ts";

export interface PplVariantResult {
  variant: Variant;
  /** Token-weighted mean NLL (nats) over every scored target. */
  nll: number;
  ppl: number;
  tokens: number;
  /** Mean NLL of the targets at segment index s (s = position / S), and how many there were. */
  perSegment: { segment: number; nll: number; tokens: number }[];
  seconds: number;
}

export interface PplResult {
  documents: number;
  tokens: number;
  segmentLength: number;
  variants: PplVariantResult[];
}

/** Scores `docs` under each variant. */
export async function evalPerplexity(
  streamer: Streamer,
  docs: readonly Sequence[],
  variants: readonly Variant[],
  onProgress?: (variant: Variant, done: number, total: number) => void,
): Promise<PplResult> {
  const S = streamer.cfg.segmentLength;
  const results: PplVariantResult[] = [];
  let tokens = 0;
  for (const v of variants) {
    const t0 = performance.now();
    const scored = await streamer.score(docs, v, {
      onChunk: (d, n) => onProgress?.(v, d, n),
    });
    const sums: number[] = [], counts: number[] = [];
    let total = 0, n = 0;
    scored.forEach((s, i) => {
      const tg = docs[i].targets;
      for (let p = 0; p < tg.length; p++) {
        if (tg[p] === IGNORE_TARGET) continue;
        const seg = Math.floor(p / S);
        sums[seg] = (sums[seg] ?? 0) + s.nll[p];
        counts[seg] = (counts[seg] ?? 0) + 1;
        total += s.nll[p];
        n++;
      }
    });
    tokens = n;
    const nll = n ? total / n : NaN;
    results.push({
      variant: v,
      nll,
      ppl: Math.exp(nll),
      tokens: n,
      perSegment: counts.map((c, s) => ({ segment: s, nll: sums[s] / c, tokens: c }))
        .filter((x) => x.tokens > 0),
      seconds: (performance.now() - t0) / 1000,
    });
  }
  return { documents: docs.length, tokens, segmentLength: S, variants: results };
}
