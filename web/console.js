// qosd's web console: polls the admin API of the qosd that served it and
// draws what it reads; edits categories through the same API. Plain ES
// module, no build step, nothing from outside this origin.
//
// The admin token is typed once, kept in sessionStorage (gone with the
// tab), and only ever sent in the Authorization header of write requests:
// never in a URL, a cookie or the console log.

import { draw, swatch } from "/plot.js";

const SPAN_MS = 10 * 60 * 1000; // the charts' window
const POLL_MS = 1000;
const FLOWS_POLL_MS = 2000;
// A geostationary link's round trip is ~600 ms and a loaded one much more:
// a slow answer is not yet an error.
const TIMEOUT_MS = 8000;
const DIRS = ["upload", "download"];
const FIELDS = ["weight", "priority", "min", "max"];
const TOKEN_KEY = "qosd-admin-token";

const $ = (id) => document.getElementById(id);

/** An element with attributes (`class`, `id`, `data-*`, properties) and children. */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class" || k === "for" || k.startsWith("data-") || k.startsWith("aria-") || k === "role") {
      e.setAttribute(k, v === true ? "" : v);
    } else {
      e[k] = v;
    }
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// Units admins use: Mbit/s, ms, %.
const num = (v) => typeof v === "number" && Number.isFinite(v);
const mbit = (bps) => (num(bps) ? (bps / 1e6).toFixed(bps < 10e6 ? 2 : 1) : "–");
const millis = (v) => (num(v) ? v.toFixed(v < 10 ? 1 : 0) : "–");
const percent = (v) => (num(v) ? v.toFixed(0) : "–");

// ---- The API -------------------------------------------------------------

const token = () => sessionStorage.getItem(TOKEN_KEY);

/** `{status, data}` of a request; throws when nothing answered in time. */
async function api(method, path, body) {
  const headers = {};
  if (method !== "GET") {
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    headers["Content-Type"] = "application/json";
  }
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  try {
    const r = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: abort.signal,
      cache: "no-store",
      credentials: "omit",
    });
    let data = null;
    try { data = await r.json(); } catch { data = null; }
    return { status: r.status, data };
  } finally {
    clearTimeout(timer);
  }
}

/** The message of an API error body. */
const messageOf = (res) => (res.data && res.data.error) || `HTTP ${res.status}`;

// ---- Access: read-only until unlocked --------------------------------------

function showAccess() {
  const unlocked = Boolean(token());
  $("unlock").hidden = unlocked;
  $("lock").hidden = !unlocked;
  $("auth-state").textContent = unlocked
    ? "Unlocked: changes are allowed from this tab until you lock it or close it."
    : "Read-only. To change categories, unlock with the admin token: the contents of the file named by api.token_file on the gateway.";
  document.body.classList.toggle("unlocked", unlocked);
  $("ro-note").hidden = unlocked;
  for (const e of document.querySelectorAll("#category-forms input")) e.readOnly = !unlocked;
  for (const e of document.querySelectorAll("#category-forms button, #reload")) e.disabled = !unlocked;
}

/** Checks a token without changing anything: an empty change passes the
 *  token check and is then refused as empty (422). */
async function unlock(event) {
  event.preventDefault();
  const input = $("token");
  const candidate = input.value.trim();
  const first = latestCategories[0];
  $("auth-error").textContent = "";
  if (!candidate) return;
  if (!first) {
    $("auth-error").textContent = "qosd has not answered yet; try again in a moment.";
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  input.value = "";
  let res;
  try {
    res = await api("PUT", `/api/v1/categories/${encodeURIComponent(first.name)}`, {});
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("auth-error").textContent = `Cannot reach qosd: ${e.message}`;
    return;
  }
  if (res.status !== 422) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("auth-error").textContent = `Not unlocked: ${messageOf(res)}`;
  }
  showAccess();
}

function lock() {
  sessionStorage.removeItem(TOKEN_KEY);
  showAccess();
  $("token").focus();
}

// ---- Overview ------------------------------------------------------------

/** Samples of the last SPAN_MS: {t, status, cats}. */
const history = [];
let latestCategories = [];

