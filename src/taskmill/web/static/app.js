// taskmill dashboard: plain JavaScript, no build step. Every number and decision comes from
// the JSON API under /api/ (described at /api/openapi.json); this file only draws it.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const view = document.getElementById("view");
const state = {
  route: null,          // {name, id?, params}
  project: null,
  paused: false,
  millRunning: false,    // whether a `taskmill run` is going (from its events)
  graph: { t: null, selected: null, lastKey: null },
  review: { drafts: new Map(), reasons: new Map(), seen: null },  // send-back comments (by task) and dismissal reasons (by finding) being typed
  task: { openAttempts: new Set(), openLogs: new Set(), diffs: new Map(), autoOpened: null },
  refreshing: false,
  pending: false,
};

// -- helpers --------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// Terminal escape sequences (colours, titles, cursor moves: CSI, OSC, ...) and control
// characters other than newline and tab. Check output and logs are shown as plain text.
const TERMINAL_CODES = /(?:\x1b\[|\x9b)[0-?]*[ -\/]*[@-~]|(?:\x1b[\]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x80-\x9f]*(?:\x07|\x1b\\|\x9c)|\x1b[ -\/]*[0-~]|[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

function plainText(text) {
  return String(text).replace(TERMINAL_CODES, "");
}

// replaceChildren, flattening arrays and dropping null/undefined/false
function put(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, error) {
    super(error && error.message ? error.message : `HTTP ${status}`);
    this.status = status;
    this.code = error && error.code;
    this.hint = error && error.hint;
    this.fields = error && error.fields;  // a request template's fields that are wrong
  }
}

// The dashboard's token, written into the page by the server: changes need it.
const TOKEN_META = document.querySelector('meta[name="taskmill-token"]');
const TOKEN = TOKEN_META ? TOKEN_META.content : "";

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  if (TOKEN) opts.headers["Authorization"] = "Bearer " + TOKEN;
  if (opts.body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(opts.body);
  } else if (opts.method && opts.method !== "GET") {
    opts.headers["Content-Type"] = "application/json";
    opts.body = "{}";
  }
  const res = await fetch(path, opts);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) throw new ApiError(res.status, data && data.error);
  return data;
}

function flash(message, ok) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.className = ok ? "ok" : "";
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, ok ? 2500 : 8000);
}

function showError(err) {
  const code = err.code ? `[${err.code}] ` : "";
  flash(`${code}${err.message}${err.hint ? " — " + err.hint : ""}`, false);
}

async function act(promise, okMessage) {
  try {
    const out = await promise;
    if (okMessage) flash(okMessage, true);
    await refresh();
    return out;
  } catch (err) {
    showError(err);
    return null;
  }
}

function statusClass(status, ready) {
  if (status === "open") return ready ? "s-ready" : "s-open";
  if (["in_progress", "blocked", "deferred", "closed"].includes(status)) return "s-" + status;
  return "s-other";
}

function statusPill(status, ready, interrupted, held) {
  let label = status === "open" ? (ready ? "ready" : "open · waiting") : status.replace("_", " ");
  // left in progress by a stopped run: the next `taskmill run` resumes it
  if (interrupted) label += " · interrupted";
  if (held) label += " · held (role budget)";
  return h("span", { class: "status " + statusClass(status, ready), "data-status": status }, label);
}

function prio(p) { return h("span", { class: `prio p${p}` }, `P${p}`); }

function taskLink(id, text) { return h("a", { href: `#/task/${encodeURIComponent(id)}`, class: "mono" }, text || id); }

