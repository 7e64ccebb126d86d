// The redops dashboard: polls the JSON API every 2 s and renders it.
//
// Every string from the API reaches the page through text nodes (`el` below
// never parses HTML), so a hostile key name or alert summary shows as text
// and cannot inject markup; the Content-Security-Policy forbids inline
// script on top of that. No framework, nothing from another origin.
"use strict";

const REFRESH_MS = 2000;
/** History changes slowly; charts are fetched less often than the rest. */
const CHART_REFRESH_MS = 30000;
const TOKEN_KEY = "redops.api-token";
/** The five numbers of a target, with the guide's thresholds in /health/redis. */
const METRICS = [
  { name: "memory_used_pct", label: "Memory", unit: "%", digits: 1 },
  { name: "hit_ratio", label: "Hit ratio", unit: "%", digits: 1 },
  { name: "mem_fragmentation_ratio", label: "Fragmentation", unit: "", digits: 2 },
  { name: "connected_clients", label: "Clients", unit: "", digits: 0 },
  { name: "ops_per_sec", label: "Ops/s", unit: "", digits: 0 },
];
const RANGES = [
  { name: "1h", label: "last hour" },
  { name: "7d", label: "last 7 days" },
];

/** What survives a re-render: chosen chart metrics, open run details, charts. */
const state = {
  chartMetric: new Map(),
  openRuns: new Set(),
  runDetails: new Map(),
  charts: new Map(),
  chartsLoaded: new Set(),
  chartsFetchedAt: 0,
  /** The JSON each section was last drawn from: unchanged data is not redrawn. */
  drawn: new Map(),
  pendingAck: null,
};

/** An element with attributes and children; strings become text nodes. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** SVG elements need their namespace; numbers only, never API strings. */
function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