/** One direction's panel, built once per category list. */
const panels = {};

function buildPanel(dir, names) {
  const title = dir === "upload" ? "Upload (office → Internet)" : "Download (Internet → office)";
  const head = h("tr", {},
    h("th", { scope: "col" }, "Category"),
    h("th", { scope: "col" }, "Rate (Mbit/s)"),
    h("th", { scope: "col" }, "Share (%)"),
    h("th", { scope: "col" }, "Queue delay p99 (ms)"),
    h("th", { scope: "col" }, "Drops/s"),
    h("th", { scope: "col", class: "wide-only" }, "Drops (total)"));
  const rows = names.map((name, i) =>
    h("tr", {},
      h("th", { scope: "row" }, swatch(i), name),
      ...["rate", "share", "p99", "drops_s", "drops"].map((k) =>
        h("td", { id: `ov-${dir}-${name}-${k}`, "data-cat": name, "data-key": k, class: k === "drops" ? "wide-only" : null }, "–"))));
  const legend = (extra) => h("ul", { class: "legend" },
    names.map((name, i) => h("li", {}, swatch(i), name)),
    extra ? h("li", {}, swatch(7), extra) : null);
  const rateCanvas = h("canvas", { class: "chart", role: "img", "aria-label": `${title}: rate per category, last 10 minutes` });
  const delayCanvas = h("canvas", { class: "chart", role: "img", "aria-label": `${title}: queue delay p99 per category, last 10 minutes` });
  const section = h("section", { class: "direction", id: `dir-${dir}`, "aria-labelledby": `dir-${dir}-title` },
    h("h2", { id: `dir-${dir}-title` }, title),
    h("p", { class: "summary", id: `sum-${dir}` }, "–"),
    h("div", { class: "scroll" }, h("table", {}, h("thead", {}, head), h("tbody", {}, rows))),
    h("p", { class: "note" }, "Rates, shares and queue delays are those of the last second; the share is of what this direction sent."),
    h("div", { class: "charts" },
      h("figure", {}, h("figcaption", {}, "Rate per category (Mbit/s)"), rateCanvas, legend("shaping rate")),
      h("figure", {}, h("figcaption", {}, "Queue delay p99 per second (ms)"), delayCanvas, legend(null))));
  return { section, rateCanvas, delayCanvas, names: names.join("\n") };
}

function setCell(id, text, value) {
  const e = $(id);
  if (!e) return;
  e.textContent = text;
  if (value === undefined || value === null || !num(value)) e.removeAttribute("data-value");
  else e.dataset.value = String(value);
}

