// The text classifier mode: type a text, see each label's probability as a bar and what the first token
// ([CLS], or <s> for a Rosetta tokenizer) attends to in a chosen layer and head. One POST /v1/attention gives
// the prediction and every map: encoder[layer][head] is a T × T matrix; row 0 is [CLS]'s attention.
// Uses app.js's helpers ($, fillSelect, mean, probabilityBars, importanceText, showOnly).
"use strict";

const textClassifier = { result: null };
state.classifier = textClassifier;

function setupClassifier(m) {
  const c = m.config;
  $("model-info").textContent = `text classifier · ${m.labels.length} labels (${m.labels.join(", ")}) · ` +
    `${c.n_encoder_layers} layers · ${c.n_heads} heads · d_model ${c.d_model} · ` +
    `${m.parameters.toLocaleString()} parameters`;
  document.title = "Rosetta · text classifier";
  showOnly("classifier", "footer-text");
  $("cls-bars").classList.add("text");
  fillSelect($("cls-layer"), [...Array(c.n_encoder_layers).keys()].map((l) => [l, `${l}`]), c.n_encoder_layers - 1);
  fillClassifierHeads();
  $("cls-layer").addEventListener("change", () => { fillClassifierHeads(); showClassifierAttention(); });
  $("cls-head").addEventListener("change", showClassifierAttention);
  $("cls-form").addEventListener("submit", classifyText);
  $("cls-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("cls-form").requestSubmit(); }
  });
}

function fillClassifierHeads() {
  const layer = +$("cls-layer").value, nh = state.model.config.n_heads;
  fillSelect($("cls-head"), [["mean", "mean of heads"],
    ...[...Array(nh).keys()].map((h) => [h, `${h}${importanceText("encoder", layer, h)}`])], $("cls-head").value || "mean");
}

async function classifyText(event) {
  event?.preventDefault();
  const text = $("cls-text").value.trim(), status = $("cls-status");
  if (!text) { status.textContent = "type a text first"; return; }
  $("cls-go").disabled = true; status.className = "muted"; status.textContent = "classifying…";
  const start = performance.now();
  try {
    const response = await fetch("/v1/attention", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    textClassifier.result = body;
    $("cls-result").hidden = false;
    $("cls-label").textContent = body.label;
    $("cls-probability").textContent = `${(100 * body.probability).toFixed(1)}%`;
    probabilityBars($("cls-bars"), Object.entries(body.probabilities).sort((a, b) => b[1] - a[1]));
    showClassifierAttention();
    status.textContent = `${Math.round(performance.now() - start)} ms`;
  } catch (error) {
    status.className = "error"; status.textContent = `error: ${error.message}`;
  } finally {
    $("cls-go").disabled = false;
  }
}

// The first token's row of the chosen layer (and head, or the mean of the heads), as weights under the tokens.
function classifierRow() {
  const heads = textClassifier.result.encoder[+$("cls-layer").value], head = $("cls-head").value;
  const map = head === "mean" ? mean(heads) : heads[+head];
  return map[0];
}

function showClassifierAttention() {
  const r = textClassifier.result;
  if (!r) return;
  const row = classifierRow(), top = Math.max(1e-12, ...row), layer = +$("cls-layer").value, head = $("cls-head").value;
  $("cls-attention-label").textContent = `${r.tokens[0]} → token attention, layer ${layer}, ` +
    (head === "mean" ? "mean of heads" : `head ${head}`);
  $("cls-importance").textContent = head === "mean" ? "" : importanceText("encoder", layer, +head).replace(" · ", "");
  $("cls-tokens").replaceChildren(...r.tokens.map((t, i) => {
    const chip = document.createElement("span");
    chip.className = "token"; chip.dataset.side = "key"; chip.dataset.index = i;
    chip.style.background = `rgba(228, 87, 46, ${(0.05 + 0.85 * row[i] / top).toFixed(3)})`;
    chip.title = `${t}: ${row[i].toFixed(4)}`;
    const w = document.createElement("span"); w.className = "w"; w.textContent = row[i].toFixed(2);
    chip.append(document.createTextNode(t), w);
    return chip;
  }));
}