function fmtSeconds(sec) {
  if (sec === null || sec === undefined) return "–";
  sec = Number(sec);
  if (sec < 60) return `${sec.toFixed(sec < 10 ? 1 : 0)}s`;
  const m = Math.floor(sec / 60), r = Math.round(sec % 60);
  if (m < 60) return `${m}m ${r}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

function fmtTokens(n) {
  n = Number(n || 0);
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return String(n);
}

function fmtCost(c) { return c === null || c === undefined ? "–" : "$" + Number(c).toFixed(4); }

function fmtTime(ts) {
  if (!ts) return "–";
  const d = new Date(ts);
  return isNaN(d) ? ts : d.toLocaleString();
}

function truncate(text, n) { return text.length > n ? text.slice(0, n - 1) + "…" : text; }

// -- routing --------------------------------------------------------------------------------

function parseRoute() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "task" && parts[1]) return { name: "task", id: parts[1], params };
  if (parts[0] === "now") return { name: "now", params };
  if (parts[0] === "research") return { name: "research", params };
  if (parts[0] === "workflows") return { name: "workflows", params };
  if (parts[0] === "review") return { name: "review", params };
  if (parts[0] === "new") return { name: "new", params };
  return { name: "graph", params };
}

async function navigate() {
  const route = parseRoute();
  const changed = !state.route || state.route.name !== route.name || state.route.id !== route.id;
  state.route = route;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.nav === route.name);
  }
  if (changed) {
    view.className = route.name === "graph" ? "graph-view" : "";
    view.replaceChildren(h("p", { class: "muted page" }, "Loading…"));
    if (route.name === "task") {
      state.task = { openAttempts: new Set(), openLogs: new Set(), diffs: new Map(), autoOpened: null };
    }
    view.dataset.ready = "";
  }
  await refresh(true);
}

async function refresh(initial) {
  if (state.refreshing) { state.pending = true; return; }
  state.refreshing = true;
  try {
    const route = state.route || parseRoute();
    if (route.name === "task") await renderTask(route, initial);
    else if (route.name === "now") await renderNow(route, initial);
    else if (route.name === "research") await renderResearch(route, initial);
    else if (route.name === "workflows") await renderWorkflows(route, initial);
    else if (route.name === "review") await renderReview(route, initial);
    else if (route.name === "new") await renderNew(route, initial);
    else await renderGraph(route, initial);
    view.dataset.ready = "1";
    view.dataset.refreshedAt = String(Date.now());
  } catch (err) {
    if (err instanceof ApiError && err.status === 404 && state.route && state.route.name === "task") {
      view.replaceChildren(h("div", { class: "page" }, h("h1", {}, "Not found"), h("p", {}, err.message)));
    } else {
      showError(err);
    }
  } finally {
    state.refreshing = false;
    if (state.pending) { state.pending = false; setTimeout(() => refresh(), 0); }
  }
}

// -- header: project, mill state --------------------------------------------------------------

async function loadProject() {
  state.project = await api("/api/project");
  const project = document.getElementById("project");
  project.textContent = project.title = state.project.root;
  setPaused(state.project.paused, state.project.mill_running);
  setService(state.project.mill_service, state.project.person);
}

// running: whether a `taskmill run` is going (undefined: as last known)
function setPaused(paused, running) {
  state.paused = paused;
  if (running !== undefined) state.millRunning = running;
  const badge = document.getElementById("mill-state");
  if (!state.millRunning) {
    badge.textContent = paused ? "no run (paused)" : "no run";
    badge.className = "badge idle";
  } else {
    badge.textContent = paused ? "mill paused" : "mill dispatching";
    badge.className = "badge " + (paused ? "paused" : "running");
  }
  const btn = document.getElementById("pause-toggle");
  btn.textContent = paused ? "Resume mill" : "Pause mill";
  if (state.service) setService(state.service);  // the mill this server runs (door.js)
}

document.getElementById("pause-toggle").addEventListener("click", async () => {
  const out = await act(api(state.paused ? "/api/mill/resume" : "/api/mill/pause", { method: "POST" }));
  if (out) setPaused(out.paused);
});

// -- graph ----------------------------------------------------------------------------------

function graphQuery(params) {
  const q = new URLSearchParams();
  if (params.get("status")) q.set("status", params.get("status"));
  if (params.get("label")) q.set("label", params.get("label"));
  return q.toString();
}

function setGraphParam(name, value) {
  const params = new URLSearchParams(state.route.params);
  if (value) params.set(name, value); else params.delete(name);
  const q = params.toString();
  location.hash = "#/graph" + (q ? "?" + q : "");
}

function graphToolbar(route) {
  const statuses = (state.project && state.project.statuses) || [];
  const chosen = new Set((route.params.get("status") || "").split(",").filter(Boolean));
  const boxes = statuses.filter((st) => st !== "tombstone").map((st) => {
    const box = h("input", { type: "checkbox", value: st, checked: chosen.size === 0 || chosen.has(st) });
    box.addEventListener("change", () => {
      const all = [...document.querySelectorAll(".toolbar input[type=checkbox]")];
      const on = all.filter((b) => b.checked).map((b) => b.value);
      setGraphParam("status", on.length === all.length ? "" : on.join(",") || "none");
    });
    const pills = st === "open"
      ? [statusPill("open", true), statusPill("open", false)]
      : [statusPill(st, false)];
    return h("label", { title: st }, box, pills);
  });
  const labels = (state.project && state.project.labels) || [];
  const select = h("select", { id: "label-filter" },
    h("option", { value: "" }, "all labels"),
    labels.map((lb) => h("option", { value: lb, selected: route.params.get("label") === lb }, lb)));
  select.addEventListener("change", () => setGraphParam("label", select.value));
  return h("div", { class: "toolbar" },
    h("span", { class: "group" }, h("strong", {}, "Status"), boxes),
    h("span", { class: "group" }, h("strong", {}, "Label"), select),
    h("span", { class: "spacer" }),
    h("span", { id: "graph-count", class: "muted" }),
  );
}

function edgePath(points) {
  let d = `M${points[0][0]},${points[0][1]}`;
  for (let i = 1; i < points.length; i++) {
    const [x0, y0] = points[i - 1], [x1, y1] = points[i];
    const dx = (x1 - x0) / 2;
    d += ` C${x0 + dx},${y0} ${x1 - dx},${y1} ${x1},${y1}`;
  }
  return d;
}

function applyTransform() {
  const g = document.getElementById("graph-root");
  const t = state.graph.t;
  if (g && t) g.setAttribute("transform", `translate(${t.x},${t.y}) scale(${t.k})`);
}

function fitGraph(data) {
  const svg = document.querySelector("svg.graph");
  if (!svg || !data.width) return;
  const box = svg.getBoundingClientRect();
  const margin = 16;
  const all = Math.min((box.width - margin) / data.width, (box.height - margin) / data.height);
  // a big backlog: rather than shrinking it to illegible, fill the width and start at the top
  const k = Math.min(1.2, all >= 0.5 ? all : Math.max(all, Math.min((box.width - margin) / data.width, 0.6)));
  state.graph.t = {
    k,
    x: Math.max(margin / 2, (box.width - data.width * k) / 2),
    y: data.height * k <= box.height ? (box.height - data.height * k) / 2 : margin / 2,
  };
  applyTransform();
}

function zoomAt(factor, cx, cy) {
  const t = state.graph.t;
  const k = Math.min(4, Math.max(0.05, t.k * factor));
  const f = k / t.k;
  t.x = cx - (cx - t.x) * f;
  t.y = cy - (cy - t.y) * f;
  t.k = k;
  applyTransform();
}

function wirePanZoom(svg) {
  let drag = null;
  svg.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    drag = { x: ev.clientX, y: ev.clientY, tx: state.graph.t.x, ty: state.graph.t.y, moved: false };
    svg.setPointerCapture(ev.pointerId);
  });
  svg.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 4) { drag.moved = true; svg.classList.add("dragging"); }
    if (drag.moved) {
      state.graph.t.x = drag.tx + dx;
      state.graph.t.y = drag.ty + dy;
      applyTransform();
    }
  });
  const end = (ev) => {
    if (!drag) return;
    const moved = drag.moved;
    drag = null;
    svg.classList.remove("dragging");
    if (!moved) {
      const target = document.elementFromPoint(ev.clientX, ev.clientY);
      const node = target && target.closest && target.closest(".node");
      if (node) location.hash = `#/task/${encodeURIComponent(node.dataset.id)}`;
    }
  };
  svg.addEventListener("pointerup", end);
  svg.addEventListener("pointercancel", () => { drag = null; svg.classList.remove("dragging"); });
  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const box = svg.getBoundingClientRect();
    zoomAt(Math.exp(-ev.deltaY * 0.0015), ev.clientX - box.left, ev.clientY - box.top);
  }, { passive: false });
}

