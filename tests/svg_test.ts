/**
 * The charts in src/ui/svg.ts put nothing outside their view box and no label over another.
 *
 * A string-built SVG has no text measurement, so this test parses what the charts emit (a small
 * parser of their own output: every <text>, <rect>, <line>, <circle> and <path>), estimates each
 * text's box from its character count, font size, anchor and rotation, and checks the boxes
 * against the view box and against one another. The estimate is this file's own copy of the rule
 * (0.6 em per character, 0.9 em above the baseline and 0.25 em below), so a chart that measured
 * its labels with a smaller rule would fail here.
 */
import { deepEqual, equal, ok } from "node:assert/strict";
import { heatMap, lineChart, type Series } from "../src/ui/svg.ts";
import { gapPlot, gapSeries, passkeyHeatMap, pplPlot } from "../src/cli/eval.ts";
import type { PasskeyCell, PasskeyResult } from "../src/eval/passkey.ts";
import type { PplResult } from "../src/eval/ppl.ts";

const GLYPH_EM = 0.6, ASCENT_EM = 0.9, DESCENT_EM = 0.25;
/** Rounding slack in px: coordinates are written with one decimal. */
const EPS = 0.11;

interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}
interface Text {
  s: string;
  x: number;
  y: number;
  size: number;
  anchor: string;
  box: Box;
}
interface Parsed {
  view: Box;
  texts: Text[];
  rects: (Box & { fill: string })[];
  /** Every other drawn point: line ends, circle extremes, path vertices. */
  points: [number, number][];
}

function attrs(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of s.matchAll(/([\w-]+)="([^"]*)"/g)) out[m[1]] = m[2];
  return out;
}

function unescape(s: string): string {
  return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

/** The axis-aligned box of a text, turned by `transform="rotate(a cx cy)"` if it has one. */
function textBox(a: Record<string, string>, s: string, size: number): Box {
  const x = +a.x, y = +a.y, w = s.length * size * GLYPH_EM;
  const anchor = a["text-anchor"] ?? "start";
  const left = anchor === "middle" ? x - w / 2 : anchor === "end" ? x - w : x;
  const corners: [number, number][] = [
    [left, y - ASCENT_EM * size],
    [left + w, y - ASCENT_EM * size],
    [left, y + DESCENT_EM * size],
    [left + w, y + DESCENT_EM * size],
  ];
  const rot = a.transform?.match(/^rotate\(([-\d.]+)[ ,]+([-\d.]+)[ ,]+([-\d.]+)\)$/);
  if (a.transform) ok(rot, `unexpected transform ${a.transform} on "${s}"`);
  const [deg, cx, cy] = rot ? [+rot[1], +rot[2], +rot[3]] : [0, 0, 0];
  const c = Math.cos((deg * Math.PI) / 180), sn = Math.sin((deg * Math.PI) / 180);
  const turned = corners.map(([px, py]) => [
    cx + (px - cx) * c - (py - cy) * sn,
    cy + (px - cx) * sn + (py - cy) * c,
  ]);
  return {
    x0: Math.min(...turned.map((p) => p[0])),
    x1: Math.max(...turned.map((p) => p[0])),
    y0: Math.min(...turned.map((p) => p[1])),
    y1: Math.max(...turned.map((p) => p[1])),
  };
}

function parse(svg: string): Parsed {
  const root = svg.match(/<svg\b([^>]*)>/);
  ok(root, "no <svg> element");
  const ra = attrs(root[1]);
  // The old charts had no viewBox: fall back to width and height so this still measures them.
  const vb = (ra.viewBox ?? `0 0 ${ra.width} ${ra.height}`).split(/[ ,]+/).map(Number);
  const view = { x0: vb[0], y0: vb[1], x1: vb[0] + vb[2], y1: vb[1] + vb[3] };
  const base = +(ra["font-size"] ?? 16);
  const texts: Text[] = [];
  for (const m of svg.matchAll(/<text\b([^>]*)>([^<]*)<\/text>/g)) {
    const a = attrs(m[1]), s = unescape(m[2]), size = +(a["font-size"] ?? base);
    texts.push({
      s,
      x: +a.x,
      y: +a.y,
      size,
      anchor: a["text-anchor"] ?? "start",
      box: textBox(a, s, size),
    });
  }
  equal(texts.length, (svg.match(/<text\b/g) ?? []).length, "a <text> the parser did not read");
  const rects: Parsed["rects"] = [];
  const points: [number, number][] = [];
  for (const m of svg.matchAll(/<rect\b([^>]*)>/g)) {
    const a = attrs(m[1]);
    if (a.width === "100%") continue; // the white background
    const x = +(a.x ?? 0), y = +(a.y ?? 0);
    rects.push({ x0: x, y0: y, x1: x + +a.width, y1: y + +a.height, fill: a.fill ?? "" });
  }
  for (const m of svg.matchAll(/<line\b([^>]*)>/g)) {
    const a = attrs(m[1]);
    points.push([+a.x1, +a.y1], [+a.x2, +a.y2]);
  }
  for (const m of svg.matchAll(/<circle\b([^>]*)>/g)) {
    const a = attrs(m[1]);
    points.push([+a.cx - +a.r, +a.cy - +a.r], [+a.cx + +a.r, +a.cy + +a.r]);
  }
  for (const m of svg.matchAll(/<path\b[^>]*\bd="([^"]*)"/g)) {
    for (const p of m[1].matchAll(/[ML]([-\d.e]+),([-\d.e]+)/g)) points.push([+p[1], +p[2]]);
  }
  return { view, texts, rects, points };
}

