// dbhaul controller status page: tasks, the selected task's subtasks, agents.
// Plain ES2020, no dependencies. Polls the controller's JSON API every 1.5 s and updates
// the page in place (rows are kept per key and only changed cells are written), so the
// selection, the filters and the scroll positions survive every refresh.
"use strict";

// ---- controller API ----

const TOKEN_KEY = "dbhaul-token";

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch (_) {
    return null;
  }
}

async function request(method, path, body) {
  const headers = { Accept: "application/json, text/plain, */*" };
  const token = storedToken();
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
    throw new NetworkError("controller unreachable");
  }
  if (resp.status === 401) {
    const message = await errorText(resp);
    askForToken(token);
    throw new AuthError(message);
  }
  if (!resp.ok) throw new HttpError(resp.status, await errorText(resp));
  return resp;
}
async function getJSON(path) {
  const resp = await request("GET", path);
  return resp.json();
}
function taskPath(name) {
  return "/v1/tasks/" + encodeURIComponent(name);
}

// ---- page state ----

const ui = {
  selected: null, // the selected task's name
  tasks: [], // last GET /v1/tasks
  detail: null, // last GET /v1/tasks/{selected}
  detailError: null,
  subtasks: [], // detail.subtasks
  authNeeded: false,
  retryAfterAuth: null,
  busy: false,
  pollSeq: 0,
  logLevelMinSeq: 0, // polls started before the last log-level change don't set the select
  lastUpdate: null,
};

const taskRows = new Map(); // name → <tr>
const subtaskRows = new Map(); // id → <tr>
const agentRows = new Map(); // name → <tr>
const countBadges = new Map(); // state → <span>
const metaValues = new Map(); // key → <span class="v">

let $ = null; // element lookups, filled by init()

// ---- auth ----

function askForToken(refusedToken) {
  if (refusedToken && storedToken() === refusedToken) {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      /* ignore */
    }
    showMessage("error", "The controller refused the stored token: paste its admin token again.");
  }
  if (!ui.authNeeded) {
    ui.authNeeded = true;
    $.tokenForm.hidden = false;
    $.tokenInput.focus();
  }
  setStatus("warn", "admin token needed");
}

function onTokenSubmit(ev) {
  ev.preventDefault();
  const token = $.tokenInput.value.trim();
  if (!token) {
    $.tokenInput.focus();
    return;
  }
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch (_) {
    showMessage("error", "This browser refuses sessionStorage: the token cannot be kept.");
  }
  $.tokenInput.value = "";
  $.tokenForm.hidden = true;
  ui.authNeeded = false;
  if (!$.message.classList.contains("ok")) hideMessage();
  const retry = ui.retryAfterAuth;
  ui.retryAfterAuth = null;
  pollNow();
  if (retry) retry();
}

// ---- polling ----

let pollTimer = null;
let polling = false;
let pollQueued = false;

function setStatus(kind, text, title) {
  setClass($.status, kind);
  setText($.status, text);
  setAttr($.status, "title", title || (ui.lastUpdate ? "last update " + clockTime(ui.lastUpdate) : null));
}

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
  const seq = ++ui.pollSeq;
  const selected = ui.selected;
  const [tasksR, agentsR, detailR] = await Promise.allSettled([
    getJSON("/v1/tasks"),
    getJSON("/v1/agents?max_age_s=2"),
    selected ? getJSON(taskPath(selected)) : Promise.resolve(null),
  ]);
  polling = false;

  const results = [tasksR, agentsR, detailR];
  const auth = results.some((r) => r.status === "rejected" && r.reason instanceof AuthError);

  try {
    if (tasksR.status === "fulfilled") {
      renderTasks(Array.isArray(tasksR.value) ? tasksR.value : []);
    }
    if (agentsR.status === "fulfilled") {
      renderAgents(Array.isArray(agentsR.value) ? agentsR.value : []);
    }
    if (selected && selected === ui.selected) {
      if (detailR.status === "fulfilled" && detailR.value) {
        ui.detailError = null;
        renderDetail(detailR.value, seq);
      } else if (detailR.status === "rejected" && detailR.reason instanceof HttpError) {
        ui.detailError =
          detailR.reason.status === 404 ? `No task named “${selected}” on this controller.` : detailR.reason.message;
        renderDetailError();
      }
    }
  } catch (e) {
    // A rendering bug must not stop the polling.
    console.error(e);
  }

  if (auth) {
    setStatus("warn", "admin token needed");
  } else if (tasksR.status === "fulfilled") {
    ui.lastUpdate = new Date();
    setStatus("ok", "updated " + clockTime(ui.lastUpdate));
  } else if (tasksR.reason instanceof NetworkError) {
    setStatus("bad", "controller unreachable");
  } else {
    setStatus("bad", "controller error: " + (tasksR.reason && tasksR.reason.message));
  }

  // Wait for a token before asking again; otherwise poll on.
  if (!auth || !ui.authNeeded) {
    pollTimer = setTimeout(poll, pollQueued ? 0 : POLL_MS);
  }
  pollQueued = false;
}