function replace(id, ...children) {
  const node = document.getElementById(id);
  node.replaceChildren();
  append(node, children);
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function getJson(path) {
  const reply = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const body = await reply.json().catch(() => null);
  if (!reply.ok) {
    const why = body && typeof body.error === "string" ? body.error : `HTTP ${reply.status}`;
    throw new Error(why);
  }
  return body;
}

function formatNumber(value, digits) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return value.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function formatAgo(ms) {
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

function formatTime(ms) {
  return new Date(ms).toLocaleString();
}

function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${formatNumber(value, unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function statusClass(status) {
  return ["ok", "warning", "critical"].includes(status) ? `status-${status}` : "status-unknown";
}

function problem(message) {
  return el("p", { class: "error" }, message);
}

// ---------------------------------------------------------------------------
// Alerts

function renderAlerts(alerts) {
  if (alerts.length === 0) {
    replace("alerts", el("p", { class: "muted", id: "no-alerts" }, "Nothing is firing."));
    return;
  }
  const rows = alerts.map((a) =>
    el(
      "tr",
      { class: `alert severity-${a.severity}`, "data-fingerprint": a.fingerprint },
      el("td", { "data-label": "Severity" }, el("span", { class: `badge severity-${a.severity}` }, a.severity)),
      el("td", { "data-label": "Rule" }, a.rule),
      el("td", { "data-label": "Target" }, a.target),
      el("td", { "data-label": "Summary", class: "summary" }, a.summary),
      el("td", { "data-label": "Since", title: formatTime(a.starts_ms) }, formatAgo(a.starts_ms)),
      el(
        "td",
        { "data-label": "Ack" },
        a.acked_by
          ? el("span", { class: "acked" }, `acknowledged by ${a.acked_by}`)
          : el("button", { type: "button", class: "ack", onclick: () => acknowledge(a.fingerprint) }, "Ack"),
      ),
    ),
  );
  replace(
    "alerts",
    el(
      "table",
      { class: "stack" },
      el("thead", {}, el("tr", {}, ["Severity", "Rule", "Target", "Summary", "Since", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows),
    ),
  );
}

async function acknowledge(fingerprint) {
  if (!token()) {
    state.pendingAck = fingerprint;
    askForToken("Acknowledging needs the API token.");
    return;
  }
  const reply = await fetch(`/api/v1/alerts/${encodeURIComponent(fingerprint)}/ack`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token()}`, "Content-Type": "application/json" },
    body: JSON.stringify({ by: "dashboard" }),
  });
  if (reply.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.pendingAck = fingerprint;
    askForToken("That token was refused; enter it again.");
    return;
  }
  if (!reply.ok) {
    const body = await reply.json().catch(() => ({}));
    setStatus("error", `Ack failed: ${body.error || reply.status}`);
    return;
  }
  refresh();
}

function askForToken(message) {
  document.getElementById("token-message").textContent = message || "";
  document.getElementById("token-panel").hidden = false;
  document.getElementById("token-input").focus();
}

function saveToken() {
  const input = document.getElementById("token-input");
  const value = input.value.trim();
  input.value = "";
  document.getElementById("token-panel").hidden = true;
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  const pending = state.pendingAck;
  state.pendingAck = null;
  if (pending) acknowledge(pending);
}

// ---------------------------------------------------------------------------
// Targets and their charts

/** Redis servers only: a Sentinel group's own entry is in its section. */
function renderTargets(targets, health, groups) {
  const names = Object.keys(targets).filter((name) => !groups.has(name));
  if (names.length === 0) {
    replace("targets", el("p", { class: "muted" }, "No targets yet."));
    return;
  }
  replace("targets", names.map((name) => targetCard(name, targets[name], (health.targets || {})[name])));
}

function targetCard(name, target, health) {
  const metrics = target.metrics || {};
  const checks = new Map(((health && health.checks) || []).map((c) => [c.metric, c.status]));
  const chosen = state.chartMetric.get(name) || METRICS[0].name;
  const status = target.up ? (health && health.status) || "ok" : "critical";
  const tiles = METRICS.map((m) =>
    el(
      "button",
      {
        type: "button",
        class: `tile ${statusClass(checks.get(m.name) || "ok")}${m.name === chosen ? " chosen" : ""}`,
        "data-metric": m.name,
        title: "Show its history",
        onclick: () => {
          state.chartMetric.set(name, m.name);
          refreshCharts(true);
        },
      },
      el("span", { class: "tile-label" }, m.label),
      el("span", { class: "tile-value" }, formatNumber(metrics[m.name], m.digits), typeof metrics[m.name] === "number" ? m.unit : ""),
    ),
  );
  const charts = RANGES.map((r) =>
    el(
      "figure",
      { class: "chart", "data-range": r.name },
      chartFor(name, chosen, r.name),
      el("figcaption", {}, `${METRICS.find((m) => m.name === chosen).label}, ${r.label}`),
    ),
  );
  return el(
    "article",
    { class: `card target ${statusClass(status)}`, "data-target": name },
    el(
      "h3",
      {},
      el("span", { class: "target-name" }, name),
      el("span", { class: `badge ${target.up ? "up" : "down"}` }, target.up ? metrics.role || "up" : "down"),
    ),
    el("div", { class: "tiles" }, tiles),
    el("div", { class: "charts" }, charts),
    el("p", { class: "muted small" }, `sampled ${formatAgo(Date.parse(target.sampled_at))}`),
  );
}

/** The chart's element, kept across re-renders; drawn when its data arrives. */
function chartFor(target, metric, range) {
  const key = JSON.stringify([target, metric, range]);
  if (!state.charts.has(key)) {
    state.charts.set(key, el("div", { class: "chart-body" }, el("p", { class: "muted" }, "loading…")));
  }
  return state.charts.get(key);
}

/** Loads the charts on show: new ones at once, all of them every 30 s. */
async function refreshCharts(force) {
  if (force) {
    state.drawn.delete("targets");
    render(lastSnapshot);
  }
  const due = force || Date.now() - state.chartsFetchedAt >= CHART_REFRESH_MS;
  if (due) state.chartsFetchedAt = Date.now();
  const wanted = [];
  for (const card of document.querySelectorAll("article.target")) {
    const target = card.dataset.target;
    const metric = state.chartMetric.get(target) || METRICS[0].name;
    for (const r of RANGES) {
      const key = JSON.stringify([target, metric, r.name]);
      if (due || !state.chartsLoaded.has(key)) wanted.push([target, metric, r.name]);
    }
  }
  await Promise.all(wanted.map(([t, m, r]) => loadChart(t, m, r)));
}

/** A chart without data yet is asked for again at the next refresh, not in 30 s. */
async function loadChart(target, metric, range) {
  const key = JSON.stringify([target, metric, range]);
  state.chartsLoaded.add(key);
  const holder = chartFor(target, metric, range);
  const query = new URLSearchParams({ target, metric, range });
  try {
    const history = await getJson(`/api/v1/history?${query}`);
    if (!drawChart(holder, history.points || [], range)) state.chartsLoaded.delete(key);
  } catch (e) {
    holder.replaceChildren(el("p", { class: "muted no-history" }, "no history yet"));
    state.chartsLoaded.delete(key);
  }
}

/** A line chart of `[unix_ms, value]` points, with its min and max; false when there are none. */
function drawChart(holder, points, range) {
  const values = points.filter((p) => Array.isArray(p) && Number.isFinite(p[1]));
  if (values.length === 0) {
    holder.replaceChildren(el("p", { class: "muted no-history" }, "no history yet"));
    return false;
  }
  const width = 300;
  const height = 80;
  const span = range === "7d" ? 7 * 86400000 : 3600000;
  const end = Date.now();
  const start = end - span;
  let low = Math.min(...values.map((p) => p[1]));
  let high = Math.max(...values.map((p) => p[1]));
  if (high === low) {
    high += 1;
    low -= 1;
  }
  const x = (t) => (((t - start) / span) * width).toFixed(1);
  const y = (v) => (height - 4 - ((v - low) / (high - low)) * (height - 8)).toFixed(1);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img", class: "line-chart" });
  chart.appendChild(svg("rect", { x: 0, y: 0, width, height, class: "chart-bg" }));
  const line = values.map((p) => `${x(p[0])},${y(p[1])}`).join(" ");
  chart.appendChild(svg("polyline", { points: line, class: "chart-line" }));
  if (values.length === 1) {
    chart.appendChild(svg("circle", { cx: x(values[0][0]), cy: y(values[0][1]), r: 2.5, class: "chart-dot" }));
  }
  const scale = el("div", { class: "chart-scale muted small" }, `min ${formatNumber(low, 2)}`, el("span", {}, `max ${formatNumber(high, 2)}`));
  holder.replaceChildren(chart, scale);
  return true;
}

// ---------------------------------------------------------------------------
// Sentinel groups, runs, backups

function renderSentinels(groups) {
  if (groups.length === 0) {
    replace("sentinels", el("p", { class: "muted" }, "No Sentinel group configured."));
    return;
  }
  replace(
    "sentinels",
    groups.map((g) =>
      el(
        "article",
        { class: `card sentinel-group ${g.problems && g.problems.length ? "status-warning" : "status-ok"}`, "data-group": g.group },
        el("h3", {}, g.group, " ", el("span", { class: "muted" }, `(${g.master_name})`)),
        el(
          "dl",
          {},
          el("dt", {}, "Master"),
          el("dd", { class: "master" }, g.master || "unknown"),
          el("dt", {}, "Quorum"),
          el("dd", {}, `${g.quorum ?? "?"} needed, ${g.sentinels_reachable} of ${g.sentinels.length} Sentinels reachable, `, g.quorum_ok ? "OK" : "NOT reachable"),
          el("dt", {}, "Replicas"),
          el("dd", {}, g.replicas.length ? el("ul", {}, g.replicas.map((r) => el("li", { class: "replica" }, `${r.addr} `, el("span", { class: "muted" }, r.flags, r.link_ok ? "" : ", link down")))) : "none"),
          el("dt", {}, "Sentinels"),
          el("dd", {}, el("ul", {}, g.sentinels.map((s) => el("li", { class: s.reachable ? "" : "error" }, s.addr, s.reachable ? "" : ` unreachable: ${s.error || "no answer"}`)))),
        ),
        g.problems && g.problems.length ? el("ul", { class: "problems" }, g.problems.map((p) => el("li", {}, p))) : null,
      ),
    ),
  );
}

function renderRuns(runs) {
  if (runs.length === 0) {
    replace("runs", el("p", { class: "muted" }, "No playbook has run yet."));
    return;
  }
  replace(
    "runs",
    runs.map((r) => {
      const details = el(
        "details",
        { class: `run outcome-${r.outcome}`, "data-run": r.id, open: state.openRuns.has(r.id) },
        el(
          "summary",
          {},
          el("span", { class: `badge outcome-${r.outcome}` }, r.outcome),
          ` ${r.playbook} on ${r.target}`,
          el("span", { class: "muted" }, ` · ${r.trigger}${r.rule ? ` (${r.rule})` : ""}${r.dry_run ? " · dry run" : ""} · ${formatAgo(r.started_ms)}${r.duration_ms != null ? ` · ${r.duration_ms} ms` : ""}`),
        ),
        runDetail(r),
      );
      details.addEventListener("toggle", () => {
        if (details.open) {
          state.openRuns.add(r.id);
          loadRun(r.id, details);
        } else {
          state.openRuns.delete(r.id);
        }
      });
      return details;
    }),
  );
}

function runDetail(run) {
  const full = state.runDetails.get(run.id);
  const audit = full ? full.audit || [] : null;
  return el(
    "div",
    { class: "run-detail" },
    run.detail ? el("p", {}, run.detail) : null,
    (run.findings || []).length ? el("ul", { class: "findings" }, run.findings.map((f) => el("li", {}, f))) : null,
    audit === null
      ? el("p", { class: "muted" }, `${run.audit_entries} audit entr${run.audit_entries === 1 ? "y" : "ies"}`)
      : audit.length === 0
        ? el("p", { class: "muted" }, "No side effects.")
        : el(
            "table",
            { class: "audit stack" },
            el("thead", {}, el("tr", {}, ["Kind", "Detail", "Outcome"].map((h) => el("th", {}, h)))),
            el("tbody", {}, audit.map((a) => el("tr", {}, el("td", { "data-label": "Kind" }, a.kind), el("td", { "data-label": "Detail", class: "mono" }, a.detail), el("td", { "data-label": "Outcome" }, a.outcome)))),
          ),
  );
}

async function loadRun(id, details) {
  if (state.runDetails.has(id)) return;
  try {
    const run = await getJson(`/api/v1/runs/${encodeURIComponent(id)}`);
    if (run.outcome !== "running") state.runDetails.set(id, run);
    details.replaceChild(runDetail({ ...run, audit_entries: (run.audit || []).length }), details.querySelector(".run-detail"));
  } catch (e) {
    details.querySelector(".run-detail").replaceChildren(problem(e.message));
  }
}

function renderBackups(backups) {
  if (backups.length === 0) {
    replace("backups", el("p", { class: "muted" }, "No backup in the catalog."));
    return;
  }
  replace(
    "backups",
    el(
      "table",
      { class: "stack" },
      el("thead", {}, el("tr", {}, ["Target", "Kind", "Created", "Size", "Verified", "Id"].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        backups.slice(0, 20).map((b) =>
          el(
            "tr",
            { class: "backup" },
            el("td", { "data-label": "Target" }, b.target),
            el("td", { "data-label": "Kind" }, b.kind, b.encrypted ? " · encrypted" : ""),
            el("td", { "data-label": "Created", title: b.created }, formatAgo(Date.parse(b.created))),
            el("td", { "data-label": "Size" }, formatBytes(b.size)),
            el("td", { "data-label": "Verified", class: b.verify_error ? "error" : "" }, b.verify_error ? `failed: ${b.verify_error}` : b.verified ? formatAgo(Date.parse(b.verified)) : "never"),
            el("td", { "data-label": "Id", class: "mono" }, b.id),
          ),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------
// Polling

let lastSnapshot = null;

function setStatus(kind, text) {
  const pill = document.getElementById("engine-status");
  pill.className = `pill ${kind}`;
  pill.textContent = text;
}

/** Each part on its own: one failing endpoint shows its error in place. */
async function refresh() {
  const parts = await Promise.allSettled([
    getJson("/health"),
    getJson("/api/v1/targets"),
    getJson("/health/redis").catch(() => ({ targets: {} })),
    getJson("/api/v1/alerts"),
    getJson("/api/v1/runs?limit=20"),
    getJson("/api/v1/sentinels"),
    getJson("/api/v1/backups"),
  ]);
  lastSnapshot = parts;
  render(parts);
  refreshCharts(false);
}

function render(parts) {
  if (!parts) return;
  const [health, targets, redisHealth, alerts, runs, sentinels, backups] = parts;
  if (health.status === "fulfilled") {
    const h = health.value;
    setStatus(h.status === "ok" ? "ok" : "warning", h.status === "ok" ? "engine ok" : `degraded: ${h.targets_down.join(", ")} down`);
  } else {
    setStatus("error", "engine unreachable");
  }
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  const show = (part, id, draw, also) => {
    const key = JSON.stringify([part.status, part.value ?? String(part.reason), also ?? null]);
    if (state.drawn.get(id) === key) return;
    state.drawn.set(id, key);
    if (part.status === "fulfilled") draw(part.value);
    else replace(id, problem(part.reason.message));
  };
  const checks = redisHealth.status === "fulfilled" ? redisHealth.value : { targets: {} };
  const groups = new Set(sentinels.status === "fulfilled" ? sentinels.value.map((g) => g.group) : []);
  show(alerts, "alerts", renderAlerts);
  show(targets, "targets", (t) => renderTargets(t, checks, groups), [checks, [...groups]]);
  show(sentinels, "sentinels", renderSentinels);
  show(runs, "runs", renderRuns);
  show(backups, "backups", renderBackups);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("token-button").addEventListener("click", () => askForToken(""));
  document.getElementById("token-save").addEventListener("click", saveToken);
  document.getElementById("token-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter") saveToken();
  });
  document.getElementById("token-cancel").addEventListener("click", () => {
    state.pendingAck = null;
    document.getElementById("token-panel").hidden = true;
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
});