function renderOverview() {
  const last = history[history.length - 1];
  if (!last) return;
  const prev = history[history.length - 2];
  const { status, cats } = last;
  $("where").textContent = status.interfaces ? `${status.interfaces.lan} ⇄ ${status.interfaces.wan}` : "";
  const names = cats.map((c) => c.name);
  for (const dir of DIRS) {
    let p = panels[dir];
    if (!p || p.names !== names.join("\n")) {
      const fresh = buildPanel(dir, names);
      if (p) p.section.replaceWith(fresh.section);
      else $("directions").append(fresh.section);
      panels[dir] = p = fresh;
    }
    const shaping = status.link && status.link[`${dir}_bps`];
    const total = cats.reduce((s, c) => s + (c[dir].rate_bps || 0), 0);
    let summary = `Shaping at ${mbit(shaping)} Mbit/s; sending ${mbit(total)} Mbit/s`;
    const auto = status.autorate;
    if (auto && auto.enabled && auto[dir]) {
      const a = auto[dir];
      summary += `. Autorate: capacity estimate ${mbit(a.capacity_bps)} Mbit/s, WAN delay ${millis(a.delay_ms)} ms (idle ${millis(a.baseline_ms)} ms), rate kept between ${mbit(a.min_bps)} and ${mbit(a.max_bps)} Mbit/s`;
    }
    $(`sum-${dir}`).textContent = summary + ".";
    for (const c of cats) {
      const d = c[dir];
      const share = total > 0 ? (100 * d.rate_bps) / total : null;
      const before = prev && prev.cats.find((x) => x.name === c.name);
      const secs = prev ? (last.t - prev.t) / 1000 : 0;
      const dropRate = before && secs > 0 ? Math.max(0, d.dropped_packets - before[dir].dropped_packets) / secs : null;
      setCell(`ov-${dir}-${c.name}-rate`, mbit(d.rate_bps), d.rate_bps);
      setCell(`ov-${dir}-${c.name}-share`, percent(share), share);
      // The last second's p99 (absent from a qosd before it: then the p99
      // since qosd started, the best there is).
      const p99 = "recent_delay_p99_ms" in d ? d.recent_delay_p99_ms : d.delay_p99_ms;
      setCell(`ov-${dir}-${c.name}-p99`, millis(p99), p99);
      setCell(`ov-${dir}-${c.name}-drops_s`, num(dropRate) ? dropRate.toFixed(dropRate < 10 ? 1 : 0) : "–", dropRate);
      setCell(`ov-${dir}-${c.name}-drops`, String(d.dropped_packets), d.dropped_packets);
    }
    if (!p.section.hidden && !$("view-overview").hidden) {
      const series = (key, scale) => names.map((name, index) => ({
        index,
        points: history.map((s) => {
          const c = s.cats.find((x) => x.name === name);
          const v = c && c[dir][key];
          return [s.t, num(v) ? v * scale : null];
        }),
      }));
      const rates = series("rate_bps", 1e-6);
      rates.push({ index: 7, points: history.map((s) => [s.t, num(s.status.link?.[`${dir}_bps`]) ? s.status.link[`${dir}_bps`] / 1e6 : null]) });
      draw(p.rateCanvas, rates, { now: last.t, spanMs: SPAN_MS });
      draw(p.delayCanvas, series("recent_delay_p99_ms", 1), { now: last.t, spanMs: SPAN_MS });
    }
  }
}

let polling = false;
async function poll() {
  if (polling) return; // on a slow link, never stack requests
  polling = true;
  try {
    const [st, cats] = await Promise.all([api("GET", "/api/v1/status"), api("GET", "/api/v1/categories")]);
    if (st.status !== 200 || cats.status !== 200 || !Array.isArray(cats.data)) {
      throw new Error(st.status !== 200 ? messageOf(st) : messageOf(cats));
    }
    const t = Date.now();
    history.push({ t, status: st.data, cats: cats.data });
    while (history.length && t - history[0].t > SPAN_MS) history.shift();
    latestCategories = cats.data;
    $("conn").textContent = `Live: updated ${new Date(t).toLocaleTimeString()}${st.data.ready ? "" : "; qosd is not ready: " + (st.data.not_ready || []).join("; ")}`;
    $("conn").className = st.data.ready ? "ok" : "warn";
    renderOverview();
    if (!formsShown) showForms(cats.data);
  } catch (e) {
    $("conn").textContent = `Cannot reach qosd (${e.name === "AbortError" ? "no answer in 8 s" : e.message}); retrying every second.`;
    $("conn").className = "bad";
  } finally {
    polling = false;
  }
}

// ---- Flows, hosts, unknown traffic ------------------------------------------