function drawGraph(data) {
  const root = document.getElementById("graph-root");
  const w = data.node_width, hgt = data.node_height;
  const edges = s("g", { class: "edges" }, data.edges.map((e) =>
    s("path", { class: `edge t-${e.type}`, d: edgePath(e.points), "marker-end": "url(#arrow)",
      "data-source": e.source, "data-target": e.target })));
  const nodes = s("g", { class: "nodes" }, data.nodes.map((n) => {
    const cls = `node ${statusClass(n.status, n.ready)}` + (n.id === state.graph.selected ? " selected" : "");
    return s("g", { class: cls, "data-id": n.id, "data-status": n.status, "data-priority": n.priority,
      transform: `translate(${n.x - w / 2},${n.y - hgt / 2})`,
      onmouseenter: () => highlight(n.id, true), onmouseleave: () => highlight(n.id, false) },
      s("title", {}, `${n.id} · ${n.status} · P${n.priority}\n${n.title}` +
        (n.labels.length ? `\nlabels: ${n.labels.join(", ")}` : "")),
      s("rect", { width: w, height: hgt, rx: 6, ry: 6 }),
      s("text", { class: "nid", x: 8, y: 15 }, `${n.id}  P${n.priority}` + (n.assignee ? `  @${truncate(n.assignee, 14)}` : "")),
      s("text", { class: "ttl", x: 8, y: 33 }, truncate(n.title, n.container ? 20 : 27)),
      n.container ? containerProgress(n, w, hgt) : null);
  }));
  root.replaceChildren(edges, nodes);
}

// a container (a task with children): "2/5" and a bar along its bottom edge; it is never
// handed to an agent and closes when its last child closes
function containerProgress(n, w, hgt) {
  const done = n.children ? n.children_closed / n.children : 0;
  return s("g", { class: "progress", "data-closed": n.children_closed, "data-children": n.children },
    s("title", {}, `${n.children_closed} of ${n.children} children closed`),
    s("text", { class: "count", x: w - 8, y: 33, "text-anchor": "end" }, `${n.children_closed}/${n.children}`),
    s("rect", { class: "track", x: 6, y: hgt - 6, width: w - 12, height: 3, rx: 1.5 }),
    s("rect", { class: "done", x: 6, y: hgt - 6, width: (w - 12) * done, height: 3, rx: 1.5 }));
}

function childList(task) {
  if (!task.child_tasks || !task.child_tasks.length) return null;
  return [
    h("h2", {}, `Children (${task.children_closed} of ${task.children} closed)`),
    h("p", { class: "muted" }, "A container: never handed to an agent; it closes when its last child closes."),
    h("ul", { class: "deps", id: "children" }, task.child_tasks.map((c) => h("li", { "data-task": c.id },
      taskLink(c.id), " ", statusPill(c.status, c.ready), " ", truncate(c.title, 60),
      c.container ? h("span", { class: "muted" }, `  ${c.children_closed}/${c.children}`) : null)))];
}

function highlight(id, on) {
  for (const p of document.querySelectorAll(`svg.graph .edge`)) {
    if (p.dataset.source === id || p.dataset.target === id) p.classList.toggle("hot", on);
  }
}

async function renderGraph(route, initial) {
  const key = graphQuery(route.params);
  if (initial || !document.getElementById("graph-root") || state.graph.lastKey !== key) {
    await loadProject();
    const svg = s("svg", { class: "graph", id: "graph" },
      s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
        markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#9aa3b2" }))),
      s("g", { id: "graph-root" }));
    const zoom = h("div", { class: "zoom" },
      h("button", { type: "button", title: "zoom in", onclick: () => { const b = svg.getBoundingClientRect(); zoomAt(1.25, b.width / 2, b.height / 2); } }, "+"),
      h("button", { type: "button", title: "zoom out", onclick: () => { const b = svg.getBoundingClientRect(); zoomAt(0.8, b.width / 2, b.height / 2); } }, "−"),
      h("button", { type: "button", title: "fit", onclick: () => state.graph.data && fitGraph(state.graph.data) }, "⤢"));
    view.replaceChildren(graphToolbar(route), h("div", { class: "graph-wrap" }, svg, zoom));
    wirePanZoom(svg);
    state.graph.t = null;
    state.graph.lastKey = key;
  }
  const data = await api("/api/graph" + (key ? "?" + key : ""));
  state.graph.data = data;
  drawGraph(data);
  const count = document.getElementById("graph-count");
  count.textContent = `${data.nodes.length} tasks · ${data.edges.length} dependencies`;
  count.dataset.nodes = String(data.nodes.length);
  if (!data.nodes.length) {
    document.getElementById("graph-root").replaceChildren(
      s("text", { x: 40, y: 60, fill: "#6b7385" }, "No tasks match these filters."));
  }
  if (!state.graph.t) fitGraph(data);
  else applyTransform();
}

// -- task page ------------------------------------------------------------------------------

function field(name, value, opts) {
  if (value === null || value === undefined || value === "" || (Array.isArray(value) && !value.length)) return [];
  let v = value;
  if (typeof value === "object" && !(value instanceof Node)) v = h("code", {}, JSON.stringify(value));
  return [h("dt", {}, name), h("dd", Object.assign({ "data-field": name }, opts || {}), v)];
}

function depList(items, key) {
  if (!items.length) return h("p", { class: "muted" }, "none");
  return h("ul", { class: "deps" }, items.map((d) => h("li", {},
    h("span", { class: "dep-type" }, d.type),
    taskLink(d[key]),
    d.status ? statusPill(d.status, false) : null,
    h("span", {}, d.title || h("em", { class: "muted" }, "(missing)")))));
}

