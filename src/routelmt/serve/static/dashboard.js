// RouteLMT operator dashboard: polls /dashboard/data and draws it. No dependencies, no
// innerHTML: every value is set as text, so nothing the service returns can become markup.
"use strict";

const REFRESH_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
let firstRender = true;

const dash = "\u2013";
function pct(v) { return v == null ? dash : (100 * v).toFixed(1) + "%"; }
function int(v) { return v == null ? dash : String(Math.round(v)); }
function num(v, d = 2) { return v == null ? dash : Number(v).toFixed(d); }
function clock(t) { return t == null ? dash : new Date(t * 1000).toTimeString().slice(0, 8); }
function duration(s) {
  if (s == null) return dash;
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h ? `${h}h ${String(m).padStart(2, "0")}m` : m ? `${m}m ${String(sec).padStart(2, "0")}s` : `${sec}s`;
}
function sum(obj) { return Object.values(obj || {}).reduce((a, b) => a + (typeof b === "number" ? b : sum(b)), 0); }

function put(id, value, text) {
  const el = document.getElementById(id);
  if (!el) return;
  el.textContent = text;
  el.dataset.value = value == null ? "" : String(value);
}

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function bar(svg, rows, marker, scale) {
  clear(svg);
  rows.forEach(([label, value, cls], i) => {
    const y = 2 + i * 19;
    svg.appendChild(el("svg:rect", { x: 0, y, width: 300, height: 15, class: "track" }));
    const w = value == null ? 0 : Math.max(0, Math.min(1, value / scale)) * 300;
    svg.appendChild(el("svg:rect", { x: 0, y, width: w.toFixed(1), height: 15, class: cls }));
    svg.appendChild(el("svg:text", { x: 4, y: y + 11.5, class: "barlabel" }, label));
  });
  if (marker != null) {
    const x = (Math.min(1, marker / scale) * 300).toFixed(1);
    svg.appendChild(el("svg:line", { x1: x, x2: x, y1: 0, y2: 40, class: "target" }));
  }
}

function renderBudget(b, m) {
  put("realised-share", b.realised_share, pct(b.realised_share));
  put("window-share", b.window_share, pct(b.window_share));
  put("target-share", b.target, b.kind === "share" || b.kind === "tiers" ? pct(b.target) : num(b.target, 3));
  put("window-requests", b.window_requests, int(b.window_requests));
  put("routed-share", m.routed_share, pct(m.routed_share));
  const stages = Object.entries(m.stage_routed_share || {}).sort();
  put("stage-shares", stages.length, stages.length ? stages.map(([k, v]) => `stage ${k} ${pct(v)}`).join(", ") : dash);
  put("warming-up", b.warming_up, b.warming_up ? "yes" : "no");
  const top = Math.max(b.target || 0, b.realised_share || 0, b.window_share || 0);
  const scale = Math.min(1, Math.max(0.05, top * 1.5));
  bar(document.getElementById("share-bar"), [
    [`realised ${pct(b.realised_share)}`, b.realised_share, "fill"],
    [`window ${pct(b.window_share)}`, b.window_share, "fill2"],
  ], b.target, scale);

  put("budget-spent", b.spent, num(b.spent));
  put("spend-unit", b.kind, b.kind === "share" ? "requests sent large" : "cost, as configured");
  put("hard-cap", b.hard_cap, b.hard_cap == null ? "none" : num(b.hard_cap));
  put("budget-remaining", b.remaining, num(b.remaining));
  put("budget-requests", b.requests, int(b.requests));
  put("budget-capped", b.capped, int(b.capped));
  put("budget-refunds", b.refunds, int(b.refunds));
  const capSvg = document.getElementById("cap-bar");
  if (b.hard_cap == null) {
    clear(capSvg);
    capSvg.appendChild(el("svg:text", { x: 4, y: 24, class: "barlabel" }, "no hard cap configured"));
  } else {
    bar(capSvg, [[`${num(b.spent)} of ${num(b.hard_cap)}`, b.spent, b.spent >= b.hard_cap ? "hot" : "fill"]], null, b.hard_cap || 1);
  }
}