// ---- selection (kept in the URL hash: #task=NAME) ----

function hashTask() {
  const m = /^#task=(.+)$/.exec(location.hash);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch (_) {
    return m[1];
  }
}

function select(name, fromHash) {
  if (!name || name === ui.selected) return;
  ui.selected = name;
  ui.detail = null;
  ui.detailError = null;
  ui.subtasks = [];
  if (!fromHash) {
    const hash = "#task=" + encodeURIComponent(name);
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }
  for (const [n, tr] of taskRows) tr.classList.toggle("selected", n === name);

  // Another task: fresh subtask rows, report and scroll.
  subtaskRows.clear();
  $.subtasksBody.replaceChildren();
  $.subtasksScroll.scrollTop = 0;
  $.testReport.hidden = true;

  $.detail.hidden = false;
  $.detail.dataset.task = name;
  const fromList = ui.tasks.find((t) => t.name === name);
  renderDetailHead(fromList || { name });
  setText($.description, fromList ? fromList.description : "loading…");
  setClass($.description, "");
  renderSubtasks();
  pollNow();
}

// ---- tasks grid ----

function renderTasks(tasks) {
  ui.tasks = tasks;
  const tbody = $.tasksBody;
  setText($.tasksSummary, tasks.length ? `${tasks.length} task${tasks.length === 1 ? "" : "s"}` : "");
  if (!tasks.length) {
    for (const tr of taskRows.values()) tr.remove();
    taskRows.clear();
    showEmpty(tbody, $.noTasksRow);
    return;
  }
  const seen = new Set();
  reconcile(tbody, tasks, (t) => {
    seen.add(t.name);
    let tr = taskRows.get(t.name);
    if (!tr) {
      tr = makeTaskRow(t.name);
      taskRows.set(t.name, tr);
    }
    updateTaskRow(tr, t);
    return tr;
  });
  for (const name of [...taskRows.keys()]) if (!seen.has(name)) taskRows.delete(name);

  if (!ui.selected) select(tasks[0].name);
}

function makeTaskRow(name) {
  const tr = el("tr");
  tr.dataset.task = name;
  tr.tabIndex = 0;
  const c = {
    name: el("td", "name mono"),
    mode: el("td", "mono"),
    state: el("td"),
    progress: el("td"),
    rows: el("td", "num"),
    mb: el("td", "num"),
    throughput: el("td", "num"),
    elapsed: el("td", "num"),
    eta: el("td", "num"),
  };
  c.badge = el("span", "badge");
  c.state.appendChild(c.badge);
  const wrap = el("div", "progress");
  c.bar = el("div", "bar");
  c.fill = el("div", "fill");
  c.bar.appendChild(c.fill);
  c.pct = el("span", "pct");
  c.done = el("span", "muted small mono");
  wrap.append(c.bar, c.pct, c.done);
  c.progress.appendChild(wrap);
  setText(c.name, name);
  tr.append(c.name, c.mode, c.state, c.progress, c.rows, c.mb, c.throughput, c.elapsed, c.eta);
  tr._cells = c;
  tr._sig = "";
  if (name === ui.selected) tr.classList.add("selected");
  return tr;
}

