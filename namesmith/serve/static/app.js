// namesmith's page: plain JavaScript, no build step, talking to the server's /api/v1.
"use strict";

const API = "/api/v1";
const SHORTLIST_KEY = "namesmith.shortlist";
const KEY_KEY = "namesmith.apiKey";
// form fields that a share link carries, with how to read them from the form
const TEXT_FIELDS = ["starts_with", "ends_with", "contains", "excludes", "regex"];
const NUMBER_FIELDS = ["min_len", "max_len", "n", "seed", "top_k", "top_p"];
const CHECK_FIELDS = ["novel", "unique", "filter_offensive"];

const $ = (id) => document.getElementById(id);
const state = { server: null, models: [], model: null, results: [], similarity: new Map(), lastRequest: null };

// --- talking to the server -------------------------------------------------------------------
async function api(path, body) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY_KEY);
  if (key) headers["X-API-Key"] = key;
  const options = { headers };
  if (body !== undefined) {
    options.method = "POST";
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, options);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const error = new Error((data && data.error) || `the server answered ${response.status}`);
    error.field = data && data.field;
    error.status = response.status;
    error.retryAfter = Number(response.headers.get("Retry-After")) || null;
    throw error;
  }
  return data;
}

function showMessage(text, field) {
  const box = $("message");
  document.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  if (!text) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = text;
  box.hidden = false;
  const input = field && (document.getElementById(field) || document.getElementById("label-" + field));
  if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
}

// --- models -------------------------------------------------------------------------------------
async function loadModels() {
  state.server = await api("");
  $("version").textContent = state.server.version;
  const list = await api("/models");
  state.models = list.models;
  const select = $("model");
  select.replaceChildren(...list.models.map((m) => new Option(`${m.dataset || m.id} — ${m.model_type || "n-gram"} (${m.id})`, m.id)));
  select.value = state.server.default_model;
  $("n").max = state.server.limits.max_names;
}

async function selectModel(id) {
  $("model-status").textContent = "Loading the model…";
  let model;
  for (;;) {  // a built-in model is built when the server first starts: 503 with Retry-After until then
    try { model = await api("/models/" + encodeURIComponent(id)); break; } catch (e) {
      if (e.status !== 503 || !e.retryAfter || $("model").value !== id) throw e;
      $("model-status").textContent = `${e.message} (this page asks again by itself)`;
      await new Promise((resolve) => setTimeout(resolve, 1000 * e.retryAfter));
      if ($("model").value !== id) return;  // another model was picked meanwhile
    }
  }
  state.model = model;
  $("model-status").textContent = `${model.description} · ${model.source} · test NLL ${fmt(model.metrics.test && model.metrics.test.nll, 3)}`;
  renderLabels(model.labels || {});
  renderModelTab(model);
  $("more-like").hidden = !(model.capabilities && model.capabilities.adapt);
  $("classify-head").hidden = !(model.capabilities && model.capabilities.classify);
}

function renderLabels(labels) {
  const box = $("label-selects");
  const names = Object.keys(labels);
  $("conditions").hidden = names.length === 0;
  box.replaceChildren(...names.map((label) => {
    const wrap = document.createElement("div");
    const lab = document.createElement("label");
    lab.htmlFor = "label-" + label;
    lab.textContent = label;
    const select = document.createElement("select");
    select.id = "label-" + label;
    select.dataset.label = label;
    select.append(new Option("any", ""), ...labels[label].map((v) => new Option(v, v)));
    wrap.append(lab, select);
    return wrap;
  }));
}

function renderModelTab(model) {
  $("model-title").textContent = `Model ${model.id}`;
  const facts = [["type", model.description], ["trained on", model.source],
    ["parameters", model.parameters ? count(model.parameters) : "none: a count model (its tables are counted, not trained)"],
    ["characters", model.vocab], ["names shown in", CASINGS[model.casing] || model.casing],
    ["labels", Object.entries(model.labels || {}).map(([k, v]) => `${k}: ${v.join(", ")}`).join("; ") || "none"]];
  $("model-facts").replaceChildren(...facts.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v === null || v === undefined ? "—" : String(v);
    return [dt, dd];
  }));
  const rows = Object.entries(model.metrics || {}).map(([split, m]) => row([split, fmt(m.nll, 4), fmt(m.perplexity, 2), count(m.n_words)]));
  $("metrics").tBodies[0].replaceChildren(...rows);
  const img = $("heatmap");
  img.hidden = true;
  img.dataset.src = `${API}/models/${encodeURIComponent(model.id)}/heatmap.png`;
  if (!$("panel-model").hidden) showHeatmap();
}