function renderCost(m) {
  put("cost-total", m.cost_total, num(m.cost_total));
  put("cost-all-large", m.cost_all_large, num(m.cost_all_large));
  put("cost-saved", m.cost_saved, num(m.cost_saved));
  put("cost-saved-share", m.cost_saved_share, pct(m.cost_saved_share));
}

function renderTraffic(m) {
  const ok = (endpoint) => ((m.requests || {})[endpoint] || {})["200"] || 0;
  put("segments-total", sum(m.segments_by_tier), int(sum(m.segments_by_tier)));
  put("requests-translate", ok("/v1/translate"), int(ok("/v1/translate")));
  put("requests-chat", ok("/v1/chat/completions"), int(ok("/v1/chat/completions")));
  put("fallbacks-total", sum(m.fallbacks), int(sum(m.fallbacks)));
  put("errors-total", sum(m.errors), int(sum(m.errors)));
}

function renderGuard(data) {
  const checks = data.metrics.guard_checks || {};
  let vetoes = 0;
  for (const byVeto of Object.values(checks)) vetoes += byVeto["true"] || 0;
  put("guard-name", data.guard ? data.guard.name : null, data.guard ? `${data.guard.name} (threshold ${num(data.guard.threshold, 3)})` : "none configured");
  put("guard-checks", sum(checks), int(sum(checks)));
  put("guard-vetoes", vetoes, int(vetoes));
  const list = document.getElementById("breakers");
  clear(list);
  if (!data.breakers.length) list.appendChild(el("li", {}, "no circuit breaker configured"));
  for (const b of data.breakers) {
    const li = el("li", { id: `breaker-${b.tier}`, "data-tier": b.tier, "data-state": b.state });
    li.appendChild(el("span", {}, `breaker ${b.tier}: `));
    li.appendChild(el("b", { class: `state ${b.state}` }, b.state.replace("_", "-")));
    const extra = b.state === "open" ? `, next probe in ${num(b.retry_in_s, 1)} s` : "";
    li.appendChild(el("span", {}, ` (opened ${b.opened}x, ${b.failures_in_a_row} failures in a row, ${b.rejected} calls refused${extra})`));
    list.appendChild(li);
  }
}

