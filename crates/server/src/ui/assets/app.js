// ebb's dashboard: reads the API with the session cookie, redraws on every event of the stream
// (GET /v1/events/stream) and every few seconds for the load figures. Everything shown is set
// as text, never as HTML: service names, reasons and event messages come from users.
"use strict";

// Load figures (req/s, p99) change without events: read them this often while the tab shows.
const REFRESH_MS = 5000;
// Many events at once (a rollout) redraw once.
const EVENT_DEBOUNCE_MS = 250;
// Events kept on the page.
const MAX_EVENTS = 200;
// The server samples the history every 10 s: reading it more often reads the same hour again.
const HISTORY_MS = 10000;
// A stream the server refused (401, 503) is opened again after this long.
const REOPEN_MS = 5000;

const sparks = new Map(); // service -> uPlot
let refreshing = null;
let again = false;
let debounce = null;
let history = { services: [] };
let historyRead = 0;
let lastSeq = 0;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) throw new Error("unauthorized");
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function showMessage(text) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.hidden = !text;
}

function setLive(state) {
  const badge = document.getElementById("live");
  badge.dataset.state = state;
  badge.textContent = state;
}

// One redraw at a time; a request for another while one runs makes one more after it.
async function refresh() {
  if (refreshing) {
    again = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      again = false;
      try {
        await redraw();
        showMessage("");
      } catch (e) {
        if (e.message === "unauthorized") {
          showMessage("Not logged in, or the session has ended: run `ebb ui` and open the URL it prints.");
        } else {
          showMessage(`Cannot read the API: ${e.message}`);
        }
      }
    } while (again);
    refreshing = null;
  })();
  return refreshing;
}

async function redraw() {
  const historyDue = Date.now() - historyRead >= HISTORY_MS;
  const [status, instances, nodes, queues, metrics, past] = await Promise.all([
    api("/v1/status"),
    api("/v1/instances"),
    api("/v1/nodes"),
    api("/v1/queues"),
    api("/v1/metrics"),
    historyDue ? api("/v1/history") : null,
  ]);
  if (past) {
    history = past;
    historyRead = Date.now();
  }
  document.getElementById("server").textContent =
    `${status.server || "server"} · v${status.version} · ${status.store}` +
    (status.leader ? ` · leader ${status.leader}` : "");
  drawServices(status.services, metrics.services, history);
  drawNodes(nodes);
  drawInstances(instances);
  drawJobs(status.jobs);
  drawQueues(queues);
  document.body.dataset.revision = String(status.store_revision);
}

function replaceRows(table, rows) {
  const body = document.querySelector(`#${table} tbody`);
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    const columns = document.querySelectorAll(`#${table} thead th`).length;
    body.append(el("tr", {}, el("td", { colSpan: columns, class: "why" }, "none")));
  }
}

function fmtRate(rps) {
  if (rps == null) return "–";
  return rps >= 100 ? rps.toFixed(0) : rps.toFixed(1);
}

function fmtMs(ms) {
  if (ms == null) return "–";
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
}

function drawServices(services, traffic, history) {
  // The API flattens each service's traffic figures into its entry.
  const byName = new Map(traffic.map((t) => [t.service, t]));
  const pasts = new Map(history.services.map((h) => [h.service, h.samples]));
  const rows = services.map((s) => {
    const t = byName.get(s.name);
    const spark = el("div", { class: "spark" });
    const why = s.pending_reason || s.autoscale_reason || "";
    const row = el("tr", { "data-service": s.name },
      el("td", {}, s.name),
      el("td", { class: "num count", title: `${s.ready} ready of ${s.desired} desired` }, `${s.ready}/${s.desired}`),
      el("td", { class: "num rps" }, fmtRate(t && t.rps)),
      el("td", { class: "num p99" }, fmtMs(t && t.p99_ms)),
      el("td", {}, spark),
      el("td", { class: "why" }, why));
    // The samples of the last hour, then now: a new service has a line from its first second.
    // Never before the last sample, whatever the browser's clock says.
    const samples = pasts.get(s.name) || [];
    const last = samples.length ? samples[samples.length - 1].at_ms : 0;
    const now = { at_ms: Math.max(Date.now(), last + 1), ready: s.ready, rps: (t && t.rps) || 0 };
    drawSpark(s.name, spark, [...samples, now]);
    return row;
  });
  for (const name of [...sparks.keys()]) {
    if (!services.some((s) => s.name === name)) {
      sparks.get(name).destroy();
      sparks.delete(name);
    }
  }
  replaceRows("services", rows);
}