function renderChecks(checks) {
  return checks.map((c) => h("div", { class: "check" },
    h("span", { class: c.ok ? "ok-mark" : "bad-mark" }, c.ok ? "✓ " : "✗ "),
    h("span", { class: "cmd" }, c.command),
    h("span", { class: "muted" }, `  exit ${c.exit_code} · ${fmtSeconds(c.duration_s)}${c.timed_out ? " · timed out" : ""}`),
    c.output_tail ? h("pre", { class: "wrap" }, plainText(c.output_tail)) : null));
}

function renderDiff(text) {
  const pre = h("pre", { class: "diff" });
  for (const line of text.split("\n")) {
    let cls = null;
    if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff --git")) cls = "file";
    else if (line.startsWith("+")) cls = "add";
    else if (line.startsWith("-")) cls = "del";
    else if (line.startsWith("@@")) cls = "hunk";
    pre.append(cls ? h("span", { class: cls }, line) : line + "\n");
  }
  return pre;
}

// an attempt's diff is from the commit it started from on the task's branch to the one it
// made; an attempt that made none shows "no change", never the commit it started from
function diffContent(d) {
  if (d.error) return [h("p", { class: "bad-mark" }, d.error)];
  if (d.no_change) return [h("p", { class: "muted no-change" }, "No change: this attempt left the branch as it was.")];
  const out = [];
  if (d.note) out.push(h("p", { class: "muted" }, d.note));
  out.push(renderDiff(d.diff));
  if (d.truncated) out.push(h("p", { class: "muted" }, "(truncated)"));
  return out;
}

function diffSection(task, a) {
  if (!a.commit_sha) {
    if (a.running) return h("p", { class: "muted" }, "No commit yet.");
    if (a.outcome === "interrupted" || a.outcome === "rate_limited") return h("p", { class: "muted" }, "No commit from this attempt.");
    return h("p", { class: "muted no-change" }, "No change: this attempt left the branch as it was.");
  }
  const box = h("div", { class: "diff-box", "data-attempt": a.id });
  const cached = state.task.diffs.get(a.id);
  if (cached) {
    box.append(...diffContent(cached));
    return box;
  }
  box.append(h("p", { class: "muted" }, `Loading the diff of ${a.commit_sha.slice(0, 12)}…`));
  api(`/api/tasks/${encodeURIComponent(task.id)}/attempts/${a.id}/diff`)
    .then((d) => { state.task.diffs.set(a.id, d); box.replaceChildren(...diffContent(d)); })
    .catch((err) => { state.task.diffs.set(a.id, { error: err.message }); box.replaceChildren(...diffContent({ error: err.message })); });
  return box;
}

function logSection(task, a, kind) {
  const key = `${a.id}:${kind}`;
  const pre = h("pre", { class: "wrap log" }, "…");
  const det = h("details", { class: "sub", "data-log": key, open: state.task.openLogs.has(key) },
    h("summary", {}, { agent: "Agent log", checks: "Checks log", review: "Review log" }[kind]), pre);
  const load = () => api(`/api/tasks/${encodeURIComponent(task.id)}/attempts/${a.id}/log?kind=${kind}`)
    .then((d) => { pre.textContent = (d.truncated ? "[… earlier output cut …]\n" : "") + plainText(d.text); })
    .catch((err) => { pre.textContent = `${err.code ? "[" + err.code + "] " : ""}${err.message}`; });
  det.addEventListener("toggle", () => {
    if (det.open) { state.task.openLogs.add(key); load(); } else state.task.openLogs.delete(key);
  });
  if (det.open) load();
  return det;
}

function renderAttempt(task, a) {
  const outcome = a.running ? "running" : a.outcome;
  const det = h("details", { class: "attempt", "data-attempt": a.id, open: state.task.openAttempts.has(a.id) },
    h("summary", {},
      h("strong", { title: "iterations count from 1 in each lap (a reopened task starts a new lap)" }, `#${a.iteration}`),
      h("span", { class: "muted attempt-run", title: "the run and the lap of the task this attempt belongs to" },
        `run ${a.run_id || "?"} · lap ${a.lap || 1}`),
      h("span", { class: `outcome ${outcome}` }, outcome),
      h("span", {}, a.agent || "?", a.model ? h("span", { class: "muted" }, ` / ${a.model}`) : null),
      h("span", { class: "muted" }, fmtTime(a.started_at)),
      h("span", { title: "duration" }, fmtSeconds(a.duration_s)),
      h("span", {}, `${fmtTokens(a.input_tokens)} in / ${fmtTokens(a.output_tokens)} out`),
      h("span", {}, fmtCost(a.cost_usd)),
      a.commit_sha ? h("code", {}, a.commit_sha.slice(0, 10)) : null));
  const body = h("div", { class: "body" });
  const detail = a.detail || {};
  if (detail.rejection) body.append(h("h3", {}, "Rejected by the merge queue"), h("p", {}, plainText(detail.rejection.split("\n")[0])));
  if (detail.failure) body.append(h("h3", {}, `Failure (${detail.failure_kind || "checks"})`), h("pre", { class: "wrap" }, plainText(detail.failure)));
  if (detail.agent_error) body.append(h("h3", {}, "Agent error"), h("pre", { class: "wrap" }, plainText(detail.agent_error)));
  if (detail.usage_error) body.append(h("h3", {}, "Usage not counted"), h("pre", { class: "wrap" }, plainText(detail.usage_error)));
  if (detail.unverified) body.append(h("p", { class: "bad-mark" }, "Unverified: " + plainText(detail.unverified)));
  if (detail.checks && detail.checks.length) body.append(h("h3", {}, "Checks"), ...renderChecks(detail.checks));
  if (detail.merge_checks && detail.merge_checks.length) body.append(h("h3", {}, "Project checks on the merged result"), ...renderChecks(detail.merge_checks));
  body.append(h("h3", {}, "Diff"));
  const fill = () => {
    body.append(diffSection(task, a));
    if (a.has_log) body.append(logSection(task, a, "agent"));
    if (a.has_checks_log) body.append(logSection(task, a, "checks"));
    if (a.has_review_log) body.append(logSection(task, a, "review"));
    if (!a.has_log && a.log_path) body.append(h("p", { class: "muted" }, `log: ${a.log_path} (not found)`));
  };
  let filled = false;
  if (det.open) { fill(); filled = true; }
  det.addEventListener("toggle", () => {
    if (det.open) { state.task.openAttempts.add(a.id); if (!filled) { fill(); filled = true; } }
    else state.task.openAttempts.delete(a.id);
  });
  det.append(body);
  return det;
}

