// The image model (ViT) mode of the page: draw a digit or upload a picture, see the prediction and where
// the [CLS] token looked. Uses app.js's helpers ($, fillSelect, mean).
"use strict";

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
  showOnly("vision", "footer-vision");
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
  probabilityBars($("bars"), r.top);
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