function inside(b: Box, v: Box): boolean {
  return b.x0 >= v.x0 - EPS && b.x1 <= v.x1 + EPS && b.y0 >= v.y0 - EPS && b.y1 <= v.y1 + EPS;
}

function overlap(a: Box, b: Box): boolean {
  return a.x0 < b.x1 - EPS && b.x0 < a.x1 - EPS && a.y0 < b.y1 - EPS && b.y0 < a.y1 - EPS;
}

const show = (t: Text) =>
  `"${t.s}" [${t.box.x0.toFixed(1)}..${t.box.x1.toFixed(1)}] x [${t.box.y0.toFixed(1)}..${
    t.box.y1.toFixed(1)
  }]`;

/**
 * Every text box, rect and drawn point lies inside the view box; no two texts overlap; a text
 * anchored inside a filled cell (a heat map's value) fits in that cell. Returns the parse.
 */
function assertReadable(svg: string): Parsed {
  const p = parse(svg);
  const v = p.view;
  const where = `view box [0..${v.x1}] x [0..${v.y1}]`;
  ok(p.texts.length > 0, "no text parsed");
  for (const t of p.texts) {
    ok(Number.isFinite(t.x) && Number.isFinite(t.y), `text without a position: "${t.s}"`);
    ok(inside(t.box, v), `${show(t)} leaves the ${where}`);
  }
  for (const r of p.rects) ok(inside(r, v), `rect ${JSON.stringify(r)} leaves the ${where}`);
  for (const [x, y] of p.points) {
    ok(inside({ x0: x, x1: x, y0: y, y1: y }, v), `point (${x}, ${y}) leaves the ${where}`);
  }
  for (let i = 0; i < p.texts.length; i++) {
    for (let j = i + 1; j < p.texts.length; j++) {
      ok(
        !overlap(p.texts[i].box, p.texts[j].box),
        `${show(p.texts[i])} overlaps ${show(p.texts[j])}`,
      );
    }
  }
  for (const r of p.rects.filter((r) => r.fill !== "none")) {
    for (const t of p.texts) {
      const anchored = t.x > r.x0 && t.x < r.x1 && t.y > r.y0 && t.y < r.y1;
      if (anchored) ok(inside(t.box, r), `${show(t)} spills out of its cell ${JSON.stringify(r)}`);
    }
  }
  return p;
}

const grid = (rows: number, cols: number) =>
  Array.from(
    { length: rows },
    (_, i) =>
      Array.from(
        { length: cols },
        (_, j) => (i + j) % 5 === 4 ? null : ((i * 7 + j * 3) % 11) / 10,
      ),
  );

/** Every text's content in document order (a wrapped label gives one entry per line). */
const textsOf = (p: Parsed) => p.texts.map((t) => t.s);

