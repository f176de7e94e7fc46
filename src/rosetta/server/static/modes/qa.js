// The question-answering mode: a context and a question; POST /v1/answer gives the answer's characters
// [start, end) in the context, highlighted there; POST /v1/attention gives, for one window of the context,
// question_to_context[layer][head]: rows are the question's tokens, columns the context's, drawn as a heatmap.
// Uses app.js's helpers ($, fillSelect, mean, drawMap, importanceText, showOnly).
"use strict";

const questionAnswering = { answer: null, attention: null, asked: null };
state.qa = questionAnswering;

function setupQuestionAnswering(m) {
  const c = m.config;
  $("model-info").textContent = `question answering · ${c.n_encoder_layers} layers · ${c.n_heads} heads · ` +
    `d_model ${c.d_model} · ${m.parameters.toLocaleString()} parameters`;
  document.title = "Rosetta · question answering";
  showOnly("qa", "footer-text");
  fillSelect($("qa-layer"), [...Array(c.n_encoder_layers).keys()].map((l) => [l, `${l}`]), c.n_encoder_layers - 1);
  fillQaHeads();
  $("qa-layer").addEventListener("change", () => { fillQaHeads(); drawQaAttention(); });
  $("qa-head").addEventListener("change", drawQaAttention);
  $("qa-window").addEventListener("change", () => fetchQaAttention(+$("qa-window").value));
  $("qa-form").addEventListener("submit", answerQuestion);
}

function fillQaHeads() {
  const layer = +$("qa-layer").value, nh = state.model.config.n_heads;
  fillSelect($("qa-head"), [["mean", "mean of heads"],
    ...[...Array(nh).keys()].map((h) => [h, `${h}${importanceText("encoder", layer, h)}`])], $("qa-head").value || "mean");
}

async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

async function answerQuestion(event) {
  event?.preventDefault();
  const context = $("qa-context").value, question = $("qa-question").value.trim(), status = $("qa-status");
  if (!context.trim() || !question) { status.textContent = "give a context and a question"; return; }
  $("qa-go").disabled = true; status.className = "muted"; status.textContent = "reading…";
  const start = performance.now();
  try {
    const answer = await postJson("/v1/answer", { question, context });
    questionAnswering.answer = answer; questionAnswering.asked = { question, context };
    $("qa-result").hidden = false;
    $("qa-answer").textContent = answer.answer || "(no answer)";
    $("qa-score").textContent = `score ${answer.score.toFixed(3)} · characters ${answer.start}–${answer.end}`;
    const mark = document.createElement("mark");
    mark.id = "qa-mark"; mark.textContent = context.slice(answer.start, answer.end);
    $("qa-highlight").replaceChildren(context.slice(0, answer.start), mark, context.slice(answer.end));
    await fetchQaAttention(0);
    status.textContent = `${Math.round(performance.now() - start)} ms`;
  } catch (error) {
    status.className = "error"; status.textContent = `error: ${error.message}`;
  } finally {
    $("qa-go").disabled = false;
  }
}

async function fetchQaAttention(window) {
  const result = await postJson("/v1/attention", { ...questionAnswering.asked, window });
  questionAnswering.attention = result;
  fillSelect($("qa-window"), [...Array(result.windows).keys()].map((w) => [w, `${w + 1} of ${result.windows}`]), window);
  drawQaAttention();
}

function drawQaAttention() {
  const r = questionAnswering.attention;
  if (!r) return;
  const layer = +$("qa-layer").value, head = $("qa-head").value, heads = r.question_to_context[layer];
  const weights = head === "mean" ? mean(heads) : heads[+head];
  const rows = r.tokens.slice(r.question[0], r.question[1]), cols = r.tokens.slice(r.context[0], r.context[1]);
  $("qa-importance").textContent = head === "mean" ? "" : importanceText("encoder", layer, +head).replace(" · ", "");
  const box = document.createElement("div"), title = document.createElement("div"), canvas = document.createElement("canvas");
  box.className = "map"; title.className = "title"; canvas.className = "heatmap qa-heatmap";
  title.textContent = `layer ${layer} · ${head === "mean" ? `mean of ${heads.length} heads` : `head ${head}`}` +
    (head === "mean" ? "" : importanceText("encoder", layer, +head));
  box.append(title, canvas);
  $("qa-maps").replaceChildren(box);
  const width = ($("qa-maps").clientWidth || 1000) - 140;
  const cell = Math.max(6, Math.min(28, Math.floor(width / Math.max(1, cols.length))));
  drawMap(canvas, { weights }, rows, cols, cell, cell >= 10);
}
