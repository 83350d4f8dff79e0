// mtkit serve: the page. Plain JavaScript and hand-written SVG; it talks only to this server's /api.
//
// Every model gets a panel. A panel with attention draws the same (target × source) weights three
// ways: alignment lines (one per weight ≥ the threshold, width and opacity following the weight),
// a heatmap, and a step-through that replays decoding one target word at a time. Hovering (or
// tapping) a word sets the panel's focus, and both views show it. Each panel names the attention it
// draws; a Transformer's panel can choose the decoder layer and head of its cross-attention (default:
// the mean of all), which asks the server again for that run.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const FONT = "13px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

// request: the last translate request's body; choices: run name → {layer, head} chosen in its panel.
const state = { runs: [], limits: {}, buckets: [], views: [], current: null, examples: null,
  request: null, choices: {} };

// ---------- small helpers ----------------------------------------------------------------------------------

function $(selector, root = document) { return root.querySelector(selector); }

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.setAttribute("class", value);
    else node.setAttribute(key, value);
  }
  if (text != null) node.textContent = text;
  return node;
}

const measure = (() => {
  const ctx = document.createElement("canvas").getContext("2d");
  return (text) => { ctx.font = FONT; return ctx.measureText(text).width; };
})();

function fmt(w) { return w.toFixed(2); }

// The viridis colour map (matplotlib's, as mtkit attention draws it), by linear interpolation of 9 stops.
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"]
  .map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
function viridis(w) {
  const x = Math.min(1, Math.max(0, w)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const c = VIRIDIS[i].map((v, k) => Math.round(v + f * (VIRIDIS[i + 1][k] - v)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

class ApiError extends Error {
  constructor(message, field, status) { super(message); this.field = field; this.status = status; }
}

async function api(path, body) {
  const options = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new ApiError(`the server did not answer (${err.message}); is mtkit serve still running?`, null, 0);
  }
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new ApiError(data.error || `HTTP ${response.status}`, data.field, response.status);
  return data;
}

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// ---------- start ------------------------------------------------------------------------------------------

async function init() {
  $("#tab-translate").addEventListener("click", () => showTab("translate"));
  $("#tab-length").addEventListener("click", () => showTab("length"));
  $("#translate-form").addEventListener("submit", (event) => { event.preventDefault(); translate(); });
  $("#source").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); translate(); }
  });
  $("#pick").addEventListener("click", pickSentence);
  $("#pieces").addEventListener("change", () => state.views.forEach((v) => v.render()));
  $("#threshold").addEventListener("input", () => {
    $("#threshold-value").textContent = fmt(+$("#threshold").value);
    state.views.forEach((v) => v.render());
  });
  document.addEventListener("keydown", onKey);
  try {
    const info = await api("/api/runs");
    state.runs = info.runs;
    state.limits = info.limits;
    state.buckets = info.buckets;
    $("#beam").max = info.limits.max_beam;
    $("#n-best").max = info.limits.max_beam;
    $("#beam").placeholder = [...new Set(info.runs.map((r) => r.beam))].join("/");
    $("#runs-summary").textContent = info.runs.map((r) => `${r.name} (${summarize(r)})`).join(" · ");
    const select = $("#pick-bucket");
    for (const b of info.buckets) {
      select.append(el("option", { value: b.label, text: `${b.label} words (${b.count})` }));
    }
    if (!info.buckets.some((b) => b.count > 0)) $(".pick").hidden = true;
  } catch (err) {
    $("#runs-summary").textContent = `could not list the runs: ${err.message}`;
  }
}

function showTab(name) {
  for (const tab of ["translate", "length"]) {
    $(`#view-${tab}`).hidden = tab !== name;
    $(`#tab-${tab}`).setAttribute("aria-selected", String(tab === name));
  }
  if (name === "length" && !state.scores) loadScores();
}

function onKey(event) {
  if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
  const target = event.target;
  if (target.matches && target.matches("textarea, input:not([type=range]), select")) return;
  if (target.matches && target.matches("input[type=range]")) return;  // the slider moves itself
  const view = state.current || state.views.find((v) => v.hasAttention);
  if (!view || !view.hasAttention) return;
  event.preventDefault();
  view.setStep(view.step + (event.key === "ArrowRight" ? 1 : -1));
}

// ---------- translate --------------------------------------------------------------------------------------