function taskPercent(t) {
  if (t.state === "Completed") return 100;
  const p = num(t.progress);
  return Math.max(0, Math.min(100, Math.floor(p * 100)));
}

function fmtThroughput(t) {
  const rps = num(t.rows_per_s);
  const bps = num(t.bytes_per_s);
  if (rps <= 0 && bps <= 0) return "—";
  return `${fmtInt(rps)} rows/s · ${fmtMB(bps)} MB/s`;
}

function updateTaskRow(tr, t) {
  const sig = JSON.stringify(t);
  if (sig === tr._sig) return;
  tr._sig = sig;
  const c = tr._cells;
  setAttr(c.name, "title", t.description || null);
  setText(c.mode, t.mode || "");
  setBadge(c.badge, t.state);
  const pct = taskPercent(t);
  setAttr(c.bar, "data-percent", String(pct));
  setClass(c.bar, "bar stage-" + String(t.state || "Pending").toLowerCase());
  const width = pct + "%";
  if (c.fill.style.width !== width) c.fill.style.width = width;
  setText(c.pct, pct + "%");
  setText(c.done, `${num(t.subtasks_completed)}/${num(t.subtasks_total)}`);
  setAttr(c.done, "title", `${num(t.subtasks_completed)} of ${num(t.subtasks_total)} subtasks completed`);
  setText(c.rows, fmtInt(num(t.rows)));
  setAttr(c.rows, "title", num(t.estimated_rows) > 0 ? `of about ${fmtInt(t.estimated_rows)} rows` : null);
  setText(c.mb, fmtMB(num(t.bytes)));
  setText(c.throughput, fmtThroughput(t));
  setText(c.elapsed, fmtDuration(t.elapsed_s));
  setText(c.eta, fmtDuration(t.eta_s));
}

// ---- selected task ----

const META = [
  ["agents", "Agents"],
  ["subtasks", "Subtasks"],
  ["progress", "Progress"],
  ["rows", "Rows"],
  ["mb", "MB"],
  ["throughput", "Throughput"],
  ["elapsed", "Elapsed"],
  ["eta", "ETA"],
  ["created", "Created"],
  ["started", "Started"],
  ["finished", "Finished"],
];

function buildMeta() {
  for (const [key, label] of META) {
    const div = el("div");
    div.dataset.meta = key;
    const v = el("span", "v");
    div.append(el("span", "k", label), v);
    $.meta.appendChild(div);
    metaValues.set(key, v);
  }
}
function setMeta(key, value) {
  const v = metaValues.get(key);
  const absent = value == null || value === "";
  v.parentNode.hidden = absent;
  if (!absent) setText(v, value);
}

function renderDetailHead(t) {
  setText($.detailName, t.name);
  $.detailState.hidden = !t.state;
  if (t.state) setBadge($.detailState, t.state);
  setText($.detailMode, t.mode || "");
}

function renderDetail(t, seq) {
  ui.detail = t;
  renderDetailHead(t);
  setText($.description, t.description || "");
  setClass($.description, "");

  const agents = Array.isArray(t.agents) ? t.agents : [];
  setMeta("agents", agents.length ? agents.join(", ") : "all");
  setMeta("subtasks", `${num(t.subtasks_completed)} / ${num(t.subtasks_total)} completed`);
  setMeta("progress", taskPercent(t) + "%");
  const est = num(t.estimated_rows);
  setMeta("rows", fmtInt(num(t.rows)) + (est > 0 ? ` of ~${fmtInt(est)}` : ""));
  setMeta("mb", fmtMB(num(t.bytes)));
  setMeta("throughput", fmtThroughput(t) === "—" ? null : fmtThroughput(t));
  setMeta("elapsed", t.elapsed_s != null ? fmtDuration(t.elapsed_s) : null);
  setMeta("eta", t.eta_s != null ? fmtDuration(t.eta_s) : null);
  setMeta("created", fmtTime(t.created_at));
  setMeta("started", fmtTime(t.started_at));
  setMeta("finished", fmtTime(t.finished_at));

  if (
    t.log_level &&
    seq >= ui.logLevelMinSeq &&
    document.activeElement !== $.logLevel &&
    !$.logLevel.disabled &&
    $.logLevel.value !== t.log_level
  ) {
    $.logLevel.value = t.log_level;
  }

  renderWarnings(Array.isArray(t.warnings) ? t.warnings : []);
  ui.subtasks = Array.isArray(t.subtasks) ? t.subtasks : [];
  renderSubtasks();
}

