// dbhaul agent page: the agent's health (public) and, after a login, its subtasks.
// Plain ES2020, no dependencies. Polls every 1.5 s and updates rows in place.
"use strict";

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
