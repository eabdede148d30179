/**
 * Minimal SVG charts (line plots and heat maps) with no dependencies, for loss curves, NLL per
 * segment and passkey accuracy grids that a user can open in any browser.
 *
 * There is no text measurement in a string-built SVG, so every margin, cell and canvas size is
 * worked out from an estimate of each label's size (`textWidth`, and the ascent and descent below):
 * labels are wrapped, rotated or given room so that none runs into another or off the canvas.
 * tests/svg_test.ts parses what these functions emit and checks exactly that with the same rule.
 */

export interface Series {
  name: string;
  points: [number, number][];
  color?: string;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"];

/**
 * Average glyph width as a fraction of the font size. DejaVu Sans, the usual "sans-serif" on
 * Linux, averages about 0.52 em over labels such as "1024 seg (1048576 tok)" and Helvetica and
 * Arial are narrower, so 0.6 em over-estimates slightly: room to spare rather than overlap.
 */
const GLYPH_EM = 0.6;
/** How far glyphs reach above and below the baseline, in em (accents and descenders included). */
const ASCENT_EM = 0.9, DESCENT_EM = 0.25;
/** Baseline-to-baseline distance of wrapped lines, in em. */
const LINE_EM = 1.25;
/** Font sizes: labels and ticks, and the title. */
const FONT = 12, TITLE_FONT = 15;
/** Blank border kept inside the canvas on every side. */
const EDGE = 10;

/** Estimated width in px of `s` set at `size` px. */
function textWidth(s: string, size: number): number {
  return s.length * size * GLYPH_EM;
}

function widest(strs: string[], size: number): number {
  return strs.reduce((m, s) => Math.max(m, textWidth(s, size)), 0);
}

/** Baseline offset that centres a line of text of `size` px on a given y. */
function centreBaseline(size: number): number {
  return ((ASCENT_EM - DESCENT_EM) / 2) * size;
}

/**
 * Greedy word wrap of `s` into lines of at most `maxW` px at `size` px. A word that alone is too
 * wide is cut into pieces when `breakWords`, else left whole (the caller checks the result).
 */
function wrap(s: string, size: number, maxW: number, breakWords = true): string[] {
  const maxChars = Math.max(1, Math.floor(maxW / (size * GLYPH_EM)));
  const lines: string[] = [];
  let cur = "";
  for (let word of s.split(/\s+/).filter((w) => w)) {
    if (cur && (cur + " " + word).length <= maxChars) {
      cur += " " + word;
      continue;
    }
    if (cur) lines.push(cur);
    while (breakWords && word.length > maxChars) {
      lines.push(word.slice(0, maxChars));
      word = word.slice(maxChars);
    }
    cur = word;
  }
  if (cur || !lines.length) lines.push(cur);
  return lines;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** A coordinate as written: one decimal at most, so the files stay short and diffable. */
function num(v: number): string {
  return String(+v.toFixed(1));
}

/** One line of text; `rotate` (degrees) turns it about its own anchor point (x, y). */
function text(
  x: number,
  y: number,
  s: string,
  o: { size?: number; anchor?: "start" | "middle" | "end"; rotate?: number } = {},
): string {
  const a = [`x="${num(x)}"`, `y="${num(y)}"`];
  if (o.anchor && o.anchor !== "start") a.push(`text-anchor="${o.anchor}"`);
  if (o.size && o.size !== FONT) a.push(`font-size="${o.size}"`);
  if (o.rotate) a.push(`transform="rotate(${o.rotate} ${num(x)} ${num(y)})"`);
  return `<text ${a.join(" ")}>${esc(s)}</text>`;
}

/** The root element: the viewBox makes the picture scale as a whole when shown at another size. */
function svgOpen(W: number, H: number): string {
  const w = num(W), h = num(H);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="${FONT}">\n<rect width="100%" height="100%" fill="white"/>`;
}

/**
 * The title, wrapped to the canvas width and centred, starting at the top edge. Returns the
 * elements and the y just below the last line.
 */
function titleBlock(title: string, W: number): { els: string[]; bottom: number } {
  const lines = wrap(title, TITLE_FONT, W - 2 * EDGE);
  const els = lines.map((l, i) =>
    text(W / 2, EDGE + ASCENT_EM * TITLE_FONT + i * LINE_EM * TITLE_FONT, l, {
      size: TITLE_FONT,
      anchor: "middle",
    })
  );
  const bottom = EDGE + (ASCENT_EM + DESCENT_EM) * TITLE_FONT +
    (lines.length - 1) * LINE_EM * TITLE_FONT;
  return { els, bottom };
}

function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? step0;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) {
    out.push(+v.toPrecision(12));
  }
  return out;
}

function fmtTick(v: number): string {
  if (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3)) return v.toExponential(1);
  return String(+v.toPrecision(4));
}

/** Smallest plot area a line chart keeps however wide its legend or tall its title. */
const MIN_PLOT_W = 360, MIN_PLOT_H = 200;
/** Legend: a 20 px stroke sample, a 6 px gap, the name; entries LEGEND_STEP apart. */
const LEGEND_STEP = 18;

/**
 * A line chart of one or more series, with the legend to the right of the plot. `width` and
 * `height` are the canvas size asked for; it grows when the legend, the title or the axis labels
 * need more room than that leaves for the plot.
 */
export function lineChart(opts: {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  width?: number;
  height?: number;
  logX?: boolean;
}): string {
  const finite = (p: [number, number][]) =>
    p.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const tx = (x: number) => (opts.logX ? Math.log10(Math.max(x, 1e-12)) : x);
  // A loop rather than Math.min(...pts): a long loss curve has more points than spread arguments.
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of opts.series) {
    for (const [x, y] of finite(s.points)) {
      x0 = Math.min(x0, tx(x));
      x1 = Math.max(x1, tx(x));
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
    }
  }
  if (x0 > x1) [x0, x1, y0, y1] = [0, 1, 0, 1];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const yTicks = niceTicks(y0, y1);
  const xTicksAll = opts.logX
    ? niceTicks(x0, x1).filter((v) => Number.isInteger(v)).map((v) => 10 ** v)
    : niceTicks(x0, x1);
  const lineH = LINE_EM * FONT, textH = (ASCENT_EM + DESCENT_EM) * FONT;

  // Width: y-axis title band, y tick labels, plot, legend. The legend column is as wide as the
  // longest series name, and the canvas widens rather than squeeze the plot.
  const legendW = 20 + 6 + widest(opts.series.map((s) => s.name), FONT);
  const halfXTick = widest(xTicksAll.map(fmtTick), FONT) / 2;
  const mr = Math.max(10 + legendW, halfXTick) + EDGE;
  const yTickW = widest(yTicks.map(fmtTick), FONT);
  // The y-axis title runs along the plot's height, which depends on the title above: wrap it to
  // the smallest plot height so that the width it takes is known first.
  const yLabelLines = wrap(opts.yLabel, FONT, MIN_PLOT_H);
  const ml = EDGE + (yLabelLines.length - 1) * lineH + textH + 8 + yTickW + 6;
  const W = Math.max(opts.width ?? 720, ml + MIN_PLOT_W + mr);
  const plotR = W - mr;

  // Height: title, plot, x tick labels, x-axis title. The plot is tall enough for the legend.
  const title = titleBlock(opts.title, W);
  const mt = title.bottom + 14;
  const xLabelLines = wrap(opts.xLabel, FONT, W - 2 * EDGE);
  const xTickBase = 8 + ASCENT_EM * FONT; // below the plot's bottom edge, clear of the lowest y tick label
  const mb = xTickBase + DESCENT_EM * FONT + 8 + (xLabelLines.length - 1) * lineH + textH + EDGE;
  // The last legend entry's text, with a gap, ends above the plot's bottom edge, where the
  // rightmost x tick label may reach into the legend's column.
  const legendH = 10 + Math.max(0, opts.series.length - 1) * LEGEND_STEP +
    centreBaseline(FONT) + DESCENT_EM * FONT + 6;
  const H = Math.max(opts.height ?? 420, mt + Math.max(MIN_PLOT_H, legendH) + mb);
  const plotB = H - mb;

  const px = (x: number) => ml + ((tx(x) - x0) / (x1 - x0)) * (plotR - ml);
  const py = (y: number) => plotB - ((y - y0) / (y1 - y0)) * (plotB - mt);
  const out: string[] = [svgOpen(W, H), ...title.els];
  for (const v of yTicks) {
    out.push(
      `<line x1="${num(ml)}" x2="${num(plotR)}" y1="${num(py(v))}" y2="${
        num(py(v))
      }" stroke="#eee"/>`,
    );
    out.push(text(ml - 6, py(v) + centreBaseline(FONT), fmtTick(v), { anchor: "end" }));
  }
  // Thin the x ticks until neighbouring labels have a gap between them (a log axis over many
  // decades, or large numbers in exponent form, can crowd them).
  let xt = xTicksAll;
  for (let k = 2; xt.some((v, i) => i > 0 && crowded(xt[i - 1], v)); k++) {
    xt = xTicksAll.filter((_, i) => i % k === 0);
  }
  function crowded(a: number, b: number): boolean {
    return Math.abs(px(b) - px(a)) <
      (textWidth(fmtTick(a), FONT) + textWidth(fmtTick(b), FONT)) / 2 + 8;
  }
  for (const v of xt) {
    out.push(
      `<line x1="${num(px(v))}" x2="${num(px(v))}" y1="${num(mt)}" y2="${
        num(plotB)
      }" stroke="#eee"/>`,
    );
    out.push(text(px(v), plotB + xTickBase, fmtTick(v), { anchor: "middle" }));
  }
  out.push(
    `<rect x="${num(ml)}" y="${num(mt)}" width="${num(plotR - ml)}" height="${
      num(plotB - mt)
    }" fill="none" stroke="#333"/>`,
  );
  // Axis titles: centred on the plot but kept inside the canvas when wider than the plot.
  const xlW = widest(xLabelLines, FONT);
  const xlX = Math.min(Math.max((ml + plotR) / 2, EDGE + xlW / 2), W - EDGE - xlW / 2);
  const xlTop = plotB + xTickBase + DESCENT_EM * FONT + 8;
  xLabelLines.forEach((l, i) => {
    out.push(text(xlX, xlTop + ASCENT_EM * FONT + i * lineH, l, { anchor: "middle" }));
  });
  // Rotated a quarter turn anticlockwise, a line's ascent points left: the first line's baseline
  // sits one ascent in from the edge, later lines step right.
  yLabelLines.forEach((l, i) => {
    const x = EDGE + ASCENT_EM * FONT + i * lineH, y = (mt + plotB) / 2;
    out.push(text(x, y, l, { anchor: "middle", rotate: -90 }));
  });
  opts.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const p = finite(s.points);
    if (p.length > 1) {
      const d = p.map(([x, y], j) => `${j ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`)
        .join("");
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"/>`);
    } else if (p.length === 1) {
      out.push(`<circle cx="${num(px(p[0][0]))}" cy="${num(py(p[0][1]))}" r="3" fill="${color}"/>`);
    }
    const ly = mt + 10 + i * LEGEND_STEP, lx = plotR + 10;
    out.push(
      `<line x1="${num(lx)}" x2="${num(lx + 20)}" y1="${num(ly)}" y2="${
        num(ly)
      }" stroke="${color}" stroke-width="2"/>`,
    );
    out.push(text(lx + 26, ly + centreBaseline(FONT), s.name));
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/** Heat-map cells: never narrower than room for "0.00" with a margin, as before; 30 px tall. */
const MIN_CELL_W = 70, CELL_H = 30;
/**
 * A one-line column label may widen its cell to ONE_LINE_CELL_W; past that, wrapping it at spaces
 * keeps the grid narrower, in a cell of up to MAX_CELL_W; past that, the labels stand upright.
 */
