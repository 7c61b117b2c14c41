// Line charts on a <canvas>, by hand: no chart library, nothing fetched.
// Each series has a colour of the Okabe-Ito palette (from the CSS custom
// properties --c0..--c7) and a dash pattern of its own, so that lines
// still tell apart without colour; the legend beside the chart repeats
// both with the series' name.

/** Dash patterns by series index (the last, black, is the shaping rate). */
export const DASHES = [[], [8, 4], [2, 3], [10, 3, 2, 3], [4, 4], [1, 2], [12, 2], []];

/** A legend swatch for series `i`: a short line in its colour (CSS class
 *  `k<i>`) and dash pattern, as an inline SVG (no style attribute). */
export function swatch(i) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "sw");
  svg.setAttribute("width", "28");
  svg.setAttribute("height", "8");
  svg.setAttribute("aria-hidden", "true");
  const line = document.createElementNS(ns, "line");
  for (const [k, v] of [["x1", "0"], ["y1", "4"], ["x2", "28"], ["y2", "4"], ["stroke-width", "3"],
    ["class", `k${i % 8}`], ["stroke-dasharray", DASHES[i % DASHES.length].join(" ") || "none"]]) {
    line.setAttribute(k, v);
  }
  svg.append(line);
  return svg;
}

/** The colour of series `i`, read from the style sheet. */
export function colour(i) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(`--c${i % 8}`);
  return v.trim() || "#000";
}

/** A round upper bound for the axis: 1, 2 or 5 times a power of ten. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/**
 * Draws `series` ([{label, points: [[t_ms, value|null], ...]}]) over the
 * last `spanMs` before `now` on `canvas`. The unit is in the chart's
 * caption, so that the axis labels stay short on a phone.
 */
export function draw(canvas, series, { now, spanMs }) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300;
  const height = canvas.clientHeight || 160;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);

  let top = 0;
  for (const s of series) for (const [, v] of s.points) if (v !== null && v > top) top = v;
  top = niceMax(top);
  const left = 34, right = 8, above = 8, below = 18;
  const w = width - left - right, h = height - above - below;
  const x = (t) => left + w * (1 - (now - t) / spanMs);
  const y = (v) => above + h * (1 - v / top);

  const ink = getComputedStyle(canvas).color || "#222";
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = ink;
  g.strokeStyle = ink;
  g.globalAlpha = 0.25;
  g.lineWidth = 1;
  g.setLineDash([]);
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (const f of [0, 0.5, 1]) {
    g.beginPath();
    g.moveTo(left, y(top * f));
    g.lineTo(left + w, y(top * f));
    g.stroke();
  }
  g.globalAlpha = 1;
  for (const f of [0, 0.5, 1]) g.fillText(String(+(top * f).toPrecision(3)), left - 4, y(top * f));
  g.textBaseline = "top";
  const minutes = spanMs / 60000;
  for (const f of [0, 0.5, 1]) {
    g.textAlign = f === 0 ? "left" : f === 1 ? "right" : "center";
    g.fillText(f === 1 ? "now" : `-${minutes * (1 - f)} min`, left + w * f, above + h + 4);
  }

  g.lineWidth = 2;
  g.lineJoin = "round";
  series.forEach((s, i) => {
    g.strokeStyle = colour(s.index ?? i);
    g.setLineDash(DASHES[(s.index ?? i) % DASHES.length]);
    g.beginPath();
    let drawing = false;
    for (const [t, v] of s.points) {
      if (v === null || now - t > spanMs) { drawing = false; continue; }
      if (drawing) g.lineTo(x(t), y(v));
      else g.moveTo(x(t), y(v));
      drawing = true;
    }
    g.stroke();
  });
  g.setLineDash([]);
}
