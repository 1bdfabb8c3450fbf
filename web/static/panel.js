// Operator panel: refreshes from /api/panel every two seconds; one tap labels a reject.
"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function tile(cam) {
  const verdict = cam.down ? "down" : (cam.last ? cam.last.verdict : "none");
  const yieldText = cam.yield === null ? "–" : `${(100 * cam.yield).toFixed(1)}%`;
  return el("div", { class: `tile ${verdict}`, "data-camera": cam.camera },
    el("div", { class: "camera" }, cam.camera),
    el("div", { class: "verdict-big" }, cam.down ? "camera down" : verdict),
    el("div", { class: "stats" }, cam.down || `${cam.per_minute}/min · yield today ${yieldText}`));
}

function rejectCard(item) {
  const img = item.overlay_url || item.image_url;
  const score = item.score === null ? "–" : item.score.toFixed(3);
  const threshold = item.threshold === null ? "–" : item.threshold.toFixed(3);
  const confirm = el("button", { class: "big confirm", "data-label": "defect" }, "Confirm defect");
  const override = el("button", { class: "big override", "data-label": "good" }, "Override to good");
  for (const button of [confirm, override]) {
    button.addEventListener("click", () => label(item.id, button.dataset.label));
  }
  return el("article", { class: "reject-card", "data-id": String(item.id) },
    img ? el("img", { src: img, alt: `reject ${item.id}` }) : el("p", { class: "empty" }, "no image"),
    el("div", { class: "score" }, `${item.camera} · score ${score} / threshold ${threshold}`),
    el("div", { class: "stats" }, `${item.time}${item.error ? " · " + item.error : ""}`),
    el("div", { class: "actions" }, confirm, override));
}

function post(id, value) {
  return fetch(`/api/inspections/${id}/label`, {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
    body: JSON.stringify({ label: value }),
  });
}

// After a tap the sample leaves the queue at once; for UNDO_MS a big Undo takes it back
// (a gloved mis-tap must not need QA to fix it).
const UNDO_MS = 15000;
let undoTimer = null;

function offerUndo(id, value) {
  const bar = document.getElementById("undo");
  document.getElementById("undo-text").textContent =
    `#${id} marked ${value === "good" ? "good (override)" : "defect"}`;
  const button = document.getElementById("undo-button");
  button.hidden = false;
  button.onclick = async () => {
    const response = await post(id, "none");
    if (response.ok) bar.hidden = true;
    else {
      button.hidden = true;
      document.getElementById("undo-text").textContent = `#${id}: undo refused; ask QA`;
    }
    refresh();
  };
  bar.hidden = false;
  clearTimeout(undoTimer);
  undoTimer = setTimeout(() => { bar.hidden = true; }, UNDO_MS);
}

async function label(id, value) {
  const response = await post(id, value);
  if (response.ok) {
    document.querySelector(`.reject-card[data-id="${id}"]`)?.remove();
    offerUndo(id, value);
  }
  refresh();
}

async function refresh() {
  const response = await fetch("/api/panel");
  if (response.status === 401) { window.location = "/login?next=/panel"; return; }
  if (!response.ok) return;
  const data = await response.json();
  const alarms = document.getElementById("alarms");
  alarms.replaceChildren(...data.alarms.map((a) => el("p", { class: "alarm" }, a.reason,
    el("span", { class: "since" }, ` · since ${new Date(a.raised_ns / 1e6).toLocaleTimeString()}`))));
  alarms.hidden = !data.alarms.length;
  document.getElementById("cameras").replaceChildren(...data.cameras.map(tile));
  const queue = document.getElementById("queue");
  queue.replaceChildren(...(data.queue.length ? data.queue.map(rejectCard)
    : [el("p", { class: "empty" }, "No rejects waiting.")]));
  document.getElementById("queue-total").textContent = `(${data.queue_total})`;
  const errors = document.getElementById("errors");
  document.getElementById("error-causes").replaceChildren(...data.errors.map((e) =>
    el("li", { class: "error-cause", "data-camera": e.camera, title: e.message || "" },
      el("b", {}, `${e.camera}: ${e.cause}`),
      ` · ${e.count} in the last hour · last at ${new Date(e.last_ns / 1e6).toLocaleTimeString()}`)));
  errors.hidden = !data.errors.length;
}

refresh();
setInterval(refresh, 2000);