function renderDetailError() {
  ui.detail = null;
  ui.subtasks = [];
  setText($.description, ui.detailError);
  setClass($.description, "error-text");
  for (const key of metaValues.keys()) setMeta(key, null);
  renderWarnings([]);
  renderSubtasks();
}

let warningsSig = "";
function renderWarnings(list) {
  const sig = JSON.stringify(list);
  if (sig === warningsSig) return;
  warningsSig = sig;
  $.warnings.replaceChildren(...list.map((w) => el("li", "", w)));
  $.warnings.hidden = list.length === 0;
}

// ---- subtasks ----

function buildCounts() {
  const total = el("span", "total");
  $.counts.appendChild(total);
  countBadges.set("total", total);
  for (const s of STATES) {
    const b = el("span", "badge state-" + s.toLowerCase());
    b.dataset.countState = s;
    b.title = `show only ${s} subtasks (click again for all)`;
    b.addEventListener("click", () => {
      $.stateFilter.value = $.stateFilter.value === s ? "all" : s;
      renderSubtasks();
    });
    $.counts.appendChild(b);
    countBadges.set(s, b);
  }
}

function renderSubtasks() {
  const all = ui.subtasks;
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const s of all) if (s.state in counts) counts[s.state] += 1;

  const text = $.filter.value.trim().toLowerCase();
  const stateWanted = $.stateFilter.value;
  const shown =
    !text && stateWanted === "all"
      ? all
      : all.filter(
          (s) =>
            (stateWanted === "all" || s.state === stateWanted) &&
            (!text || String(s.id).toLowerCase().includes(text)),
        );

  setText(countBadges.get("total"), shown.length === all.length ? `${all.length} total` : `${shown.length} of ${all.length} shown`);
  for (const s of STATES) {
    const b = countBadges.get(s);
    setText(b, `${s} ${counts[s]}`);
    b.hidden = counts[s] === 0;
    b.classList.toggle("active", stateWanted === s);
  }

  const tbody = $.subtasksBody;
  if (!shown.length) {
    let note;
    if (!ui.selected) note = "";
    else if (!ui.detail) note = ui.detailError ? "" : "loading…";
    else if (!all.length) note = "No subtasks yet.";
    else note = "No subtask matches the filter.";
    setText($.noSubtasksRow.firstChild, note);
    showEmpty(tbody, $.noSubtasksRow);
  } else {
    reconcile(tbody, shown, (s) => {
      let tr = subtaskRows.get(s.id);
      if (!tr) {
        tr = makeSubtaskRow(s.id);
        subtaskRows.set(s.id, tr);
      }
      updateSubtaskRow(tr, s);
      return tr;
    });
  }
  if (subtaskRows.size > all.length) {
    const ids = new Set(all.map((s) => s.id));
    for (const id of [...subtaskRows.keys()]) if (!ids.has(id)) subtaskRows.delete(id);
  }
}

function makeSubtaskRow(id) {
  const tr = el("tr");
  tr.dataset.subtask = id;
  const c = {
    id: el("td", "id", id),
    agent: el("td", "mono"),
    state: el("td"),
    chunks: el("td", "num"),
    attempts: el("td", "num"),
    error: el("td", "error"),
  };
  c.badge = el("span", "badge");
  c.state.appendChild(c.badge);
  c.stages = STAGES.map(makeStageCell);
  tr.append(c.id, c.agent, c.state, ...c.stages, c.chunks, c.attempts, c.error);
  tr._cells = c;
  tr._sig = "";
  return tr;
}