/** Fills `table` with `rows` (objects) under `columns` ([key, heading]). */
function fillTable(table, columns, rows) {
  table.replaceChildren(
    h("thead", {}, h("tr", {}, columns.map(([, label]) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, rows.length
      ? rows.map((r) => h("tr", {}, columns.map(([k]) => h("td", {}, r[k] === null || r[k] === undefined ? "–" : String(r[k])))))
      : h("tr", {}, h("td", { colSpan: columns.length }, "Nothing yet."))));
}

let lastFlows = { t: 0, bytes: new Map() };
async function pollFlows() {
  if ($("view-flows").hidden) return;
  let res;
  try { res = await api("GET", "/api/v1/flows?top=20"); } catch { return; }
  if (res.status !== 200 || !Array.isArray(res.data)) return;
  const t = Date.now();
  const secs = (t - lastFlows.t) / 1000;
  const rows = res.data.map((f) => {
    const before = lastFlows.bytes.get(f.id);
    const rate = before !== undefined && secs > 0 ? ((f.bytes - before) * 8) / secs : null;
    return { ...f, app: f.app ?? "(none)", rate: rate === null ? "–" : mbit(rate) };
  });
  lastFlows = { t, bytes: new Map(res.data.map((f) => [f.id, f.bytes])) };
  fillTable($("flows-table"), [
    ["app", "App"], ["category", "Category"], ["decided_by", "Decided by"], ["rate", "Rate (Mbit/s)"],
    ["proto", "Protocol"], ["src", "From"], ["dst", "To"], ["host", "Host"],
  ], rows);
}

/** The office's computers, busiest first (`/api/v1/hosts`). */
async function pollHosts() {
  if ($("view-hosts").hidden) return;
  let res;
  try { res = await api("GET", "/api/v1/hosts?top=50"); } catch { return; }
  if (res.status !== 200 || !Array.isArray(res.data)) return;
  const rows = res.data.map((x) => ({
    mac: x.mac,
    addresses: (x.addresses || []).join(", "),
    up: mbit(x.rate_bps?.upload),
    down: mbit(x.rate_bps?.download),
    categories: (x.categories || []).slice(0, 3).map((c) => c.name).join(", "),
    flows: x.flows,
    apps: (x.top_apps || []).map((a) => a.app).join(", "),
  }));
  fillTable($("hosts-table"), [
    ["mac", "Computer (MAC)"], ["addresses", "Addresses"], ["up", "Up (Mbit/s)"], ["down", "Down (Mbit/s)"],
    ["categories", "Busiest categories"], ["flows", "Flows"], ["apps", "Top apps"],
  ], rows);
}

/** Tabs for endpoints a later qosd may have: shown only if they answer. */
const OPTIONAL = { unknown: "/api/v1/unknown" };
async function probeOptional() {
  for (const [view, path] of Object.entries(OPTIONAL)) {
    let res;
    try { res = await api("GET", path); } catch { continue; }
    // A list, or an object holding it under the view's name
    // (`{"unknown": [...], "total_bytes": n}`).
    const rows = Array.isArray(res.data) ? res.data : res.data?.[view];
    if (res.status !== 200 || !Array.isArray(rows)) continue;
    document.querySelector(`.tab[data-view="${view}"]`).hidden = false;
    const keys = rows.length ? Object.keys(rows[0]) : [];
    fillTable($(`${view}-table`), keys.map((k) => [k, k]), rows);
  }
}

// ---- Categories -------------------------------------------------------------

let formsShown = false;
/** What the form shows per category and field, to send only changes. */
const shown = new Map();

const asText = (v) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));

function categoryForm(c) {
  const fields = FIELDS.map((f) => {
    const id = `f-${c.name}-${f}`;
    const hint = f === "min" || f === "max" ? "e.g. 10% or 2 Mbit" : f === "priority" ? "0 goes first" : "share among equals";
    return h("div", { class: "field" },
      h("label", { for: id }, f[0].toUpperCase() + f.slice(1)),
      h("input", { id, name: f, value: asText(c[f]), inputMode: f === "weight" || f === "priority" ? "numeric" : "text", autocomplete: "off", "aria-describedby": `e-${c.name}-${f} h-${c.name}-${f}` }),
      h("span", { class: "hint", id: `h-${c.name}-${f}` }, hint),
      h("span", { class: "error", id: `e-${c.name}-${f}`, role: "alert" }));
  });
  const save = h("button", { type: "button", class: "save", "data-cat": c.name }, `Save ${c.name}`);
  save.addEventListener("click", () => saveCategory(c.name));
  return h("fieldset", { class: "category", id: `cat-${c.name}` },
    h("legend", {}, c.name, c.default ? " (default)" : ""),
    h("div", { class: "fields" }, fields),
    h("div", { class: "actions" }, save, h("span", { class: "msg", id: `m-${c.name}`, role: "status" })));
}

function showForms(cats) {
  formsShown = true;
  shown.clear();
  for (const c of cats) shown.set(c.name, Object.fromEntries(FIELDS.map((f) => [f, asText(c[f])])));
  $("category-forms").replaceChildren(...cats.map(categoryForm));
  showAccess();
}

