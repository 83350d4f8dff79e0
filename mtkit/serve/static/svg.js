// mtkit serve: building the page's elements and SVG by hand (never from HTML strings), and the colours they use.

export const SVG = "http://www.w3.org/2000/svg";
export const FONT = "13px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
export const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

export function $(selector, root = document) { return root.querySelector(selector); }

// An HTML element: attrs "class", "text" (its textContent) and "onX" (listeners) are special; null children skipped.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

// An SVG element with attributes and an optional text.
export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text != null) node.textContent = text;
  return node;
}

// The width in pixels of a text in the page's font.
export const measure = (() => {
  const ctx = document.createElement("canvas").getContext("2d");
  return (text) => { ctx.font = FONT; return ctx.measureText(text).width; };
})();

export function fmt(w) { return w.toFixed(2); }

// The viridis colour map (matplotlib's, as mtkit attention draws it), by linear interpolation of 9 stops.
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"]
  .map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
export function viridis(w) {
  const x = Math.min(1, Math.max(0, w)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// Vertical interval bars with caps, drawn into `root` at x from y(low) to y(high).
export function intervalBar(root, x, yLow, yHigh, color) {
  root.append(svg("line", { x1: x, x2: x, y1: yLow, y2: yHigh, stroke: color, class: "ci" }));
  for (const y of [yLow, yHigh]) root.append(svg("line", { x1: x - 3, x2: x + 3, y1: y, y2: y, stroke: color, class: "ci" }));
}
