// The attention explorer: plain JavaScript, no build step, no libraries.
//
// One POST /v1/attention gives the translation and every map: result[kind][layer][head] is a matrix
// (rows = queries, columns = keys). The page draws the chosen maps on <canvas> and, while a token or a
// cell is hovered, writes the weights that row (or column) holds next to the tokens.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { result: null, kind: "cross", layer: "last", head: "mean", hover: null };
window.rosetta = state; // for the curious (and for tests): the current data and selection

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
      for (let h = 0; h < nh; h++) maps.push({ title: `layer ${l} · head ${h}`, weights: layers[l][h], layer: l });
    } else if (state.head === "mean") {
      maps.push({ title: `layer ${l} · mean of ${nh} heads`, weights: mean(layers[l]), layer: l });
    } else {
      maps.push({ title: `layer ${l} · head ${state.head}`, weights: layers[l][+state.head], layer: l });
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
  document.querySelectorAll(".token").forEach((chip) => {
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

// ------------------------------------------------------------------------------------------ controls
function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, label]) => new Option(label, v)));
  select.value = options.some(([v]) => String(v) === String(value)) ? value : options[0][0];
  return select.value;
}

function fillControls() {
  const layers = state.result[state.kind], nl = layers.length, nh = layers[0].length;
  state.layer = fillSelect($("layer"), [["last", `last (${nl - 1})`], ...[...Array(nl).keys()].map((l) => [l, `${l}`]),
    ["all", "all layers"]], state.layer);
  state.head = fillSelect($("head"), [["mean", "mean of heads"], ...[...Array(nh).keys()].map((h) => [h, `${h}`]),
    ["all", "all heads"]], state.head);
}

for (const id of ["kind", "layer", "head"]) {
  $(id).addEventListener("change", (e) => {
    state[id] = e.target.value; state.hover = null;
    if (id === "kind") fillControls();
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
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    state.result = body; state.hover = null;
    $("translation").textContent = body.translation || "(empty translation)";
    $("result").hidden = false;
    fillControls();
    render();
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

fetch("/v1/model").then((r) => r.json()).then((m) => {
  if (m.family === "vit") { setupVision(m); return; }
  const c = m.config, langs = m.src_lang && m.tgt_lang ? `${m.src_lang} → ${m.tgt_lang} · ` : "";
  $("model-info").textContent = `${langs}${m.parameters.toLocaleString()} parameters · ` +
    `${c.n_encoder_layers}+${c.n_decoder_layers} layers · ${c.n_heads} heads · d_model ${c.d_model}`;
  if (m.tgt_lang) $("translation").lang = m.tgt_lang;
}).catch(() => { $("model-info").textContent = "model info unavailable"; });

// ========================================================================================== image models
// A ViT: draw a digit (or upload a picture); ~150 ms after the last stroke the drawing is cropped to its ink,
// scaled and centred as the training digits were (MNIST: the ink's box fills 20 of 28 pixels, its centre of
// mass in the middle; see FRAMING), downscaled to the model's size and POSTed to /v1/classify. The answer's [CLS] attention (a g × g
// grid over the patches) is drawn back over the drawing through the inverse of that crop-and-scale.
const vision = { model: null, result: null, transform: null, requests: 0, seq: 0, mode: "draw", timer: null };
state.vision = vision;
// How the training digits were framed: the share of the picture the ink's box fills, and what is centred.
// MNIST: a 20-pixel box in 28, centre of mass in the middle; scikit-learn's digits: the box fills the picture.
const FRAMING = { mnist: [20 / 28, "mass"], digits: [1.0, "box"] };
const INFERNO = [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
  [250, 193, 39], [252, 255, 164]];
function inferno(w) {
  const x = Math.min(1, Math.max(0, w)) * (INFERNO.length - 1), i = Math.min(Math.floor(x), INFERNO.length - 2);
  const f = x - i, a = INFERNO[i], b = INFERNO[i + 1];
  return a.map((v, k) => Math.round(v + f * (b[k] - v)));
}

function setupVision(m) {
  vision.model = m;
  const img = m.image, c = m.config;
  $("model-info").textContent = `image classifier (ViT) · ${img.image_size}×${img.image_size} px, ` +
    `${img.patch_size}×${img.patch_size} patches (${m.grid}×${m.grid}) · ${c.n_encoder_layers} layers · ` +
    `${c.n_heads} heads · d_model ${c.d_model} · ${m.parameters.toLocaleString()} parameters · ` +
    `${m.labels.length} labels`;
  document.title = "Rosetta · what the ViT sees";
  $("form").hidden = true; $("result").hidden = true; $("footer-translation").hidden = true;
  $("vision").hidden = false; $("footer-vision").hidden = false;
  fillSelect($("vit-layer"), [["rollout", "rollout (all layers)"],
    ...[...Array(c.n_encoder_layers).keys()].map((l) => [l, `layer ${l}`])], "rollout");
  fillSelect($("vit-head"), [["mean", "mean of heads"], ...[...Array(c.n_heads).keys()].map((h) => [h, `${h}`])], "mean");
  $("vit-head").disabled = true;
  for (const id of ["vit-layer", "vit-head", "show-overlay"]) {
    $(id).addEventListener("change", () => { $("vit-head").disabled = $("vit-layer").value === "rollout"; drawOverlay(); });
  }
  const draw = $("draw");
  clearDrawing();
  let drawing = false, last = null;
  const point = (e) => {
    const box = draw.getBoundingClientRect();
    return [(e.clientX - box.left) * draw.width / box.width, (e.clientY - box.top) * draw.height / box.height];
  };
  const ctx = draw.getContext("2d");
  const stroke = (from, to) => {
    ctx.strokeStyle = "white"; ctx.lineWidth = 22; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(...from); ctx.lineTo(...to); ctx.stroke();
  };
  draw.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    if (vision.mode !== "draw") clearDrawing(); // drawing after an upload starts a new digit
    drawing = true; last = point(e);
    draw.setPointerCapture?.(e.pointerId);
    stroke(last, last);
    schedule();
  });
  draw.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const p = point(e);
    stroke(last, p); last = p;
    schedule();
  });
  for (const type of ["pointerup", "pointercancel"]) draw.addEventListener(type, () => { drawing = false; });
  $("clear").addEventListener("click", clearDrawing);
  $("upload").addEventListener("change", (e) => { if (e.target.files[0]) uploadPicture(e.target.files[0]); e.target.value = ""; });
}

