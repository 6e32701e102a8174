// The events console's only script (no inline scripts: the CSP forbids them).
// Live replay progress and the live tail, both over server-sent events.
"use strict";

function text(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = String(value);
}

function watchJob(root) {
  const source = new EventSource(root.dataset.events);
  source.addEventListener("progress", (e) => {
    const p = JSON.parse(e.data);
    const bar = document.getElementById("job-progress");
    if (bar) {
      bar.max = Math.max(p.total, 1);
      bar.value = p.total === 0 ? 1 : p.done;
    }
    text("job-percent", p.percent + " %");
    text("job-state", p.state);
    text("job-done", p.done);
    text("job-total", p.total);
    text("job-replayed", p.replayed);
    text("job-skipped", p.skipped);
    text("job-failed", p.failed);
    if (p.state !== "running") {
      source.close();
      // The page rendered after the end holds the report.
      window.location.reload();
    }
  });
  source.onerror = () => text("job-state", "reconnecting");
}

const MAX_TAIL_ITEMS = 500;

function tailLine(ev) {
  const li = document.createElement("li");
  const head = document.createElement("div");
  head.className = "tail-head";
  head.textContent = [ev.stored_at, ev.stream + "#" + ev.sequence, ev.subject,
    ev.type || "undecodable", ev.organization || "", ev.id || ""].join("  ");
  const body = document.createElement("pre");
  body.textContent = ev.error ? ev.error + "\n" + ev.data : ev.data;
  li.append(head, body);
  return li;
}

function watchTail(list) {
  let source = null;
  const open = () => {
    source = new EventSource(list.dataset.events);
    source.onopen = () => text("tail-status", "live");
    source.onerror = () => text("tail-status", "reconnecting");
    source.addEventListener("tail", (e) => {
      list.prepend(tailLine(JSON.parse(e.data)));
      while (list.children.length > MAX_TAIL_ITEMS) list.lastElementChild.remove();
    });
    source.addEventListener("dropped", (e) => text("tail-dropped", e.data));
    source.addEventListener("error", (e) => {
      if (e.data) text("tail-status", "error: " + e.data);
    });
  };
  const pause = document.getElementById("tail-pause");
  pause.addEventListener("click", () => {
    if (source) {
      source.close();
      source = null;
      text("tail-status", "paused");
      pause.textContent = "Resume";
    } else {
      open();
      pause.textContent = "Pause";
    }
  });
  open();
}

document.addEventListener("DOMContentLoaded", () => {
  const job = document.querySelector("#job[data-events]");
  if (job) watchJob(job);
  const tail = document.querySelector("#tail-out[data-events]");
  if (tail) watchTail(tail);
});