function truncate(text, n) {
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

function updateSubtaskRow(tr, s) {
  const sig = JSON.stringify(s);
  if (sig === tr._sig) return;
  tr._sig = sig;
  const c = tr._cells;
  setAttr(tr, "data-state", s.state || "Pending");
  // A hand-off task: the front agent, then the agent that copies.
  setText(c.agent, (s.agent || "—") + (s.copy_agent ? " → " + s.copy_agent : ""));
  setBadge(c.badge, s.state);
  const times = [s.started_at && "started " + fmtTime(s.started_at), s.finished_at && "finished " + fmtTime(s.finished_at)];
  setAttr(c.state, "title", times.filter(Boolean).join(", ") || null);
  STAGES.forEach((name, i) => updateStageCell(c.stages[i], s, name));
  setText(c.chunks, fmtInt(num(s.chunks)));
  setText(c.attempts, fmtInt(num(s.attempts)));
  const error = s.error ? String(s.error) : "";
  setText(c.error, truncate(error, 120));
  setAttr(c.error, "title", error || null);
}

// ---- agents ----

function renderAgents(agents) {
  const tbody = $.agentsBody;
  if (!agents.length) {
    agentRows.clear();
    showEmpty(tbody, $.noAgentsRow);
    return;
  }
  const seen = new Set();
  reconcile(tbody, agents, (a) => {
    seen.add(a.name);
    let tr = agentRows.get(a.name);
    if (!tr) {
      tr = makeAgentRow(a.name);
      agentRows.set(a.name, tr);
    }
    updateAgentRow(tr, a);
    return tr;
  });
  for (const name of [...agentRows.keys()]) if (!seen.has(name)) agentRows.delete(name);
}

function makeAgentRow(name) {
  const tr = el("tr");
  tr.dataset.agent = name;
  const c = {
    name: el("td", "name mono", name),
    address: el("td", "mono"),
    status: el("td"),
    version: el("td", "mono"),
    load: el("td", "num"),
    queued: el("td", "num"),
    fingerprint: el("td", "mono"),
  };
  c.badge = el("span", "badge");
  c.status.appendChild(c.badge);
  tr.append(c.name, c.address, c.status, c.version, c.load, c.queued, c.fingerprint);
  tr._cells = c;
  tr._sig = "";
  return tr;
}

function shortFingerprint(fp) {
  return fp.length > 23 ? fp.slice(0, 23) + "…" : fp;
}

function updateAgentRow(tr, a) {
  const sig = JSON.stringify(a);
  if (sig === tr._sig) return;
  tr._sig = sig;
  const c = tr._cells;
  setAttr(c.name, "title", a.description || null);
  setText(c.address, `${a.host}:${a.port}`);
  setClass(c.badge, "badge " + (a.reachable ? "up" : "down"));
  setText(c.badge, a.reachable ? "up" : "down");
  setAttr(c.badge, "title", a.error || (a.reachable ? "reachable" : "unreachable"));
  setAttr(tr, "data-reachable", a.reachable ? "true" : "false");
  setText(c.version, a.version || "—");
  const hasLoad = a.running != null || a.capacity != null;
  setText(c.load, hasLoad ? `${a.running != null ? a.running : "?"} / ${a.capacity != null ? a.capacity : "?"}` : "—");
  setText(c.queued, a.queued != null ? fmtInt(a.queued) : "—");
  const fp = String(a.fingerprint || "");
  setText(c.fingerprint, fp ? shortFingerprint(fp) : "—");
  setAttr(c.fingerprint, "title", fp || null);
}

// ---- actions ----

const ACTION_BUTTONS = ["btn-start", "btn-stop", "btn-resume", "btn-test", "btn-export", "btn-log"];

function setBusy(busy) {
  ui.busy = busy;
  for (const id of ACTION_BUTTONS) document.getElementById(id).disabled = busy;
}

/** Run `fn(name)` for the selected task with the buttons disabled; report errors. */
async function withTask(label, fn) {
  const name = ui.selected;
  if (!name || ui.busy) return;
  setBusy(true);
  showMessage("info", `${label}: …`);
  try {
    await fn(name);
  } catch (e) {
    if (e instanceof AuthError) {
      ui.retryAfterAuth = () => withTask(label, fn);
      showMessage("error", `${label}: the controller wants its admin token (the form above), then it is retried.`);
    } else if (e instanceof NetworkError) {
      showMessage("error", `${label}: controller unreachable`);
    } else {
      showMessage("error", `${label}: ${e.message}`);
    }
  } finally {
    setBusy(false);
    pollNow();
  }
}

function runAction(action) {
  return withTask(action, async (name) => {
    const resp = await request("POST", `${taskPath(name)}/${action}`, {});
    const data = await resp.json().catch(() => null);
    if (action === "test") {
      showTestReport(data || { ok: false, checks: [] });
      showMessage(data && data.ok ? "ok" : "error", `test: ${data && data.ok ? "passed" : "failed"}`);
      return;
    }
    const warnings = data && Array.isArray(data.warnings) ? data.warnings : [];
    let text = `${action}: done`;
    if (warnings.length) text += "\n" + warnings.join("\n");
    showMessage(warnings.length ? "info" : "ok", text);
  });
}

function showTestReport(report) {
  const checks = Array.isArray(report.checks) ? report.checks : [];
  $.testReport.hidden = false;
  setClass($.testReport, report.ok ? "ok" : "fail");
  $.testReport.dataset.ok = report.ok ? "true" : "false";
  setText(
    $.testReportTitle,
    `Test ${report.ok ? "passed" : "failed"}${report.agent ? " on agent " + report.agent : ""}`,
  );
  $.testChecks.replaceChildren(
    ...checks.map((ch) => {
      const li = el("li", ch.ok ? "ok" : "fail");
      li.dataset.check = String(ch.name);
      li.dataset.ok = ch.ok ? "true" : "false";
      li.append(el("span", "mark", ch.ok ? "✓" : "✗"), el("span", "name", ch.name), el("span", "detail", ch.detail || ""));
      return li;
    }),
  );
  if (!checks.length) $.testChecks.appendChild(el("li", "muted", "no checks reported"));
}

/** The file name a Content-Disposition header gives, if any (never a path). */
function dispositionFilename(header) {
  if (!header) return null;
  let name = null;
  let m = /filename\*\s*=\s*([^;]*)/i.exec(header);
  if (m) {
    const value = m[1].trim().replace(/^"(.*)"$/, "$1");
    const parts = /^[^']*'[^']*'(.*)$/.exec(value);
    try {
      name = decodeURIComponent(parts ? parts[1] : value);
    } catch (_) {
      name = null;
    }
  }
  if (!name) {
    m = /filename\s*=\s*"((?:[^"\\]|\\.)*)"/i.exec(header) || /filename\s*=\s*([^;]+)/i.exec(header);
    if (m) name = m[1].trim().replace(/\\(.)/g, "$1");
  }
  if (!name) return null;
  name = name.split(/[\\/]/).pop().trim();
  return name && name !== "." && name !== ".." ? name : null;
}

