// mtkit serve: the page. Plain JavaScript modules and hand-written SVG; it talks only to this server's /api.
//
//   main.js        this file: the tabs, the translate form, one panel per model, the keyboard
//   api.js         every call to /api, and one request in flight per panel (an older one is aborted)
//   model-view.js  one model's panel: its translation, alignment lines, heatmap and step-through
//   length-view.js the BLEU-by-length tab: the chart with intervals, the passages view, test examples
//   svg.js         building elements and SVG by hand (never from HTML strings), colours

import { Latest, getExamples, getRuns, isAbort, translate as postTranslate } from "./api.js";
import { $, el, fmt } from "./svg.js";
import { ModelView, summarize } from "./model-view.js";
import { showLengthTab } from "./length-view.js";

// request: the last translate request's body; views: run name → its panel's view; current: the view the keys step.
const state = { runs: [], limits: {}, buckets: [], views: new Map(), current: null, request: null };
const requests = new Latest();  // keyed by run name: one translate request in flight per panel

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
  $("#pieces").addEventListener("change", () => renderAll());
  $("#threshold").addEventListener("input", () => {
    $("#threshold-value").textContent = fmt(+$("#threshold").value);
    renderAll();
  });
  document.addEventListener("keydown", onKey);
  try {
    const info = await getRuns();
    state.runs = info.runs;
    state.limits = info.limits;
    state.buckets = info.buckets;
    $("#beam").max = info.limits.max_beam;
    $("#n-best").max = info.limits.max_beam;
    $("#beam").placeholder = [...new Set(info.runs.map((r) => r.beam))].join("/");
    $("#runs-summary").textContent = info.runs.map((r) => `${r.name} (${summarize(r)})`).join(" · ");
    const sourceLangs = new Set(info.runs.map((r) => r.src_lang));
    if (sourceLangs.size === 1 && info.runs[0].src_lang) $("#source").lang = info.runs[0].src_lang;
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
  if (name === "length") showLengthTab(state.runs, useExample);
}

function renderAll() {
  for (const view of state.views.values()) if (view.result) view.render();
}

function onKey(event) {
  if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
  const target = event.target;
  if (target.matches && target.matches("textarea, input:not([type=range]), select")) return;
  if (target.matches && target.matches("input[type=range]")) return;  // the slider moves itself
  const view = state.current || [...state.views.values()].find((v) => v.hasAttention);
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
    const data = await getExamples(label, offset, 1, false);
    const ex = data.examples[0];
    useSentence(ex.source, ex.reference, `test sentence ${ex.line} of ${data.test_split_of} (${ex.words} words)`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

// From the examples of the length tab: translate with the beam its outputs came from, so the page shows the same.
function useExample(ex, beam) {
  if (beam != null) $("#beam").value = String(beam);
  showTab("translate");
  useSentence(ex.source, ex.reference, `test sentence ${ex.line}, ${ex.words} words`);
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

// The panel of each run, made on the first translation and kept (with its layer and head) from then on.
function viewOf(run, index) {
  if (!state.views.has(run.name)) {
    const panel = el("article", { class: "model" });
    $("#models").append(panel);
    state.views.set(run.name, new ModelView(panel, run, index, {
      onActive: (view) => { state.current = view; },
      // The drawing stays while the other layer or head is fetched; only this panel asks again.
      onChoose: (view) => {
        const started = performance.now();
        translateOne(view, state.request, false).then((outcome) => report([outcome], started));
      },
    }));
  }
  return state.views.get(run.name);
}

// Ask for one panel's translation; an older request of that panel is aborted first. Returns how it went:
// {result} or {error}, or {aborted} when a newer request replaced this one (nothing is shown then).
async function translateOne(view, body, pending = true) {
  const signal = requests.start(view.run.name);
  if (pending) view.showPending();
  try {
    const answer = await postTranslate({ ...body, runs: [view.run.name], ...view.fields() }, signal);
    if (signal.aborted) return { aborted: true };
    view.show(answer.results[0]);
    return { result: answer.results[0] };
  } catch (err) {
    if (isAbort(err) || signal.aborted) return { aborted: true };
    view.showError(err);
    return { error: err };
  }
}

async function translate() {
  clearInvalid();
  const body = { text: $("#source").value };
  if ($("#beam").value !== "") body.beam = Number($("#beam").value);
  if ($("#n-best").value !== "" && Number($("#n-best").value) !== 1) body.n_best = Number($("#n-best").value);
  if (!state.runs.length) { setStatus("no runs loaded", true); return; }
  state.request = body;
  state.current = null;
  setStatus("translating…");
  const started = performance.now();
  // One request per model: each model has its own queue on the server, so they translate in parallel.
  const views = state.runs.map((run, index) => viewOf(run, index));
  views.forEach((view) => view.reset());
  const outcomes = await Promise.all(views.map((view) => translateOne(view, body)));
  if (state.request !== body) return;  // a newer translation has started; its own status will follow
  report(outcomes, started);
}

// The status line after a translation: how long it took, or the first error (its field marked in the form).
function report(outcomes, started) {
  if (outcomes.some((o) => o.aborted)) return;
  const failed = outcomes.filter((o) => o.error);
  if (failed.length) {
    const err = failed[0].error;
    const input = { text: "#source", beam: "#beam", n_best: "#n-best" }[err.field];
    if (input) $(input).classList.add("invalid");
    const which = failed.length === outcomes.length ? "" : ` (${failed.length} of ${outcomes.length} models)`;
    setStatus(`${err.message}${err.status ? ` (HTTP ${err.status})` : ""}${which}`, true);
    return;
  }
  const notes = outcomes.map((o) => o.result.note).filter(Boolean);
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  setStatus(`translated by ${outcomes.length} model${outcomes.length > 1 ? "s" : ""} in ${seconds} s` +
    (notes.length ? ` — ${notes[0]}` : ""), false);
}

document.addEventListener("DOMContentLoaded", init);