function actionsKey(task) { return `${task.id}:${task.status}:${task.priority}:${task.awaiting_approval ? "a" : ""}`; }

function taskActions(task) {
  // changing the select sends the new priority at once: a live refresh cannot lose it
  const select = h("select", { id: "priority-select", title: "priority", onchange: () =>
    act(api(`/api/tasks/${encodeURIComponent(task.id)}`, { method: "PATCH", body: { priority: Number(select.value) } }), `priority set to P${select.value}`) },
    [0, 1, 2, 3, 4].map((p) => h("option", { value: p, selected: task.priority === p }, `P${p}`)));
  const buttons = [];
  if (task.awaiting_approval) {  // a person approves it (or sends it back) on the review page
    buttons.push(h("a", { class: "button primary", id: "open-approval", href: "#/review" }, "Review and approve"));
  } else if (task.status === "blocked") {
    buttons.push(h("button", { type: "button", id: "unblock", onclick: () =>
      act(api(`/api/tasks/${encodeURIComponent(task.id)}/unblock`, { method: "POST" }), "unblocked") }, "Unblock"));
  }
  if (task.status !== "open") {
    buttons.push(h("button", { type: "button", id: "reopen", onclick: () =>
      act(api(`/api/tasks/${encodeURIComponent(task.id)}/reopen`, { method: "POST" }), "reopened") }, "Reopen"));
  }
  return h("div", { class: "actions", "data-key": actionsKey(task) },
    h("div", { class: "row" }, h("label", {}, "Priority ", select)),
    buttons.length ? h("div", { class: "row" }, buttons) : null);
}

function commentForm(taskId) {
  const text = h("textarea", { id: "comment-text", placeholder: "A comment (the next iteration's prompt includes it)" });
  const send = h("button", { type: "button", class: "primary", id: "comment-send", onclick: async () => {
    if (!text.value.trim()) return;
    const out = await act(api(`/api/tasks/${encodeURIComponent(taskId)}/comments`, { method: "POST", body: { text: text.value } }), "comment added");
    if (out) text.value = "";
  } }, "Add comment");
  return h("div", { class: "panel", id: "comment-form" }, h("h3", {}, "Comment"), text, h("div", { class: "row", style: "margin-top:6px" }, send));
}

async function renderTask(route, initial) {
  const task = await api(`/api/tasks/${encodeURIComponent(route.id)}`);
  if (initial && !state.project) loadProject().catch(() => {});
  let data = document.getElementById("task-data");
  if (!data || data.dataset.task !== task.id) {
    data = h("div", { id: "task-data", "data-task": task.id });
    const side = h("div", { id: "task-side" });
    const actions = h("div", { id: "task-actions", class: "panel" });
    view.replaceChildren(h("div", { class: "page" },
      h("p", {}, h("a", { href: "#/graph" }, "← graph")),
      h("div", { class: "cols" }, data,
        h("div", {}, actions, h("div", { style: "height:12px" }), commentForm(task.id), side))));
  }
  // open the latest attempt with a commit the first time the page shows
  if (state.task.autoOpened !== task.id) {
    state.task.autoOpened = task.id;
    const withCommit = task.attempts.filter((a) => a.commit_sha);
    const last = withCommit.length ? withCommit[withCommit.length - 1] : task.attempts[task.attempts.length - 1];
    if (last) state.task.openAttempts.add(last.id);
  }
  const dl = h("dl", { class: "fields" },
    field("status", statusPill(task.status, task.ready, task.interrupted, task.held), { "data-value": task.status }),
    field("priority", `P${task.priority}`, { "data-value": String(task.priority) }),
    field("type", task.issue_type),
    field("assignee", task.assignee),
    field("agent", task.agent),
    field("role", task.role),
    field("held", task.held),
    field("labels", task.labels.join(", ")),
    field("parent", task.parent ? taskLink(task.parent) : null),
    field("checks", (task.checks || []).length ? h("div", {}, task.checks.map((c) => h("div", {}, h("code", {}, c)))) : null),
    field("close reason", task.close_reason),
    field("external ref", task.external_ref),
    field("created", fmtTime(task.created_at)),
    field("updated", fmtTime(task.updated_at)),
    field("closed", task.closed_at ? fmtTime(task.closed_at) : null),
    field("metadata", task.metadata),
    field("hints", task.hints));
  const text = [];
  for (const [name, key] of [["Description", "description"], ["Design", "design"], ["Acceptance criteria", "acceptance_criteria"], ["Notes", "notes"]]) {
    if (task[key]) text.push(h("h2", {}, name), h("div", { class: "panel", style: "white-space:pre-wrap" }, task[key]));
  }
  const attempts = task.attempts.length
    ? task.attempts.slice().reverse().map((a) => renderAttempt(task, a))
    : [h("p", { class: "muted" }, "No attempts yet.")];
  put(data,
    h("div", { class: "task-head" },
      h("span", { class: "tid" }, task.id), statusPill(task.status, task.ready, task.interrupted, task.held), prio(task.priority)),
    h("h1", { id: "task-title" }, task.title),
    h("p", { id: "status-line", class: "status-line", "data-status": task.status }, task.status_line),
    h("div", { class: "panel" }, dl),
    text,
    childList(task),
    h("h2", {}, `Attempts (${task.attempts.length})`),
    h("div", { id: "attempts" }, attempts),
    h("h2", {}, `Comments (${task.comments.length})`),
    task.comments.length ? task.comments.map((c) => h("div", { class: "comment" },
      h("div", { class: "meta" }, `${c.author} · ${fmtTime(c.created_at)}`),
      h("div", { class: "text" }, c.text))) : h("p", { class: "muted" }, "No comments."));
  // the actions are redrawn only when what they offer changes (not under the user's hand)
  const actionsBox = document.getElementById("task-actions");
  const current = actionsBox.querySelector(".actions");
  if (!current || current.dataset.key !== actionsKey(task)) {
    put(actionsBox, h("h3", {}, "Actions"), taskActions(task));
  }
  const side = document.getElementById("task-side");
  put(side,
    h("h2", {}, "Depends on"),
    task.blocked_by.length ? h("p", {}, h("span", { class: "bad-mark" }, "waiting on: "), task.blocked_by.join(", ")) : null,
    depList(task.dependencies, "depends_on_id"),
    h("h2", {}, "Needed by"),
    depList(task.dependents, "issue_id"));
  document.title = `${task.id} · taskmill`;
}