// Instances (ready, as steps) against req/s (a line on its own scale), over the last hour.
function drawSpark(name, holder, samples) {
  if (typeof uPlot === "undefined") return;
  const data = [
    samples.map((p) => p.at_ms / 1000),
    samples.map((p) => p.ready),
    samples.map((p) => p.rps),
  ];
  let plot = sparks.get(name);
  if (plot) {
    holder.append(plot.root);
    plot.setData(data);
    return;
  }
  plot = new uPlot({
    width: 260,
    height: 48,
    pxAlign: false,
    cursor: { show: false },
    legend: { show: false },
    scales: { x: { time: true }, n: { range: (u, min, max) => [0, Math.max(1, max)] }, r: { range: (u, min, max) => [0, Math.max(1, max)] } },
    axes: [{ show: false }, { show: false, scale: "n" }, { show: false, scale: "r" }],
    series: [
      {},
      { label: "ready", scale: "n", stroke: "#4263eb", fill: "rgba(66,99,235,.15)", paths: uPlot.paths.stepped({ align: 1 }) },
      { label: "req/s", scale: "r", stroke: "#e8590c", width: 1.5 },
    ],
  }, data, holder);
  sparks.set(name, plot);
}

function bar(reserved, used, capacity, label) {
  const pct = (x) => `${Math.min(100, capacity > 0 ? (100 * x) / capacity : 0).toFixed(1)}%`;
  const box = el("span", { class: "bar", title: label });
  box.append(el("span", { class: "reserved" }), el("span", { class: "used" }));
  box.children[0].style.width = pct(reserved);
  box.children[1].style.width = pct(used || 0);
  return box;
}

function fmtBytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function drawNodes(nodes) {
  replaceRows("nodes", nodes.map((n) => {
    const usedCpu = n.used_cpu_cores == null ? null : n.used_cpu_cores * 1000;
    const cpuText = `${(n.reserved_cpu_millis / 1000).toFixed(2)} reserved, ${usedCpu == null ? "–" : (usedCpu / 1000).toFixed(2)} used of ${(n.cpu_millis / 1000).toFixed(2)} cores`;
    const memText = `${fmtBytes(n.reserved_memory_bytes)} reserved, ${fmtBytes(n.used_memory_bytes)} used of ${fmtBytes(n.memory_bytes)}`;
    return el("tr", { "data-node": n.name },
      el("td", {}, n.name),
      el("td", { class: `state-${n.state}` }, n.drain ? `${n.state} (drain)` : n.state),
      el("td", { class: "num" }, n.instances),
      el("td", {}, bar(n.reserved_cpu_millis, usedCpu, n.cpu_millis, cpuText), el("span", {}, cpuText)),
      el("td", {}, bar(n.reserved_memory_bytes, n.used_memory_bytes, n.memory_bytes, memText), el("span", {}, memText)));
  }));
}

function drawInstances(instances) {
  replaceRows("instances", instances.map((i) => {
    const state = i.state === "running" && !i.ready ? "unready" : i.state;
    return el("tr", { "data-instance": i.id },
      el("td", {}, i.id),
      el("td", {}, i.service),
      el("td", {}, i.node),
      el("td", { class: `state-${state}` }, state),
      el("td", { class: "num" }, i.restarts),
      el("td", { class: "why" }, i.reason || i.last_exit || ""));
  }));
}

function drawJobs(jobs) {
  replaceRows("jobs", (jobs || []).map((j) => el("tr", { "data-job": j.name },
    el("td", {}, j.name),
    el("td", { class: `state-${j.state}` }, j.state),
    el("td", { class: "num" }, `${j.completed}/${j.tasks}`),
    el("td", { class: "num" }, j.running),
    el("td", { class: "num" }, j.failed),
    el("td", { class: "num" }, j.queued),
    el("td", {}, j.queue))));
}

function drawQueues(queues) {
  replaceRows("queues", queues.map((q) => el("tr", { "data-queue": q.name },
    el("td", {}, q.name),
    el("td", { class: "num" }, q.weight),
    el("td", { class: "num" }, q.max_running == null ? q.running : `${q.running}/${q.max_running}`),
    el("td", { class: "num" }, q.queued))));
}

function addEvent(event) {
  if (event.seq <= lastSeq) return;
  lastSeq = event.seq;
  const list = document.getElementById("events");
  const subject = event.instance || event.service || event.node || "";
  const time = new Date(event.time_ms).toLocaleTimeString();
  list.prepend(el("li", { "data-seq": event.seq },
    el("span", { class: "time" }, time),
    el("span", { class: `kind kind-${event.kind}` }, event.kind),
    el("span", { class: "subject" }, subject ? `${subject}: ` : ""),
    el("span", {}, event.message)));
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

// The browser reconnects a dropped stream by itself and resumes after the last event it saw.
function follow() {
  const from = lastSeq ? `after=${lastSeq}` : "limit=50";
  const stream = new EventSource(`/v1/events/stream?${from}`);
  stream.onopen = () => setLive("live");
  stream.onerror = () => {
    if (stream.readyState !== EventSource.CLOSED) {
      setLive("reconnecting");
      return;
    }
    // Refused (logged out, too many streams): the browser gives up; try again later, and let
    // a redraw say why.
    setLive("disconnected");
    refresh();
    setTimeout(follow, REOPEN_MS);
  };
  stream.onmessage = (message) => {
    try {
      addEvent(JSON.parse(message.data));
    } catch (e) {
      return;
    }
    clearTimeout(debounce);
    debounce = setTimeout(refresh, EVENT_DEBOUNCE_MS);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  refresh();
  follow();
  setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
});
