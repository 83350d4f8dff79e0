// mtkit serve: the BLEU-by-length tab. BLEU per length bucket with its 95% interval (or a plain note naming the
// scores file that has none, and the command that writes them); the study's headline view, the same verses alone
// and inside passages of k verses, per model; and test sentences of a bucket with each model's cached output.

import { ApiError, Latest, getExamples, getPassages, getScores, isAbort } from "./api.js";
import { $, COLORS, el, intervalBar, measure, svg } from "./svg.js";

const requests = new Latest();  // one examples request in flight: clicking another bucket aborts the last
let loaded = false;  // the scores and passages are fetched once
let runs = [];
let useExample = () => {};

// Show the tab: fetch the scores once; `onExample(example, beam)` takes a test sentence to the translate view.
export async function showLengthTab(servedRuns, onExample) {
  runs = servedRuns;
  useExample = onExample;
  if (loaded) return;
  loaded = true;
  const [scores, passages] = await Promise.allSettled([getScores(), getPassages()]);
  showPart(scores, "#scores-note", (data) => { drawChart(data); drawTable(data); });
  showPart(passages, "#passages-note", drawPassages);
}

// One part of the tab: its note (the request's error, what is missing, which file has no intervals), its drawing.
function showPart(outcome, noteSelector, draw) {
  if (outcome.status === "rejected") {
    note(noteSelector, outcome.reason.message);
    return;
  }
  note(noteSelector, [outcome.value.note, outcome.value.intervals_note].filter(Boolean).join(" "));
  draw(outcome.value);
}

function note(selector, text) {
  $(selector).hidden = !text;
  $(selector).textContent = text || "";
}

// A system's colour: its run's, so a model keeps one colour on both tabs.
function colorOf(system, systems) {
  const i = runs.findIndex((r) => r.name === system.run);
  return COLORS[(i >= 0 ? i : runs.length + systems.indexOf(system)) % COLORS.length];
}

function ciText(b) { return b.ci_low != null ? ` [${b.ci_low.toFixed(1)}, ${b.ci_high.toFixed(1)}]` : ""; }

// ---------- BLEU by length ---------------------------------------------------------------------------------

function drawChart(data) {
  const buckets = data.buckets;
  const legend = (s) => `${s.name} (BLEU ${s.bleu.toFixed(1)})`;
  const frame = chartFrame("bleu-chart", "BLEU by sentence length", { plotW: 560, plotH: 254, top: 20, bottom: 46 },
    buckets.length, data.systems.flatMap((s) => s.buckets), data.systems.map(legend));
  const { root, x, left, top, plotW, plotH, height } = frame;
  root.append(svg("text", { x: left + plotW / 2, y: height - 6, "text-anchor": "middle", class: "axis" },
    `${data.length_of === "ref" ? "reference" : "source"} sentence length (words) — click a bucket for examples`));
  buckets.forEach((label, i) => {
    const hit = svg("rect", { x: left + plotW * i / buckets.length, y: top, width: plotW / buckets.length, height: plotH,
      class: "bucket-hit", "data-bucket": label, tabindex: "0" });
    hit.append(svg("title", {}, `examples of ${label} words`));
    hit.addEventListener("click", () => showExamples(label, 0));
    hit.addEventListener("keydown", (e) => { if (e.key === "Enter") showExamples(label, 0); });
    root.append(hit);
    root.append(svg("text", { x: x(i), y: top + plotH + 18, "text-anchor": "middle", class: "tick" }, label));
  });
  drawSeries(frame, data.systems, (s) => s.buckets.map((b, i) => ({ ...b, i })), legend,
    (s, b) => `${s.name}, ${b.label} words: BLEU ${b.bleu.toFixed(1)}${ciText(b)} (${b.count} sentences)`);
  $("#chart").replaceChildren(root);
}