async function showHeatmap() {
  const img = $("heatmap");
  if (!img.dataset.src || img.dataset.loaded === img.dataset.src) { img.hidden = !img.dataset.loaded; return; }
  const headers = {};
  const key = sessionStorage.getItem(KEY_KEY);
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(img.dataset.src, { headers });
  if (!response.ok) { showMessage("the heat map could not be drawn"); return; }
  img.src = URL.createObjectURL(await response.blob());
  img.dataset.loaded = img.dataset.src;
  img.hidden = false;
}

// --- the generate form ----------------------------------------------------------------------
function splitList(text) {
  return text.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}

function formRequest() {
  const request = { n: 20 };
  for (const f of TEXT_FIELDS) {
    const v = $(f).value;
    if (f === "contains" || f === "excludes") { if (splitList(v).length) request[f] = splitList(v); }
    else if (f === "regex") { if (v) request.regex = v; }
    else if (v) request[f] = v;
  }
  for (const f of NUMBER_FIELDS) {
    const v = $(f).value.trim();
    if (v !== "") request[f] = f === "top_p" ? Number(v) : Number.parseInt(v, 10);
  }
  for (const f of CHECK_FIELDS) request[f] = $(f).checked;
  request.temperature = Number($("temperature").value);
  const where = {};
  document.querySelectorAll("#label-selects select").forEach((s) => { if (s.value) where[s.dataset.label] = s.value; });
  if (Object.keys(where).length) request.where = where;
  return request;
}

function applySettings(params) {
  for (const f of TEXT_FIELDS.concat(NUMBER_FIELDS)) if (params.has(f)) $(f).value = params.get(f);
  for (const f of CHECK_FIELDS) if (params.has(f)) $(f).checked = params.get(f) === "1";
  if (params.has("temperature")) $("temperature").value = params.get("temperature");
  $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
  if (params.has("sort")) $("sort").value = params.get("sort");
  if (params.has("similar_to")) $("similar_to").value = params.get("similar_to");
  document.querySelectorAll("#label-selects select").forEach((s) => {
    const v = params.get("where." + s.dataset.label);
    if (v !== null) s.value = v;
  });
}

function shareLink(request) {
  const params = new URLSearchParams();
  params.set("model", state.model.id);
  for (const f of TEXT_FIELDS) {
    const v = request[f];
    if (v !== undefined) params.set(f, Array.isArray(v) ? v.join(", ") : v);
  }
  for (const f of NUMBER_FIELDS) if (request[f] !== undefined) params.set(f, String(request[f]));
  for (const f of CHECK_FIELDS) params.set(f, request[f] ? "1" : "0");
  params.set("temperature", String(request.temperature));
  for (const [k, v] of Object.entries(request.where || {})) params.set("where." + k, v);
  params.set("sort", $("sort").value);
  if ($("similar_to").value) params.set("similar_to", $("similar_to").value);
  return `${location.origin}${location.pathname}#${params.toString()}`;
}

async function generate() {
  showMessage("");
  const request = formRequest();
  $("generate").disabled = true;
  $("results-status").textContent = "Generating…";
  try {
    const result = await api(`/models/${encodeURIComponent(state.model.id)}/generate`, request);
    request.seed = result.seed;  // the share link reproduces this list
    $("seed").placeholder = String(result.seed);
    state.lastRequest = request;
    state.results = result.names.map((r, i) => ({ ...r, order: i }));
    state.similarity = new Map();
    $("share-link").value = shareLink(request);
    const g = result.generation;
    let status = `${result.names.length} names (seed ${result.seed}, ${g.method} sampling, ${fmt(g.seconds * 1000, 0)} ms; ` +
      `${result.summary.new ?? "?"} new, ${result.summary.in_train ?? "?"} in the training data)`;
    if (result.offensive_hidden) status += `; ${result.offensive_hidden} offensive names hidden`;
    $("results-status").textContent = status;
    if (!result.complete) showMessage(result.message);
    await updateSimilarity();
    renderResults();
    revealResults();
  } catch (e) {
    $("results-status").textContent = "No names.";
    showMessage(e.message, e.field);
  } finally {
    $("generate").disabled = false;
  }
}

// --- results: sorting, similarity, shortlist, export -------------------------------------------------
const CASINGS = { lower: "lower case (emma)", title: "Title Case (Emma)", upper: "capitals (EMMA)", exact: "the case of the data" };

function count(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString("en");
}

function fmt(x, digits) {
  if (x === null || x === undefined) return "—";
  if (typeof x === "string") return x;
  return Number(x).toFixed(digits);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.append(c); else td.textContent = c === null || c === undefined ? "—" : String(c);
    if (/^[-+]?[\d.,]+$/.test(td.textContent)) td.className = "num";  // a figure: never broken across lines
    tr.append(td);
  }
  return tr;
}