Deno.test("heat map: 12 columns of 'variant, depth' labels neither run together nor leave the canvas", () => {
  const cols = ["on", "off", "zero-read"].flatMap((v) =>
    ["d=0", "d=0.25", "d=0.5", "ctrl"].map((d) => `${v}, ${d}`)
  );
  equal(cols.length, 12);
  const rows = ["1 seg (1024 tok)", "8 seg (8192 tok)", "128 seg (131072 tok)"];
  const svg = heatMap({
    title: "Exact match (100 held-out samples per cell)",
    rowLabels: rows,
    colLabels: cols,
    rowTitle: "length",
    colTitle: "variant, key depth",
    values: grid(rows.length, cols.length),
  });
  const p = assertReadable(svg);
  // Every label's words are all there (wrapped or not), and every cell is drawn.
  const words = textsOf(p).join(" ");
  for (const c of cols) for (const w of c.split(" ")) ok(words.includes(w), `lost "${w}"`);
  for (const r of rows) ok(textsOf(p).includes(r), `row label "${r}" missing or cut`);
  equal(p.rects.length, rows.length * cols.length);
});

Deno.test("heat map: long row labels get a margin of their own, clear of the row title", () => {
  const rows = ["128 seg (16384 tok)", "1024 seg (1048576 tok)"];
  const p = assertReadable(heatMap({
    title: "Exact match (100 held-out samples per cell)",
    rowLabels: rows,
    colLabels: ["on, d=0", "off, d=0"],
    rowTitle: "length",
    colTitle: "variant, key depth",
    values: grid(2, 2),
  }));
  for (const r of rows) ok(textsOf(p).includes(r), `row label "${r}" missing or cut`);
});

Deno.test("heat map: a long title wraps within a canvas of bounded width", () => {
  const title = "Exact match (1000 held-out samples per cell) at stage 3 of 5 of the curriculum, " +
    "memory on and off, greedy answers, keys held out from training";
  const p = assertReadable(heatMap({
    title,
    rowLabels: ["4 seg (512 tok)"],
    colLabels: ["on, d=0"],
    rowTitle: "length of the haystack in segments",
    colTitle: "variant, key depth",
    values: [[0.5]],
  }));
  const titleTexts = p.texts.filter((t) => t.size > 12);
  ok(titleTexts.length > 1, "a title this long should wrap");
  equal(titleTexts.map((t) => t.s).join(" "), title);
  ok(p.view.x1 <= 800, `canvas ${p.view.x1} px wide for a one-cell map`);
});

Deno.test("heat map: labels too long to wrap into a cell stand upright", () => {
  const cols = Array.from({ length: 6 }, (_, i) => `checkpoint-step-${(i + 1) * 10000}-final`);
  const p = assertReadable(heatMap({
    title: "t",
    rowLabels: ["a", "b"],
    colLabels: cols,
    rowTitle: "r",
    colTitle: "c",
    values: grid(2, 6),
  }));
  for (const c of cols) ok(textsOf(p).includes(c), `column label "${c}" missing or cut`);
});

Deno.test("heat map: no rows or columns still gives a well-formed picture", () => {
  assertReadable(heatMap({
    title: "empty",
    rowLabels: [],
    colLabels: [],
    rowTitle: "length",
    colTitle: "variant",
    values: [],
  }));
});

Deno.test("line chart: many long series names, long title and axis labels stay on the canvas", () => {
  const names = [
    "memory",
    "off",
    "zero-read",
    "reset",
    "validation loss on the held-out split",
    "training loss (exponential moving average over 100 steps)",
    ...Array.from({ length: 14 }, (_, i) => `run ${i + 1} with a learning rate of ${i}e-4`),
  ];
  const series: Series[] = names.map((name, k) => ({
    name,
    points: Array.from(
      { length: 50 },
      (_, i) => [i * 2000, 3 + k * 0.05 + Math.sin(i / 5)] as [number, number],
    ),
  }));
  const title = "NLL per segment index (segment = 2048 tokens) for every variant and every run " +
    "of the learning-rate sweep";
  const p = assertReadable(lineChart({
    title,
    xLabel: "segment index (each segment is 2048 tokens long, memory carried between them)",
    yLabel: "NLL (nats/token), token-weighted mean over documents",
    series,
  }));
  for (const n of names) ok(textsOf(p).includes(n), `legend entry "${n}" missing or cut`);
  equal(p.texts.filter((t) => t.size > 12).map((t) => t.s).join(" "), title);
});

Deno.test("line chart: a log x axis over many decades thins its ticks rather than crowd them", () => {
  const p = assertReadable(lineChart({
    title: "loss",
    xLabel: "tokens",
    yLabel: "loss",
    logX: true,
    width: 300,
    series: [{ name: "a", points: [[1, 1], [1e12, 2]] }],
  }));
  ok(p.texts.some((t) => t.s === "1"), "the first tick is kept");
});

