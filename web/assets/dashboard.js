// taskfarm dashboard: polls /api/state twice a second and updates the page in place.
"use strict";

const POLL_MS = 500;
const $ = (sel) => document.querySelector(sel);

function fmtNum(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Math.round(n).toString();
}
function fmtRate(r) { return r > 0 ? fmtNum(r) + "/s" : "–"; }
function fmtDuration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h " + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
}
function fmtBytes(b) {
  if (!b) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return b.toFixed(i ? 1 : 0) + " " + units[i];
}
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// ---------------------------------------------------------------- summary

function renderSummary(s) {
  const items = [
    ["workers", s.workers], ["slots busy", s.slots_busy + " / " + s.slots],
    ["throughput", fmtRate(s.tasks_per_s)], ["in flight", fmtNum(s.in_flight)],
    ["queued", fmtNum(s.queue_depth)], ["completed", fmtNum(s.tasks_completed)],
    ["re-issued", fmtNum(s.reissued)], ["duplicates", fmtNum(s.duplicates)],
    ["rejected msgs", fmtNum(s.rejected_messages)], ["sink", s.sink_up ? "up" : "no stats"],
  ];
  const box = $("#summary");
  box.replaceChildren(...items.map(([k, v]) =>
    el("div", {class: "kv"}, el("span", {class: "k"}, k), el("span", {class: "v", id: "sum-" + k.replace(/ /g, "-")}, String(v)))));
}

// ---------------------------------------------------------------- jobs

const jobRows = new Map();

function jobRow(job) {
  let row = jobRows.get(job.id);
  if (row) return row;
  const cancel = el("button", {class: "cancel", id: "cancel-" + job.id, title: "cancel this job"}, "cancel");
  cancel.addEventListener("click", () => cancelJob(job.id, job.name, cancel));
  row = el("tr", {"data-job-id": job.id},
    el("td", {}, el("div", {class: "name"}, job.name), el("div", {class: "id"}, job.id)),
    el("td", {}, el("span", {class: "state"})),
    el("td", {}, el("div", {class: "bar"}, el("span", {class: "ok"}), el("span", {class: "fail"}), el("span", {class: "flight"}))),
    el("td", {class: "count"}), el("td", {class: "rate"}), el("td", {class: "eta"}), el("td", {class: "age"}),
    el("td", {}, cancel));
  jobRows.set(job.id, row);
  return row;
}

function renderJobs(jobs) {
  const tbody = $("#jobs tbody");
  const seen = new Set();
  const rows = jobs.map((job) => {
    seen.add(job.id);
    const row = jobRow(job);
    const total = Math.max(job.total, 1);
    const okPct = 100 * job.ok / total, failPct = 100 * job.failed / total, flightPct = 100 * job.in_flight / total;
    const state = row.querySelector(".state");
    state.textContent = job.state;
    state.className = "state " + job.state;
    row.dataset.state = job.state;
    row.dataset.done = job.done;
    const [ok, fail, flight] = row.querySelectorAll(".bar span");
    ok.style.width = okPct + "%";
    fail.style.left = okPct + "%"; fail.style.width = failPct + "%";
    flight.style.left = (okPct + failPct) + "%"; flight.style.width = (job.state === "running" ? flightPct : 0) + "%";
    row.querySelector(".bar").title = `${job.ok} ok, ${job.failed} failed, ${job.in_flight} in flight, ${job.queued} queued`;
    row.querySelector(".count").textContent = fmtNum(job.done) + " / " + fmtNum(job.total) +
      (job.failed ? ` (${fmtNum(job.failed)} failed)` : "");
    const finished = ["done", "failed", "cancelled"].includes(job.state);
    row.querySelector(".rate").textContent = finished ? fmtRate(job.tasks_per_s) : fmtRate(job.recent_tasks_per_s);
    row.querySelector(".eta").textContent = finished ? "" : fmtDuration(job.eta_s);
    row.querySelector(".age").textContent = fmtDuration(job.age_s);
    row.querySelector("button.cancel").style.visibility = finished ? "hidden" : "visible";
    return row;
  });
  for (const id of [...jobRows.keys()]) if (!seen.has(id)) jobRows.delete(id);
  tbody.replaceChildren(...rows);
  $("#no-jobs").style.display = jobs.length ? "none" : "";
}

async function cancelJob(id, name, button) {
  if (!window.confirm(`Cancel job '${name}' (${id})?`)) return;
  button.disabled = true;
  try {
    const res = await fetch(`/api/jobs/${encodeURIComponent(id)}/cancel`, {method: "POST", credentials: "same-origin"});
    const body = await res.json().catch(() => ({}));
    if (!res.ok) window.alert(`cancel failed: ${body.error || res.status}`);
  } catch (e) {
    window.alert("cancel failed: " + e);
  } finally {
    button.disabled = false;
  }
  poll();
}

// ---------------------------------------------------------------- failures