const ONE_LINE_CELL_W = 90, MAX_CELL_W = 110;
/** Gap kept between neighbouring column labels (and between a wrapped label and its cell edge). */
const LABEL_GAP = 10;
/** Title lines may widen the canvas to this before they wrap. */
const MAX_TITLE_CANVAS = 720;

/**
 * A heat map of values in [0, 1] (e.g. accuracy), rows x columns, with the value in each cell.
 * Column labels stay on one line where they fit in a cell, else wrap at spaces in a wider cell,
 * else stand upright (rotated a quarter turn); the left margin is as wide as the longest row label.
 */
export function heatMap(opts: {
  title: string;
  rowLabels: string[];
  colLabels: string[];
  rowTitle: string;
  colTitle: string;
  values: (number | null)[][];
}): string {
  const nR = opts.rowLabels.length, nC = opts.colLabels.length;
  const lineH = LINE_EM * FONT, textH = (ASCENT_EM + DESCENT_EM) * FONT;

  // Column labels and cell width.
  let colLines = opts.colLabels.map((c) => [c]);
  let upright = false;
  let cw = Math.max(MIN_CELL_W, widest(opts.colLabels, FONT) + LABEL_GAP);
  if (cw > ONE_LINE_CELL_W) {
    colLines = opts.colLabels.map((c) => wrap(c, FONT, MAX_CELL_W - LABEL_GAP, false));
    const w = widest(colLines.flat(), FONT) + LABEL_GAP;
    if (w <= MAX_CELL_W && colLines.every((l) => l.length <= 3)) {
      cw = Math.max(MIN_CELL_W, w);
    } else {
      upright = true;
      colLines = opts.colLabels.map((c) => [c]);
      cw = MIN_CELL_W;
    }
  }
  const colHeaderH = upright
    ? widest(opts.colLabels, FONT)
    : (Math.max(1, ...colLines.map((l) => l.length)) - 1) * lineH + textH;

  // Left margin: the row title's band (rotated, one line tall), a gap, the row labels, a gap.
  const rowLabelW = widest(opts.rowLabels, FONT);
  const bandW = textH;
  const ml = EDGE + bandW + 8 + rowLabelW + 6;
  const gridW = nC * cw;
  const colTitleW = textWidth(opts.colTitle, FONT);
  // Canvas width: the grid with its margins, at least the column title, then the title up to
  // MAX_TITLE_CANVAS (a longer title wraps). Content narrower than the canvas is centred.
  const contentW = ml + gridW + EDGE + 10;
  let W = Math.max(contentW, colTitleW + 2 * EDGE);
  W = Math.max(W, Math.min(textWidth(opts.title, TITLE_FONT) + 2 * EDGE, MAX_TITLE_CANVAS));
  const ox = (W - contentW) / 2;
  const gx = ox + ml; // grid left

  // Top to bottom: title, column title, column labels, grid.
  const title = titleBlock(opts.title, W);
  const colTitleTop = title.bottom + 10;
  const colLabelTop = colTitleTop + textH + 6;
  const gy = colLabelTop + colHeaderH + 6; // grid top
  const gridB = gy + nR * CELL_H;
  // The row title is centred on the grid but may be longer than the grid is tall: keep it below
  // the column title and make the canvas tall enough for it.
  const rowTitleW = textWidth(opts.rowTitle, FONT);
  const rowTitleY = Math.max((gy + gridB) / 2, colLabelTop + rowTitleW / 2);
  const H = Math.max(gridB, rowTitleY + rowTitleW / 2) + EDGE + 10;

  const out: string[] = [svgOpen(W, H), ...title.els];
  const ctX = Math.min(Math.max(gx + gridW / 2, EDGE + colTitleW / 2), W - EDGE - colTitleW / 2);
  out.push(text(ctX, colTitleTop + ASCENT_EM * FONT, opts.colTitle, { anchor: "middle" }));
  colLines.forEach((lines, j) => {
    const cx = gx + j * cw + cw / 2;
    if (upright) {
      // Reads bottom to top, starting just above its column; the glyphs' height is centred on it.
      out.push(text(cx + centreBaseline(FONT), gy - 6, lines[0], { rotate: -90 }));
      return;
    }
    // Bottom lines line up just above the grid, whatever the number of lines.
    const lastBase = gy - 6 - DESCENT_EM * FONT;
    lines.forEach((l, k) => {
      out.push(text(cx, lastBase - (lines.length - 1 - k) * lineH, l, { anchor: "middle" }));
    });
  });
  opts.rowLabels.forEach((r, i) => {
    const cy = gy + i * CELL_H + CELL_H / 2;
    out.push(text(gx - 6, cy + centreBaseline(FONT), r, { anchor: "end" }));
    (opts.values[i] ?? []).forEach((v, j) => {
      const fill = v === null
        ? "#ddd"
        : `hsl(${Math.round(120 * Math.max(0, Math.min(1, v)))}, 70%, 55%)`;
      out.push(
        `<rect x="${num(gx + j * cw)}" y="${num(gy + i * CELL_H)}" width="${
          num(cw)
        }" height="${CELL_H}" fill="${fill}" stroke="white"/>`,
      );
      out.push(
        text(gx + j * cw + cw / 2, cy + centreBaseline(FONT), v === null ? "-" : v.toFixed(2), {
          anchor: "middle",
        }),
      );
    });
  });
  out.push(
    text(ox + EDGE + ASCENT_EM * FONT, rowTitleY, opts.rowTitle, { anchor: "middle", rotate: -90 }),
  );
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
