// Crisper dashboard: confirmations, bulk selection, live job states and the job stream.
// Every value from the server is set with textContent or a property: never parsed as HTML.
"use strict";

const TERMINAL = new Set(["succeeded", "failed", "cancelled", "skipped"]);

function setState(el, state) {
  if (!el) return;
  el.textContent = state;
  el.className = "state state-" + state;
}

function setProgress(scope, data, state) {
  const bar = scope.querySelector("[data-role=bar]");
  const pct = scope.querySelector("[data-role=pct]");
  let percent = data.percent;
  if (state === "succeeded") percent = 100;
  if (bar) {
    if (percent === null || percent === undefined) {
      if (state === "running") bar.removeAttribute("value"); else bar.value = 0;
    } else {
      bar.value = percent;
    }
  }
  if (pct) pct.textContent = (percent === null || percent === undefined) ? "–" : Math.round(percent) + "%";
  const msg = scope.querySelector("[data-role=message]");
  if (msg && data.message !== undefined) msg.textContent = data.message || "";
}

// Forms that change something ask first.
function confirmations() {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
}

function bulkSelection() {
  const form = document.getElementById("bulk");
  if (!form) return;
  const boxes = () => Array.from(form.querySelectorAll("input[name=ids]"));
  const all = form.querySelector("[data-role=select-all]");
  const label = form.querySelector("[data-role=selected]");
  const update = () => {
    const n = boxes().filter((b) => b.checked).length;
    if (label) label.textContent = n + " selected";
    form.querySelectorAll("[data-bulk]").forEach((b) => { b.disabled = n === 0; });
  };
  if (all) all.addEventListener("change", () => { boxes().forEach((b) => { b.checked = all.checked; }); update(); });
  form.addEventListener("change", update);
  update();
}

// The jobs table: poll the states and progress of the rows still moving.
function liveTable() {
  const table = document.querySelector("table[data-live]");
  if (!table) return;
  const url = table.dataset.live;
  const tick = async () => {
    const rows = Array.from(table.querySelectorAll("tr[data-job-id]"))
      .filter((r) => !TERMINAL.has(r.dataset.state));
    if (rows.length) {
      const query = rows.map((r) => "id=" + encodeURIComponent(r.dataset.jobId)).join("&");
      try {
        const answer = await fetch(url + "?" + query, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (answer.ok) {
          for (const job of await answer.json()) {
            const row = table.querySelector('tr[data-job-id="' + CSS.escape(job.id) + '"]');
            if (!row) continue;
            row.dataset.state = job.state;
            setState(row.querySelector("[data-role=state]"), job.state);
            setProgress(row, job, job.state);
            const attempt = row.querySelector("[data-role=attempt]");
            if (attempt) attempt.textContent = job.attempt + "/" + job.max_attempts;
          }
        }
      } catch (e) { /* the next tick tries again */ }
    }
    setTimeout(tick, 1500);
  };
  setTimeout(tick, 1000);
}

// The job page: follow its stream; reload on a state change so facts and actions follow.
function liveJob() {
  const live = document.getElementById("live");
  if (!live || live.dataset.terminal === "true" || !window.EventSource) return;
  const source = new EventSource(live.dataset.stream);
  const log = document.querySelector("[data-role=log]");
  let reloading = false;
  source.addEventListener("progress", (event) => {
    setProgress(live, JSON.parse(event.data), live.dataset.state);
  });
  source.addEventListener("log", (event) => {
    const line = JSON.parse(event.data);
    const empty = document.querySelector("[data-role=log-empty]");
    if (empty) empty.remove();
    const li = document.createElement("li");
    li.className = "lvl-" + String(line.level || "").toLowerCase();
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = String(line.at || "").replace("T", " ").slice(0, 19);
    const level = document.createElement("span");
    level.className = "lvl";
    level.textContent = line.level;
    li.append(when, " ", level, " ", String(line.message));
    log.append(li);
  });
  source.addEventListener("state", (event) => {
    const change = JSON.parse(event.data);
    live.dataset.state = change.state;
    setState(live.querySelector("[data-role=state]"), change.state);
    if (TERMINAL.has(change.state)) {
      source.close();
      setProgress(live, {}, change.state);
    }
    if (!reloading) {
      reloading = true;
      setTimeout(() => window.location.reload(), 400);
    }
  });
}

// A batch's page: its counters follow the batch's stream until every job has ended.
function liveBatch() {
  const card = document.getElementById("batch");
  if (!card || !window.EventSource) return;
  const source = new EventSource(card.dataset.stream);
  source.addEventListener("progress", (event) => {
    const b = JSON.parse(event.data);
    for (const name of ["total", "succeeded", "failed", "cancelled", "pending"]) {
      const cell = card.querySelector(`[data-count=${name}]`);
      if (cell) cell.textContent = String(b[name]);
    }
    const bar = card.querySelector("[data-role=batch-bar]");
    if (bar) bar.value = b.total - b.pending;
    if (b.pending === 0) source.close();
  });
}

// Pages that summarise (overview, queues) refresh themselves now and then.
function refresh() {
  const seconds = Number(document.body.dataset.refresh || 0);
  if (seconds > 0) setTimeout(() => window.location.reload(), seconds * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  confirmations();
  bulkSelection();
  liveTable();
  liveJob();
  liveWorkflow();
  liveBatch();
  refresh();
});

// The workflow page: poll every node's state and recolour the graph and the table.
function liveWorkflow() {
  const box = document.getElementById("workflow");
  if (!box) return;
  const tick = async () => {
    let moving = true;
    try {
      const answer = await fetch(box.dataset.live, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (answer.ok) {
        const data = await answer.json();
        for (const node of data.nodes) {
          document.querySelectorAll('[data-node-id="' + CSS.escape(node.id) + '"]').forEach((el) => {
            const rect = el.querySelector("[data-role=node]");
            if (rect) rect.setAttribute("class", "wf-node wf-" + node.state);
            const sub = el.querySelector("[data-role=node-state]");
            if (sub) sub.textContent = node.state;
            setState(el.querySelector("[data-role=state]"), node.state);
          });
        }
        setState(document.querySelector("[data-role=wf-status]"), data.status);
        moving = data.status === "running" || data.status === "cancelling";
      }
    } catch (e) { /* the next tick tries again */ }
    setTimeout(tick, moving ? 1500 : 5000);
  };
  setTimeout(tick, 1000);
}