function clearDrawing() {
  const draw = $("draw"), ctx = draw.getContext("2d");
  ctx.fillStyle = "black"; ctx.fillRect(0, 0, draw.width, draw.height);
  vision.mode = "draw"; vision.result = null; vision.transform = null; vision.seq++;
  clearTimeout(vision.timer);
  $("prediction").textContent = "–"; $("probability").textContent = ""; $("bars").replaceChildren();
  $("overlay-caption").textContent = ""; $("vision-status").textContent = "";
  const input = $("model-input");
  input.getContext("2d").clearRect(0, 0, input.width, input.height);
  drawOverlay();
}

function schedule() {
  clearTimeout(vision.timer);
  vision.timer = setTimeout(classifyDrawing, 150);
}

function canvasOf(size) {
  const c = document.createElement("canvas");
  c.width = c.height = size;
  return c;
}

// The drawing → the model's S × S picture, framed like the training digits; returns null for an empty canvas. Sets
// vision.transform: a model pixel u lies at canvas x = (u − S/2) / s + cx (the same for y).
function modelPicture() {
  const draw = $("draw"), W = draw.width, H = draw.height, S = vision.model.image.image_size;
  const pixels = draw.getContext("2d").getImageData(0, 0, W, H).data;
  let minX = W, minY = H, maxX = -1, maxY = -1, mass = 0, sx = 0, sy = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const v = pixels[(y * W + x) * 4];
      if (v < 16) continue;
      minX = Math.min(minX, x); maxX = Math.max(maxX, x); minY = Math.min(minY, y); maxY = Math.max(maxY, y);
      mass += v; sx += v * (x + 0.5); sy += v * (y + 0.5);
    }
  }
  if (maxX < 0) return null;
  const side = Math.max(maxX - minX + 1, maxY - minY + 1);
  const [fill, centre] = FRAMING[vision.model.corpus] || FRAMING.mnist;
  const s = (S * fill) / side;
  const cx = centre === "mass" ? sx / mass : (minX + maxX + 1) / 2, cy = centre === "mass" ? sy / mass : (minY + maxY + 1) / 2;
  vision.transform = { s, cx, cy, S };
  // Drawn at 4 × S, then halved twice: a smoother downscale than one big step.
  let big = canvasOf(4 * S), bctx = big.getContext("2d");
  bctx.fillStyle = "black"; bctx.fillRect(0, 0, big.width, big.height);
  bctx.imageSmoothingQuality = "high";
  bctx.setTransform(4 * s, 0, 0, 4 * s, 2 * S - 4 * s * cx, 2 * S - 4 * s * cy);
  bctx.drawImage(draw, 0, 0);
  for (const size of [2 * S, S]) {
    const small = canvasOf(size), sctx = small.getContext("2d");
    sctx.imageSmoothingQuality = "high";
    sctx.drawImage(big, 0, 0, size, size);
    big = small;
  }
  return big;
}