async function pickSentence() {
  const label = $("#pick-bucket").value;
  const bucket = state.buckets.find((b) => b.label === label);
  if (!bucket || !bucket.count) return;
  const offset = Math.floor(Math.random() * bucket.count);
  try {
    const data = await api(`/api/examples?bucket=${encodeURIComponent(label)}&offset=${offset}&count=1&outputs=false`);
    const ex = data.examples[0];
    useSentence(ex.source, ex.reference, `test sentence ${ex.line} of ${data.test_split_of} (${ex.words} words)`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

function useSentence(source, reference, where) {
  $("#source").value = source;
  const ref = $("#reference");
  ref.hidden = reference == null;
  if (reference != null) {
    $(".text", ref).textContent = reference;
    $(".label", ref).textContent = `reference (${where})`;
  }
  translate();
}

function clearInvalid() {
  for (const node of document.querySelectorAll(".invalid")) node.classList.remove("invalid");
}

async function translate() {
  clearInvalid();
  const text = $("#source").value;
  const body = { text };
  if ($("#beam").value !== "") body.beam = Number($("#beam").value);
  if ($("#n-best").value !== "" && Number($("#n-best").value) !== 1) body.n_best = Number($("#n-best").value);
  if (!state.runs.length) { setStatus("no runs loaded", true); return; }
  state.request = body;
  setStatus("translating…");
  const models = $("#models");
  models.replaceChildren();
  state.views = [];
  state.current = null;
  const started = performance.now();
  // One request per model: each model has its own lock on the server, so they translate in parallel.
  const jobs = state.runs.map(async (run, index) => {
    const panel = el("article", { class: "model", "data-run": run.name },
      el("h2", {}, el("span", { class: "swatch", "data-color": String(index % COLORS.length) }), run.name,
        el("small", { text: describeRun(run) })),
      el("p", { class: "pending", text: "translating…" }));
    models.append(panel);
    const result = (await api("/api/translate", { ...body, runs: [run.name], ...choice(run) })).results[0];
    const view = new ModelView(panel, run, result);
    state.views[index] = view;
    view.render();
    return result;
  });
  const outcomes = await Promise.allSettled(jobs);
  const failed = outcomes.find((o) => o.status === "rejected");
  if (failed) {
    const err = failed.reason;
    models.replaceChildren();
    state.views = [];
    const input = { text: "#source", beam: "#beam", n_best: "#n-best" }[err.field];
    if (input) $(input).classList.add("invalid");
    setStatus(`${err.message}${err.status ? ` (HTTP ${err.status})` : ""}`, true);
    return;
  }
  const notes = outcomes.map((o) => o.value.note).filter(Boolean);
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  setStatus(`translated by ${outcomes.length} model${outcomes.length > 1 ? "s" : ""} in ${seconds} s` +
    (notes.length ? ` — ${notes[0]}` : ""), false);
}

function summarize(run) {
  if (run.arch === "transformer") return "Transformer, cross-attention";
  return run.attention ? `${run.attention_kind} attention` : "no attention";
}

// The model as mtkit names it, e.g. "RNNsearch(gru, bi 1x256 → 512, additive attention, bahdanau) 12.3M params"
// or "Transformer(3+3 layers, d 128, 4 heads, ff 512, sinusoidal) 2.4M params".
function describeRun(run) {
  return ` ${run.description}`;
}

// The layer and head chosen in a Transformer run's panel, as request fields ({} for the mean, and for RNN runs).
function choice(run) {
  const chosen = state.choices[run.name] || {};
  const fields = {};
  if (run.layers && chosen.layer) fields.layer = chosen.layer;
  if (run.heads && chosen.head) fields.head = chosen.head;
  return fields;
}

// ---------- one model's panel ------------------------------------------------------------------------------

class ModelView {
  constructor(panel, run, result) {
    this.panel = panel;
    this.run = run;
    this.result = result;
    this.hasAttention = result.attention && result.hypotheses.some((h) => h.weights && h.weights.length);
    this.hyp = 0;
    this.step = 0;       // 0: all steps at once; k ≥ 1: decoding has written target words 1..k
    this.focus = null;   // {side: "t" | "s", index}: the word hovered or tapped
    this.pinned = null;
    this.timer = null;
    panel.addEventListener("pointerenter", () => { state.current = this; });
  }

  data() {
    const h = this.result.hypotheses[this.hyp];
    if (!h.weights) return { src: this.result.source_pieces, tgt: h.pieces, w: [] };
    if ($("#pieces").checked) return { src: this.result.source_pieces, tgt: h.pieces, w: h.weights };
    return { src: h.words.source, tgt: h.words.target, w: h.words.weights };
  }

  render() {
    const r = this.result;
    const h = r.hypotheses[this.hyp];
    const children = [
      el("h2", {}, el("span", { class: "swatch", "data-color": String(state.runs.indexOf(this.run) % COLORS.length) }),
        this.run.name, el("small", { text: `${describeRun(this.run)} · beam ${r.beam} · ${r.elapsed_ms} ms` })),
      el("p", { class: "translation", lang: "en", text: h.text || "(empty translation)" }),
    ];
    if (r.note) children.push(el("p", { class: "note truncated", text: r.note }));
    if (r.hypotheses.length > 1) children.push(this.nbestList());
    if (!this.hasAttention) {
      children.push(this.fixedVectorPanel());
    } else {
      children.push(this.attentionChoice());
      const d = this.data();
      this.stepMax = d.tgt.length;
      this.step = Math.min(this.step, this.stepMax);
      children.push(this.stepper(d), el("div", { class: "align-view" }, this.alignSvg(d)),
        el("div", { class: "info", "aria-live": "polite" }), el("div", { class: "heat-view" }, this.heatSvg(d)));
    }
    this.panel.replaceChildren(...children);
    this.panel.classList.toggle("no-attention", !this.hasAttention);
    if (this.hasAttention) this.update();
  }

  // Which attention the drawings show; a Transformer's panel also chooses its layer and head (blank: the mean).
  attentionChoice() {
    const box = el("div", { class: "attention-choice" },
      el("span", { class: "attention-label", text: this.result.attention_label }));
    if (!this.run.layers) return box;
    const chosen = choice(this.run);
    const menu = (name, count) => {
      const select = el("select", { class: name, "aria-label": `${name} of the cross-attention shown` },
        el("option", { value: "", text: `mean of ${count}` }),
        ...Array.from({ length: count }, (_, i) => el("option", { value: String(i + 1), text: String(i + 1) })));
      select.value = chosen[name] ? String(chosen[name]) : "";
      select.addEventListener("change", () => this.choose(name, select.value === "" ? null : Number(select.value)));
      return el("label", {}, `${name} `, select);
    };
    box.append(menu("layer", this.run.layers), menu("head", this.run.heads));
    return box;
  }

  // Ask the server again for this run, with the layer or head just chosen; the other panels stay as they are.
  async choose(name, value) {
    state.choices[this.run.name] = { ...state.choices[this.run.name], [name]: value };
    try {
      const body = { ...state.request, runs: [this.run.name], ...choice(this.run) };
      this.result = (await api("/api/translate", body)).results[0];
    } catch (err) {
      setStatus(`${err.message}${err.status ? ` (HTTP ${err.status})` : ""}`, true);
      return;
    }
    this.hyp = Math.min(this.hyp, this.result.hypotheses.length - 1);
    this.render();
  }

  nbestList() {
    const list = el("ol", { class: "nbest" });
    this.result.hypotheses.forEach((h, i) => {
      const item = el("li", { class: i === this.hyp ? "chosen" : "" },
        el("button", { type: "button", text: h.text || "(empty)", onclick: () => { this.hyp = i; this.step = 0; this.render(); } }),
        el("span", { class: "score", text: ` score ${h.score.toFixed(3)} · log p ${h.log_prob.toFixed(2)}` }));
      list.append(item);
    });
    return el("details", { class: "nbest-box", open: "" }, el("summary", { text: `${this.result.hypotheses.length} best` }), list);
  }

  fixedVectorPanel() {
    // No weights exist for this model, so none are drawn: only the shape of what it computed.
    const src = this.result.source_pieces.length;
    const box = el("div", { class: "fixed-vector" },
      el("p", { class: "honest" }, el("strong", { text: "No attention: " }),
        "this model's decoder saw the source only through one fixed vector c — the encoder's final states — " +
        `the same c at every step. It has no attention weights, so there is nothing to draw per word: ` +
        `all ${src} source pieces were squeezed into c before the first target word was written.`),
      this.bottleneckSvg());
    return box;
  }

  bottleneckSvg() {
    const h = this.result.hypotheses[this.hyp];
    const src = this.result.source_pieces.length, tgt = h.pieces.length;
    const width = 360, height = 96, cx = width / 2;
    const root = svg("svg", { class: "bottleneck", viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `${src} source pieces into one vector c, then ${tgt} target pieces` });
    const row = (n, y) => Array.from({ length: Math.min(n, 24) }, (_, i) => 20 + (width - 40) * (n < 2 ? 0.5 : i / (Math.min(n, 24) - 1)));
    for (const x of row(src, 12)) {
      root.append(svg("line", { x1: x, y1: 14, x2: cx, y2: 40, class: "funnel" }));
      root.append(svg("circle", { cx: x, cy: 12, r: 3, class: "dot src" }));
    }
    for (const x of row(tgt, 84)) {
      root.append(svg("line", { x1: cx, y1: 56, x2: x, y2: 82, class: "funnel" }));
      root.append(svg("circle", { cx: x, cy: 84, r: 3, class: "dot tgt" }));
    }
    root.append(svg("rect", { x: cx - 16, y: 38, width: 32, height: 20, rx: 4, class: "vector" }));
    root.append(svg("text", { x: cx, y: 52, "text-anchor": "middle", class: "vector-label" }, "c"));
    root.append(svg("text", { x: 4, y: 30, class: "side-label" }, "source"));
    root.append(svg("text", { x: 4, y: 72, class: "side-label" }, "target"));
    return root;
  }

  stepper(d) {
    const slider = el("input", { type: "range", class: "step", min: "0", max: String(d.tgt.length), step: "1",
      value: String(this.step), "aria-label": "decoding step (0: all steps)" });
    slider.addEventListener("input", () => { state.current = this; this.stopPlay(); this.setStep(+slider.value, false); });
    const prev = el("button", { type: "button", class: "prev", title: "previous step (←)", text: "◀",
      onclick: () => { state.current = this; this.stopPlay(); this.setStep(this.step - 1); } });
    const next = el("button", { type: "button", class: "next", title: "next step (→)", text: "▶",
      onclick: () => { state.current = this; this.stopPlay(); this.setStep(this.step + 1); } });
    const play = el("button", { type: "button", class: "play", text: "replay", onclick: () => this.togglePlay() });
    return el("div", { class: "stepper" }, prev, slider, next, play, el("span", { class: "step-label" }));
  }

  togglePlay() {
    state.current = this;
    if (this.timer) { this.stopPlay(); return; }
    this.setStep(1);
    $(".play", this.panel).textContent = "stop";
    this.timer = setInterval(() => {
      if (this.step >= this.stepMax) { this.stopPlay(); return; }
      this.setStep(this.step + 1);
    }, 700);
  }

  stopPlay() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const play = $(".play", this.panel);
    if (play) play.textContent = "replay";
  }

  setStep(step, moveSlider = true) {
    this.step = Math.max(0, Math.min(this.stepMax, step));
    if (moveSlider) $(".step", this.panel).value = String(this.step);
    this.update();
  }

  setFocus(focus, pin = false) {
    state.current = this;
    if (pin) this.pinned = this.pinned && focus && this.pinned.side === focus.side && this.pinned.index === focus.index ? null : focus;
    this.focus = focus || this.pinned;
    this.update();
  }

  // Alignment lines: source words on top, target words below, one line per weight ≥ the threshold.
  alignSvg(d) {
    const threshold = +$("#threshold").value;
    const pad = 14, gapMin = 10, top = 22, bottom = 170, height = 192;
    const srcW = d.src.map((w) => measure(w)), tgtW = d.tgt.map((w) => measure(w));
    const span = (ws) => ws.reduce((a, b) => a + b, 0) + gapMin * Math.max(0, ws.length - 1);
    const room = this.panel.clientWidth - 32;  // fill the panel; scroll sideways when the words need more
    const width = Math.max(span(srcW) + 2 * pad, span(tgtW) + 2 * pad, room, 320);
    const centres = (ws) => {
      const gap = ws.length > 1 ? (width - 2 * pad - ws.reduce((a, b) => a + b, 0)) / (ws.length - 1) : 0;
      let x = ws.length > 1 ? pad : (width - ws[0]) / 2;
      return ws.map((w) => { const c = x + w / 2; x += w + gap; return c; });
    };
    this.srcX = centres(srcW);
    this.tgtX = centres(tgtW);
    const root = svg("svg", { class: "align", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": "alignment lines between source and target words" });
    const links = [];
    d.w.forEach((row, t) => row.forEach((w, s) => { if (w >= threshold) links.push([t, s, w]); }));
    links.sort((a, b) => a[2] - b[2]);  // heavier lines on top
    const lines = svg("g", { class: "links" });
    for (const [t, s, w] of links) {
      lines.append(svg("line", { class: "link", x1: this.srcX[s], y1: top + 8, x2: this.tgtX[t], y2: bottom - 14,
        "stroke-width": 0.5 + 6 * w, "stroke-opacity": 0.25 + 0.75 * w,
        "data-t": t, "data-s": s, "data-w": w }));
    }
    root.append(lines);
    const words = (list, xs, y, side) => {
      const g = svg("g", { class: `words ${side}` });
      list.forEach((word, i) => {
        const text = svg("text", { x: xs[i], y, "text-anchor": "middle", class: `word ${side}`, "data-i": i,
          tabindex: "0" }, word);
        text.addEventListener("pointerenter", () => this.setFocus({ side, index: i }));
        text.addEventListener("pointerleave", () => this.setFocus(null));
        text.addEventListener("click", () => this.setFocus({ side, index: i }, true));
        text.addEventListener("focus", () => this.setFocus({ side, index: i }));
        text.addEventListener("blur", () => this.setFocus(null));
        g.append(text);
      });
      return g;
    };
    root.append(words(d.src, this.srcX, top, "s"), words(d.tgt, this.tgtX, bottom, "t"));
    root.append(svg("text", { x: 2, y: height - 2, class: "axis-note" },
      `${links.length} lines with weight ≥ ${fmt(threshold)}`));
    return root;
  }

  // Heatmap: target words as rows, source words as columns, viridis 0..1 as mtkit attention draws it.
  heatSvg(d) {
    const cell = 20;
    const left = Math.max(...d.tgt.map((w) => measure(w)), 20) + 10;
    const top = Math.min(130, Math.max(...d.src.map((w) => measure(w)), 20) * 0.87 + 14);  // labels at -60°
    const right = measure(d.src[d.src.length - 1] || "") * 0.5 + 8;  // the last label leans right
    const width = left + cell * d.src.length + right, height = top + cell * d.tgt.length + 6;
    const root = svg("svg", { class: "heat", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": "attention heatmap" });
    d.src.forEach((word, s) => {
      const x = left + s * cell + cell / 2;
      const label = svg("text", { x: x + 4, y: top - 6, transform: `rotate(-60 ${x + 4} ${top - 6})`, class: "word s", "data-i": s }, word);
      label.addEventListener("pointerenter", () => this.setFocus({ side: "s", index: s }));
      label.addEventListener("pointerleave", () => this.setFocus(null));
      label.addEventListener("click", () => this.setFocus({ side: "s", index: s }, true));
      root.append(label);
    });
    d.tgt.forEach((word, t) => {
      const label = svg("text", { x: left - 6, y: top + t * cell + cell * 0.7, "text-anchor": "end", class: "word t", "data-i": t }, word);
      label.addEventListener("pointerenter", () => this.setFocus({ side: "t", index: t }));
      label.addEventListener("pointerleave", () => this.setFocus(null));
      label.addEventListener("click", () => this.setFocus({ side: "t", index: t }, true));
      root.append(label);
    });
    const cells = svg("g", { class: "cells" });
    d.w.forEach((row, t) => row.forEach((w, s) => {
      const rect = svg("rect", { x: left + s * cell, y: top + t * cell, width: cell - 1, height: cell - 1,
        fill: viridis(w), class: "cell", "data-t": t, "data-s": s, "data-w": w });
      rect.append(svg("title", {}, `${d.tgt[t]} → ${d.src[s]}: ${w.toFixed(3)}`));
      rect.addEventListener("pointerenter", () => this.setFocus({ side: "t", index: t }));
      rect.addEventListener("pointerleave", () => this.setFocus(null));
      rect.addEventListener("click", () => this.setFocus({ side: "t", index: t }, true));
      cells.append(rect);
    }));
    root.append(cells);
    return root;
  }

  // Apply step and focus to both views and write the info line.
  update() {
    const d = this.data();
    const step = this.step;
    // In a step, the focus is that step's target word unless the user points elsewhere.
    const focus = this.focus || (step > 0 ? { side: "t", index: step - 1 } : null);
    const hidden = (t) => step > 0 && t >= step;
    for (const line of this.panel.querySelectorAll("line.link")) {
      const t = +line.dataset.t, s = +line.dataset.s;
      const on = focus && (focus.side === "t" ? t === focus.index : s === focus.index);
      line.classList.toggle("hl", Boolean(on));
      line.classList.toggle("dim", Boolean(focus) && !on);
      line.classList.toggle("future", hidden(t));
    }
    for (const rect of this.panel.querySelectorAll("rect.cell")) {
      const t = +rect.dataset.t, s = +rect.dataset.s;
      const on = focus && (focus.side === "t" ? t === focus.index : s === focus.index);
      rect.classList.toggle("hl", Boolean(on));
      rect.classList.toggle("future", hidden(t));
    }
    for (const word of this.panel.querySelectorAll("text.word")) {
      const side = word.classList.contains("t") ? "t" : "s";
      const i = +word.dataset.i;
      word.classList.toggle("hl", Boolean(focus) && focus.side === side && focus.index === i);
      word.classList.toggle("future", side === "t" && hidden(i));
      word.classList.toggle("current", side === "t" && step > 0 && i === step - 1);
    }
    const label = $(".step-label", this.panel);
    if (label) label.textContent = step === 0 ? `all ${d.tgt.length} step${d.tgt.length === 1 ? "" : "s"} — press ▶ or → to step`
      : `step ${step} of ${d.tgt.length}: writing “${d.tgt[step - 1]}”`;
    this.writeInfo(d, focus, step);
  }

  writeInfo(d, focus, step) {
    const info = $(".info", this.panel);
    if (!info) return;
    if (!focus) {
      info.replaceChildren(el("span", { class: "hint", text: "hover a word to see its weights" }));
      return;
    }
    const bars = el("div", { class: "bars" });
    let title;
    if (focus.side === "t") {
      const row = d.w[focus.index];
      title = step > 0 && !this.focus ? `step ${step}: “${d.tgt[focus.index]}” looked at`
        : `“${d.tgt[focus.index]}” (target word ${focus.index + 1}) looked at`;
      // In source order, so that steps can be compared by eye: the weights over the whole source, summing to 1.
      row.forEach((w, s) => bars.append(bar(d.src[s], w)));
    } else {
      title = `“${d.src[focus.index]}” (source word ${focus.index + 1}) was looked at by`;
      d.w.forEach((row, t) => { if (!(step > 0 && t >= step)) bars.append(bar(d.tgt[t], row[focus.index])); });
    }
    info.replaceChildren(el("div", { class: "info-title", text: title }), bars);
    info.dataset.side = focus.side;
    info.dataset.index = focus.index;
  }
}

function bar(word, w) {
  const fill = el("span", { class: "fill" });
  fill.style.width = `${(100 * w).toFixed(1)}%`;
  return el("span", { class: `bar${w >= 0.05 ? "" : " small"}`, "data-w": w, title: `${word}: ${w.toFixed(3)}` },
    el("span", { class: "bar-word", text: word }), el("span", { class: "track" }, fill),
    el("span", { class: "bar-value", text: fmt(w) }));
}

// ---------- BLEU by length ---------------------------------------------------------------------------------

async function loadScores() {
  try {
    state.scores = await api("/api/scores");
  } catch (err) {
    $("#scores-note").hidden = false;
    $("#scores-note").textContent = err.message;
    return;
  }
  const data = state.scores;
  if (data.note) {
    $("#scores-note").hidden = false;
    $("#scores-note").textContent = data.note;
  }
  drawChart(data);
  drawTable(data);
}

function drawChart(data) {
  const buckets = data.buckets;
  const systems = data.systems;
  const legend = (s) => `${s.name} (BLEU ${s.bleu.toFixed(1)})`;
  const right = Math.max(120, ...systems.map((s) => measure(legend(s)))) + 56;  // room for the legend
  const plotW = 560, plotH = 254, left = 48, top = 20, bottom = 46;
  const width = left + plotW + right, height = top + plotH + bottom;
  const high = Math.max(10, ...systems.flatMap((s) => s.buckets.map((b) => b.ci_high ?? b.bleu ?? 0)));
  const ymax = Math.ceil(high / 10) * 10;
  const x = (i) => left + plotW * (i + 0.5) / buckets.length;
  const y = (v) => top + plotH * (1 - v / ymax);
  const root = svg("svg", { class: "bleu-chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "BLEU by sentence length" });
  for (let v = 0; v <= ymax; v += 10) {
    root.append(svg("line", { x1: left, x2: left + plotW, y1: y(v), y2: y(v), class: "grid" }));
    root.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, String(v)));
  }
  root.append(svg("text", { x: 12, y: top + plotH / 2, transform: `rotate(-90 12 ${top + plotH / 2})`,
    "text-anchor": "middle", class: "axis" }, "BLEU"));
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
  systems.forEach((system, k) => {
    const color = COLORS[colorIndex(system) % COLORS.length];
    const dx = (k - (systems.length - 1) / 2) * 6;
    let path = "";
    system.buckets.forEach((b, i) => {
      if (b.bleu == null) return;
      path += `${path ? "L" : "M"}${x(i) + dx},${y(b.bleu)}`;
      if (b.ci_low != null) {
        root.append(svg("line", { x1: x(i) + dx, x2: x(i) + dx, y1: y(b.ci_low), y2: y(b.ci_high), stroke: color, class: "ci" }));
        for (const v of [b.ci_low, b.ci_high]) {
          root.append(svg("line", { x1: x(i) + dx - 3, x2: x(i) + dx + 3, y1: y(v), y2: y(v), stroke: color, class: "ci" }));
        }
      }
      const dot = svg("circle", { cx: x(i) + dx, cy: y(b.bleu), r: 3.5, fill: color, class: "point" });
      const ci = b.ci_low != null ? ` [${b.ci_low.toFixed(1)}, ${b.ci_high.toFixed(1)}]` : "";
      dot.append(svg("title", {}, `${system.name}, ${b.label} words: BLEU ${b.bleu.toFixed(1)}${ci} (${b.count} sentences)`));
      root.append(dot);
    });
    root.append(svg("path", { d: path, stroke: color, class: "series" }));
    const ly = top + 14 + k * 20;
    root.append(svg("line", { x1: left + plotW + 16, x2: left + plotW + 36, y1: ly - 4, y2: ly - 4, stroke: color, class: "series" }));
    root.append(svg("text", { x: left + plotW + 42, y: ly, class: "legend" }, legend(system)));
  });
  $("#chart").replaceChildren(root);
}

function colorIndex(system) {
  const i = state.runs.findIndex((r) => r.name === system.run);
  return i >= 0 ? i : state.runs.length + (state.scores ? state.scores.systems.indexOf(system) : 0);
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
  const n = data.systems[0].n_boot;
  $("#bucket-table").replaceChildren(el("table", { class: "scores" }, el("thead", {}, head), el("tbody", {}, ...rows)),
    el("p", { class: "fine", text: `[low–high]: 95% bootstrap interval over ${n} resamples. ${data.systems[0].bleu_signature}` }));
}

async function showExamples(bucket, offset) {
  const box = $("#examples");
  box.replaceChildren(el("p", { class: "pending", text: `loading ${bucket}-word test sentences…` }));
  for (const node of document.querySelectorAll("[data-bucket]")) {
    node.classList.toggle("chosen", node.dataset.bucket === bucket);
  }
  let data;
  try {
    data = await api(`/api/examples?bucket=${encodeURIComponent(bucket)}&offset=${offset}&count=5`);
  } catch (err) {
    box.replaceChildren(el("p", { class: "error", text: err.message }));
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
        el("span", { text: out.text })));
    return el("article", { class: "example" },
      el("div", { class: "ex-meta" }, `test line ${ex.line} · ${ex.words} words `,
        el("button", { type: "button", text: "see where the models look",
          onclick: () => {
            // Translate with the beam the outputs above came from, so the page shows the same translations.
            const beams = [...new Set(Object.values(ex.outputs).map((o) => o.beam))];
            if (beams.length === 1) $("#beam").value = String(beams[0]);
            showTab("translate");
            useSentence(ex.source, ex.reference, `test sentence ${ex.line}, ${ex.words} words`);
          } })),
      el("div", { class: "source" }, el("span", { class: "label", text: "source" }), el("span", { lang: "es", text: ex.source })),
      el("div", { class: "reference" }, el("span", { class: "label", text: "reference" }), el("span", { text: ex.reference })),
      ...outputs);
  });
  const note = data.other_test_split.length
    ? el("p", { class: "note", text: `${data.other_test_split.join(", ")}: tested on another split, so not shown here` }) : null;
  box.replaceChildren(...[header, ...items, note].filter(Boolean));
}

document.addEventListener("DOMContentLoaded", init);
