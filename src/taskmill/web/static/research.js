// taskmill dashboard: the research view (#/research). Draws GET /api/research: the metric
// over experiments (kept, discarded, crashed), the running best, the noise band around it,
// and the table of experiments with their diffs (GET /api/research/experiments/N/diff).
"use strict";

const researchState = { openDiffs: new Set(), diffs: new Map() };

function researchValue(e) {
  const v = e.verified !== undefined && e.verified !== null ? e.verified : e.metric;
  return typeof v === "number" ? v : null;
}

function researchChart(status, experiments) {
  const W = 900, H = 280, P = 40;
  const pts = experiments.filter((e) => researchValue(e) !== null);
  const crashed = experiments.filter((e) => e.verdict === "crash");
  if (!pts.length) return h("p", { class: "muted" }, "No measurement yet.");
  const maxN = Math.max(1, ...experiments.map((e) => e.n));
  const band = status.threshold || 0;
  const vals = pts.map(researchValue);
  let lo = Math.min(...vals), hi = Math.max(...vals);
  lo -= band; hi += band;
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (n) => P + (W - 2 * P) * (n / maxN);
  const y = (v) => H - P - (H - 2 * P) * ((v - lo) / (hi - lo));
  // the running best: the baseline, then each kept value, as a step line
  const minimize = status.direction !== "maximize";
  let best = null;
  const steps = [];
  for (const e of experiments) {
    const v = researchValue(e);
    if (e.verdict === "baseline" || e.verdict === "keep") {
      if (v !== null && (best === null || (minimize ? v < best : v > best) || e.verdict === "baseline")) best = v;
    }
    if (best !== null) steps.push([e.n, best]);
  }
  const line = steps.map(([n, v], i) => `${i ? "L" : "M"}${x(n).toFixed(1)},${y(v).toFixed(1)}`
    + (i + 1 < steps.length ? ` L${x(steps[i + 1][0]).toFixed(1)},${y(v).toFixed(1)}` : "")).join(" ");
  // the band follows the step line: each best holds until the next experiment
  const corners = steps.flatMap(([n, v], i) => [[n, v], [i + 1 < steps.length ? steps[i + 1][0] : n, v]]);
  const bandPath = corners.length ? corners.map(([n, v], i) => `${i ? "L" : "M"}${x(n).toFixed(1)},${y(v + band).toFixed(1)}`).join(" ")
    + " " + corners.slice().reverse().map(([n, v]) => `L${x(n).toFixed(1)},${y(v - band).toFixed(1)}`).join(" ") + " Z" : "";
  const colour = { keep: "#1a7f37", baseline: "#2e6bd1", discard: "#8a8f98", crash: "#b42318" };
  return s("svg", { viewBox: `0 0 ${W} ${H}`, class: "research-chart", width: "100%" },
    s("line", { x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: "#ccc" }),
    s("line", { x1: P, y1: P, x2: P, y2: H - P, stroke: "#ccc" }),
    s("text", { x: 4, y: y(hi - band) + 4, "font-size": 11 }, (hi - band).toPrecision(5)),
    s("text", { x: 4, y: y(lo + band) + 4, "font-size": 11 }, (lo + band).toPrecision(5)),
    band ? s("path", { d: bandPath, fill: "#2e6bd1", "fill-opacity": 0.12, stroke: "none", class: "noise-band" }) : null,
    s("path", { d: line, fill: "none", stroke: "#2e6bd1", "stroke-width": 2, class: "running-best" }),
    pts.map((e) => s("circle", { cx: x(e.n), cy: y(researchValue(e)), r: 4, fill: colour[e.verdict] || "#f0ad4e",
      class: `point ${e.verdict || "running"}` }, s("title", {}, `#${e.n} ${e.verdict || "running"}: ${researchValue(e)}\n${e.description || ""}`))),
    crashed.map((e) => s("text", { x: x(e.n) - 4, y: H - P + 14, fill: colour.crash, "font-size": 12, class: "point crash" },
      "×", s("title", {}, `#${e.n} crash: ${e.reason || ""}`))));
}

