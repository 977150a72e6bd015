// taskmill dashboard: the door for people. The "New request" form (a request template, its
// fields, dependencies picked from existing tasks, labels, priority), and starting or stopping
// the mill `taskmill serve --mill` runs. Uses app.js's helpers (h, put, api, act, flash...).
"use strict";

// -- the mill this dashboard runs, and who the page acts as -------------------------------------

const SERVICE_LABEL = { stopped: "Start mill", watching: "Stop mill", running: "Stop mill", stopping: "Stop now" };

// what the badge says of a started mill (`taskmill watch` in this server)
function serviceText(service) {
  if (state.paused) return "mill paused";
  if (service.state === "stopping") return "mill stopping";
  if (service.state === "running") return `mill working (${service.working} task${service.working === 1 ? "" : "s"})`;
  return "mill watching" + (service.next_order ? `: next order ${fmtTime(service.next_order)}` : "");
}

// service: the MillService status (null: this dashboard runs no mill; undefined: as known)
function setService(service, person) {
  if (person !== undefined) {
    const who = document.getElementById("person");
    who.hidden = !person;
    who.textContent = person ? `as ${person}` : "";
  }
  if (service === undefined) return;
  state.service = service;
  const btn = document.getElementById("mill-toggle");
  btn.hidden = !service;
  if (!service) return;
  btn.textContent = SERVICE_LABEL[service.state] || "Mill";
  btn.dataset.state = service.state;
  btn.title = service.state === "stopping"
    ? "Running turns get their grace, then are cut: stop again to cut them now"
    : service.state === "stopped" ? "Start the mill in this server" : "Stop the mill: nothing new starts, running turns finish";
  const badge = document.getElementById("mill-state");
  if (service.state !== "stopped") {
    badge.textContent = serviceText(service);
    badge.title = service.state === "watching"
      ? `Watching the ledger: new work is picked up at once${service.orders ? `; ${service.orders} order${service.orders === 1 ? "" : "s"} fire on time` : ""}`
      : "";
    badge.className = "badge " + (state.paused || service.state === "stopping" ? "paused" : "running");
  } else {
    badge.textContent = service.error ? "mill stopped (error)" : "mill stopped";
    badge.className = "badge idle";
    if (service.error) badge.title = service.error;
  }
  badge.dataset.service = service.state;
}

document.getElementById("mill-toggle").addEventListener("click", async () => {
  const stopped = !state.service || state.service.state === "stopped";
  const out = await act(api(stopped ? "/api/mill/start" : "/api/mill/stop", { method: "POST" }),
    stopped ? "mill started" : "mill stopping: running turns get their grace");
  if (out) setService(out);
});

// -- New request ------------------------------------------------------------------------------

const door = { templates: null, tasks: null, chosen: null, deps: new Set() };

function fieldInput(f) {
  const id = `field-${f.name}`;
  const common = { id, name: f.name, "data-field": f.name, required: f.required || null, "aria-describedby": `error-${f.name}` };
  const value = f.default === null || f.default === undefined ? "" : String(f.default);
  if (f.kind === "textarea") return h("textarea", Object.assign({ rows: 4 }, common), value);
  if (f.kind === "choice") {
    return h("select", common,
      f.required && !value ? h("option", { value: "" }, "choose…") : null,
      f.choices.map((c) => h("option", { value: c, selected: c === value }, c)));
  }
  const input = h("input", Object.assign({ type: f.kind === "number" ? "number" : "text", value,
    min: f.min === null ? null : f.min, max: f.max === null ? null : f.max, step: f.kind === "number" ? "any" : null }, common));
  return input;
}

function fieldRow(f) {
  return h("div", { class: "form-row", "data-row": f.name },
    h("label", { for: `field-${f.name}` }, f.label, f.required ? h("span", { class: "req", title: "required" }, " *") : null),
    fieldInput(f),
    f.help ? h("div", { class: "help muted" }, f.help) : null,
    h("div", { class: "field-error", id: `error-${f.name}`, role: "alert" }));
}

function depPicker() {
  const filter = h("input", { type: "search", id: "dep-filter", placeholder: "Filter tasks by id or title" });
  const list = h("div", { class: "dep-list", id: "request-deps" });
  const draw = () => {
    const q = filter.value.trim().toLowerCase();
    const shown = door.tasks.filter((t) => !q || t.id.toLowerCase().includes(q) || t.title.toLowerCase().includes(q)).slice(0, 100);
    put(list, shown.length ? shown.map((t) => h("label", { class: "dep-item" },
      h("input", { type: "checkbox", value: t.id, checked: door.deps.has(t.id),
        onchange: (ev) => { if (ev.target.checked) door.deps.add(t.id); else door.deps.delete(t.id); } }),
      " ", h("span", { class: "mono" }, t.id), " ", statusPill(t.status, t.ready), " ", truncate(t.title, 70)))
      : h("p", { class: "muted" }, "No task matches."));
  };
  filter.addEventListener("input", draw);
  draw();
  return h("div", { class: "form-row" }, h("label", { for: "dep-filter" }, "Waits on (optional)"), filter, list,
    h("div", { class: "help muted" }, "The new task starts only once these are done."));
}

