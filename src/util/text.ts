/** Small text helpers: "did you mean" suggestions for mistyped names. */

/** Levenshtein distance, case-insensitive. */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase(), t = b.toLowerCase();
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const cur = [i];
    for (let j = 1; j <= t.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (s[i - 1] === t[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[t.length];
}

/**
 * The candidate nearest to `word` by edit distance (first one on ties; a candidate that starts
 * with a `word` of 3 or more letters counts as distance 1), or undefined when none is within
 * `maxDistance`.
 */
export function closest(
  word: string,
  candidates: readonly string[],
  maxDistance = Infinity,
): string | undefined {
  let best: string | undefined, bestD = Infinity;
  for (const c of candidates) {
    const prefix = word.length >= 3 && c.toLowerCase().startsWith(word.toLowerCase());
    const d = prefix ? Math.min(1, editDistance(word, c)) : editDistance(word, c);
    if (d < bestD && d <= maxDistance) [best, bestD] = [c, d];
  }
  return best;
}