function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.style.display = "none";
  document.body.appendChild(a);
  a.click();
  setTimeout(() => {
    URL.revokeObjectURL(url);
    a.remove();
  }, 2000);
}

function downloadLog() {
  return withTask("log", async (name) => {
    const resp = await request("GET", `${taskPath(name)}/log`);
    const blob = await resp.blob();
    saveBlob(blob, `${name}.log`);
    showMessage("ok", `log: saved ${name}.log`);
  });
}

function downloadExport() {
  return withTask("export", async (name) => {
    const resp = await request("GET", `${taskPath(name)}/export`);
    const filename = dispositionFilename(resp.headers.get("Content-Disposition")) || `${name}.export`;
    const blob = await resp.blob();
    saveBlob(blob, filename);
    showMessage("ok", `export: saved ${filename}`);
  });
}

async function changeLogLevel() {
  const name = ui.selected;
  if (!name) return;
  const level = $.logLevel.value;
  const previous = ui.detail && ui.detail.log_level;
  $.logLevel.disabled = true;
  try {
    const resp = await request("PUT", `${taskPath(name)}/log-level`, { level });
    const view = await resp.json().catch(() => null);
    const now = (view && view.log_level) || level;
    if (ui.detail && ui.selected === name) ui.detail.log_level = now;
    $.logLevel.value = now;
    showMessage("ok", `log level: ${now}`);
  } catch (e) {
    if (previous) $.logLevel.value = previous;
    if (e instanceof AuthError) {
      ui.retryAfterAuth = () => {
        $.logLevel.value = level;
        changeLogLevel();
      };
      showMessage("error", "log level: the controller wants its admin token (the form above), then it is retried.");
    } else {
      showMessage("error", `log level: ${e.message}`);
    }
  } finally {
    // Polls already under way may carry the old level: only later ones set the select.
    ui.logLevelMinSeq = ui.pollSeq + 1;
    $.logLevel.disabled = false;
    pollNow();
  }
}