function sorted(results) {
  const by = $("sort").value;
  const copy = results.slice();
  const num = (x) => (typeof x === "number" ? x : Infinity);
  if (by === "score") copy.sort((a, b) => num(a.nll_per_char) - num(b.nll_per_char));
  else if (by === "name") copy.sort((a, b) => a.name.localeCompare(b.name));
  else if (by === "length") copy.sort((a, b) => a.name.length - b.name.length || a.name.localeCompare(b.name));
  else if (by === "similarity") copy.sort((a, b) => (state.similarity.get(b.name) ?? -1) - (state.similarity.get(a.name) ?? -1));
  else copy.sort((a, b) => a.order - b.order);
  return copy;
}

async function updateSimilarity() {
  const target = $("similar_to").value.trim();
  state.similarity = new Map();
  if (!target || !state.results.length) return;
  try {
    const answer = await api("/similarity", { target, names: state.results.map((r) => r.name) });
    for (const r of answer.results) state.similarity.set(r.name, r.similarity);
  } catch (e) { showMessage(e.message, e.field === "target" ? "similar_to" : e.field); }
}

function renderResults() {
  const kept = new Set(shortlist().map((s) => s.name));
  const rows = sorted(state.results).map((r) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "name";
    button.textContent = r.name;
    button.setAttribute("aria-pressed", kept.has(r.name) ? "true" : "false");
    button.title = "add to the shortlist";
    button.addEventListener("click", () => { toggleShortlist(r); });
    const sim = state.similarity.has(r.name) ? fmt(state.similarity.get(r.name), 2) : "—";
    return row([button, fmt(r.nll_per_char, 3), fmt(r.percentile, 1), sim]);
  });
  $("results").tBodies[0].replaceChildren(...rows);
}

function revealResults() {
  // on a phone the results are below the form, out of sight: bring their heading to the top of the screen
  // and move the focus there, so the next Tab (or a screen reader) goes on from the names
  const title = $("results-title");
  const top = title.getBoundingClientRect().top;
  if (top >= 0 && top < window.innerHeight * 0.8) return;  // in sight already (beside the form on a wide screen)
  title.scrollIntoView({ block: "start" });
  title.focus({ preventScroll: true });
}

function shortlist() {
  try { return JSON.parse(localStorage.getItem(SHORTLIST_KEY)) || []; } catch (e) { return []; }
}

function saveShortlist(list) {
  localStorage.setItem(SHORTLIST_KEY, JSON.stringify(list));
  renderShortlist();
  renderResults();
}

function toggleShortlist(result) {
  const list = shortlist();
  const at = list.findIndex((s) => s.name === result.name);
  if (at >= 0) list.splice(at, 1);
  else list.push({ name: result.name, nll_per_char: result.nll_per_char, percentile: result.percentile, model: state.model.id });
  saveShortlist(list);
}

function renderShortlist() {
  const items = shortlist().map((s) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "name";
    button.textContent = s.name;
    button.setAttribute("aria-label", `remove ${s.name} from the shortlist`);
    button.addEventListener("click", () => saveShortlist(shortlist().filter((x) => x.name !== s.name)));
    li.append(button);
    return li;
  });
  $("shortlist").replaceChildren(...items);
}

async function copyText(text, what) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {  // no clipboard permission: select a hidden text area and copy from it
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  $("results-status").textContent = `Copied ${what}.`;
}

function csvCell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  // quote when needed, and keep spreadsheets from reading a cell as a formula
  const safe = /^[=+\-@\t\r]/.test(text) ? "'" + text : text;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

