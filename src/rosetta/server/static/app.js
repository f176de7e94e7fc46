// The page: plain JavaScript, no build step, no libraries. GET /v1/model says the model's task and the page
// becomes that task's tool (the dispatch at the end of this file):
//
//   translation, summarisation   this file: the attention explorer (below)
//   image-classification         modes/vision.js: draw a digit, see the prediction and the attention over it
//   classification               modes/classifier.js: a text, its label probabilities, the [CLS] → token attention
//   lm                           modes/lm.js: a prompt and the text streamed token by token
//   qa                           modes/qa.js: a context and a question, the answer highlighted, question → context
//
// The attention explorer: one POST /v1/attention gives the translation (or summary) and every map:
// result[kind][layer][head] is a matrix (rows = queries, columns = keys). The page draws the chosen maps on
// <canvas> and, while a token or a cell is hovered, writes the weights that row (or column) holds next to the
// tokens. With /v1/model's "head_importance" (written by head pruning), each head shows its importance.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { result: null, kind: "cross", layer: "last", head: "mean", hover: null, model: null };
window.rosetta = state; // for the curious (and for tests): the current data and selection

// ------------------------------------------------------------------------------------------ head importance
// /v1/model's "head_importance": [layer][head] numbers, or {kind: [layer][head]} for a model with several kinds
// of attention (encoder self, decoder self, cross). null when the model has none for this head.
function importance(kind, layer, head) {
  const table = state.model && state.model.head_importance;
  if (!table) return null;
  const rows = Array.isArray(table) ? table : table[kind];
  const value = rows && rows[layer] && rows[layer][head];
  return typeof value === "number" ? value : null;
}

function importanceText(kind, layer, head) {
  const value = importance(kind, layer, head);
  return value === null ? "" : ` · importance ${value.toFixed(2)}`;
}

// ------------------------------------------------------------------------------------------ data
// Which tokens label rows and columns (same rule as rosetta/plots.py): a decoder/cross row is the step
// that produces the next target token, so it is labelled with that token; the last row produces </s>.
function axisTokens(r, kind) {
  const produced = r.target_tokens.slice(1).concat(["</s>"]);
  if (kind === "encoder") return [r.source_tokens, r.source_tokens, "source", "source"];
  if (kind === "decoder") return [produced, r.target_tokens, "producing", "target so far"];
  return [produced, r.source_tokens, "producing", "source"];
}

function mean(matrices) {
  return matrices[0].map((row, i) => row.map((_, j) =>
    matrices.reduce((s, m) => s + m[i][j], 0) / matrices.length));
}

// The maps to draw for the current selection: [{title, weights}], grouped by layer for the grid.
function selectedMaps() {
  const layers = state.result[state.kind];
  const nl = layers.length, nh = layers[0].length;
  const layerIds = state.layer === "all" ? [...Array(nl).keys()] : [state.layer === "last" ? nl - 1 : +state.layer];
  const maps = [];
  for (const l of layerIds) {
    if (state.head === "all") {
      for (let h = 0; h < nh; h++) {
        maps.push({ title: `layer ${l} · head ${h}${importanceText(state.kind, l, h)}`, weights: layers[l][h], layer: l });
      }
    } else if (state.head === "mean") {
      maps.push({ title: `layer ${l} · mean of ${nh} heads`, weights: mean(layers[l]), layer: l });
    } else {
      maps.push({ title: `layer ${l} · head ${state.head}${importanceText(state.kind, l, +state.head)}`,
        weights: layers[l][+state.head], layer: l });
    }
  }
  return maps;
}

// ------------------------------------------------------------------------------------------ colours
const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
function viridis(w) {
  const x = Math.min(1, Math.max(0, w)) * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return `rgb(${a.map((v, k) => Math.round(v + f * (b[k] - v))).join(",")})`;
}

// ------------------------------------------------------------------------------------------ drawing
const FONT = getComputedStyle(document.documentElement).fontFamily;