// -- now ------------------------------------------------------------------------------------

function totalsTable(title, rows) {
  const entries = Object.entries(rows);
  return h("div", { class: "panel" }, h("h3", {}, title),
    entries.length ? h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, title.replace("By ", "")), h("th", { class: "num" }, "attempts"),
        h("th", { class: "num" }, "passed"), h("th", { class: "num" }, "tokens in"), h("th", { class: "num" }, "tokens out"),
        h("th", { class: "num" }, "cost"), h("th", { class: "num" }, "time"))),
      h("tbody", {}, entries.map(([name, t]) => h("tr", {},
        h("td", {}, name), h("td", { class: "num" }, t.attempts), h("td", { class: "num" }, t.passed),
        h("td", { class: "num" }, fmtTokens(t.input_tokens)), h("td", { class: "num" }, fmtTokens(t.output_tokens)),
        h("td", { class: "num" }, fmtCost(t.cost_usd)), h("td", { class: "num" }, fmtSeconds(t.seconds))))))
      : h("p", { class: "muted" }, "No attempts yet."));
}

function eventText(e) {
  const skip = new Set(["ts", "event", "task", "title"]);
  return Object.entries(e).filter(([k]) => !skip.has(k))
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join("  ");
}

// -- review: approvals and the reviewer's hit rate ---------------------------------------------

function fmtRate(r) { return r === null || r === undefined ? "–" : (100 * r).toFixed(0) + "%"; }

function hitRateTable(page) {
  const rows = page.hit_rates;
  return h("div", { class: "panel", id: "hit-rate" },
    h("h3", {}, `Reviewer hit rate (last ${page.window_days} days)`),
    h("p", { class: "muted" }, `resolved / (resolved + dismissed); confidence threshold ${page.threshold.toFixed(2)}`
      + (page.target_hit_rate ? `, target ${fmtRate(page.target_hit_rate)}` : "")),
    rows.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["repository", "reviewer", "severity", "reported", "open", "resolved", "dismissed", "hit rate"]
        .map((c, i) => h("th", { class: i > 2 ? "num" : null }, c)))),
      h("tbody", {}, rows.map((r) => h("tr", { dataset: { reviewer: r.reviewer, severity: r.severity } },
        h("td", {}, r.repo), h("td", {}, r.reviewer), h("td", {}, r.severity),
        h("td", { class: "num" }, r.reported), h("td", { class: "num" }, r.open),
        h("td", { class: "num" }, r.resolved), h("td", { class: "num" }, r.dismissed),
        h("td", { class: "num rate" }, fmtRate(r.hit_rate))))))
      : h("p", { class: "muted" }, "No findings yet."));
}

function findingItem(f) {
  return h("li", { class: `finding f-${f.fate}`, dataset: { id: f.id } },
    h("span", { class: `sev sev-${f.severity}` }, f.severity), " ",
    h("span", { class: "mono" }, `${f.file}:${f.line_start}${f.line_end !== f.line_start ? "-" + f.line_end : ""}`), " ",
    h("strong", {}, f.title), ` (${f.confidence.toFixed(2)}, ${f.fate}${f.blocking ? ", blocking" : ""}) `,
    h("span", {}, f.explanation),
    f.suggested_fix ? h("div", { class: "muted" }, "Suggested fix: ", h("code", {}, f.suggested_fix)) : null,
    f.reason ? h("div", { class: "muted" }, `${f.fate} by ${f.decided_by}: ${f.reason}`) : null,
    f.fate === "open" ? dismissForm(f) : null);
}

function dismissForm(f) {
  // kept in a draft, like a send-back comment: a live refresh may draw the card again
  const drafts = state.review.reasons;
  const reason = h("input", { type: "text", class: "dismiss-reason", placeholder: "why it is wrong",
    oninput: () => drafts.set(f.id, reason.value) });
  reason.value = drafts.get(f.id) || "";
  return h("span", { class: "dismiss" }, " ", reason, h("button", { type: "button", class: "dismiss-finding", onclick: async () => {
    const why = drafts.get(f.id) || reason.value;
    if (!why.trim()) { flash("give a reason to dismiss it", false); return; }
    const out = await act(api(`/api/findings/${encodeURIComponent(f.id)}/dismiss`, { method: "POST", body: { reason: why } }), `${f.id} dismissed`);
    if (out) drafts.delete(f.id);
  } }, "Dismiss"));
}

function approvalCard(a) {
  const id = a.task.id;
  const drafts = state.review.drafts;
  const text = h("textarea", { class: "send-back-text", placeholder: "What to change (the agent's next prompt shows it)",
    oninput: () => drafts.set(id, text.value) });
  text.value = drafts.get(id) || "";
  const approveButton = h("button", { type: "button", class: "primary approve", onclick: () =>
    act(api(`/api/tasks/${encodeURIComponent(id)}/approve`, { method: "POST" }), `${id} approved: the mill lands it next`) }, "Approve");
  const sendBack = h("button", { type: "button", class: "send-back", onclick: async () => {
    // a live refresh may have drawn this card again while the comment was typed: the draft
    // holds what was typed in either
    const comment = drafts.get(id) || text.value;
    if (!comment.trim()) { flash("write what to change first", false); return; }
    const out = await act(api(`/api/tasks/${encodeURIComponent(id)}/reject`, { method: "POST", body: { comment } }), `${id} sent back`);
    if (out) drafts.delete(id);
  } }, "Send back");
  return h("div", { class: "panel approval", dataset: { task: id } },
    h("h2", {}, taskLink(id), " ", a.task.title),
    h("p", { class: "muted" }, `commit ${(a.commit || "?").slice(0, 12)} · waiting since ${fmtTime(a.since)}`),
    h("h3", {}, "Checks"), a.checks.length ? renderChecks(a.checks) : h("p", { class: "muted" }, "No checks ran."),
    h("h3", {}, "Review findings"), a.findings.length ? h("ul", { class: "findings" }, a.findings.map(findingItem)) : h("p", { class: "muted" }, "None."),
    h("h3", {}, "Agent's notes"), a.notes || a.agent_comments.length
      ? [a.notes ? h("pre", { class: "wrap notes" }, a.notes) : null, a.agent_comments.map((c) => h("p", { class: "agent-comment" }, c))]
      : h("p", { class: "muted" }, "None."),
    h("details", { class: "sub", open: true }, h("summary", {}, "Diff"), renderDiff(a.diff), a.truncated ? h("p", { class: "muted" }, "(truncated)") : null),
    h("div", { class: "row" }, approveButton),
    h("div", { class: "row" }, text, sendBack));
}

