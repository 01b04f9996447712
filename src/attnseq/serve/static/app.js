// The attention page: no build step, no dependencies; talks to /v1/models and /v1/predict.
"use strict";

const $ = (id) => document.getElementById(id);
let models = [];

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
}

function current() {
  return models.find((m) => m.name === $("model").value);
}

function showModel() {
  const m = current();
  if (!m) return;
  const vocab = Object.entries(m.vocab || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  const labels = m.labels ? ` · labels: ${m.labels.join(", ")}` : "";
  $("model-info").textContent = `${m.task} · vocab ${vocab}${labels}`;
  const audio = m.input === "audio";
  $("text-input").hidden = audio;
  $("audio-input").hidden = !audio;
  for (const [id, name] of [["beam", "beam_size"], ["nbest", "n_best"]]) {
    const option = m.search.find((o) => o.name === name);
    const input = $(id);
    input.disabled = !option;
    input.parentElement.hidden = !m.search.length;
    if (option) {
      input.min = option.minimum ?? 1;
      input.max = option.maximum ?? 64;
      if (option.default != null) input.value = option.default;
    }
  }
}

async function loadModels() {
  const response = await fetch("/v1/models");
  const body = await response.json();
  models = body.models;
  const select = $("model");
  select.replaceChildren(...models.map((m) => new Option(`${m.name} (${m.task})`, m.name)));
  showModel();
}

function colour(w) {
  // white -> deep blue, by weight in [0, 1]
  const t = Math.max(0, Math.min(1, w));
  const mix = (a, b) => Math.round(a + (b - a) * t);
  return `rgb(${mix(255, 16)}, ${mix(255, 62)}, ${mix(255, 140)})`;
}

function describeCell(cell) {
  return `output "${cell.dataset.output}" ← input "${cell.dataset.input}": weight ${Number(cell.dataset.weight).toFixed(3)}`;
}

function renderHeatmap(p, rowLabels) {
  const table = $("heatmap");
  table.replaceChildren();
  if (!p.attention || !p.attention.length) {
    $("cell-info").textContent = "This model's output has no attention weights.";
    return;
  }
  const head = table.createTHead().insertRow();
  head.appendChild(document.createElement("th"));
  for (const tok of p.input_tokens) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = tok;
    head.appendChild(th);
  }
  const body = table.createTBody();
  p.attention.forEach((weights, r) => {
    const row = body.insertRow();
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = rowLabels[r];
    const share = p.copied ? p.copied[r] : null;
    if (share != null) {  // a model that copies: how much of this token's probability came from the input
      th.dataset.copied = share;
      th.classList.toggle("copied", share >= 0.5);
      th.title = `${Math.round(100 * share)}% of its probability copied from the input`;
    }
    row.appendChild(th);
    weights.forEach((w, c) => {
      const cell = row.insertCell();
      cell.className = "cell";
      cell.style.background = colour(w);
      Object.assign(cell.dataset, { row: r, col: c, weight: w, input: p.input_tokens[c], output: rowLabels[r] });
      cell.tabIndex = r === 0 && c === 0 ? 0 : -1;
      cell.setAttribute("aria-label", describeCell(cell));
      cell.title = describeCell(cell);
    });
  });
  $("cell-info").innerHTML = "&nbsp;";
  $("copy-info").hidden = !p.copied;
}

function highlight(cell) {
  for (const el of document.querySelectorAll("#heatmap th.active")) el.classList.remove("active");
  if (!cell) return;
  const table = $("heatmap");
  const r = Number(cell.dataset.row), c = Number(cell.dataset.col);
  table.tHead.rows[0].cells[c + 1].classList.add("active");
  table.tBodies[0].rows[r].cells[0].classList.add("active");
  $("cell-info").textContent = describeCell(cell);
}

function moveFocus(cell, key) {
  const r = Number(cell.dataset.row), c = Number(cell.dataset.col);
  const step = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[key];
  if (!step) return false;
  const next = document.querySelector(`#heatmap td.cell[data-row="${r + step[0]}"][data-col="${c + step[1]}"]`);
  if (next) {
    cell.tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
  }
  return true;
}

function render(body) {
  const p = body.predictions[0];
  $("result").hidden = false;
  $("output").textContent = p.output || "(empty)";
  const model = models.find((m) => m.name === body.model);
  const classifier = Boolean(model) && model.output === "label";
  $("score").textContent = classifier
    ? `probability ${p.score.toFixed(3)}`
    : `log-probability ${p.score == null ? "n/a" : p.score.toFixed(3)}` +
      (p.rank_score == null || p.rank_score === p.score ? "" : ` · ranking score ${p.rank_score.toFixed(3)}`);
  $("nbest-title").textContent = classifier ? "Classes" : "n-best";
  const list = $("nbest-list");
  const alternatives = p.alternatives || [{ output: p.output, score: p.score, rank_score: p.rank_score }];
  list.replaceChildren(...alternatives.map((a) => {
    const li = document.createElement("li");
    li.textContent = a.output || "(empty)";
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = a.score == null ? "" : a.score.toFixed(3);
    li.appendChild(score);
    return li;
  }));
  renderHeatmap(p, classifier ? [p.output] : p.output_tokens);
}

function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function submit(event) {
  event.preventDefault();
  const m = current();
  const audio = m && m.input === "audio";
  const text = $("input").value;
  const file = $("audio").files[0];
  if (!m || (audio ? !file : !text.trim())) {
    setStatus(audio ? "Choose a recording first." : "Type something first.", true);
    return;
  }
  const search = {};
  if (!$("beam").disabled) search.beam_size = Number($("beam").value);
  if (!$("nbest").disabled) search.n_best = Math.min(Number($("nbest").value), search.beam_size || 64);
  $("submit").disabled = true;
  setStatus("Working…");
  try {
    const response = await fetch("/v1/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(
        audio ? { model: m.name, audio: [await base64Of(file)], search } : { model: m.name, inputs: [text], search },
      ),
    });
    const body = await response.json();
    if (!response.ok) {
      setStatus(body.error ? body.error.message : `HTTP ${response.status}`, true);
      return;
    }
    render(body);
    setStatus(`${(body.seconds * 1000).toFixed(0)} ms`);
  } catch (err) {
    setStatus(`Request failed: ${err}`, true);
  } finally {
    $("submit").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", submit);
  $("model").addEventListener("change", showModel);
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("form").requestSubmit();
  });
  const table = $("heatmap");
  table.addEventListener("mouseover", (e) => highlight(e.target.closest("td.cell")));
  table.addEventListener("focusin", (e) => highlight(e.target.closest("td.cell")));
  table.addEventListener("keydown", (e) => {
    const cell = e.target.closest("td.cell");
    if (cell && moveFocus(cell, e.key)) e.preventDefault();
  });
  loadModels().catch((err) => setStatus(`Could not list models: ${err}`, true));
});
