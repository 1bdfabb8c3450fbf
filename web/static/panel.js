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

// A camera tile must be readable from across the line, so it does not simply show the
// newest part's verdict at each poll (at 15 parts/s that is a coin toss that flickers).
// - A reject or error seen since the last poll, newest part or not (the counts tell), is
//   held on the tile for HOLD_MS: long enough to cover the next poll, so it cannot flash
//   by, and short enough that the tile turns back to PASS soon after the line does.
// - Beside it the rate over about the last RATE_PARTS parts says whether rejects are a
//   one-off or a trend. It is exact: the difference of today's counts between two polls,
//   the newest pair that spans at least RATE_PARTS parts; until this page has seen that
//   many parts, today's counts, which are exactly the last parts of the day.
const HOLD_MS = 5000;
const RATE_PARTS = 100;
const HISTORY = 1800; // polls kept per camera: an hour; 3 numbers each
const tracked = new Map(); // camera -> { history, held, heldUntil, heldText, lastId }

function track(cam, now) {
  const c = cam.today;
  const counts = { total: c.pass + c.reject + c.error, reject: c.reject, error: c.error };
  let st = tracked.get(cam.camera);
  if (!st) tracked.set(cam.camera, st = { history: [], heldUntil: 0, lastId: null });
  let prev = st.history.at(-1);
  if (prev && counts.total < prev.total) { st.history = []; prev = undefined; } // a new day
  const last = cam.last;
  if (prev && (counts.reject > prev.reject || counts.error > prev.error)) {
    const newest = last && last.verdict !== "pass" && last.id !== st.lastId;
    st.held = newest ? last.verdict : (counts.reject > prev.reject ? "reject" : "error");
    const at = newest ? new Date(last.inspected_ns / 1e6) : new Date(now); // else: seen now
    st.heldText = `last ${st.held} ${at.toLocaleTimeString()}`;
    st.heldUntil = now + HOLD_MS;
  }
  st.lastId = last ? last.id : null;
  st.history.push(counts);
  if (st.history.length > HISTORY) st.history.shift();
  return st;
}

function recentRate(st) {
  const now = st.history.at(-1);
  for (let i = st.history.length - 2; i >= 0; i--) {
    const then = st.history[i];
    if (now.total - then.total >= RATE_PARTS) {
      return { parts: now.total - then.total, reject: now.reject - then.reject,
               error: now.error - then.error, today: false };
    }
  }
  return { ...now, parts: now.total, today: true };
}

function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }

function rateText(r) {
  if (r.parts === 0) return "no parts yet today";
  const bad = plural(r.reject, "reject") + (r.error ? `, ${plural(r.error, "error")}` : "");
  return `${bad} in ${r.today ? `${r.parts} parts today` : `last ${r.parts} parts`}`;
}

function tile(cam) {
  const now = Date.now();
  const st = track(cam, now);
  const newest = cam.last ? cam.last.verdict : "none";
  const held = !cam.down && newest === "pass" && now < st.heldUntil;
  const verdict = cam.down ? "down" : (held ? st.held : newest);
  const rate = recentRate(st);
  const yieldText = cam.yield === null ? "–" : `${(100 * cam.yield).toFixed(1)}%`;
  return el("div", { class: `tile ${verdict}${held ? " held" : ""}`, "data-camera": cam.camera,
                     "data-verdict": verdict },
    el("div", { class: "camera" }, cam.camera),
    // The held note sits beside the verdict, not under it: a tile that grew while a reject
    // is held would shift the reject cards' buttons under a finger about to tap them.
    el("div", { class: "verdict-row" },
      el("div", { class: "verdict-big" },
        cam.down ? "camera down" : (verdict === "none" ? "no result" : verdict)),
      el("div", { class: "held-note" }, held ? st.heldText : "")),
    el("div", { class: `rate${rate.reject + rate.error ? " some" : ""}` }, rateText(rate)),
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
