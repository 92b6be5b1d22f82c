/**
 * A small, dependency-free SVG line chart with a logarithmic x axis and a linear or logarithmic y axis
 * (bench:scale's events/s against connections). Plain SVG 1.1 text, readable in a browser and on GitHub.
 */

export interface ChartSeries {
  name: string;
  color: string;
  dashed?: boolean;
  /** Value labels under the points instead of above (for a series that runs close to another). */
  labelsBelow?: boolean;
  points: { x: number; y: number; label?: string }[];
}

export interface ChartOptions {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: ChartSeries[];
  /** Horizontal reference lines (targets). */
  hlines?: { y: number; label: string; color: string }[];
  /** A logarithmic y axis (decades), for series that differ by orders of magnitude. */
  logY?: boolean;
  /** Lines of small text under the chart. */
  notes?: string[];
  width?: number;
  height?: number;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** 1, 2, 5 × 10^k steps for about `n` ticks from 0 to at least `max`. */
function linearTicks(max: number, n = 6): number[] {
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = 0; v <= max + step * 0.001; v += step) ticks.push(v);
  if (ticks[ticks.length - 1] < max) ticks.push(ticks[ticks.length - 1] + step);
  return ticks;
}

/** 1,000 → "1k", 1,000,000 → "1M", 150,000 → "150k". */
export function short(n: number): string {
  if (n >= 1e6) return `${+(n / 1e6).toFixed(n % 1e6 === 0 ? 0 : 1)}M`;
  if (n >= 1e3) return `${+(n / 1e3).toFixed(n >= 1e4 || n % 1e3 === 0 ? 0 : 1)}k`;
  return String(Math.round(n));
}

export function lineChartSvg(o: ChartOptions): string {
  const width = o.width ?? 820;
  const notes = o.notes ?? [];
  const height = (o.height ?? 460) + notes.length * 16;
  const m = { left: 78, right: 200, top: o.subtitle ? 62 : 44, bottom: 62 + notes.length * 16 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const xs = o.series.flatMap((s) => s.points.map((p) => p.x)).filter((x) => x > 0);
  const ys = [...o.series.flatMap((s) => s.points.map((p) => p.y)), ...(o.hlines ?? []).map((h) => h.y)];
  const xMinDecade = Math.floor(Math.log10(Math.min(...xs, 100)));
  const xMaxDecade = Math.ceil(Math.log10(Math.max(...xs, 1000)));
  const positive = ys.filter((y) => y > 0);
  const yMinDecade = Math.floor(Math.log10(Math.min(...positive, 1000)));
  const yMaxDecade = Math.ceil(Math.log10(Math.max(...positive, 10000)));
  const yTicks = o.logY
    ? Array.from({ length: yMaxDecade - yMinDecade + 1 }, (_, i) => 10 ** (yMinDecade + i))
    : linearTicks(Math.max(...ys, 1) * 1.08);
  const yMax = yTicks[yTicks.length - 1];
  const X = (x: number) => m.left + ((Math.log10(x) - xMinDecade) / (xMaxDecade - xMinDecade)) * pw;
  const Y = o.logY
    ? (y: number) =>
        m.top + ph - ((Math.log10(Math.max(y, 10 ** yMinDecade)) - yMinDecade) / (yMaxDecade - yMinDecade)) * ph
    : (y: number) => m.top + ph - (y / yMax) * ph;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${m.left}" y="22" font-size="15" font-weight="bold">${esc(o.title)}</text>`,
  );
  if (o.subtitle) out.push(`<text x="${m.left}" y="42" fill="#555">${esc(o.subtitle)}</text>`);
  // Grid and axes.
  for (const t of yTicks) {
    out.push(
      `<line x1="${m.left}" y1="${Y(t).toFixed(1)}" x2="${m.left + pw}" y2="${Y(t).toFixed(1)}" stroke="#e4e4e4"/>`,
      `<text x="${m.left - 8}" y="${(Y(t) + 4).toFixed(1)}" text-anchor="end" fill="#333">${short(t)}</text>`,
    );
  }
  if (o.logY)
    for (let d = yMinDecade; d < yMaxDecade; d++)
      for (let k = 2; k <= 9; k++)
        out.push(
          `<line x1="${m.left - 4}" y1="${Y(k * 10 ** d).toFixed(1)}" x2="${m.left}" y2="${Y(k * 10 ** d).toFixed(1)}" stroke="#999"/>`,
        );
  for (let d = xMinDecade; d <= xMaxDecade; d++) {
    const x = X(10 ** d);
    out.push(
      `<line x1="${x.toFixed(1)}" y1="${m.top}" x2="${x.toFixed(1)}" y2="${m.top + ph}" stroke="#e4e4e4"/>`,
      `<text x="${x.toFixed(1)}" y="${m.top + ph + 18}" text-anchor="middle" fill="#333">${short(10 ** d)}</text>`,
    );
    if (d < xMaxDecade)
      for (let k = 2; k <= 9; k++) {
        const xx = X(k * 10 ** d);
        out.push(
          `<line x1="${xx.toFixed(1)}" y1="${m.top + ph}" x2="${xx.toFixed(1)}" y2="${m.top + ph + 4}" stroke="#999"/>`,
        );
      }
  }
  out.push(
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`,
    `<text x="${m.left + pw / 2}" y="${m.top + ph + 42}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`,
  );
  // Reference lines.
  for (const h of o.hlines ?? []) {
    out.push(
      `<line x1="${m.left}" y1="${Y(h.y).toFixed(1)}" x2="${m.left + pw}" y2="${Y(h.y).toFixed(1)}" stroke="${h.color}" stroke-dasharray="2 4" stroke-width="1.5"/>`,
      `<text x="${m.left + pw + 6}" y="${(Y(h.y) + 4).toFixed(1)}" fill="${h.color}" font-size="11">${esc(h.label)}</text>`,
    );
  }
  // Series.
  o.series.forEach((s, i) => {
    const pts = s.points.filter((p) => p.x > 0).sort((a, b) => a.x - b.x);
    if (pts.length > 1)
      out.push(
        `<polyline fill="none" stroke="${s.color}" stroke-width="2.2"${s.dashed ? ' stroke-dasharray="7 5"' : ''} points="${pts.map((p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(' ')}"/>`,
      );
    for (const p of pts) {
      out.push(`<circle cx="${X(p.x).toFixed(1)}" cy="${Y(p.y).toFixed(1)}" r="3.5" fill="${s.color}"/>`);
      // Above the point; pulled inside the plot at its right edge, where the reference lines are labelled.
      const atRight = X(p.x) > m.left + pw - 30;
      out.push(
        `<text x="${(X(p.x) + (atRight ? -6 : 0)).toFixed(1)}" y="${(Y(p.y) + (s.labelsBelow ? 17 : -8)).toFixed(1)}" text-anchor="${atRight ? 'end' : 'middle'}" fill="${s.color}" font-size="11">${esc(p.label ?? short(p.y))}</text>`,
      );
    }
    // Legend.
    const ly = m.top + 14 + i * 22;
    const lx = m.left + pw + 14;
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 26}" y2="${ly}" stroke="${s.color}" stroke-width="2.2"${s.dashed ? ' stroke-dasharray="7 5"' : ''}/>`,
      `<text x="${lx + 32}" y="${ly + 4}" font-size="11">${esc(s.name)}</text>`,
    );
  });
  notes.forEach((n, i) => {
    out.push(`<text x="${m.left}" y="${height - m.bottom + 62 + i * 16}" fill="#555" font-size="11">${esc(n)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