async function renderReview(route, initial) {
  const page = await api("/api/review");
  if (initial && !state.project) loadProject().catch(() => {});
  // a live refresh that brings nothing new leaves the page as it is: drawn again, the card
  // being typed in loses its focus, and a click on its buttons meanwhile can be lost
  const seen = JSON.stringify(page);
  if (!initial && seen === state.review.seen && document.getElementById("review-page")) return;
  state.review.seen = seen;
  put(view, h("div", { class: "page", id: "review-page" },
    h("h1", {}, "Review"),
    h("h2", {}, `Awaiting approval (${page.approvals.length})`),
    page.approvals.length ? page.approvals.map(approvalCard) : h("p", { class: "muted", id: "no-approvals" }, "Nothing awaits approval."),
    hitRateTable(page)));
}

async function renderNow(route, initial) {
  const now = await api("/api/now");
  setPaused(now.paused, now.mill_running);
  if (initial && !state.project) loadProject().catch(() => {});
  const t = now.totals.all;
  // under the Temporal executor: which worker (host) runs each task, and the workers' health
  const placed = Object.fromEntries(((now.cluster && now.cluster.tasks) || []).map((c) => [c.task, c]));
  const cluster = now.cluster
    ? (now.cluster.error ? h("p", { class: "reason" }, now.cluster.error)
      : now.cluster.workers.length
        ? h("table", { id: "cluster-workers" },
            h("thead", {}, h("tr", {}, ["worker", "last heartbeat", "tasks"].map((c) => h("th", {}, c)))),
            h("tbody", {}, now.cluster.workers.map((w) => h("tr", { "data-worker": w.worker },
              h("td", { class: "mono" }, w.worker), h("td", {}, w.last_seen ? fmtTime(w.last_seen) : "–"),
              h("td", {}, now.cluster.tasks.filter((c) => c.worker === w.worker)
                .map((c, i) => [i ? ", " : "", taskLink(c.task)]))))))
        : h("p", { class: "muted" }, `No worker polls ${now.cluster.address}: start one with taskmill worker.`))
    : null;
  const workers = now.workers.length
    ? h("table", { id: "workers" },
        h("thead", {}, h("tr", {}, ["task", "", "doing", "agent", "since", now.cluster ? "worker" : "assignee"].map((c) => h("th", {}, c)))),
        h("tbody", {}, now.workers.map((w) => h("tr", { "data-task": w.task.id },
          h("td", {}, taskLink(w.task.id)), h("td", {}, truncate(w.task.title, 60)),
          h("td", {}, h("strong", {}, w.phase)),
          h("td", {}, w.attempt ? `${w.attempt.agent || "?"}${w.attempt.model ? " / " + w.attempt.model : ""}` : "–"),
          h("td", {}, w.attempt ? fmtSeconds(w.attempt.duration_s) : (w.last_event ? fmtTime(w.last_event.ts) : "–")),
          h("td", { class: "muted" }, now.cluster ? ((placed[w.task.id] || {}).worker || "–") : (w.task.assignee || ""))))))
    : h("p", { class: "muted" }, now.paused ? "The mill is paused: nothing new is dispatched." : "No task in progress.");
  const mergeQueue = now.merge_queue.length
    ? h("ol", { id: "merge-queue" }, now.merge_queue.map((q) => h("li", {}, taskLink(q.task.id), " ", truncate(q.task.title, 60),
        h("span", { class: "muted" }, `  queued ${fmtTime(q.queued_at)}`))))
    : h("p", { class: "muted" }, "Empty.");
  const batches = (now.merge_batches || []).length
    ? h("ol", { id: "merge-batches" }, now.merge_batches.slice().reverse().map((b) => h("li", { "data-state": b.state },
        h("div", {}, h("strong", {}, b.state), `  ${b.tasks.length} task${b.tasks.length === 1 ? "" : "s"} on ${b.base.slice(0, 10)}: `,
          b.tasks.map((id, i) => [i ? ", " : "", taskLink(id), b.outcomes[id] ? ` (${b.outcomes[id]})` : ""]),
          h("span", { class: "muted" }, `  ${fmtTime(b.started_at)}`)),
        b.checks.map((c) => h("div", { class: "mono" },
          `${c.speculative ? "speculative checks (the next batch, on top of this one)" : "checks"} on ${c.tasks.join(" + ")}: ${c.cached ? "cached " : ""}${c.passed ? "green" : "red"}${c.retry ? ` (retry ${c.retry})` : ""}`)),
        b.bisect.map((s) => h("div", { class: "mono" }, `bisect: ${s.tested.join(" + ")} ${s.passed ? "green" : "red"}`)),
        b.landed.length ? h("div", {}, `landed: ${b.landed.join(", ")}`) : null)))
    : h("p", { class: "muted" }, "No batch yet.");
  const blocked = now.blocked.length
    ? h("table", { id: "blocked" },
        h("thead", {}, h("tr", {}, ["task", "", "why"].map((c) => h("th", {}, c)))),
        h("tbody", {}, now.blocked.map((b) => h("tr", { "data-task": b.id },
          h("td", {}, taskLink(b.id), " ", statusPill(b.status, false)),
          h("td", {}, truncate(b.title, 50)),
          h("td", {},
            b.blocked_by.length ? h("div", {}, "waits on ", b.blocked_by.map((id, i) => [i ? ", " : "", taskLink(id)])) : null,
            (b.reasons || []).length ? b.reasons.map((r) => h("div", { class: "reason" }, r))
              : b.held_by_parent.length ? h("div", {}, "held by parent ", b.held_by_parent.map((id, i) => [i ? ", " : "", taskLink(id)])) : null,
            b.last_comment ? h("div", { class: "comment" }, h("div", { class: "meta" }, `${b.last_comment.author} · ${fmtTime(b.last_comment.created_at)}`),
              h("div", { class: "text" }, truncate(b.last_comment.text, 400))) : null)))))
    : h("p", { class: "muted" }, "Nothing is blocked.");
  const events = now.events.length
    ? h("table", { class: "events" }, h("tbody", {}, now.events.slice().reverse().map((e) => h("tr", {},
        h("td", { class: "ts" }, fmtTime(e.ts)), h("td", {}, h("strong", {}, e.event)),
        h("td", {}, e.task ? taskLink(e.task) : ""), h("td", { class: "mono" }, truncate(eventText(e), 160))))))
    : h("p", { class: "muted" }, "No mill events yet (.taskmill/run/events.ndjson).");
  const st = now.stats;
  view.replaceChildren(h("div", { class: "page", id: "now" },
    h("h1", {}, "Now"),
    h("p", { class: "muted" },
      `${st.total} tasks · ${st.ready} ready · ${st.blocked} blocked · ${(st.by_status || {}).closed || 0} closed · `,
      `${t.attempts} attempts · ${fmtTokens(t.input_tokens + t.output_tokens)} tokens · ${fmtCost(t.cost_usd)} · ${fmtSeconds(t.seconds)} of agent time`,
      now.mill_running ? " · a mill run is going" : ""),
    h("h2", {}, `Workers (${now.workers.length})`), workers,
    cluster ? h("h3", {}, `Worker machines (${now.cluster.workers.length})`) : null, cluster,
    h("h2", {}, `Merge queue (${now.merge_queue.length})`), mergeQueue,
    h("h3", {}, "Batches"), batches,
    h("h2", {}, "Totals"),
    h("div", { class: "grid2" }, totalsTable("By agent", now.totals.by_agent), totalsTable("By model", now.totals.by_model)),
    h("h2", {}, `Blocked (${now.blocked.length})`), blocked,
    h("h2", {}, "Recent mill events"), events));
}