function drawMap(canvas, map, rows, cols, cell, labels) {
  const ctx = canvas.getContext("2d"), dpr = window.devicePixelRatio || 1, fontPx = Math.min(13, cell - 2);
  ctx.font = `${fontPx}px ${FONT}`;
  const widest = (list) => Math.max(0, ...list.map((t) => ctx.measureText(t).width));
  const left = labels ? widest(rows) + 8 : 0, top = labels ? widest(cols) + 8 : 0;
  const width = left + cell * cols.length, height = top + cell * rows.length;
  canvas.width = Math.ceil(width * dpr); canvas.height = Math.ceil(height * dpr);
  canvas.style.width = `${width}px`; canvas.style.height = `${height}px`;
  canvas.geometry = { left, top, cell, nRows: rows.length, nCols: cols.length };
  ctx.scale(dpr, dpr);
  ctx.font = `${fontPx}px ${FONT}`;
  map.weights.forEach((row, i) => row.forEach((w, j) => {
    ctx.fillStyle = viridis(w);
    ctx.fillRect(left + j * cell, top + i * cell, cell, cell);
  }));
  if (labels) {
    ctx.fillStyle = "#1d2330"; ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    rows.forEach((t, i) => ctx.fillText(t, left - 4, top + (i + 0.5) * cell));
    ctx.textAlign = "left";
    cols.forEach((t, j) => {
      ctx.save(); ctx.translate(left + (j + 0.5) * cell, top - 4); ctx.rotate(-Math.PI / 2);
      ctx.fillText(t, 0, 0); ctx.restore();
    });
  }
  const h = state.hover;
  if (h) { // outline the hovered row (a query) or column (a key)
    ctx.strokeStyle = "#e4572e"; ctx.lineWidth = 2;
    if (h.side === "query") ctx.strokeRect(left + 1, top + h.index * cell + 1, cell * cols.length - 2, cell - 2);
    else ctx.strokeRect(left + h.index * cell + 1, top + 1, cell - 2, cell * rows.length - 2);
    if (h.cell !== undefined) { // and the hovered cell itself
      ctx.strokeStyle = "#ffffff"; ctx.strokeRect(left + h.cell * cell + 2, top + h.index * cell + 2, cell - 4, cell - 4);
    }
  }
}

function render() {
  const r = state.result;
  if (!r) return;
  const [rows, cols, rowName, colName] = axisTokens(r, state.kind);
  $("query-label").textContent = `rows (queries): ${rowName}`;
  $("key-label").textContent = `columns (keys): ${colName}`;
  renderTokens($("query-tokens"), rows, "query");
  renderTokens($("key-tokens"), cols, "key");
  const maps = selectedMaps(), many = maps.length > 1;
  // Cell size: one layer's maps side by side in the page width (room left for labels), 6 to 34 pixels.
  const perLine = state.head === "all" ? state.result[state.kind][0].length : 1;
  const width = ($("maps").clientWidth || 1000) / perLine - 12 - (many ? 80 : 120);
  const cell = Math.max(6, Math.min(many ? 20 : 34, Math.floor(width / cols.length), many ? 20 : 560 / rows.length));
  const holder = $("maps"), rowsByLayer = new Map();
  holder.replaceChildren();
  for (const map of maps) {
    if (!rowsByLayer.has(map.layer)) { // one line of maps per layer
      const line = document.createElement("div");
      line.className = "layer-row";
      rowsByLayer.set(map.layer, line);
      holder.append(line);
    }
    const box = document.createElement("div");
    box.className = "map";
    const title = document.createElement("div");
    title.className = "title"; title.textContent = map.title;
    const canvas = document.createElement("canvas");
    canvas.className = "heatmap";
    canvas.addEventListener("mousemove", (e) => hoverCell(canvas, e));
    canvas.addEventListener("mouseleave", () => setHover(null));
    box.append(title, canvas);
    rowsByLayer.get(map.layer).append(box);
    canvas.map = map;
  }
  state.view = { rows, cols, maps, cell, labels: cell >= 10 };
  redraw();
}

// Hovering changes only the outlines and the weights shown: redraw the canvases, keep the elements.
function redraw() {
  const v = state.view;
  document.querySelectorAll("canvas.heatmap").forEach((c) => drawMap(c, c.map, v.rows, v.cols, v.cell, v.labels));
  updateReadout(v.rows, v.cols, v.maps);
}

function renderTokens(holder, tokens, side) {
  holder.replaceChildren(...tokens.map((t, i) => {
    const chip = document.createElement("span");
    chip.className = "token"; chip.dataset.side = side; chip.dataset.index = i;
    chip.append(document.createTextNode(t));
    const w = document.createElement("span"); w.className = "w";
    chip.append(w);
    chip.addEventListener("mouseenter", () => setHover({ side, index: i }));
    chip.addEventListener("mouseleave", () => setHover(null));
    return chip;
  }));
}