// An empty chart: `columns` categories side by side, a BLEU axis up to the next 10 above every score and
// interval, its grid, and room on the right for the legends.
function chartFrame(cls, label, { plotW, plotH, top, bottom }, columns, scores, legends) {
  const left = 48;
  const right = Math.max(120, ...legends.map((text) => measure(text))) + 56;
  const width = left + plotW + right, height = top + plotH + bottom;
  const ymax = Math.ceil(Math.max(10, ...scores.map((b) => b.ci_high ?? b.bleu ?? 0)) / 10) * 10;
  const x = (i) => left + plotW * (i + 0.5) / columns;
  const y = (v) => top + plotH * (1 - v / ymax);
  const root = svg("svg", { class: cls, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  grid(root, left, plotW, ymax, y);
  return { root, x, y, left, top, plotW, plotH, height };
}

// One series per system, in its run's colour, nudged apart so that intervals do not hide each other, and its legend.
// points(system): its scores, each with the column `i` it belongs to.
function drawSeries(frame, systems, points, legend, title) {
  const { root, x, y, left, top, plotW } = frame;
  systems.forEach((system, n) => {
    const color = colorOf(system, systems);
    const dx = (n - (systems.length - 1) / 2) * 6;
    series(root, points(system).map((b) => ({ ...b, x: x(b.i) + dx })), y, color, (b) => title(system, b));
    legendLine(root, left + plotW + 16, top + 14 + n * 20, color, legend(system));
  });
}

// Horizontal grid lines every 10 BLEU, with their ticks and the axis name.
function grid(root, left, plotW, ymax, y) {
  for (let v = 0; v <= ymax; v += 10) {
    root.append(svg("line", { x1: left, x2: left + plotW, y1: y(v), y2: y(v), class: "grid" }));
    root.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, String(v)));
  }
  const mid = y(ymax / 2);
  root.append(svg("text", { x: 12, y: mid, transform: `rotate(-90 12 ${mid})`, "text-anchor": "middle", class: "axis" },
    "BLEU"));
}

// One system's points (with their intervals, where scored) joined by a line.
function series(root, points, y, color, title) {
  let path = "";
  for (const b of points) {
    if (b.bleu == null) continue;
    path += `${path ? "L" : "M"}${b.x},${y(b.bleu)}`;
    if (b.ci_low != null) intervalBar(root, b.x, y(b.ci_low), y(b.ci_high), color);
    const dot = svg("circle", { cx: b.x, cy: y(b.bleu), r: 3.5, fill: color, class: "point" });
    dot.append(svg("title", {}, title(b)));
    root.append(dot);
  }
  root.append(svg("path", { d: path, stroke: color, class: "series" }));
}

function legendLine(root, x, y, color, text) {
  root.append(svg("line", { x1: x, x2: x + 20, y1: y - 4, y2: y - 4, stroke: color, class: "series" }));
  root.append(svg("text", { x: x + 26, y, class: "legend" }, text));
}

function drawTable(data) {
  if (!data.systems.length) {
    $("#bucket-table").replaceChildren(el("p", {}, "Test sentences by length: ",
      ...data.buckets.map((label) => el("button", { type: "button", class: "bucket-button", "data-bucket": label,
        text: label, onclick: () => showExamples(label, 0) }))));
    return;
  }
  const head = el("tr", {}, el("th", { text: "words" }),
    ...data.buckets.map((label) => el("th", {}, el("button", { type: "button", class: "bucket-button",
      "data-bucket": label, text: label, onclick: () => showExamples(label, 0) }))), el("th", { text: "all" }));
  const rows = [el("tr", {}, el("th", { text: "sentences" }),
    ...data.systems[0].buckets.map((b) => el("td", { text: String(b.count) })), el("td", { text: String(data.systems[0].count) }))];
  for (const s of data.systems) {
    rows.push(el("tr", {}, el("th", { text: `${s.name}, BLEU` }),
      ...s.buckets.map((b) => el("td", {}, b.bleu == null ? "–" : b.bleu.toFixed(1),
        b.ci_low != null ? el("small", { text: ` [${b.ci_low.toFixed(1)}–${b.ci_high.toFixed(1)}]` }) : null)),
      el("td", {}, el("strong", { text: s.bleu.toFixed(1) }))));
  }
  const boots = [...new Set(data.systems.filter((s) => s.n_boot > 0).map((s) => s.n_boot))];
  const fine = boots.length ? `[low–high]: 95% bootstrap interval over ${boots.join("/")} resamples. ` : "";
  $("#bucket-table").replaceChildren(el("table", { class: "scores" }, el("thead", {}, head), el("tbody", {}, ...rows)),
    el("p", { class: "fine", text: `${fine}${data.systems[0].bleu_signature}` }));
}

// ---------- the same verses alone and inside passages ------------------------------------------------------