// -- workflows: formulas' instances, orders ------------------------------------------------

async function renderWorkflows(route, initial) {
  const data = await api("/api/workflows");
  if (initial && !state.project) loadProject().catch(() => {});
  const groups = data.formulas.length
    ? h("div", { id: "formula-instances" }, data.formulas.map((f) => h("details", {
        class: "panel instance", "data-epic": f.epic, open: f.status !== "closed" ? "" : null },
        h("summary", {}, taskLink(f.epic), " ", statusPill(f.status, false), " ",
          h("strong", {}, f.formula), `  ${truncate(f.title, 70)}  `,
          h("span", { class: "muted" }, `${f.closed} of ${f.total} closed`
            + (f.order ? ` · poured by order ${f.order}` : "") + (f.key ? ` · key ${f.key}` : ""))),
        h("table", {}, h("tbody", {}, f.tasks.map((t) => h("tr", { "data-task": t.id },
          h("td", { class: "mono" }, t.step || ""), h("td", {}, taskLink(t.id)),
          h("td", {}, statusPill(t.status, false)), h("td", {}, truncate(t.title, 80)))))))))
    : h("p", { class: "muted" }, "No formula poured yet (taskmill pour NAME).");
  const orders = data.orders_error
    ? h("p", { class: "reason" }, data.orders_error)
    : data.orders.length
      ? h("table", { id: "orders" },
          h("thead", {}, h("tr", {}, ["order", "what", "when", "last firing", "next firing", "why it did not fire"].map((c) => h("th", {}, c)))),
          h("tbody", {}, data.orders.map((o) => h("tr", { "data-order": o.order },
            h("td", {}, h("strong", {}, o.order)), h("td", {}, o.what), h("td", {}, o.when),
            h("td", {}, o.last ? [fmtTime(o.last.at), " ", o.last.task ? taskLink(o.last.task) : ""] : "never"),
            h("td", {}, o.next || "–"), h("td", { class: "muted" }, o.why_not || "")))))
      : h("p", { class: "muted" }, "No orders (.taskmill/orders/NAME.toml).");
  view.replaceChildren(h("div", { class: "page", id: "workflows" },
    h("h1", {}, "Workflows"),
    h("h2", {}, `Orders (${data.orders.length})`), orders,
    h("h2", {}, `Formula instances (${data.formulas.length})`), groups));
}

// -- live updates ---------------------------------------------------------------------------

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/stream");
  source.onopen = () => { live.className = "live on"; live.textContent = "live"; };
  source.onerror = () => { live.className = "live off"; live.textContent = "reconnecting"; };
  source.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    if (msg.type === "hello") { setPaused(msg.paused, msg.running); return; }
    if (msg.type === "mill" && msg.running !== undefined) setPaused(state.paused, msg.running);
    if (msg.type === "paused") setPaused(msg.paused);
    if (msg.type === "service") { setService(msg.service); return; }
    // the graph shows only what the ledger holds; the other views show mill events too
    if (state.route && state.route.name === "graph" && msg.type !== "ledger") return;
    refresh();
  };
}

window.addEventListener("hashchange", navigate);
window.addEventListener("resize", () => { if (state.route && state.route.name === "graph" && state.graph.data) fitGraph(state.graph.data); });
// started once every script of the page has run: research.js and door.js define what this one
// calls (setService, their routes); a fetch answered while door.js was still loading called
// setService before it existed
window.addEventListener("DOMContentLoaded", () => {
  loadProject().catch(showError).finally(() => { navigate(); connect(); });
});