Deno.test("line chart: a one-point series and an empty one, with empty titles", () => {
  assertReadable(lineChart({
    title: "",
    xLabel: "",
    yLabel: "",
    series: [{ name: "one", points: [[5, 5]] }, { name: "none", points: [] }],
  }));
});

function passkeyResult(segments: number[], variants: PasskeyCell["variant"][]): PasskeyResult {
  const cells: PasskeyCell[] = [];
  for (const n of segments) {
    for (const depth of [0, 0.25, 0.5, 1, "control"] as const) {
      for (const variant of variants) {
        cells.push({
          segments: n,
          tokens: n * 128,
          depth,
          variant,
          correct: 37,
          trials: 50,
          accuracy: 0.74,
        });
      }
    }
  }
  return { segmentLength: 128, trials: 50, seed: 1, cells, seconds: 1 } as PasskeyResult;
}

Deno.test("eval passkey's heat map (every variant, depth and length) reads cleanly", () => {
  const r = passkeyResult([1, 8, 128, 1024, 8192], ["memory", "off", "zero-read", "reset"]);
  const p = assertReadable(passkeyHeatMap(r));
  equal(p.rects.length, 5 * 5 * 4);
  ok(textsOf(p).includes("1024 seg (131072 tok)"));
});

Deno.test("the demo's heat map (two variants) keeps its whole title", () => {
  const p = assertReadable(passkeyHeatMap(passkeyResult([2, 8, 32], ["memory", "off"])));
  deepEqual(
    p.texts.filter((t) => t.size > 12).map((t) => t.s),
    ["Exact match (50 held-out samples per cell)"],
  );
});

Deno.test("eval ppl's plot of NLL per segment reads cleanly, a long-range line per variant", () => {
  const variants = (["memory", "off", "zero-read", "reset"] as const).map((variant, k) => ({
    variant,
    perSegment: Array.from(
      { length: 64 },
      (_, s) => ({
        segment: s,
        nll: 3 + k / 10 + 1 / (s + 1),
        longRange: { tokens: s === 0 ? 0 : 10, nll: s === 0 ? NaN : 4 + k / 10 - s / 100 },
        rest: { tokens: 100, nll: 3 },
      }),
    ),
  }));
  const p = assertReadable(pplPlot({ segmentLength: 2048, variants } as unknown as PplResult));
  for (const v of variants) {
    ok(textsOf(p).includes(v.variant), v.variant);
    ok(textsOf(p).includes(`${v.variant}, long-range`), `${v.variant}, long-range`);
  }
});

Deno.test("eval ppl's gap plot: each variant minus memory on, token-weighted per window", () => {
  // Four segments; long-range targets: none in segment 0, and their counts differ per segment.
  const seg = (nll: number[], lrTok: number[], lrNll: number[]) =>
    nll.map((x, s) => ({
      segment: s,
      nll: x,
      tokens: 10,
      longRange: { tokens: lrTok[s], nll: lrTok[s] ? lrNll[s] : NaN },
      rest: { tokens: 10 - lrTok[s], nll: 0 },
    }));
  const r = {
    segmentLength: 16,
    variants: [
      { variant: "memory", perSegment: seg([1, 2, 3, 4], [0, 2, 6, 2], [0, 1, 1, 5]) },
      { variant: "reset", perSegment: seg([1, 3, 3, 6], [0, 2, 6, 2], [0, 2, 1, 9]) },
    ],
  } as unknown as PplResult;
  const [all, lr] = gapSeries(r, 2);
  equal(all.name, "reset");
  // Window 0: (1 + 3) / 2 - (1 + 2) / 2 = 0.5; window 2: (3 + 6) / 2 - (3 + 4) / 2 = 1.
  deepEqual(all.points, [[0, 0.5], [2, 1]]);
  equal(lr.name, "reset, long-range");
  // Window 0 holds segment 1 only (2 targets): 2 - 1; window 2: (6*1 + 2*9)/8 - (6*1 + 2*5)/8.
  deepEqual(lr.points, [[0, 1], [2, 1]]);
  deepEqual(gapSeries({ ...r, variants: [r.variants[1]] }, 2), []);
  const p = assertReadable(gapPlot(r));
  ok(textsOf(p).includes("reset, long-range"));
  ok(textsOf(p).some((t) => /NLL minus memory on, per segment/.test(t)));
});