// Per model, BLEU of the same verses read alone (k = 1) and inside passages of k verses, with intervals where
// scored; and, when `mtkit eval` wrote it, each k against k = 1 as a paired ratio with its own interval.
function drawPassages(data) {
  const box = $("#passages");
  if (!data.systems.length) { box.replaceChildren(); return; }
  const ks = [...new Set(data.systems.flatMap((s) => s.by_k.map((b) => b.label)))];
  const frame = chartFrame("passage-chart", "BLEU of the same verses alone and inside passages",
    { plotW: 300, plotH: 200, top: 16, bottom: 40 }, ks.length, data.systems.flatMap((s) => s.by_k),
    data.systems.map((s) => s.name));
  const { root, x, top, plotH } = frame;
  ks.forEach((label, i) => root.append(svg("text", { x: x(i), y: top + plotH + 18, "text-anchor": "middle",
    class: "tick" }, label === "k=1" ? "alone" : `in ${label.slice(2)}-verse passages`)));
  drawSeries(frame, data.systems, (s) => s.by_k.map((b) => ({ ...b, i: ks.indexOf(b.label) })), (s) => s.name,
    (s, b) => `${s.name}, ${b.label}: BLEU ${b.bleu.toFixed(1)}${ciText(b)} (${b.count} inputs)`);
  const head = el("tr", {}, el("th", { text: "model" }),
    ...ks.map((label) => el("th", { text: label === "k=1" ? "alone (k=1)" : `inside passages (${label})` })));
  const rows = data.systems.map((s) => {
    const alone = s.by_k.find((b) => b.label === "k=1");
    return el("tr", { "data-system": s.name }, el("th", { text: s.name }), ...ks.map((label) => {
      const b = s.by_k.find((c) => c.label === label);
      if (!b || b.bleu == null) return el("td", { text: "–" });
      const paired = (s.paired || []).find((p) => `k=${p.k}` === label && p.ratio != null);  // null: BLEU_1 is 0
      const change = label !== "k=1" && alone && alone.bleu ? ` ${b.bleu >= alone.bleu ? "+" : "−"}` +
        `${Math.abs(100 * (b.bleu / alone.bleu - 1)).toFixed(0)}%` : "";
      return el("td", {}, b.bleu.toFixed(1), el("small", { text: `${ciText(b)}${change}` }),
        paired ? el("div", { class: "paired", text: `×${paired.ratio.toFixed(2)}` +
          (paired.ci_low != null ? ` [${paired.ci_low.toFixed(2)}–${paired.ci_high.toFixed(2)}]` : "") +
          (paired.mean_src_words != null ? `, ${paired.mean_src_words.toFixed(0)} source words` : "") }) : null);
    }));
  });
  const paired = data.systems.some((s) => s.paired);
  box.replaceChildren(el("h3", { text: "The same verses, alone and inside passages" }),
    el("div", { class: "chart" }, root),
    el("table", { class: "scores passages" }, el("thead", {}, head), el("tbody", {}, ...rows)),
    el("p", { class: "fine", text: "Every column covers the same verses: only the context around them changes. " +
      "[low, high]: 95% bootstrap interval; ± %: against the verses alone." +
      (paired ? " ×: BLEU inside passages over BLEU alone, paired over the same verses, with its 95% interval." : "") }));
}

// ---------- test sentences of one bucket --------------------------------------------------------------------

async function showExamples(bucket, offset) {
  const box = $("#examples");
  const signal = requests.start("examples");
  box.replaceChildren(el("p", { class: "pending", text: `loading ${bucket}-word test sentences…` }));
  for (const node of document.querySelectorAll("[data-bucket]")) {
    node.classList.toggle("chosen", node.dataset.bucket === bucket);
  }
  let data;
  try {
    data = await getExamples(bucket, offset, 5, true, signal);
  } catch (err) {
    if (isAbort(err)) return;
    box.replaceChildren(el("p", { class: "error", text: err instanceof ApiError ? err.message : String(err) }));
    return;
  }
  const shown = data.examples.length;
  const header = el("div", { class: "examples-head" },
    el("h3", { text: `${bucket} words: ${data.total} test sentences` + (shown ? ` (showing ${offset + 1}–${offset + shown})` : "") }),
    offset > 0 ? el("button", { type: "button", text: "◀ previous", onclick: () => showExamples(bucket, Math.max(0, offset - 5)) }) : null,
    offset + shown < data.total ? el("button", { type: "button", text: "next ▶", onclick: () => showExamples(bucket, offset + 5) }) : null);
  const items = data.examples.map((ex) => {
    const outputs = Object.entries(ex.outputs).map(([run, out]) =>
      el("div", { class: "output" }, el("span", { class: "label run" }, run, el("small", { text: out.from })),
        el("span", { lang: data.tgt_lang, text: out.text })));
    const beams = [...new Set(Object.values(ex.outputs).map((o) => o.beam))];
    return el("article", { class: "example" },
      el("div", { class: "ex-meta" }, `test line ${ex.line} · ${ex.words} words `,
        el("button", { type: "button", text: "see where the models look",
          onclick: () => useExample(ex, beams.length === 1 ? beams[0] : null) })),
      el("div", { class: "source" }, el("span", { class: "label", text: "source" }), el("span", { lang: data.src_lang, text: ex.source })),
      el("div", { class: "reference" }, el("span", { class: "label", text: "reference" }), el("span", { lang: data.tgt_lang, text: ex.reference })),
      ...outputs);
  });
  const notes = [
    data.other_test_split.length ? `${data.other_test_split.join(", ")}: tested on another split, so not shown here` : null,
    data.uncached_note,
  ].filter(Boolean).map((text) => el("p", { class: "note", text }));
  box.replaceChildren(header, ...items, ...notes);
}
