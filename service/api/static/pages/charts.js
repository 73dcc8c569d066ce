// Small SVG charts for the dashboard: box + strip plots, horizontal bars, lines.
// No library, no network: every chart is an <svg role="img"> with a <title> and an aria-label.
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgRoot(width, height, label) {
  const svg = el("svg", {
    viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label,
  });
  svg.appendChild(el("title", {}, label));
  return svg;
}

export function niceTicks(min, max, count = 5) {
  if (!(max > min)) max = min + 1;
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  const top = Math.ceil(max / step - 1e-9) * step;
  for (let v = Math.floor(min / step + 1e-9) * step; v <= top + step * 1e-9; v += step) {
    ticks.push(Number(v.toFixed(10)));
  }
  return ticks;
}

export function quantile(sorted, q) {
  if (!sorted.length) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function yAxis(svg, box, scale, ticks, label, format = (v) => String(v)) {
  for (const t of ticks) {
    const y = scale(t);
    svg.appendChild(el("line", { x1: box.left, x2: box.right, y1: y, y2: y, class: "grid" }));
    svg.appendChild(el("text", { x: box.left - 6, y: y + 4, "text-anchor": "end",
      "font-size": 12 }, format(t)));
  }
  svg.appendChild(el("line", { x1: box.left, x2: box.left, y1: box.top, y2: box.bottom,
    class: "axis" }));
  const cy = (box.top + box.bottom) / 2;
  svg.appendChild(el("text", { x: 14, y: cy, transform: `rotate(-90 14 ${cy})`,
    "text-anchor": "middle", "font-size": 13 }, label));
}

function legend(svg, items, x, y) {
  items.forEach(({ name, color }, i) => {
    const lx = x + i * 150;
    svg.appendChild(el("rect", { x: lx, y: y - 10, width: 12, height: 12, fill: color }));
    svg.appendChild(el("text", { x: lx + 17, y: y, "font-size": 12 }, name));
  });
}

// Random but repeatable jitter, so a strip plot does not move between renders.
function jitter(i) {
  const s = Math.sin(i * 12.9898 + 78.233) * 43758.5453;
  return s - Math.floor(s) - 0.5;
}

/**
 * Box + strip plot. groups: [{label, series: [{name, color, values}]}]; y in [yMin, yMax].
 */
export function boxStrip({ title, yLabel, groups, yMin = 0, yMax = 1, legendItems }) {
  const slot = 70;
  const width = Math.max(420, 80 + groups.length * (groups[0]?.series.length || 1) * slot + 40);
  const height = 330;
  const box = { left: 62, right: width - 12, top: 34, bottom: height - 78 };
  const svg = svgRoot(width, height, title);
  const scale = (v) => box.bottom - ((v - yMin) / (yMax - yMin)) * (box.bottom - box.top);
  yAxis(svg, box, scale, niceTicks(yMin, yMax, 5), yLabel, (v) => v.toFixed(1));
  const groupWidth = (box.right - box.left) / Math.max(groups.length, 1);
  groups.forEach((group, gi) => {
    const gx = box.left + gi * groupWidth;
    const n = group.series.length;
    group.series.forEach((series, si) => {
      const cx = gx + (groupWidth * (si + 1)) / (n + 1);
      const values = [...series.values].sort((a, b) => a - b);
      const half = Math.min(18, groupWidth / (n + 1) / 2.5);
      if (values.length) {
        const [q1, med, q3] = [0.25, 0.5, 0.75].map((q) => quantile(values, q));
        const iqr = q3 - q1;
        const lo = values.find((v) => v >= q1 - 1.5 * iqr);
        const hi = [...values].reverse().find((v) => v <= q3 + 1.5 * iqr);
        const g = el("g", { "aria-label":
          `${group.label}, ${series.name}: median ${med.toFixed(3)}, n ${values.length}` });
        g.appendChild(el("line", { x1: cx, x2: cx, y1: scale(lo), y2: scale(hi),
          stroke: series.color, "stroke-width": 1.5 }));
        g.appendChild(el("rect", { x: cx - half, y: scale(q3), width: 2 * half,
          height: Math.max(1, scale(q1) - scale(q3)), fill: series.color, "fill-opacity": 0.18,
          stroke: series.color, "stroke-width": 1.5 }));
        g.appendChild(el("line", { x1: cx - half, x2: cx + half, y1: scale(med), y2: scale(med),
          stroke: series.color, "stroke-width": 3 }));
        values.forEach((v, i) => {
          g.appendChild(el("circle", { cx: cx + jitter(i + gi * 31 + si * 7) * half * 1.6,
            cy: scale(v), r: 2.6, fill: series.color, "fill-opacity": 0.7 }));
        });
        svg.appendChild(g);
      }
      svg.appendChild(el("text", { x: cx, y: box.bottom + 16, "text-anchor": "middle",
        "font-size": 11, fill: "#57606a" }, `n=${values.length}`));
    });
    const lx = gx + groupWidth / 2;
    svg.appendChild(el("text", { x: lx, y: box.bottom + 34, "text-anchor": "middle",
      "font-size": 12 }, group.label));
  });
  svg.appendChild(el("line", { x1: box.left, x2: box.right, y1: box.bottom, y2: box.bottom,
    class: "axis" }));
  svg.appendChild(el("text", { x: box.left, y: 18, "font-size": 14, "font-weight": 600 }, title));
  legend(svg, legendItems, box.left, height - 14);
  return svg;
}

/** Horizontal bars: items [{label, value, color}], value axis labelled xLabel. */
export function hbars({ title, xLabel, items, format = (v) => v.toFixed(1) }) {
  const rowH = 30;
  const labelW = 270;
  const width = 720;
  const height = 70 + items.length * rowH + 20;
  const box = { left: labelW, right: width - 60, top: 34, bottom: 34 + items.length * rowH };
  const svg = svgRoot(width, height, title);
  const max = Math.max(...items.map((i) => i.value), 1e-9);
  const ticks = niceTicks(0, max * 1.05, 5);
  const top = ticks[ticks.length - 1];
  const scale = (v) => box.left + (v / top) * (box.right - box.left);
  for (const t of ticks) {
    const x = scale(t);
    svg.appendChild(el("line", { x1: x, x2: x, y1: box.top, y2: box.bottom, class: "grid" }));
    svg.appendChild(el("text", { x, y: box.bottom + 16, "text-anchor": "middle",
      "font-size": 12 }, String(t)));
  }
  items.forEach((item, i) => {
    const y = box.top + i * rowH + 5;
    svg.appendChild(el("text", { x: box.left - 8, y: y + 14, "text-anchor": "end",
      "font-size": 12 }, item.label));
    svg.appendChild(el("rect", { x: box.left, y, width: Math.max(1, scale(item.value) - box.left),
      height: rowH - 10, fill: item.color || "#2f7fd0" }));
    svg.appendChild(el("text", { x: scale(item.value) + 5, y: y + 14, "font-size": 12 },
      format(item.value)));
  });
  svg.appendChild(el("line", { x1: box.left, x2: box.left, y1: box.top, y2: box.bottom,
    class: "axis" }));
  svg.appendChild(el("text", { x: (box.left + box.right) / 2, y: box.bottom + 36,
    "text-anchor": "middle", "font-size": 13 }, xLabel));
  svg.appendChild(el("text", { x: 8, y: 18, "font-size": 14, "font-weight": 600 }, title));
  return svg;
}

/** Lines over categories: xs [label], series [{name, color, dash, values (null = gap)}]. */
export function lines({ title, xLabel, yLabel, xs, series, yMin = 0, yMax = 1 }) {
  const width = Math.min(1200, Math.max(560, 120 + xs.length * 60));
  const height = 300 + series.length * 17;
  const box = { left: 62, right: width - 20, top: 34, bottom: 250 };
  const svg = svgRoot(width, height, title);
  const scale = (v) => box.bottom - ((v - yMin) / (yMax - yMin)) * (box.bottom - box.top);
  yAxis(svg, box, scale, niceTicks(yMin, yMax, 5), yLabel, (v) => v.toFixed(1));
  const step = (box.right - box.left) / Math.max(xs.length, 1);
  const xAt = (i) => box.left + step * (i + 0.5);
  const tilt = step < 95;
  xs.forEach((x, i) => {
    const y = box.bottom + 16;
    svg.appendChild(el("text", { x: xAt(i), y, "text-anchor": tilt ? "end" : "middle",
      "font-size": 11, transform: tilt ? `rotate(-30 ${xAt(i)} ${y})` : "" }, x));
  });
  svg.appendChild(el("line", { x1: box.left, x2: box.right, y1: box.bottom, y2: box.bottom,
    class: "axis" }));
  svg.appendChild(el("text", { x: (box.left + box.right) / 2, y: box.bottom + 38,
    "text-anchor": "middle", "font-size": 13 }, xLabel));
  for (const s of series) {
    let path = "";
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      path += `${path && s.values[i - 1] != null ? "L" : "M"}${xAt(i)},${scale(v)} `;
      svg.appendChild(el("circle", { cx: xAt(i), cy: scale(v), r: 3.5, fill: s.color }));
    });
    if (path) {
      svg.appendChild(el("path", { d: path, fill: "none", stroke: s.color, "stroke-width": 2,
        "stroke-dasharray": s.dash || "" }));
    }
  }
  svg.appendChild(el("text", { x: box.left, y: 18, "font-size": 14, "font-weight": 600 }, title));
  series.forEach((s, i) => {
    const lx = box.left;
    const ly = box.bottom + 60 + i * 17;
    svg.appendChild(el("line", { x1: lx, x2: lx + 22, y1: ly - 4, y2: ly - 4, stroke: s.color,
      "stroke-width": 2, "stroke-dasharray": s.dash || "" }));
    svg.appendChild(el("text", { x: lx + 27, y: ly, "font-size": 11 }, s.name));
  });
  return svg;
}
