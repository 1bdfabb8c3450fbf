// Live view: each camera's stream with its own heatmap toggle, its latest verdict from
// /live/status (polled, never computed here), and a still frame refreshed every few
// seconds when the box has no stream slot left for this viewer.
"use strict";
const section = document.getElementById("live");
const MAX_STREAMS = Number(section.dataset.maxStreams);
const STILL_MS = 1000 * Number(section.dataset.stillRefreshS);
const RETRY_MS = 1000 * Number(section.dataset.retryS);
const POLL_MS = 1000 * Number(section.dataset.pollS);
let lastStatus = null;
let paused = false; // tab hidden: streams closed, so an unwatched tab holds no slot
let counter = 0;

const tiles = [...section.querySelectorAll("figure.live")].map((figure) => ({
  figure,
  camera: figure.dataset.camera,
  img: figure.querySelector("img"),
  toggle: figure.querySelector(".heat-toggle"),
  note: figure.querySelector(".still-note"),
  bar: figure.querySelector(".verdict-bar"),
  overlay: figure.querySelector(".heat-toggle").getAttribute("aria-pressed") === "true",
  mode: "stream",
  triedAt: Date.now(),
  timer: null,
  switchedAt: 0,
}));
const SWITCH_MS = 3000; // a refusal this soon after a heatmap switch: see toStill

const overlayArg = (tile) => `overlay=${tile.overlay ? 1 : 0}`;

function noteText() {
  const every = `showing a still frame refreshed every ${STILL_MS / 1000} s`;
  if (!lastStatus || lastStatus.streams.active >= lastStatus.streams.max) {
    return `All ${MAX_STREAMS} live streams are in use; ${every}.`;
  }
  return `Live stream unavailable; ${every}.`;
}

function loadStill(tile) {
  if (paused) return;
  counter += 1; // a new URL each time, so the browser fetches again
  tile.img.src = `${tile.figure.dataset.still}?${overlayArg(tile)}&n=${counter}`;
}

function toStill(tile) {
  tile.mode = "still";
  // A stream refused right after a heatmap switch most likely met its own old stream's
  // slot, which frees within a second: try again at the next poll, not after RETRY_MS.
  tile.triedAt = Date.now() - tile.switchedAt < SWITCH_MS ? 0 : Date.now();
  tile.figure.classList.add("still");
  delete tile.note.dataset.missing;
  tile.note.textContent = noteText();
  tile.note.hidden = false;
  loadStill(tile);
  clearInterval(tile.timer);
  tile.timer = setInterval(() => loadStill(tile), STILL_MS);
  poll(); // the note says why as soon as the box answers
}

function toStream(tile) {
  clearInterval(tile.timer);
  tile.mode = "stream";
  tile.triedAt = Date.now();
  tile.figure.classList.remove("still");
  tile.note.hidden = true;
  tile.img.src = `${tile.figure.dataset.stream}?${overlayArg(tile)}`;
}

function showVerdict(tile, s) {
  const verdict = (s && s.verdict) || "none";
  tile.bar.className = `verdict-bar ${verdict}${s && s.stale ? " stale" : ""}`;
  tile.bar.dataset.verdict = verdict;
  tile.bar.querySelector(".word").textContent =
    verdict === "none" ? "NO RESULT" : verdict.toUpperCase();
  let score = "";
  if (s && s.score !== null && s.threshold !== null && s.score !== undefined) {
    score = `score ${s.score.toFixed(3)} / threshold ${s.threshold.toFixed(3)}`;
  } else if (s && s.error) {
    score = s.error;
  }
  tile.bar.querySelector(".score").textContent = score;
  const age = tile.bar.querySelector(".age");
  age.hidden = !(s && s.stale);
  age.textContent = s && s.stale ? `no new result for ${Math.round(s.age_s)} s` : "";
}

let polling = false;
let pollAgain = false; // asked while a poll was out: one more once it is back, not lost
async function poll() {
  if (paused) return;
  if (polling) { pollAgain = true; return; }
  polling = true;
  try {
    const response = await fetch(section.dataset.status);
    // Signed out (the session ended): the box redirects to its sign-in page.
    if (response.redirected && new URL(response.url).pathname === "/login") {
      window.location = "/login?next=/live";
      return;
    }
    if (!response.ok) return;
    lastStatus = await response.json();
  } catch {
    return; // the box is restarting or the network blinked: the next poll tries again
  } finally {
    polling = false;
    if (pollAgain) { pollAgain = false; poll(); }
  }
  let free = lastStatus.streams.max - lastStatus.streams.active;
  for (const tile of tiles) {
    showVerdict(tile, lastStatus.cameras[tile.camera]);
    if (tile.mode !== "still") continue;
    if (free > 0 && Date.now() - tile.triedAt >= RETRY_MS) {
      free -= 1; // only as many tiles try as there are free slots
      toStream(tile);
    } else if (!tile.note.dataset.missing) {
      tile.note.textContent = noteText();
    }
  }
}

for (const tile of tiles) {
  tile.img.addEventListener("error", () => {
    if (paused) return;
    if (tile.mode === "stream") { toStill(tile); return; }
    tile.note.dataset.missing = "1";
    tile.note.textContent = "No frame from this camera yet.";
  });
  tile.img.addEventListener("load", () => {
    if (tile.mode === "still") delete tile.note.dataset.missing;
  });
  // The stream may have been refused before this script ran: its error event is gone,
  // but a finished image without a picture says the same.
  if (tile.img.complete && tile.img.naturalWidth === 0) toStill(tile);
  tile.toggle.addEventListener("click", () => {
    tile.overlay = !tile.overlay;
    tile.toggle.setAttribute("aria-pressed", String(tile.overlay));
    tile.toggle.textContent = `${tile.overlay ? "Hide" : "Show"} heatmap`;
    if (tile.mode === "stream") {
      tile.switchedAt = Date.now();
      toStream(tile);
    } else {
      loadStill(tile);
    }
  });
}

document.addEventListener("visibilitychange", () => {
  paused = document.hidden;
  for (const tile of tiles) {
    if (tile.mode !== "stream") continue;
    if (paused) tile.img.removeAttribute("src");
    else toStream(tile);
  }
  if (!paused) poll();
});

if (tiles.length) {
  poll();
  setInterval(poll, POLL_MS);
}