function downloadCsv(rows, filename) {
  const lines = [["name", "nll_per_char", "percentile", "model"].join(",")];
  for (const r of rows) lines.push([r.name, r.nll_per_char, r.percentile, r.model || (state.model && state.model.id)].map(csvCell).join(","));
  const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

async function moreLikeThese() {
  const words = shortlist().map((s) => s.name);
  if (!words.length) { showMessage("Add names to the shortlist first."); return; }
  showMessage("");
  try {
    const request = { ...formRequest(), words };
    const result = await api(`/models/${encodeURIComponent(state.model.id)}/more-like-these`, request);
    state.results = result.names.map((r, i) => ({ ...r, order: i }));
    $("results-status").textContent = `${result.names.length} names in the style of your shortlist (seed ${result.seed})`;
    if (!result.complete) showMessage(result.message);
    renderResults();
    revealResults();
  } catch (e) { showMessage(e.message, e.field); }
}

// --- the score tab --------------------------------------------------------------------------
async function scoreNames() {
  showMessage("");
  const names = $("score-names").value.split(/[\n,]/).map((s) => s.trim()).filter((s) => s);
  if (!names.length) { showMessage("Type or paste some names to score.", "score-names"); return; }
  try {
    const id = encodeURIComponent(state.model.id);
    const answer = await api(`/models/${id}/score`, { names, sort: true });
    let classes = new Map();
    if (state.model.capabilities && state.model.capabilities.classify) {
      // per name, like the scores: a name the model cannot read has its own error, the others their labels
      const c = await api(`/models/${id}/classify`, { names });
      classes = new Map(c.results.map((r) => [r.name, r]));
    }
    const rows = answer.scores.map((s, i) => {
      const cells = [s.error ? "—" : i + 1, s.name];
      if (s.error) cells.push("", s.error);  // across the columns of NLL / char and the percentile
      else cells.push(fmt(s.log_prob, 3), fmt(s.nll_per_char, 3), fmt(s.percentile, 1));
      if (classes.size) {
        const c = classes.get(s.name);
        cells.push(c && !c.error ? Object.entries(c.labels).map(([label, values]) =>
          `${label}: ` + Object.entries(values).sort((a, b) => b[1] - a[1]).slice(0, 3)
            .map(([v, p]) => `${v} ${Math.round(100 * p)}%`).join(" ")).join("; ") : (s.error ? "—" : (c && c.error) || ""));
      }
      const tr = row(cells);
      tr.cells[2].classList.add("log-prob");
      if (s.error) tr.cells[3].colSpan = 2;
      return tr;
    });
    $("scores").tBodies[0].replaceChildren(...rows);
  } catch (e) { showMessage(e.message, e.field === "names" ? "score-names" : e.field); }
}

// --- tabs (arrow keys move between them, as the ARIA pattern says) -------------------------------------
function showTab(tab) {
  document.querySelectorAll('[role="tab"]').forEach((t) => {
    const selected = t === tab;
    t.setAttribute("aria-selected", selected ? "true" : "false");
    t.tabIndex = selected ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !selected;
  });
  showMessage("");  // a message belongs to the view it came from
  if (tab.id === "tab-model") showHeatmap();
}

function setUpTabs() {
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => showTab(tab));
    tab.addEventListener("keydown", (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (step) {
        const next = tabs[(i + step + tabs.length) % tabs.length];
        next.focus();
        showTab(next);
      }
    });
  });
}

// --- start ----------------------------------------------------------------------------------------
async function start() {
  setUpTabs();
  renderShortlist();
  $("temperature").addEventListener("input", () => { $("temperature-value").textContent = Number($("temperature").value).toFixed(2); });
  $("generate-form").addEventListener("submit", (e) => { e.preventDefault(); generate(); });
  $("score-form").addEventListener("submit", (e) => { e.preventDefault(); scoreNames(); });
  $("model").addEventListener("change", async () => {
    showMessage("");
    try { await selectModel($("model").value); } catch (e) { showMessage(e.message, e.field); }
  });
  $("sort").addEventListener("change", renderResults);
  let timer = null;
  $("similar_to").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if ($("similar_to").value.trim()) $("sort").value = "similarity";
      await updateSimilarity();
      renderResults();
      if (state.lastRequest) $("share-link").value = shareLink(state.lastRequest);
    }, 200);
  });
  $("copy-results").addEventListener("click", () => copyText(sorted(state.results).map((r) => r.name).join("\n"), "the names"));
  $("csv-results").addEventListener("click", () => downloadCsv(sorted(state.results), "namesmith-names.csv"));
  $("copy-share").addEventListener("click", () => copyText($("share-link").value, "the share link"));
  $("copy-shortlist").addEventListener("click", () => copyText(shortlist().map((s) => s.name).join("\n"), "the shortlist"));
  $("csv-shortlist").addEventListener("click", () => downloadCsv(shortlist(), "namesmith-shortlist.csv"));
  $("clear-shortlist").addEventListener("click", () => saveShortlist([]));
  $("more-like").addEventListener("click", moreLikeThese);
  $("api-key").addEventListener("change", async () => {
    sessionStorage.setItem(KEY_KEY, $("api-key").value);
    await boot();
  });
  window.addEventListener("hashchange", () => boot());
  await boot();
}

async function boot() {
  try {
    await loadModels();
  } catch (e) {
    if (e.status === 401) { $("key-box").hidden = false; showMessage(e.message, "api-key"); return; }
    showMessage(e.message);
    return;
  }
  const params = new URLSearchParams(location.hash.slice(1));
  const wanted = params.get("model");
  if (wanted && state.models.some((m) => m.id === wanted)) $("model").value = wanted;
  try {
    await selectModel($("model").value);
  } catch (e) { showMessage(e.message, e.field); return; }
  if (params.has("model")) {  // a share link: the same settings, the same seed, the same names
    applySettings(params);
    await generate();
  }
  document.body.dataset.ready = "true";
}

start();
