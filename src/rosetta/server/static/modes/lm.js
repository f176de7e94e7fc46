// The language model mode: a prompt, and the continuation streamed token by token. POST /v1/generate answers
// NDJSON: one JSON object per line, {"id", "text"} per token as the model chooses it, then
// {"done": true, "text", "tokens", "stop"}; the page appends each token's text as its line arrives.
// Uses app.js's helpers ($, showOnly).
"use strict";

const languageModel = { controller: null, tokens: 0, done: null };
state.lm = languageModel;

function setupLanguageModel(m) {
  const c = m.config;
  $("model-info").textContent = `language model (GPT) · ${c.n_decoder_layers} layers · ${c.n_heads} heads · ` +
    `d_model ${c.d_model} · context ${c.max_len} tokens · vocabulary ${m.vocab_size} · ` +
    `${m.parameters.toLocaleString()} parameters`;
  document.title = "Rosetta · language model";
  showOnly("lm", "footer-text");
  $("lm-max").max = m.limits.max_new_tokens;
  $("lm-form").addEventListener("submit", generateText);
  $("lm-stop").addEventListener("click", () => languageModel.controller?.abort());
}

function numberOrNull(id) {
  const value = $(id).value.trim();
  return value === "" ? null : Number(value);
}

async function generateText(event) {
  event?.preventDefault();
  const status = $("lm-status"), prompt = $("lm-prompt").value;
  const body = { prompt, max_new_tokens: numberOrNull("lm-max") ?? 100, temperature: numberOrNull("lm-temperature") ?? 0.8 };
  for (const [key, id] of [["top_k", "lm-top-k"], ["seed", "lm-seed"]]) {
    if (numberOrNull(id) !== null) body[key] = numberOrNull(id);
  }
  languageModel.controller = new AbortController();
  languageModel.tokens = 0; languageModel.done = null;
  $("lm-echo").textContent = prompt; $("lm-generated").textContent = "";
  $("lm-go").disabled = true; $("lm-stop").disabled = false;
  status.className = "muted"; status.textContent = "generating…";
  const start = performance.now();
  try {
    const response = await fetch("/v1/generate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      signal: languageModel.controller.signal,
    });
    if (!response.ok) throw new Error((await response.json()).error || response.statusText);
    await readLines(response.body, (line) => {
      if (line.error) throw new Error(line.error);
      if (line.done) { languageModel.done = line; $("lm-generated").textContent = line.text; return; }
      languageModel.tokens++;
      $("lm-generated").textContent += line.text;
      status.textContent = `${languageModel.tokens} tokens…`;
    });
    const seconds = (performance.now() - start) / 1000;
    status.textContent = `${languageModel.tokens} tokens in ${seconds.toFixed(1)} s` +
      (languageModel.done ? ` (stopped at ${languageModel.done.stop === "eos" ? "</s>" : "the token limit"})` : "");
  } catch (error) {
    if (error.name === "AbortError") { status.textContent = `stopped after ${languageModel.tokens} tokens`; return; }
    status.className = "error"; status.textContent = `error: ${error.message}`;
  } finally {
    $("lm-go").disabled = false; $("lm-stop").disabled = true;
  }
}

// Call onLine(object) for each NDJSON line of a streamed body, as soon as the line is complete.
async function readLines(stream, onLine) {
  const reader = stream.getReader(), decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) onLine(JSON.parse(line));
    }
    if (done) break;
  }
  if (buffer.trim()) onLine(JSON.parse(buffer));
}
