// mtkit serve: one model's panel. A panel with attention draws the same (target × source) weights three ways:
// alignment lines (one per weight ≥ the threshold, width and opacity following the weight), a heatmap, and a
// step-through that replays decoding one target word at a time. Hovering (or tapping) a word sets the panel's
// focus, and both views show it. Each panel names the attention it draws; a Transformer's panel can choose the
// decoder layer and head of its cross-attention (default: the mean of all), which asks the server again for that
// run (through hooks.onChoose: the page owns the requests). A panel shows its own error; others are untouched.

import { $, COLORS, el, fmt, measure, svg, viridis } from "./svg.js";

// The model as mtkit names it, e.g. "RNNsearch(gru, bi 1x256 → 512, additive attention, bahdanau) 12.3M params"
// or "Transformer(3+3 layers, d 128, 4 heads, ff 512, sinusoidal) 2.4M params".
export function describeRun(run) {
  return ` ${run.description}`;
}

export function summarize(run) {
  if (run.arch === "transformer") return "Transformer, cross-attention";
  return run.attention ? `${run.attention_kind} attention` : "no attention";
}

// hooks: onActive(view) when the user points at the panel (arrow keys then step it); onChoose(view) when a
// Transformer's layer or head menu changes (view.chosen: {layer, head}, null for the mean).
export class ModelView {
  constructor(panel, run, color, hooks) {
    this.panel = panel;
    this.run = run;
    this.color = color;
    this.hooks = hooks;
    this.chosen = { layer: null, head: null };  // a Transformer's layer and head shown (null: the mean)
    this.result = null;
    this.hasAttention = false;
    this.hyp = 0;
    this.step = 0;       // 0: all steps at once; k ≥ 1: decoding has written target words 1..k
    this.focus = null;   // {side: "t" | "s", index}: the word hovered or tapped
    this.pinned = null;
    this.timer = null;
    panel.addEventListener("pointerenter", () => this.hooks.onActive(this));
    panel.dataset.run = run.name;
  }

  // A new sentence: back to the best hypothesis, all steps, no focus (the layer and head chosen are kept).
  reset() {
    this.stopPlay();
    this.hyp = 0;
    this.step = 0;
    this.focus = this.pinned = null;
  }

  // The layer and head chosen in this panel, as request fields ({} for the mean, and for RNN runs).
  fields() {
    const fields = {};
    if (this.run.layers && this.chosen.layer) fields.layer = this.chosen.layer;
    if (this.run.heads && this.chosen.head) fields.head = this.chosen.head;
    return fields;
  }

  header(detail) {
    return el("h2", {}, el("span", { class: "swatch", "data-color": String(this.color % COLORS.length) }),
      this.run.name, el("small", { text: detail }));
  }

  showPending(text = "translating…") {
    this.panel.replaceChildren(this.header(describeRun(this.run)), el("p", { class: "pending", text }));
  }

  // The server's answer for this panel alone; the step and the hypothesis shown are kept where they still exist.
  show(result) {
    this.result = result;
    this.hasAttention = result.attention && result.hypotheses.some((h) => h.weights && h.weights.length);
    this.hyp = Math.min(this.hyp, result.hypotheses.length - 1);
    this.render();
  }

  showError(err) {
    this.result = null;
    this.hasAttention = false;
    this.panel.classList.remove("no-attention");
    this.panel.replaceChildren(this.header(describeRun(this.run)),
      el("p", { class: "error panel-error", role: "alert", text: `${err.message}${err.status ? ` (HTTP ${err.status})` : ""}` }));
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
      this.header(`${describeRun(this.run)} · beam ${r.beam} · ${r.elapsed_ms} ms`),
      el("p", { class: "translation", lang: this.run.tgt_lang, text: h.text || "(empty translation)" }),
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
    const chosen = this.chosen;
    const menu = (name, count) => {
      const select = el("select", { class: name, "aria-label": `${name} of the cross-attention shown` },
        el("option", { value: "", text: `mean of ${count}` }),
        ...Array.from({ length: count }, (_, i) => el("option", { value: String(i + 1), text: String(i + 1) })));
      select.value = chosen[name] ? String(chosen[name]) : "";
      select.addEventListener("change", () => {
        this.chosen = { ...this.chosen, [name]: select.value === "" ? null : Number(select.value) };
        this.hooks.onChoose(this);
      });
      return el("label", {}, `${name} `, select);
    };
    box.append(menu("layer", this.run.layers), menu("head", this.run.heads));
    return box;
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
    slider.addEventListener("input", () => { this.hooks.onActive(this); this.stopPlay(); this.setStep(+slider.value, false); });
    const prev = el("button", { type: "button", class: "prev", title: "previous step (←)", text: "◀",
      onclick: () => { this.hooks.onActive(this); this.stopPlay(); this.setStep(this.step - 1); } });
    const next = el("button", { type: "button", class: "next", title: "next step (→)", text: "▶",
      onclick: () => { this.hooks.onActive(this); this.stopPlay(); this.setStep(this.step + 1); } });
    const play = el("button", { type: "button", class: "play", text: "replay", onclick: () => this.togglePlay() });
    return el("div", { class: "stepper" }, prev, slider, next, play, el("span", { class: "step-label" }));
  }

  togglePlay() {
    this.hooks.onActive(this);
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
    this.hooks.onActive(this);
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

// One weight in the info line: the word, a bar as long as the weight, the number.
function bar(word, w) {
  const fill = el("span", { class: "fill" });
  fill.style.width = `${(100 * w).toFixed(1)}%`;
  return el("span", { class: `bar${w >= 0.05 ? "" : " small"}`, "data-w": w, title: `${word}: ${w.toFixed(3)}` },
    el("span", { class: "bar-word", text: word }), el("span", { class: "track" }, fill),
    el("span", { class: "bar-value", text: fmt(w) }));
}
