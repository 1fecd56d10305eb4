// namesmith's page: plain JavaScript, no build step, talking to the server's /api/v1.
"use strict";

const API = "/api/v1";
const SHORTLIST_KEY = "namesmith.shortlist";
const KEY_KEY = "namesmith.apiKey";
// form fields that a share link carries, with how to read them from the form (text inputs and selects,
// numbers, check boxes)
const TEXT_FIELDS = ["starts_with", "ends_with", "contains", "excludes", "regex",
  "syllables", "sounds_like", "popularity", "surname", "alliteration"];
const NUMBER_FIELDS = ["min_len", "max_len", "n", "seed", "top_k", "top_p"];
const CHECK_FIELDS = ["novel", "unique", "filter_offensive", "not_in_catalogue"];
// the options for choosing a name: offered only where the server's generate request takes them
// (its `generate_options`), so an older server or a partial one shows a page without them
const CHOOSING = ["syllables", "sounds_like", "popularity", "surname", "alliteration", "not_in_catalogue"];

const $ = (id) => document.getElementById(id);
const state = { server: null, models: [], model: null, results: [], similarity: new Map(), lastRequest: null,
  trends: new Map(), advanced: false };

function offered(field) {
  return !CHOOSING.includes(field) || ((state.server && state.server.generate_options) || []).includes(field);
}

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
  document.querySelectorAll("[data-option]").forEach((el) => { el.hidden = !offered(el.dataset.option); });
  $("choosing").hidden = !CHOOSING.some(offered);
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

// the labels of the catalogue's data sets, as a person reads them; other labels keep their own names
const LABEL_TITLES = { sex: "Sex", decade: "Decade", era: "Era", origin: "Origin", locale: "Origin (language, country)",
  sector: "Origin (sector)", country: "Origin (country)" };
const LABEL_ORDER = ["sex", "decade", "era", "origin", "locale", "country", "sector"];
const SEXES = { f: "female", female: "female", girl: "female", m: "male", male: "male", boy: "male", unknown: "not given" };

function labelValue(label, value) {
  if (label === "sex") return SEXES[value.toLowerCase()] || value;
  if (label === "locale" && /^[a-z]{2,3}([_-][A-Za-z]{2,4})?$/.test(value)) {  // en_PK: English (Pakistan)
    try {
      const words = new Intl.DisplayNames(["en"], { type: "language" }).of(value.replace("_", "-"));
      if (words && words !== value) return `${words} (${value})`;
    } catch (e) { /* a code the browser does not know: shown as it is */ }
  }
  return value;
}

