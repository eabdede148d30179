/**
 * Minimal SVG charts (line plots and heat maps) with no dependencies, for loss curves, NLL per
 * segment and passkey accuracy grids that a user can open in any browser.
 */

export interface Series {
  name: string;
  points: [number, number][];
  color?: string;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"];

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
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

/** A line chart of one or more series. */
export function lineChart(opts: {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  width?: number;
  height?: number;
  logX?: boolean;
}): string {
  const W = opts.width ?? 720, Hh = opts.height ?? 420;
  const m = { l: 70, r: 160, t: 40, b: 50 };
  const pts = opts.series.flatMap((s) => s.points).filter(([x, y]) =>
    Number.isFinite(x) && Number.isFinite(y)
  );
  const tx = (x: number) => (opts.logX ? Math.log10(Math.max(x, 1e-12)) : x);
  let x0 = Math.min(...pts.map((p) => tx(p[0]))), x1 = Math.max(...pts.map((p) => tx(p[0])));
  let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
  if (!pts.length) [x0, x1, y0, y1] = [0, 1, 0, 1];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const px = (x: number) => m.l + ((tx(x) - x0) / (x1 - x0)) * (W - m.l - m.r);
  const py = (y: number) => Hh - m.b - ((y - y0) / (y1 - y0)) * (Hh - m.t - m.b);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${Hh}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(opts.title)}</text>`,
  );
  for (const v of niceTicks(y0, y1)) {
    out.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${py(v)}" y2="${py(v)}" stroke="#eee"/>`);
    out.push(`<text x="${m.l - 6}" y="${py(v) + 4}" text-anchor="end">${fmtTick(v)}</text>`);
  }
  const xt = opts.logX
    ? niceTicks(x0, x1).filter((v) => Number.isInteger(v)).map((v) => 10 ** v)
    : niceTicks(x0, x1);
  for (const v of xt) {
    out.push(`<line x1="${px(v)}" x2="${px(v)}" y1="${m.t}" y2="${Hh - m.b}" stroke="#eee"/>`);
    out.push(`<text x="${px(v)}" y="${Hh - m.b + 16}" text-anchor="middle">${fmtTick(v)}</text>`);
  }
  out.push(
    `<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${
      Hh - m.t - m.b
    }" fill="none" stroke="#333"/>`,
  );
  out.push(
    `<text x="${(m.l + W - m.r) / 2}" y="${Hh - 12}" text-anchor="middle">${
      esc(opts.xLabel)
    }</text>`,
  );
  out.push(
    `<text x="16" y="${(m.t + Hh - m.b) / 2}" text-anchor="middle" transform="rotate(-90 16 ${
      (m.t + Hh - m.b) / 2
    })">${esc(opts.yLabel)}</text>`,
  );
  opts.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const p = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (p.length > 1) {
      const d = p.map(([x, y], j) => `${j ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`)
        .join("");
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"/>`);
    } else if (p.length === 1) {
      out.push(`<circle cx="${px(p[0][0])}" cy="${py(p[0][1])}" r="3" fill="${color}"/>`);
    }
    const ly = m.t + 10 + i * 18;
    out.push(
      `<line x1="${W - m.r + 10}" x2="${
        W - m.r + 30
      }" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
    );
    out.push(`<text x="${W - m.r + 36}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/** A heat map of values in [0, 1] (e.g. accuracy), rows x columns, with the value in each cell. */
export function heatMap(opts: {
  title: string;
  rowLabels: string[];
  colLabels: string[];
  rowTitle: string;
  colTitle: string;
  values: (number | null)[][];
}): string {
  const cw = 70, ch = 30, ml = 120, mt = 60;
  const W = ml + cw * opts.colLabels.length + 20, Hh = mt + ch * opts.rowLabels.length + 50;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${Hh}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(opts.title)}</text>`,
  );
  out.push(
    `<text x="${ml + (cw * opts.colLabels.length) / 2}" y="44" text-anchor="middle">${
      esc(opts.colTitle)
    }</text>`,
  );
  opts.colLabels.forEach((c, j) => {
    out.push(
      `<text x="${ml + j * cw + cw / 2}" y="${mt - 4}" text-anchor="middle">${esc(c)}</text>`,
    );
  });
  opts.rowLabels.forEach((r, i) => {
    out.push(
      `<text x="${ml - 6}" y="${mt + i * ch + ch / 2 + 4}" text-anchor="end">${esc(r)}</text>`,
    );
    opts.values[i].forEach((v, j) => {
      const fill = v === null
        ? "#ddd"
        : `hsl(${Math.round(120 * Math.max(0, Math.min(1, v)))}, 70%, 55%)`;
      out.push(
        `<rect x="${ml + j * cw}" y="${
          mt + i * ch
        }" width="${cw}" height="${ch}" fill="${fill}" stroke="white"/>`,
      );
      out.push(
        `<text x="${ml + j * cw + cw / 2}" y="${mt + i * ch + ch / 2 + 4}" text-anchor="middle">${
          v === null ? "-" : v.toFixed(2)
        }</text>`,
      );
    });
  });
  out.push(
    `<text x="14" y="${
      mt + (ch * opts.rowLabels.length) / 2
    }" text-anchor="middle" transform="rotate(-90 14 ${mt + (ch * opts.rowLabels.length) / 2})">${
      esc(opts.rowTitle)
    }</text>`,
  );
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