function researchDiff(n) {
  const det = h("details", { class: "research-diff", "data-n": n });
  det.open = researchState.openDiffs.has(n);
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  det.append(h("summary", {}, "diff"), body);
  const load = async () => {
    let d = researchState.diffs.get(n);
    if (!d) {
      try { d = await api(`/api/research/experiments/${n}/diff`); } catch (err) { d = { error: err.message }; }
      researchState.diffs.set(n, d);
    }
    put(body, d.error ? h("p", { class: "bad-mark" }, d.error)
      : !d.commit ? h("p", { class: "muted" }, "No commit.")
      : [renderDiff(d.diff), d.truncated ? h("p", { class: "muted" }, "(truncated)") : null]);
  };
  det.addEventListener("toggle", () => {
    if (det.open) { researchState.openDiffs.add(n); load(); } else researchState.openDiffs.delete(n);
  });
  if (det.open) load();
  return det;
}

async function renderResearch(route, initial) {
  let data;
  try {
    data = await api("/api/research");
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      view.replaceChildren(h("div", { class: "page", id: "research" }, h("h1", {}, "Research"),
        h("p", { class: "muted" }, err.message + (err.hint ? ` (${err.hint})` : ""))));
      return;
    }
    throw err;
  }
  if (initial && !state.project) loadProject().catch(() => {});
  const st = data.status;
  const fmt = (v) => (typeof v === "number" ? v.toPrecision(6) : "–");
  const rows = data.experiments.slice().reverse().map((e) => h("tr", { "data-n": e.n, class: e.verdict || "running" },
    h("td", {}, `#${e.n}`), h("td", {}, h("strong", {}, e.verdict || "running")),
    h("td", { class: "mono" }, fmt(researchValue(e))),
    h("td", { class: "mono" }, (e.kept_commit || e.commit || "").slice(0, 10)),
    h("td", {}, truncate(e.description || "", 80), e.contributor ? h("span", { class: "muted" }, ` · from ${e.contributor}`) : null,
      e.claimed !== undefined && e.claimed !== null ? h("span", { class: "muted" }, ` · claimed ${e.claimed}`) : null),
    h("td", { class: "muted" }, truncate(e.reason || "", 120)),
    h("td", {}, fmtTokens(e.tokens || 0), " · ", fmtCost(e.cost_usd)),
    h("td", {}, e.commit ? researchDiff(e.n) : null)));
  view.replaceChildren(h("div", { class: "page", id: "research" },
    h("h1", {}, `Research: ${st.branch}`),
    h("p", { class: "muted" },
      `best ${fmt(st.best_metric)} (${st.direction}) at ${(st.best_commit || "–").slice(0, 10)} · baseline ${fmt(st.baseline)} · `,
      `noise σ ${fmt(st.sigma)}, band ±${fmt(st.threshold)} · ${st.experiments} experiments (${st.running} running): `,
      `${st.kept} kept, ${st.discarded} discarded, ${st.crashed} crashed · keep rate ${st.keep_rate === null ? "–" : Math.round(st.keep_rate * 100) + "%"} · `,
      `${fmtTokens(st.tokens)} tokens · ${fmtCost(st.cost_usd)}`),
    researchChart(st, data.experiments),
    h("p", { class: "muted legend" }, h("span", { style: "color:#1a7f37" }, "● kept"), "  ",
      h("span", { style: "color:#8a8f98" }, "● discarded"), "  ", h("span", { style: "color:#b42318" }, "× crashed"), "  ",
      h("span", { style: "color:#2e6bd1" }, "— running best, shaded: the noise band")),
    h("table", { id: "experiments" },
      h("thead", {}, h("tr", {}, ["#", "verdict", "metric", "commit", "description", "why", "spend", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows))));
}
