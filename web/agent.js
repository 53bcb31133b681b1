// dbhaul agent page: the agent's health (public) and, after a login, its subtasks.
// Plain ES2020, no dependencies. Polls every 1.5 s and updates rows in place.
"use strict";

// ---- shared helpers (the same block opens app.js: keep the two in step) ----

const POLL_MS = 1500;
const STATES = ["Pending", "Running", "Completed", "Failed", "Stopped"];
const STAGES = ["extract", "upload", "copy"];

const numberFormat = new Intl.NumberFormat("en-US");

function num(v) {
  return typeof v === "number" && Number.isFinite(v) ? v : 0;
}
function pad2(n) {
  return String(n).padStart(2, "0");
}
function fmtInt(v) {
  return typeof v === "number" && Number.isFinite(v) ? numberFormat.format(Math.round(v)) : "—";
}
function fmtMB(bytes) {
  return typeof bytes === "number" && Number.isFinite(bytes) ? (bytes / 1e6).toFixed(1) : "—";
}
/** h:mm:ss, or "—" when absent. */
function fmtDuration(s) {
  if (typeof s !== "number" || !Number.isFinite(s) || s < 0) return "—";
  const t = Math.floor(s);
  return `${Math.floor(t / 3600)}:${pad2(Math.floor((t % 3600) / 60))}:${pad2(t % 60)}`;
}
function clockTime(d) {
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}
/** An RFC 3339 time as local "YYYY-MM-DD HH:MM:SS" (the text as is if it does not parse). */
function fmtTime(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${clockTime(d)}`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = String(text);
  return node;
}
/** Write text only when it changed (keeps the DOM quiet on every tick). */
function setText(node, text) {
  const s = text == null ? "" : String(text);
  if (node.textContent !== s) node.textContent = s;
}
function setAttr(node, name, value) {
  if (value == null || value === "") {
    if (node.hasAttribute(name)) node.removeAttribute(name);
  } else if (node.getAttribute(name) !== String(value)) {
    node.setAttribute(name, String(value));
  }
}
function setClass(node, className) {
  if (node.className !== className) node.className = className;
}
function setBadge(node, state) {
  const s = STATES.includes(state) ? state : String(state || "Pending");
  setClass(node, "badge state-" + s.toLowerCase());
  setText(node, s);
}

/**
 * How far a subtask's stage is: {percent (integer 0..100), indeterminate}, or null when the
 * subtask has no such stage. Completed is 100; extract is measured against the subtask's
 * estimated rows (striped while running without an estimate); upload and copy against the
 * larger of the rows extracted and the estimate. Unfinished stages stop at 99.
 */
function stagePercent(sub, name) {
  const stage = sub[name];
  if (!stage) return null;
  if (stage.state === "Completed") return { percent: 100, indeterminate: false };
  const estimated = num(sub.estimated_rows);
  const rows = num(stage.rows);
  if (name === "extract") {
    if (estimated > 0) return { percent: clampPercent((rows / estimated) * 100), indeterminate: false };
    return { percent: 0, indeterminate: stage.state === "Running" };
  }
  const denominator = Math.max(num(sub.extract && sub.extract.rows), estimated);
  if (denominator <= 0) return { percent: 0, indeterminate: false };
  return { percent: clampPercent((rows / denominator) * 100), indeterminate: false };
}
function clampPercent(p) {
  return Math.max(0, Math.min(99, Math.floor(p)));
}

/** A `<td data-stage>` holding `.bar[data-percent] > .fill` and a rows label, or "—". */
function makeStageCell(name) {
  const td = el("td", "stage");
  td.dataset.stage = name;
  td._parts = null;
  return td;
}
function updateStageCell(td, sub, name) {
  const stage = sub[name];
  if (!stage) {
    if (td._parts || td.textContent !== "—") {
      td._parts = null;
      td.textContent = "—";
      setClass(td, "stage absent");
      setAttr(td, "data-state", null);
      setAttr(td, "title", null);
    }
    return;
  }
  if (!td._parts) {
    td.textContent = "";
    setClass(td, "stage");
    const bar = el("div", "bar");
    const fill = el("div", "fill");
    const label = el("span", "rows");
    bar.appendChild(fill);
    td.append(bar, label);
    td._parts = { bar, fill, label };
  }
  const { bar, fill, label } = td._parts;
  const state = String(stage.state || "Pending");
  const p = stagePercent(sub, name);
  setClass(bar, "bar stage-" + state.toLowerCase() + (p.indeterminate ? " indeterminate" : ""));
  setAttr(bar, "data-percent", String(p.percent));
  const width = p.percent + "%";
  if (fill.style.width !== width) fill.style.width = width;
  setText(label, fmtInt(num(stage.rows)) + " rows");
  setAttr(td, "data-state", state);
  setAttr(
    td,
    "title",
    `${name}: ${state}${p.indeterminate ? "" : ` (${p.percent}%)`} — ` +
      `${fmtInt(num(stage.rows))} rows, ${fmtMB(num(stage.bytes))} MB`,
  );
}

/**
 * Make the tbody hold exactly the rows for `items`, in order. `rowFor(item)` returns the
 * (kept, updated) row of an item; rows are moved only when out of place.
 */
function reconcile(tbody, items, rowFor) {
  let prev = null;
  for (const item of items) {
    const tr = rowFor(item);
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  let extra = prev ? prev.nextSibling : tbody.firstChild;
  while (extra) {
    const next = extra.nextSibling;
    extra.remove();
    extra = next;
  }
}
/** Show one full-width note row instead of data rows. */
function showEmpty(tbody, row) {
  if (tbody.firstChild !== row || tbody.childNodes.length !== 1) tbody.replaceChildren(row);
}
function emptyRow(colspan, ...content) {
  const tr = el("tr", "empty-row");
  const td = el("td", "empty");
  td.colSpan = colspan;
  td.append(...content);
  tr.appendChild(td);
  return tr;
}

class NetworkError extends Error {}
class AuthError extends Error {}
class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}
/** The `error` of a JSON error body, else the body's text, else the status. */
async function errorText(resp) {
  let text = "";
  try {
    text = await resp.text();
  } catch (_) {
    /* no body */
  }
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === "string") return body.error;
  } catch (_) {
    /* not JSON */
  }
  text = text.trim();
  return text ? text.slice(0, 500) : `HTTP ${resp.status} ${resp.statusText}`.trim();
}

// ---- message area ----

let messageTimer = null;
function showMessage(kind, text) {
  const box = document.getElementById("message");
  clearTimeout(messageTimer);
  setClass(box, kind);
  setText(box.querySelector(".text"), text);
  box.hidden = false;
  if (kind === "ok") messageTimer = setTimeout(hideMessage, 15000);
}
function hideMessage() {
  clearTimeout(messageTimer);
  document.getElementById("message").hidden = true;
}

// ---- end of shared helpers ----

// ---- agent API ----

const TOKEN_KEY = "dbhaul-agent-token";

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch (_) {
    return null;
  }
}
function clearToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch (_) {
    /* ignore */
  }
}

async function request(method, path, body, withAuth = true) {
  const headers = { Accept: "application/json" };
  const token = withAuth ? storedToken() : null;
  if (token) headers.Authorization = "Bearer " + token;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new NetworkError("agent unreachable");
  }
  if (resp.status === 401) throw new AuthError(await errorText(resp));
  if (!resp.ok) throw new HttpError(resp.status, await errorText(resp));
  return resp;
}
async function getJSON(path, withAuth = true) {
  const resp = await request("GET", path, undefined, withAuth);
  return resp.json();
}

// ---- page state ----

const ui = { lastUpdate: null, loginShown: false };
const subtaskRows = new Map(); // "task/id" → <tr>
const countBadges = new Map(); // state → <span>
let $ = null;

function setStatus(kind, text) {
  setClass($.status, kind);
  setText($.status, text);
  setAttr($.status, "title", ui.lastUpdate ? "last update " + clockTime(ui.lastUpdate) : null);
}

// ---- login ----

function showLogin(note) {
  if (!ui.loginShown) {
    ui.loginShown = true;
    $.loginForm.hidden = false;
    $.subtasksPanel.hidden = true;
    $.logout.hidden = true;
    subtaskRows.clear();
    $.subtasksBody.replaceChildren();
    $.password.focus();
  }
  if (note) showMessage("error", note);
}

function hideLogin() {
  ui.loginShown = false;
  $.loginForm.hidden = true;
  $.subtasksPanel.hidden = false;
  $.logout.hidden = false;
}

async function onLogin(ev) {
  ev.preventDefault();
  const password = $.password.value;
  if (!password) {
    $.password.focus();
    return;
  }
  const button = $.loginForm.querySelector("button");
  button.disabled = true;
  try {
    const resp = await request("POST", "/v1/login", { password }, false);
    const body = await resp.json().catch(() => null);
    if (!body || typeof body.token !== "string" || !body.token) {
      throw new Error("the agent answered without a token");
    }
    try {
      sessionStorage.setItem(TOKEN_KEY, body.token);
    } catch (_) {
      throw new Error("this browser refuses sessionStorage: the session cannot be kept");
    }
    $.password.value = "";
    hideMessage();
    hideLogin();
    pollNow();
  } catch (e) {
    if (e instanceof AuthError) showMessage("error", "log in: " + (e.message || "wrong password"));
    else if (e instanceof NetworkError) showMessage("error", "log in: agent unreachable");
    else showMessage("error", "log in: " + e.message);
    $.password.select();
  } finally {
    button.disabled = false;
  }
}

function logout() {
  clearToken();
  hideMessage();
  showLogin();
  pollNow();
}

// ---- polling ----

let pollTimer = null;
let polling = false;
let pollQueued = false;

function pollNow() {
  if (polling) {
    pollQueued = true;
    return;
  }
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, 0);
}

async function poll() {
  clearTimeout(pollTimer);
  if (polling) {
    pollQueued = true;
    return;
  }
  polling = true;
  const token = storedToken();
  const [healthR, subtasksR] = await Promise.allSettled([
    getJSON("/v1/health", false),
    token ? getJSON("/v1/subtasks") : Promise.resolve(null),
  ]);
  polling = false;

  try {
    if (healthR.status === "fulfilled" && healthR.value) renderHealth(healthR.value);
    if (!token) {
      showLogin();
    } else if (subtasksR.status === "fulfilled") {
      if (storedToken() === token) {
        if (ui.loginShown) hideLogin();
        renderSubtasks(Array.isArray(subtasksR.value) ? subtasksR.value : []);
      }
    } else if (subtasksR.reason instanceof AuthError && storedToken() === token) {
      clearToken();
      showLogin("Your session ended: log in again.");
    }
  } catch (e) {
    // A rendering bug must not stop the polling.
    console.error(e);
  }

  const failure = [healthR, subtasksR].find((r) => r.status === "rejected" && !(r.reason instanceof AuthError));
  if (!failure) {
    ui.lastUpdate = new Date();
    setStatus("ok", "updated " + clockTime(ui.lastUpdate));
  } else if (failure.reason instanceof NetworkError) {
    setStatus("bad", "agent unreachable");
  } else {
    setStatus("bad", "agent error: " + failure.reason.message);
  }

  pollTimer = setTimeout(poll, pollQueued ? 0 : POLL_MS);
  pollQueued = false;
}

// ---- health ----

function renderHealth(h) {
  const values = {
    name: h.name || "—",
    version: h.version || "—",
    capacity: h.capacity != null ? fmtInt(h.capacity) : "—",
    running: h.running != null ? fmtInt(h.running) : "—",
    queued: h.queued != null ? fmtInt(h.queued) : "—",
    fingerprint: h.fingerprint || "—",
  };
  for (const [key, value] of Object.entries(values)) {
    const v = $.health.querySelector(`[data-health="${key}"] .v`);
    if (v) setText(v, value);
  }
  setText($.agentName, h.name || "");
  const title = h.name ? `dbhaul agent ${h.name}` : "dbhaul agent";
  if (document.title !== title) document.title = title;
}

// ---- subtasks ----

function buildCounts() {
  const total = el("span", "total");
  $.counts.appendChild(total);
  countBadges.set("total", total);
  for (const s of STATES) {
    const b = el("span", "badge state-" + s.toLowerCase());
    b.dataset.countState = s;
    $.counts.appendChild(b);
    countBadges.set(s, b);
  }
}

function subtaskKey(s) {
  return `${s.task}/${s.id}`;
}

function renderSubtasks(list) {
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const s of list) if (s.state in counts) counts[s.state] += 1;
  setText(countBadges.get("total"), `${list.length} total`);
  for (const s of STATES) {
    const b = countBadges.get(s);
    setText(b, `${s} ${counts[s]}`);
    b.hidden = counts[s] === 0;
  }

  const tbody = $.subtasksBody;
  if (!list.length) {
    subtaskRows.clear();
    showEmpty(tbody, $.noSubtasksRow);
    return;
  }
  const seen = new Set();
  reconcile(tbody, list, (s) => {
    const key = subtaskKey(s);
    seen.add(key);
    let tr = subtaskRows.get(key);
    if (!tr) {
      tr = makeSubtaskRow(s, key);
      subtaskRows.set(key, tr);
    }
    updateSubtaskRow(tr, s);
    return tr;
  });
  for (const key of [...subtaskRows.keys()]) if (!seen.has(key)) subtaskRows.delete(key);
}

function makeSubtaskRow(s, key) {
  const tr = el("tr");
  tr.dataset.subtask = key;
  const c = {
    task: el("td", "mono", s.task),
    id: el("td", "id", s.id),
    state: el("td"),
    chunks: el("td", "num"),
    error: el("td", "error"),
  };
  c.badge = el("span", "badge");
  c.state.appendChild(c.badge);
  c.stages = STAGES.map(makeStageCell);
  tr.append(c.task, c.id, c.state, ...c.stages, c.chunks, c.error);
  tr._cells = c;
  tr._sig = "";
  return tr;
}

function updateSubtaskRow(tr, s) {
  const sig = JSON.stringify(s);
  if (sig === tr._sig) return;
  tr._sig = sig;
  const c = tr._cells;
  setAttr(tr, "data-state", s.state || "Pending");
  setBadge(c.badge, s.state);
  const times = [s.started_at && "started " + fmtTime(s.started_at), s.finished_at && "finished " + fmtTime(s.finished_at)];
  const attempts = num(s.attempts) > 1 ? `attempt ${s.attempts}` : null;
  setAttr(c.state, "title", [...times, attempts].filter(Boolean).join(", ") || null);
  STAGES.forEach((name, i) => updateStageCell(c.stages[i], s, name));
  setText(c.chunks, fmtInt(num(s.chunks)));
  const error = s.error ? String(s.error) : "";
  setText(c.error, error.length > 120 ? error.slice(0, 119) + "…" : error);
  setAttr(c.error, "title", error || null);
}

// ---- start ----

function init() {
  const byId = (id) => document.getElementById(id);
  $ = {
    status: byId("refresh-status"),
    agentName: byId("agent-name"),
    health: byId("agent-health"),
    loginForm: byId("login-form"),
    password: byId("password-input"),
    logout: byId("btn-logout"),
    subtasksPanel: byId("subtasks-panel"),
    counts: byId("subtask-counts"),
    subtasksBody: byId("agent-subtasks").tBodies[0],
  };
  $.noSubtasksRow = emptyRow(8, "No subtasks on this agent.");
  buildCounts();

  $.loginForm.addEventListener("submit", onLogin);
  $.logout.addEventListener("click", logout);
  byId("message-close").addEventListener("click", hideMessage);

  if (storedToken()) hideLogin();
  else showLogin();
  poll();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
