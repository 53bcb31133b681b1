// dbhaul status pages: helpers both pages load before their own script (index.html
// before app.js, agent.html before agent.js): formatting, state badges, stage bars and
// in-place row updates. Plain ES2020 in the global scope, no dependencies.
"use strict";


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