function renderLabels(labels) {
  const box = $("label-selects");
  const rank = (label) => (LABEL_ORDER.includes(label) ? LABEL_ORDER.indexOf(label) : LABEL_ORDER.length);
  const names = Object.keys(labels).sort((a, b) => rank(a) - rank(b));
  $("conditions").hidden = names.length === 0;
  box.replaceChildren(...names.map((label) => {
    const wrap = document.createElement("div");
    const lab = document.createElement("label");
    lab.htmlFor = "label-" + label;
    lab.textContent = LABEL_TITLES[label] || label;
    const select = document.createElement("select");
    select.id = "label-" + label;
    select.dataset.label = label;
    const values = labels[label].map((v) => [labelValue(label, v), v]);
    if (label !== "decade") values.sort((a, b) => a[0].localeCompare(b[0]));  // decades stay in time order
    select.append(new Option("any", ""), ...values.map(([text, v]) => new Option(text, v)));
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
  for (const f of TEXT_FIELDS.filter(offered)) {
    const v = $(f).value;
    if (f === "contains" || f === "excludes") { if (splitList(v).length) request[f] = splitList(v); }
    else if (f === "regex") { if (v) request.regex = v; }
    else if (f === "alliteration") { if ($("surname").value.trim() && v !== "any") request.alliteration = v; }
    else if (CHOOSING.includes(f)) { if (v.trim()) request[f] = v.trim(); }
    else if (v) request[f] = v;
  }
  for (const f of NUMBER_FIELDS) {
    const v = $(f).value.trim();
    if (v !== "") request[f] = f === "top_p" ? Number(v) : Number.parseInt(v, 10);
  }
  for (const f of CHECK_FIELDS.filter(offered)) request[f] = $(f).checked;
  request.temperature = Number($("temperature").value);
  const where = {};
  document.querySelectorAll("#label-selects select").forEach((s) => { if (s.value) where[s.dataset.label] = s.value; });
  if (Object.keys(where).length) request.where = where;
  return request;
}

function applySettings(params) {
  for (const f of TEXT_FIELDS.concat(NUMBER_FIELDS)) {
    if (!params.has(f) || !offered(f)) continue;
    const field = $(f);
    const v = params.get(f);
    // a value the select does not list (a rank range such as 10-500): listed for this page
    if (field.tagName === "SELECT" && !Array.from(field.options).some((o) => o.value === v)) field.append(new Option(v, v));
    field.value = v;
  }
  for (const f of CHECK_FIELDS) if (params.has(f)) $(f).checked = params.get(f) === "1";
  if (params.has("temperature")) $("temperature").value = params.get("temperature");
  $("temperature-value").textContent = Number($("temperature").value).toFixed(2);
  if (params.has("sort")) $("sort").value = params.get("sort");
  state.linkMethod = ["exact", "guided", "rejection"].includes(params.get("method")) ? params.get("method") : null;
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
  for (const f of CHECK_FIELDS.filter(offered)) params.set(f, request[f] ? "1" : "0");
  params.set("temperature", String(request.temperature));
  if (request.method) params.set("method", request.method);
  for (const [k, v] of Object.entries(request.where || {})) params.set("where." + k, v);
  params.set("sort", $("sort").value);
  if ($("similar_to").value) params.set("similar_to", $("similar_to").value);
  return `${location.origin}${location.pathname}#${params.toString()}`;
}

async function generate() {
  showMessage("");
  const request = formRequest();
  if (state.linkMethod) { request.method = state.linkMethod; state.linkMethod = null; }  // a share link's
  $("generate").disabled = true;
  $("results-status").textContent = "Generating…";
  try {
    const result = await api(`/models/${encodeURIComponent(state.model.id)}/generate`, request);
    request.seed = result.seed;  // the share link reproduces this list:
    // with the same method too (a constraint's exact table may be built meanwhile: "auto" would then use it)
    if (["exact", "guided", "rejection"].includes(result.generation.method)) request.method = result.generation.method;
    $("seed").placeholder = String(result.seed);
    state.lastRequest = request;
    state.results = result.names.map((r, i) => ({ ...r, order: i }));
    state.similarity = new Map();
    // the server's order is the closest in sound first when a name was given to sound like
    $("sort").options[0].textContent = request.sounds_like ? "closest in sound first" : "as drawn";
    if (request.surname && $("sort").value === "order") $("sort").value = "fit";  // the point of giving a surname
    $("share-link").value = shareLink(request);
    const g = result.generation;
    let status = `${result.names.length} names (seed ${result.seed}, ${g.method} sampling, ${fmt(g.seconds * 1000, 0)} ms; ` +
      `${result.summary.new ?? "?"} new, ${result.summary.in_train ?? "?"} in the training data)`;
    if (result.offensive_hidden) status += `; ${result.offensive_hidden} offensive names hidden`;
    $("results-status").textContent = status;
    if (!result.complete) showMessage(result.message);
    // the names first, at once; the similarity and the trends follow as they come
    renderResults();
    revealResults();
    if ($("similar_to").value.trim()) { await updateSimilarity(); renderResults(); }
    loadTrends();
    loadVariants(request.sounds_like);
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
    else if (td.textContent === "—") td.className = "none";  // nothing to say: a phone's card leaves it out
    tr.append(td);
  }
  return tr;
}

function sorted(results) {
  const by = $("sort").value;
  const copy = results.slice();
  const num = (x) => (typeof x === "number" ? x : Infinity);
  if (by === "score") copy.sort((a, b) => num(a.nll_per_char) - num(b.nll_per_char));
  else if (by === "fit") copy.sort((a, b) => num(a.surname_fit && -a.surname_fit.score) - num(b.surname_fit && -b.surname_fit.score)
    || a.order - b.order);
  else if (by === "popularity") copy.sort((a, b) => num(a.popularity && a.popularity.rank) - num(b.popularity && b.popularity.rank)
    || a.order - b.order);
  else if (by === "syllables") copy.sort((a, b) => num(a.syllables) - num(b.syllables) || a.order - b.order);
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

// --- what the page says of each name: one column per fact the server gave ----------------------------
// `fact`: the field of a name that the column shows; a server (or a model) without it has no such column
const COLUMNS = [
  { title: "Name", hint: "(press to keep)", cell: nameButton },
  { title: "Syllables", fact: "syllables", cell: (r) => fmt(r.syllables, 0) },
  { title: "Real or new", fact: "known", cell: (r) => (r.known === true ? "real" : r.known === false ? "new" : "—"),
    help: "real: in a built-in list of real names; new: invented by the model" },
  { title: "Popularity", fact: "popularity", cell: popularityCell },
  { title: "Nicknames", fact: "nicknames", cell: (r) => (r.nicknames && r.nicknames.length ? r.nicknames.join(", ") : "—") },
  { title: "Fit with the surname", fact: "surname_fit", cell: fitCell },
  { title: "How name-like", hint: "(percentile)", cell: (r) => fmt(r.percentile, 0),
    help: "the share of the training names this one is at least as name-like as, under the model" },
  { title: "Similarity", shown: () => state.similarity.size > 0,
    cell: (r) => (state.similarity.has(r.name) ? fmt(state.similarity.get(r.name), 2) : "—") },
  { title: "NLL / char", advanced: true, cell: (r) => fmt(r.nll_per_char, 3),
    help: "negative log-likelihood per character under the model: lower is more name-like" },
];

function told(value) {  // whether a fact of a name says something (null: not known; []: no nicknames)
  return value !== undefined && value !== null && !(Array.isArray(value) && value.length === 0);
}

function has(fact) {  // a column for a fact that the server told of some name (surname_fit: when a surname was given)
  return state.results.some((r) => told(r[fact]));
}

function shownColumns() {
  return COLUMNS.filter((c) => (c.fact ? has(c.fact) : c.shown ? c.shown() : !c.advanced || state.advanced));
}

function nameButton(r, kept) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "name";
  button.textContent = r.name;
  button.dir = "auto";  // a Hebrew or Arabic name reads right to left
  button.setAttribute("aria-pressed", kept.has(r.name) ? "true" : "false");
  button.title = "add to the shortlist";
  button.addEventListener("click", () => { toggleShortlist(r); });
  return button;
}

function popularityCell(r) {
  const p = r.popularity;
  if (!p) return "—";
  const box = document.createElement("span");
  box.className = "popularity";
  const sex = p.sex ? labelValue("sex", p.sex) : "";
  const text = document.createElement("span");
  text.textContent = `#${count(p.rank)}` + (p.decade ? ` in the ${p.decade}` : "");
  text.title = `its best-known use: ${count(p.count)} ${sex} ${p.count === 1 ? "birth" : "births"}` +
    `${p.decade ? " in the " + p.decade : ""}${p.source ? " (" + p.source + ")" : ""}, ` +
    `rank ${count(p.rank)} among ${sex || "all"} names`;
  const spark = document.createElement("span");
  spark.className = "spark-box";
  spark.dataset.trend = trendKey(r);
  if (state.trends.has(spark.dataset.trend)) spark.append(sparkline(state.trends.get(spark.dataset.trend), r));
  box.append(text, spark);
  return box;
}

function fitCell(r) {
  const fit = r.surname_fit;
  if (!fit) return "—";
  const score = fit.score.toFixed(2);  // 0 to 1: two figures, alike in every row
  if (!fit.reasons || !fit.reasons.length) return score;
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = score;
  const list = document.createElement("ul");
  list.append(...fit.reasons.map((reason) => { const li = document.createElement("li"); li.textContent = reason; return li; }));
  details.append(summary, list);
  return details;
}

function renderResults() {
  const kept = new Set(shortlist().map((s) => s.name));
  const columns = shownColumns();
  const head = document.createElement("tr");
  head.append(...columns.map((c) => {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = c.title;
    if (c.hint) { const hint = document.createElement("span"); hint.className = "hint"; hint.textContent = " " + c.hint; th.append(hint); }
    if (c.help) th.title = c.help;
    return th;
  }));
  $("results").tHead.replaceChildren(head);
  const rows = sorted(state.results).map((r) => {
    const tr = row(columns.map((c) => c.cell(r, kept)));
    // a phone shows each name as a card: each figure says what it is (style.css: td::before)
    columns.forEach((c, i) => { tr.cells[i].dataset.label = c.title; });
    return tr;
  });
  $("results").tBodies[0].replaceChildren(...rows);
  document.querySelectorAll("#sort option[data-fact]").forEach((option) => {
    option.hidden = option.disabled = !has(option.dataset.fact);
  });
  if ($("sort").selectedOptions[0] && $("sort").selectedOptions[0].disabled) $("sort").value = "order";
}

// --- trends: a sparkline of a real name's counts by decade, drawn as inline SVG (nothing from elsewhere) -------
const SVG = "http://www.w3.org/2000/svg";

function trendKey(r) {  // a name's trend in the sex and the data set of its best-known use
  const p = r.popularity || {};
  return [r.name, p.sex || "", p.source || ""].join("|");
}

// --- spelling variants: the known names that sound like the name given to sound like, closest first ---------
async function loadVariants(name) {
  const line = $("variants");
  line.hidden = true;
  line.replaceChildren();
  if (!name || !offered("sounds_like")) return;
  try {
    const found = await api(`/variants?name=${encodeURIComponent(name)}&n=8`);
    const known = found.variants.map((v) => v.name);
    line.textContent = known.length ? `Known names that sound like ${name}: ${known.join(", ")}`
      : `No known name sounds like ${name}.`;
    line.hidden = false;
  } catch (e) {
    line.hidden = true;  // the names are shown all the same; the variants are extra
  }
}

async function loadTrends() {
  if (!state.server.trend) return;
  const queue = [...new Set(state.results.filter((r) => r.popularity).map(trendKey))].filter((k) => !state.trends.has(k));
  const fetchOne = async () => {  // a few at a time: the server has other clients
    for (let key = queue.shift(); key !== undefined; key = queue.shift()) {
      const [name, sex, source] = key.split("|");
      try {
        const trend = await api(`/trend?name=${encodeURIComponent(name)}` + (sex ? `&sex=${encodeURIComponent(sex)}` : ""));
        state.trends.set(key, trend.series || []);
      } catch (e) {
        state.trends.set(key, []);  // no trend for this name: its rank alone is shown
      }
    }
  };
  await Promise.all([fetchOne(), fetchOne(), fetchOne()]);
  // drawn once all have come: every sparkline of a data set spans the same decades, so they compare at a glance
  document.querySelectorAll("#results .spark-box").forEach((box) => {
    const [name, sex, source] = box.dataset.trend.split("|");
    if (state.trends.has(box.dataset.trend)) {
      box.replaceChildren(sparkline(state.trends.get(box.dataset.trend), { name, popularity: { sex, source } }));
    }
  });
}

function decadeSpan(source) {  // the first and the last decade (as years) of the trends shown of this data set
  let first = Infinity, last = -Infinity;
  for (const series of state.trends.values()) {
    for (const point of series) {
      if (source && point.source && point.source !== source) continue;
      const y = Number.parseInt(point.decade, 10);
      if (Number.isFinite(y)) { first = Math.min(first, y); last = Math.max(last, y); }
    }
  }
  return [first, last];
}

function sparkline(series, r) {
  const { sex, source } = r.popularity || {};
  // births per million of the decade where the server says them: a decade of more births is not more popular
  const perMillion = series.length > 0 && series.every((point) => typeof point.per_million === "number");
  const byDecade = new Map();
  for (const point of series) {
    if ((sex && point.sex && point.sex !== sex) || (source && point.source && point.source !== source)) continue;
    byDecade.set(point.decade, (byDecade.get(point.decade) || 0) + ((perMillion ? point.per_million : point.count) || 0));
  }
  // every decade of the data set's trends shown, a decade without the name counting 0
  const year = (d) => Number.parseInt(d, 10);
  let decades = Array.from(byDecade.keys()).sort((a, b) => year(a) - year(b) || String(a).localeCompare(String(b)));
  if (decades.length && decades.every((d) => Number.isFinite(year(d)))) {
    const suffix = String(decades[0]).replace(/^\d+/, "");
    const [first, last] = decadeSpan(source);
    const all = [];
    for (let y = Math.min(first, year(decades[0])); y <= Math.max(last, year(decades[decades.length - 1])); y += 10) {
      all.push(`${y}${suffix}`);
    }
    if (all.length <= 100) decades = all;
  }
  if (decades.length < 2) return document.createTextNode("");
  const counts = decades.map((d) => byDecade.get(d) || 0);
  const width = 80, height = 20, top = Math.max(...counts) || 1;
  const x = (i) => ((i * (width - 4)) / (decades.length - 1) + 2).toFixed(1);
  const y = (c) => (height - 2 - (c * (height - 4)) / top).toFixed(1);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("role", "img");
  const peak = decades[counts.indexOf(top)];  // the first decade of the most
  const last = decades[decades.length - 1];
  const unit = perMillion ? " births per million" : " births";
  const words = `${r.name}${sex ? " (" + labelValue("sex", sex) + ")" : ""}, the ${decades[0]} to the ${last}: ` +
    `most in the ${peak} (${count(Math.round(top))}${unit}); the ${last}: ${count(Math.round(counts[counts.length - 1]))}`;
  svg.setAttribute("aria-label", words);
  const title = document.createElementNS(SVG, "title");
  title.textContent = words;
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", counts.map((c, i) => `${x(i)},${y(c)}`).join(" "));
  const now = document.createElementNS(SVG, "circle");
  now.setAttribute("cx", x(counts.length - 1));
  now.setAttribute("cy", y(counts[counts.length - 1]));
  now.setAttribute("r", "1.8");
  svg.append(title, line, now);
  return svg;
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
  else list.push({ ...result, order: undefined, model: state.model.id });
  saveShortlist(list);
}

function renderShortlist() {
  const items = shortlist().map((s) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "name";
    button.textContent = s.name;
    button.dir = "auto";
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

// the CSV's columns: a fact's columns only where some row has it
const CSV_COLUMNS = [
  ["name", (r) => r.name],
  ["syllables", (r) => r.syllables, "syllables"],
  ["known", (r) => (r.known === undefined ? "" : r.known ? "real" : "new"), "known"],
  ["popularity_rank", (r) => r.popularity && r.popularity.rank, "popularity"],
  ["popularity_count", (r) => r.popularity && r.popularity.count, "popularity"],
  ["popularity_sex", (r) => r.popularity && r.popularity.sex, "popularity"],
  ["popularity_decade", (r) => r.popularity && r.popularity.decade, "popularity"],
  ["nicknames", (r) => (r.nicknames || []).join(" "), "nicknames"],
  ["surname_fit", (r) => r.surname_fit && r.surname_fit.score, "surname_fit"],
  ["surname_fit_reasons", (r) => r.surname_fit && r.surname_fit.reasons.join("; "), "surname_fit"],
  ["nll_per_char", (r) => r.nll_per_char],
  ["percentile", (r) => r.percentile],
  ["model", (r) => r.model || (state.model && state.model.id)],
];

function downloadCsv(rows, filename) {
  const columns = CSV_COLUMNS.filter(([, , fact]) => !fact || rows.some((r) => r[fact] !== undefined && r[fact] !== null));
  const lines = [columns.map(([title]) => title).join(",")];
  for (const r of rows) lines.push(columns.map(([, value]) => csvCell(value(r))).join(","));
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
    loadTrends();
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
  $("advanced").addEventListener("click", () => {
    state.advanced = !state.advanced;
    $("advanced").setAttribute("aria-pressed", String(state.advanced));
    renderResults();
  });
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