// A copy model (pointer-generator) says per output token how much was copied (1 − p_gen) and from which
// source token; hovering a token shows its cross-attention row, the distribution it copies from.
function renderCopy(r) {
  $("copy").hidden = !r.p_gen;
  if (!r.p_gen) return;
  const produced = axisTokens(r, "cross")[0];
  $("copy-tokens").replaceChildren(...r.p_gen.map((p, i) => {
    const chip = document.createElement("span"), copied = 1 - p;
    chip.className = "token copy"; chip.dataset.copied = copied.toFixed(3);
    chip.textContent = produced[i];
    chip.style.background = `rgba(228, 87, 46, ${copied.toFixed(3)})`;
    chip.title = `${Math.round(copied * 100)}% copied, most from “${r.source_tokens[r.copy_from[i]]}”` +
      ` (source position ${r.copy_from[i]})`;
    chip.addEventListener("mouseenter", () => {
      if (state.kind !== "cross") { state.kind = $("kind").value = "cross"; fillControls(); render(); }
      setHover({ side: "query", index: i });
    });
    chip.addEventListener("mouseleave", () => setHover(null));
    return chip;
  }));
}

// ------------------------------------------------------------------------------------------ hovering
function setHover(hover) {
  const same = hover && state.hover && hover.side === state.hover.side && hover.index === state.hover.index
    && hover.cell === state.hover.cell;
  if (same || (!hover && !state.hover)) return;
  state.hover = hover;
  redraw();
}

function hoverCell(canvas, event) {
  const g = canvas.geometry, box = canvas.getBoundingClientRect();
  const j = Math.floor((event.clientX - box.left - g.left) / g.cell), i = Math.floor((event.clientY - box.top - g.top) / g.cell);
  if (i >= 0 && i < g.nRows && j >= 0 && j < g.nCols) setHover({ side: "query", index: i, cell: j });
  else setHover(null);
}

// Weights of the hovered row/column, written under the other side's tokens and in the readout line.
// Several maps on screen: their mean.
function updateReadout(rows, cols, maps) {
  const h = state.hover, readout = $("readout");
  document.querySelectorAll(".token[data-side]").forEach((chip) => {
    chip.classList.remove("active"); chip.style.background = ""; chip.querySelector(".w").textContent = "";
  });
  if (!h) { readout.textContent = "Hover a token or a cell to see what it attends to."; return; }
  const weights = maps.length === 1 ? maps[0].weights : mean(maps.map((m) => m.weights));
  const values = h.side === "query" ? weights[h.index] : weights.map((row) => row[h.index]);
  const others = h.side === "query" ? cols : rows, otherSide = h.side === "query" ? "key" : "query";
  document.querySelector(`.token[data-side="${h.side}"][data-index="${h.index}"]`)?.classList.add("active");
  if (h.cell !== undefined) document.querySelector(`.token[data-side="key"][data-index="${h.cell}"]`)?.classList.add("active");
  document.querySelectorAll(`.token[data-side="${otherSide}"]`).forEach((chip) => {
    const w = values[+chip.dataset.index];
    chip.style.background = `rgba(228, 87, 46, ${(0.08 + 0.8 * w).toFixed(3)})`;
    chip.querySelector(".w").textContent = w.toFixed(2);
  });
  const me = (h.side === "query" ? rows : cols)[h.index];
  const top = values.map((w, k) => [w, others[k]]).sort((a, b) => b[0] - a[0]).slice(0, 5)
    .map(([w, t]) => `${t} ${w.toFixed(2)}`).join(" · ");
  const which = maps.length === 1 ? "" : ` (mean of ${maps.length} maps)`;
  if (h.cell !== undefined) {
    readout.textContent = `${me} → ${cols[h.cell]}: ${values[h.cell].toFixed(3)}${which}   |   top: ${top}`;
  } else if (h.side === "query") {
    readout.textContent = `${me} attends to: ${top}${which}`;
  } else {
    readout.textContent = `${me} is attended by: ${top}${which}`;
  }
}