function showInput(picture) {
  const input = $("model-input"), ctx = input.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "black"; ctx.fillRect(0, 0, input.width, input.height);
  ctx.drawImage(picture, 0, 0, input.width, input.height);
}

async function classifyDrawing() {
  const picture = modelPicture();
  if (!picture) return;
  showInput(picture);
  await classify(() => fetch("/v1/classify", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ image: picture.toDataURL("image/png"), top_k: 5 }),
  }));
}

// An uploaded picture: sent as it is (multipart); the server pads it to a square, so it is shown the same
// way, fitted into the canvas, and the model's picture covers the whole canvas.
async function uploadPicture(file) {
  const draw = $("draw"), ctx = draw.getContext("2d"), S = vision.model.image.image_size;
  clearDrawing();
  vision.mode = "upload";
  try {
    const bitmap = await createImageBitmap(file);
    const k = Math.min(draw.width / bitmap.width, draw.height / bitmap.height);
    const w = bitmap.width * k, h = bitmap.height * k;
    ctx.drawImage(bitmap, (draw.width - w) / 2, (draw.height - h) / 2, w, h);
    showInput(draw);
  } catch (error) { /* not a picture the browser can show: the server will say what is wrong */ }
  vision.transform = { s: S / draw.width, cx: draw.width / 2, cy: draw.height / 2, S };
  const form = new FormData();
  form.append("image", file);
  form.append("top_k", "5");
  await classify(() => fetch("/v1/classify", { method: "POST", body: form }));
}

async function classify(send) {
  const mine = ++vision.seq, status = $("vision-status"), start = performance.now();
  status.className = "muted"; status.textContent = "classifying…";
  try {
    const response = await send();
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    if (mine !== vision.seq) return; // a newer drawing was sent meanwhile
    vision.result = body; vision.requests++;
    showPrediction(body);
    drawOverlay();
    status.textContent = `${Math.round(performance.now() - start)} ms`;
  } catch (error) {
    if (mine !== vision.seq) return;
    status.className = "error"; status.textContent = `error: ${error.message}`;
  }
}

function showPrediction(r) {
  $("prediction").textContent = r.label;
  $("probability").textContent = `${(100 * r.probability).toFixed(1)}%`;
  $("bars").replaceChildren(...r.top.map(([label, p]) => {
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

// The g × g weights picked in the selects: the rollout, or a layer's head (or the mean of its heads).
function selectedGrid() {
  const a = vision.result.attention, layer = $("vit-layer").value, head = $("vit-head").value;
  if (layer === "rollout") return [a.rollout, "attention rollout through all layers"];
  const heads = a.layers[+layer];
  if (head === "mean") return [mean(heads), `layer ${layer}, mean of ${heads.length} heads`];
  return [heads[+head], `layer ${layer}, head ${head}`];
}

function drawOverlay() {
  const overlay = $("overlay"), ctx = overlay.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  if (!vision.result || !vision.transform || !$("show-overlay").checked) return;
  const [grid, caption] = selectedGrid(), g = grid.length;
  const top = Math.max(1e-12, ...grid.flat());
  const heat = canvasOf(g), hctx = heat.getContext("2d"), cells = hctx.createImageData(g, g);
  grid.flat().forEach((w, i) => {
    const [r, gr, b] = inferno(w / top);
    cells.data.set([r, gr, b, Math.round(255 * (0.15 + 0.7 * w / top))], 4 * i);
  });
  hctx.putImageData(cells, 0, 0);
  const t = vision.transform; // the heat grid covers the model's S × S picture; map it back onto the canvas
  ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = "high";
  ctx.setTransform(1 / t.s, 0, 0, 1 / t.s, t.cx - t.S / (2 * t.s), t.cy - t.S / (2 * t.s));
  ctx.drawImage(heat, 0, 0, t.S, t.S);
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  $("overlay-caption").textContent = `overlay: ${caption} (max ${top.toFixed(2)})`;
}