/** The JSON value for a field's text: numbers for weight and priority,
 *  `{"upload": .., "download": ..}` objects as typed, rates as strings. */
function valueOf(field, text) {
  if ((field === "weight" || field === "priority") && /^\d+$/.test(text)) return Number(text);
  if (text.startsWith("{")) {
    try { return JSON.parse(text); } catch { return text; }
  }
  return text;
}

async function saveCategory(name) {
  const was = shown.get(name) || {};
  const changes = {};
  for (const f of FIELDS) {
    $(`e-${name}-${f}`).textContent = "";
    const text = $(`f-${name}-${f}`).value.trim();
    if (text !== was[f]) changes[f] = valueOf(f, text);
  }
  const msg = $(`m-${name}`);
  if (!Object.keys(changes).length) {
    msg.textContent = "Nothing changed.";
    return;
  }
  msg.textContent = "Saving…";
  let res;
  try {
    res = await api("PUT", `/api/v1/categories/${encodeURIComponent(name)}`, changes);
  } catch (e) {
    msg.textContent = `Not saved: cannot reach qosd (${e.message}).`;
    return;
  }
  if (res.status === 200 && res.data) {
    shown.set(name, Object.fromEntries(FIELDS.map((f) => [f, asText(res.data[f])])));
    for (const f of FIELDS) $(`f-${name}-${f}`).value = asText(res.data[f]);
    msg.textContent = `Saved (${Object.keys(changes).join(", ")}); in force now, until the next reload.`;
    return;
  }
  if (res.status === 401 || res.status === 403) {
    msg.textContent = `Refused: ${messageOf(res)}`;
    if (res.status === 401 || /wrong token/.test(messageOf(res))) {
      sessionStorage.removeItem(TOKEN_KEY);
      showAccess();
      $("auth-error").textContent = `The token was refused (${messageOf(res)}): unlock again.`;
    }
    return;
  }
  // 422: each message next to the field it names (`category[3].min: ...`,
  // `min: ...`), the rest next to the only changed field or the button.
  const details = (res.data && res.data.errors) || [messageOf(res)];
  const changed = Object.keys(changes);
  const rest = [];
  for (const d of details) {
    const m = /(?:^|\.)(weight|priority|min|max)\s*:/.exec(d);
    const field = m ? m[1] : changed.length === 1 ? changed[0] : null;
    if (field) {
      const e = $(`e-${name}-${field}`);
      e.textContent = e.textContent ? `${e.textContent}; ${d}` : d;
    } else {
      rest.push(d);
    }
  }
  msg.textContent = `Not saved (HTTP ${res.status})${rest.length ? ": " + rest.join("; ") : "."}`;
}

async function reloadConfig() {
  const out = $("reload-result");
  out.textContent = "Reloading…";
  let res;
  try { res = await api("POST", "/api/v1/reload"); } catch (e) {
    out.textContent = `Cannot reach qosd: ${e.message}`;
    return;
  }
  if (res.status === 200) {
    out.textContent = `Reloaded from ${res.data.config}.`;
    formsShown = false; // the next poll shows the file's values
  } else {
    const details = (res.data && res.data.errors) || [];
    out.textContent = `Not reloaded: ${messageOf(res)}${details.length ? " — " + details.join("; ") : ""}`;
  }
}

// ---- Navigation -------------------------------------------------------------

function showView(view) {
  for (const tab of document.querySelectorAll(".tab")) tab.setAttribute("aria-pressed", String(tab.dataset.view === view));
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${view}`;
  if (view === "flows") pollFlows();
  if (view === "hosts") pollHosts();
  if (view === "overview") renderOverview();
}

function start() {
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
  $("unlock").addEventListener("submit", unlock);
  $("lock").addEventListener("click", lock);
  $("reload").addEventListener("click", reloadConfig);
  window.addEventListener("resize", renderOverview);
  showAccess();
  poll();
  probeOptional();
  setInterval(poll, POLL_MS);
  setInterval(pollFlows, FLOWS_POLL_MS);
  setInterval(pollHosts, FLOWS_POLL_MS);
}

start();