function renderThreshold(series, now) {
  put("threshold-now", now, num(now, 3));
  const svg = document.getElementById("threshold-chart");
  clear(svg);
  const W = 900, H = 240, L = 56, R = 12, T = 10, B = 28;
  const ys = series.threshold.concat(series.score).filter((v) => v != null);
  if (now != null) ys.push(now);
  if (!series.time.length || !ys.length) {
    svg.appendChild(el("svg:text", { x: L, y: H / 2, class: "axis" }, "no routed decisions yet"));
    return;
  }
  let lo = Math.min(...ys), hi = Math.max(...ys);
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const t0 = series.time[0], t1 = Math.max(series.time[series.time.length - 1], t0 + 1);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = lo + (i / 4) * (hi - lo), yy = y(v).toFixed(1);
    svg.appendChild(el("svg:line", { x1: L, x2: W - R, y1: yy, y2: yy, class: "gridline" }));
    svg.appendChild(el("svg:text", { x: L - 6, y: Number(yy) + 4, class: "axis", "text-anchor": "end" }, v.toPrecision(3)));
    const tt = t0 + (i / 4) * (t1 - t0);
    const label = t1 - t0 < 600 ? `${(tt - t1).toFixed(1)} s` : clock(tt);
    svg.appendChild(el("svg:text", { x: x(tt), y: H - 8, class: "axis", "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, label));
  }
  series.score.forEach((s, i) => {
    if (s == null) return;
    svg.appendChild(el("svg:circle", { cx: x(series.time[i]).toFixed(1), cy: y(s).toFixed(1), r: 2, class: series.large[i] ? "dot large" : "dot" }));
  });
  const pts = series.threshold.map((v, i) => `${x(series.time[i]).toFixed(1)},${y(v).toFixed(1)}`);
  svg.appendChild(el("svg:polyline", { points: pts.join(" "), class: "thr" }));
}

function row(tbody, cells) {
  const tr = el("tr");
  for (const c of cells) tr.appendChild(el("td", {}, c));
  tbody.appendChild(tr);
  return tr;
}

function renderGroups(id, rows) {
  const tbody = document.querySelector(`#${id} tbody`);
  clear(tbody);
  for (const r of rows) {
    const tr = row(tbody, [r.key, int(r.n), pct(r.large_share), num(r.p50, 1), num(r.p95, 1), num(r.p99, 1), int(r.fallbacks), int(r.vetoes)]);
    tr.dataset.key = r.key;
  }
}

function renderTiers(data) {
  const tbody = document.querySelector("#by-tier tbody");
  clear(tbody);
  const recent = Object.fromEntries(data.recent.by_tier.map((r) => [r.key, r]));
  const m = data.metrics;
  for (const tier of data.service.tiers.map((t) => t.name)) {
    const r = recent[tier] || {};
    const tr = row(tbody, [tier, int(m.segments_by_tier[tier] || 0), num(m.cost_by_tier[tier] || 0), int(r.n || 0), num(r.p50, 1), num(r.p95, 1), num(r.p99, 1), int(r.fallbacks || 0)]);
    tr.dataset.key = tier;
  }
}

function renderLast(last) {
  const tbody = document.querySelector("#last-decisions tbody");
  clear(tbody);
  for (const d of last) {
    row(tbody, [clock(d.time), d.source_sha256, int(d.source_chars), d.direction, d.policy, String(d.stage), num(d.score, 3), num(d.threshold, 3), d.tier, d.reason, d.fallback ? "yes" : "no", num(d.latency_ms, 1), num(d.cost)]);
  }
}

function render(data) {
  const s = data.service;
  put("svc-router", s.router, s.router);
  put("svc-small", s.small, s.small);
  put("svc-large", s.large, s.large);
  put("svc-uptime", s.uptime_s, duration(s.uptime_s));
  renderBudget(data.budget, data.metrics);
  renderCost(data.metrics);
  renderTraffic(data.metrics);
  renderGuard(data);
  renderThreshold(data.recent.threshold, data.budget.next_threshold);
  renderTiers(data);
  renderGroups("by-direction", data.recent.by_direction);
  renderGroups("by-stage", data.recent.by_stage);
  renderLast(data.recent.last);
  const rc = data.recent;
  document.getElementById("recent-note").textContent =
    `"recent" and the percentiles: the last ${rc.held} of ${rc.added} decisions this process answered (keeps ${rc.capacity}), since ${clock(rc.since)}; "since start": the /metrics counters.`;
}

async function refresh() {
  const status = document.getElementById("status");
  const asked = performance.now();
  try {
    // from the origin: a page opened as http://user:key@host/ may not fetch a relative URL
    const response = await fetch(`${location.origin}/dashboard/data`, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) {
      status.textContent = response.status === 401 ? "API key needed (reload and log in: the key is the password)" : `error ${response.status}`;
      status.className = "status bad";
      return;
    }
    const data = await response.json();
    const fetched = performance.now() - asked;
    render(data);
    status.textContent = `updated ${clock(data.generated)}`;
    status.className = "status ok";
    if (firstRender) {
      firstRender = false;
      document.body.dataset.firstFetchMs = fetched.toFixed(1);
      document.body.dataset.firstRenderMs = performance.now().toFixed(1);
    }
  } catch (err) {
    status.textContent = `service unreachable (${err.message})`;
    status.className = "status bad";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
});