// ---- start ----

function init() {
  const byId = (id) => document.getElementById(id);
  $ = {
    status: byId("refresh-status"),
    message: byId("message"),
    tokenForm: byId("token-form"),
    tokenInput: byId("token-input"),
    tasksBody: byId("tasks").tBodies[0],
    tasksSummary: byId("tasks-summary"),
    detail: byId("task-detail"),
    detailName: byId("detail-name"),
    detailState: byId("detail-state"),
    detailMode: byId("detail-mode"),
    description: byId("detail-description"),
    meta: byId("detail-meta"),
    logLevel: byId("log-level"),
    warnings: byId("warnings"),
    testReport: byId("test-report"),
    testReportTitle: byId("test-report-title"),
    testChecks: byId("test-checks"),
    counts: byId("subtask-counts"),
    filter: byId("subtask-filter"),
    stateFilter: byId("subtask-state"),
    subtasksScroll: byId("subtasks-scroll"),
    subtasksBody: byId("subtasks").tBodies[0],
    agentsBody: byId("agents").tBodies[0],
  };

  const code = el("code", "", "dbhaul tasks create JOB.toml");
  $.noTasksRow = emptyRow(9, "No tasks yet: ", code);
  $.noSubtasksRow = emptyRow(9, "");
  $.noAgentsRow = emptyRow(7, "No agents registered: ", el("code", "", "dbhaul agents register NAME --host HOST"));
  buildMeta();
  buildCounts();

  $.tokenForm.addEventListener("submit", onTokenSubmit);
  byId("message-close").addEventListener("click", hideMessage);
  byId("test-report-close").addEventListener("click", () => {
    $.testReport.hidden = true;
  });

  $.tasksBody.addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-task]");
    if (tr) select(tr.dataset.task);
  });
  $.tasksBody.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter" && ev.key !== " ") return;
    const tr = ev.target.closest("tr[data-task]");
    if (tr) {
      ev.preventDefault();
      select(tr.dataset.task);
    }
  });
  window.addEventListener("hashchange", () => {
    const name = hashTask();
    if (name) select(name, true);
  });

  byId("btn-start").addEventListener("click", () => runAction("start"));
  byId("btn-stop").addEventListener("click", () => runAction("stop"));
  byId("btn-resume").addEventListener("click", () => runAction("resume"));
  byId("btn-test").addEventListener("click", () => runAction("test"));
  byId("btn-log").addEventListener("click", downloadLog);
  byId("btn-export").addEventListener("click", downloadExport);
  $.logLevel.addEventListener("change", changeLogLevel);

  let filterFrame = 0;
  const refilter = () => {
    cancelAnimationFrame(filterFrame);
    filterFrame = requestAnimationFrame(renderSubtasks);
  };
  $.filter.addEventListener("input", refilter);
  $.stateFilter.addEventListener("change", refilter);

  const fromHash = hashTask();
  if (fromHash) select(fromHash, true);
  else renderSubtasks();
  poll();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