function drawForm(form) {
  const t = door.chosen;
  const fields = h("div", { id: "template-fields" });
  if (t) {
    put(fields,
      h("p", { class: "template-desc" }, t.description),
      t.fields.map(fieldRow),
      h("div", { class: "form-row" },
        h("label", { for: "request-priority" }, "Priority"),
        h("select", { id: "request-priority" }, [0, 1, 2, 3, 4].map((p) =>
          h("option", { value: p, selected: p === t.task.priority }, `P${p}` + (p === 0 ? " (highest)" : p === 4 ? " (lowest)" : ""))))),
      h("div", { class: "form-row" },
        h("label", { for: "request-labels" }, "Labels (optional)"),
        h("input", { type: "text", id: "request-labels", placeholder: "comma-separated" }),
        t.task.labels.length ? h("div", { class: "help muted" }, `Always added: ${t.task.labels.join(", ")}`) : null),
      depPicker(),
      t.task.checks.length ? h("div", { class: "help muted checks-note" }, "Checked by: ", t.task.checks.map((c, i) => [i ? ", " : "", h("code", {}, c)])) : null,
      h("div", { class: "field-error", id: "form-error", role: "alert" }),
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary", id: "request-submit" }, "Ask for it")));
  }
  form.querySelector("#template-fields").replaceWith(fields);
}

function showErrors(form, err) {
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  for (const el of form.querySelectorAll(".invalid")) el.classList.remove("invalid");
  const fields = (err && err.fields) || {};
  let first = null;
  for (const [name, message] of Object.entries(fields)) {
    const box = form.querySelector(`#error-${CSS.escape(name)}`);
    const input = form.querySelector(`#field-${CSS.escape(name)}`);
    if (box) box.textContent = message;
    if (input) { input.classList.add("invalid"); first = first || input; }
  }
  const general = form.querySelector("#form-error");
  if (general && err && (!Object.keys(fields).length || !first)) {
    general.textContent = err.message + (err.hint ? ` (${err.hint})` : "");
  }
  if (first) first.focus();
}

async function submitRequest(ev) {
  ev.preventDefault();
  const form = ev.target;
  const t = door.chosen;
  if (!t) return;
  const fields = {};
  for (const f of t.fields) {
    const input = form.querySelector(`#field-${CSS.escape(f.name)}`);
    if (input && input.value !== "") fields[f.name] = input.value;
  }
  const labels = form.querySelector("#request-labels").value.split(",").map((x) => x.trim()).filter(Boolean);
  const body = { template: t.name, fields, labels, after: Array.from(door.deps),
    priority: Number(form.querySelector("#request-priority").value) };
  const button = form.querySelector("#request-submit");
  button.disabled = true;
  try {
    const task = await api("/api/tasks/from-template", { method: "POST", body });
    showErrors(form, null);
    door.deps = new Set();
    flash(`created ${task.id}: ${task.title}`, true);
    location.hash = `#/task/${encodeURIComponent(task.id)}`;
  } catch (err) {
    const data = err instanceof ApiError ? { message: err.message, hint: err.hint, fields: err.fields } : { message: String(err) };
    showErrors(form, data);
  } finally {
    button.disabled = false;
  }
}

async function renderNew(route, initial) {
  if (!initial && document.getElementById("new-request")) return; // never redrawn under the user's hand
  const [templates, tasks] = await Promise.all([
    api("/api/templates"),
    api("/api/tasks?status=open,in_progress,blocked,deferred&limit=500")]);
  door.templates = templates;
  door.tasks = tasks;
  door.deps = new Set();
  const wanted = route.params.get("template");
  door.chosen = templates.find((t) => t.name === wanted) || (templates.length === 1 ? templates[0] : null);
  if (!templates.length) {
    view.replaceChildren(h("div", { class: "page", id: "new-request" }, h("h1", {}, "New request"),
      h("p", { class: "muted" }, "This repository defines no request templates yet: add one in .taskmill/templates/NAME.toml (see `taskmill template --help`).")));
    return;
  }
  const select = h("select", { id: "template-select", onchange: () => {
    door.chosen = templates.find((t) => t.name === select.value) || null;
    drawForm(form);
  } },
  h("option", { value: "" }, "choose what to ask for…"),
  templates.map((t) => h("option", { value: t.name, selected: door.chosen && t.name === door.chosen.name }, `${t.name}: ${t.description}`)));
  const form = h("form", { id: "request-form", novalidate: true, onsubmit: submitRequest },
    h("div", { class: "form-row" }, h("label", { for: "template-select" }, "What do you need?"), select),
    h("div", { id: "template-fields" }));
  view.replaceChildren(h("div", { class: "page narrow", id: "new-request" },
    h("h1", {}, "New request"),
    h("p", { class: "muted" }, "Pick the kind of request and fill in a few fields: the task is checked and landed by the mill, as any other."),
    h("div", { class: "panel" }, form)));
  drawForm(form);
}