// ------------------------------------------------------------------------------------------ probability bars
// [[label, p], …] as one bar each (a classifier's labels: the ViT's digits, a text classifier's classes).
function probabilityBars(holder, pairs) {
  holder.replaceChildren(...pairs.map(([label, p]) => {
    const row = document.createElement("div");
    row.className = "bar-row"; row.dataset.label = label; row.dataset.p = p;
    const name = document.createElement("span"); name.className = "bar-label"; name.textContent = label;
    const track = document.createElement("span"); track.className = "bar-track";
    const fill = document.createElement("span"); fill.className = "bar-fill"; fill.style.width = `${(100 * p).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span"); value.className = "bar-value"; value.textContent = p.toFixed(3);
    row.append(name, track, value);
    return row;
  }));
}

// ------------------------------------------------------------------------------------------ controls
function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, label]) => new Option(label, v)));
  select.value = options.some(([v]) => String(v) === String(value)) ? value : options[0][0];
  return select.value;
}

// Head options, each with its importance when the model has one (for the chosen layer, or the last).
function headOptions(kind, nh, layer) {
  return [...Array(nh).keys()].map((h) => [h, `${h}${importanceText(kind, layer, h)}`]);
}

function fillControls() {
  // Only the kinds the answer holds (a summariser's page asks for cross and decoder maps only).
  [...$("kind").options].forEach((o) => { o.hidden = !state.result[o.value]; });
  if (!state.result[state.kind]) state.kind = $("kind").value = ["cross", "decoder", "encoder"].find((k) => state.result[k]);
  const layers = state.result[state.kind], nl = layers.length, nh = layers[0].length;
  const shown = state.layer === "last" || state.layer === "all" ? nl - 1 : +state.layer;
  state.layer = fillSelect($("layer"), [["last", `last (${nl - 1})`], ...[...Array(nl).keys()].map((l) => [l, `${l}`]),
    ["all", "all layers"]], state.layer);
  state.head = fillSelect($("head"), [["mean", "mean of heads"], ...headOptions(state.kind, nh, shown),
    ["all", "all heads"]], state.head);
}

for (const id of ["kind", "layer", "head"]) {
  $(id).addEventListener("change", (e) => {
    state[id] = e.target.value; state.hover = null;
    if (id !== "head") fillControls();
    render();
  });
}

async function translate(event) {
  event?.preventDefault();
  const text = $("text").value.trim(), status = $("status");
  if (!text) { status.textContent = "type a sentence first"; return; }
  $("translate").disabled = true; status.className = "muted"; status.textContent = "translating…";
  const start = performance.now();
  try {
    const response = await fetch("/v1/attention", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(summariser() ? { text, kinds: ["cross", "decoder"] } : { text }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    state.result = body; state.hover = null;
    $("translation").textContent = body.translation || (summariser() ? "(empty summary)" : "(empty translation)");
    $("result").hidden = false;
    fillControls();
    render();
    renderCopy(body);
    status.textContent = `${Math.round(performance.now() - start)} ms`;
  } catch (error) {
    status.className = "error"; status.textContent = `error: ${error.message}`;
  } finally {
    $("translate").disabled = false;
  }
}

$("form").addEventListener("submit", translate);
$("text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("form").requestSubmit(); }
});

const summariser = () => state.model && state.model.task === "summarisation";

// A summariser is a translation model whose target is a short summary: the same explorer, other words.
function setupTextToText(m) {
  const c = m.config, langs = m.src_lang && m.tgt_lang ? `${m.src_lang} → ${m.tgt_lang} · ` : "";
  const what = summariser() ? "summariser · " : "";
  $("model-info").textContent = `${what}${langs}${m.parameters.toLocaleString()} parameters · ` +
    `${c.n_encoder_layers}+${c.n_decoder_layers} layers · ${c.n_heads} heads · d_model ${c.d_model}`;
  if (m.tgt_lang) $("translation").lang = m.tgt_lang;
  if (summariser()) {
    document.title = "Rosetta · summariser";
    $("text").rows = 8; $("text").placeholder = "Paste a document, e.g. a paper's abstract.";
    $("translate").textContent = "Summarise"; $("result-label").textContent = "summary";
    $("translation").lang = m.tgt_lang || "en";
  }
}

// Each mode's set-up, by /v1/model's task; the modes' scripts are loaded after this one.
const MODES = {
  translation: setupTextToText, summarisation: setupTextToText,
  "image-classification": (m) => setupVision(m), classification: (m) => setupClassifier(m),
  lm: (m) => setupLanguageModel(m), qa: (m) => setupQuestionAnswering(m),
};

// Show only the given section (and its footer) of the page.
function showOnly(section, footer) {
  for (const id of ["form", "result", "vision", "classifier", "lm", "qa"]) $(id).hidden = id !== section;
  for (const id of ["footer-translation", "footer-vision", "footer-text"]) $(id).hidden = id !== footer;
}

window.addEventListener("DOMContentLoaded", () => {
  fetch("/v1/model").then((r) => r.json()).then((m) => {
    state.model = m;
    (MODES[m.task] || MODES.translation)(m);
  }).catch((error) => { $("model-info").textContent = `model info unavailable (${error.message})`; });
});