function renderFailures(jobs) {
  const rows = [];
  for (const job of jobs) {
    for (const f of job.failures || []) {
      rows.push(el("tr", {}, el("td", {}, job.name), el("td", {}, String(f.task_id)), el("td", {}, f.kernel),
        el("td", {}, String(f.attempts)), el("td", {class: "error"}, f.error)));
    }
  }
  $("#failures tbody").replaceChildren(...rows.slice(0, 200));
  $("#no-failures").style.display = rows.length ? "none" : "";
}

// ---------------------------------------------------------------- workers

function isGpu(w) { return /^cuda/.test(w.device); }

function drawStrip(canvas, occupancy, gpu, points) {
  const w = canvas.clientWidth || 300, h = canvas.clientHeight || 16;
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const cw = w / points;
  const start = points - occupancy.length;  // newest at the right
  const [r, g, b] = gpu ? [22, 128, 72] : [30, 64, 175];
  occupancy.forEach((v, i) => {
    const a = 0.08 + 0.92 * Math.max(0, Math.min(1, v));
    ctx.fillStyle = `rgba(${r},${g},${b},${a})`;
    ctx.fillRect(Math.floor((start + i) * cw), 0, Math.ceil(cw), h);
  });
}

const workerRows = new Map();

function renderWorkers(workers, points) {
  const seen = new Set();
  const rows = workers.map((w) => {
    seen.add(w.id);
    let row = workerRows.get(w.id);
    if (!row) {
      row = el("tr", {"data-worker-id": w.id},
        el("td", {}, el("div", {class: "name"}, w.id), el("div", {class: "id"}, w.host)),
        el("td", {class: "device"}), el("td", {class: "slots"}), el("td", {class: "held"}),
        el("td", {class: "busy"}), el("td", {class: "tasks"}), el("td", {class: "gpumem"}),
        el("td", {}, el("canvas", {class: "strip"})));
      workerRows.set(w.id, row);
    }
    const gpu = isGpu(w);
    row.querySelector(".device").textContent = w.device;
    row.querySelector(".slots").textContent = w.slots + (gpu ? " stream" : " thread") + (w.slots === 1 ? "" : "s");
    row.querySelector(".held").textContent = fmtNum(w.held);
    const busy = row.querySelector(".busy");
    busy.textContent = w.busy_ratio === null ? "–" : Math.round(100 * w.busy_ratio) + "%";
    const stale = w.last_seen_s > 2;
    busy.className = "busy" + (stale ? " warn" : "");
    if (stale) busy.textContent += ` (silent ${fmtDuration(w.last_seen_s)})`;
    row.querySelector(".tasks").textContent = fmtNum(w.tasks);
    row.querySelector(".gpumem").textContent = gpu ? fmtBytes(w.gpu_mem_bytes) : "–";
    row.dataset.occupancy = JSON.stringify(w.occupancy);
    row.dataset.gpu = gpu ? "1" : "0";
    return row;
  });
  for (const id of [...workerRows.keys()]) if (!seen.has(id)) workerRows.delete(id);
  $("#workers tbody").replaceChildren(...rows);
  for (const row of rows) {  // after insertion: the canvas has its laid-out size
    drawStrip(row.querySelector("canvas"), JSON.parse(row.dataset.occupancy), row.dataset.gpu === "1", points);
  }
  $("#no-workers").style.display = workers.length ? "none" : "";
}

// ---------------------------------------------------------------- throughput chart

let chart = null;
function renderChart(points) {
  const data = points.map(([t, v]) => ({x: t, y: v}));
  if (!chart) {
    if (typeof Chart === "undefined") return;
    chart = new Chart($("#throughput"), {
      type: "line",
      data: {datasets: [{label: "tasks/s", data, borderColor: "#2f6fd6", backgroundColor: "rgba(47,111,214,.15)",
        fill: true, pointRadius: 0, tension: 0.2, borderWidth: 2}]},
      options: {
        animation: false, maintainAspectRatio: false, parsing: false,
        plugins: {legend: {display: false}},
        scales: {
          x: {type: "linear", title: {display: true, text: "seconds since start"}},
          y: {beginAtZero: true, title: {display: true, text: "tasks/s"}},
        },
      },
    });
  } else {
    chart.data.datasets[0].data = data;
    chart.update("none");
  }
}

// ---------------------------------------------------------------- polling

let polling = false;
async function poll() {
  if (polling) return;
  polling = true;
  const conn = $("#conn");
  try {
    const res = await fetch("/api/state", {credentials: "same-origin", cache: "no-store"});
    if (res.status === 401) {
      conn.textContent = "token required: open the address the ventilator logged";
      conn.className = "conn bad";
      return;
    }
    if (!res.ok) throw new Error("HTTP " + res.status);
    const state = await res.json();
    renderSummary(state.summary);
    renderJobs(state.jobs);
    renderFailures(state.jobs);
    renderWorkers(state.workers, state.strip_seconds);
    renderChart(state.throughput);
    conn.textContent = "live · updated " + new Date().toLocaleTimeString();
    conn.className = "conn";
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  } catch (e) {
    conn.textContent = "job service unreachable (" + e.message + "); retrying";
    conn.className = "conn bad";
  } finally {
    polling = false;
  }
}

poll();
setInterval(poll, POLL_MS);
