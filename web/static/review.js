// QA review by keyboard: j/k move, g/d label, 1-9 defect type, u undo, x select, Enter open.
// On the detail page a Defect label also carries the boxes drawn on the frame (regions.js).
// A label moves the cursor to the next sample (as Label Studio and CVAT do); undo moves back.
"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const grid = document.getElementById("grid");
const types = grid.dataset.types ? grid.dataset.types.split(",") : [];
const cards = [...grid.querySelectorAll(".card")];
const status = document.getElementById("status");
// Undo survives a page change (kept for this tab's session): the last 50 labels.
const UNDO_KEY = "review-undo";
const undoStack = (() => {
  try { return JSON.parse(sessionStorage.getItem(UNDO_KEY)) || []; } catch { return []; }
})();
const saveUndo = () => sessionStorage.setItem(UNDO_KEY, JSON.stringify(undoStack.slice(-50)));
// In a "label = none" view a labeled card is done: it fades but stays, so j/k keep their place.
const unlabeledView = new URLSearchParams(location.search).get("label") === "none";
let current = cards.findIndex((c) => c.classList.contains("selected"));

function select(index) {
  if (!cards.length) return;
  current = Math.max(0, Math.min(cards.length - 1, index));
  cards.forEach((card, i) => card.classList.toggle("selected", i === current));
  cards[current].scrollIntoView({ block: "nearest" });
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
    body: JSON.stringify(body),
  });
  if (!response.ok) { status.textContent = `failed: ${response.status}`; return null; }
  return response.json();
}

function show(card, item) {
  card.dataset.label = item.label || "";
  card.dataset.type = item.defect_type || "";
  const text = (item.label || "unlabeled") + (item.defect_type ? ` · ${item.defect_type}` : "");
  const target = card.querySelector(".label") ||
    (card.isConnected ? document.getElementById("current-label") : null);
  if (target) target.textContent = text;
  card.classList.toggle("done", unlabeledView && Boolean(item.label));
  status.textContent = `#${item.id}: ${text}`;
}

// The detail page's drawn boxes (regions.js) go with a Defect label of its own sample.
const editorFor = (card) =>
  (window.regionEditor && cards.length === 1 && card === cards[0] ? window.regionEditor : null);

async function setLabel(card, label, defectType = null, remember = true, regions = null) {
  const editor = editorFor(card);
  const before = { label: card.dataset.label || "none", defect_type: card.dataset.type || null,
                   regions: editor ? JSON.parse(card.dataset.regions || "[]") : [] };
  const noteField = document.getElementById("note");
  const note = noteField && noteField.value ? noteField.value : null;
  const boxes = label === "defect" ? (regions || (editor ? editor.boxes() : [])) : [];
  const item = await post(`/api/inspections/${card.dataset.id}/label`,
    { label, defect_type: defectType, note, regions: boxes.length ? boxes : null });
  if (item && noteField) noteField.value = "";
  if (!item) return false;
  if (remember) { undoStack.push({ id: card.dataset.id, ...before }); saveUndo(); }
  if (editor) { editor.saved(boxes); card.dataset.regions = JSON.stringify(boxes); }
  show(card, item);
  if (boxes.length) status.textContent += ` with ${boxes.length} box${boxes.length > 1 ? "es" : ""}`;
  return true;
}

async function labelAndAdvance(card, label, defectType = null) {
  if (await setLabel(card, label, defectType) && cards[current] === card) select(current + 1);
}

async function bulk(label) {
  const picked = cards.filter((c) => c.querySelector(".pick")?.checked);
  if (!picked.length) { status.textContent = "select samples first (x or the checkboxes)"; return; }
  const result = await post("/api/inspections/labels",
    { ids: picked.map((c) => Number(c.dataset.id)), label });
  if (!result) return;
  result.items.forEach((item, i) => show(picked[i], item));
  picked.forEach((c) => { c.querySelector(".pick").checked = false; });  // done with them
  status.textContent = `${picked.length} samples marked ${label}`;
}

// The detail page's buttons: the same labels as the keys, for the mouse.
document.querySelectorAll("[data-set-label]").forEach((button) =>
  button.addEventListener("click", () =>
    setLabel(cards[current], button.dataset.setLabel, button.dataset.setType || null)));

document.querySelectorAll("[data-bulk]").forEach((button) =>
  button.addEventListener("click", () => bulk(button.dataset.bulk)));

document.addEventListener("keydown", async (event) => {
  if (event.target.matches("input, select, textarea") || event.ctrlKey || event.metaKey) return;
  const card = cards[current];
  const detailStep = { j: document.getElementById("next"), k: document.getElementById("prev") };
  if ((event.key === "j" || event.key === "k") && !grid.classList.contains("grid")) {
    if (detailStep[event.key]) detailStep[event.key].click();  // the detail page: next sample
    else status.textContent = "no more samples this way";
  } else if (event.key === "j") select(current + 1);
  else if (event.key === "k") select(current - 1);
  else if (event.key === "Enter" && card) card.querySelector("a")?.click();
  else if (event.key === "x" && card) {
    const box = card.querySelector(".pick"); if (box) box.checked = !box.checked;
  } else if (event.key === "g" && card) await labelAndAdvance(card, "good");
  else if (event.key === "d" && card) await labelAndAdvance(card, "defect", card.dataset.type || null);
  else if (/^[1-9]$/.test(event.key) && card && types[Number(event.key) - 1]) {
    await labelAndAdvance(card, "defect", types[Number(event.key) - 1]);
  } else if (event.key === "u") {
    const last = undoStack.pop();
    saveUndo();
    if (last) {
      // The sample may be on another page: label it by id, and move there when it is here.
      let target = cards.find((c) => c.dataset.id === String(last.id));
      if (!target) { target = document.createElement("article"); target.dataset.id = last.id; }
      await setLabel(target, last.label, last.defect_type, false, last.regions);
      if (cards.includes(target)) select(cards.indexOf(target));
    } else status.textContent = "nothing to undo";
  } else return;
  event.preventDefault();
});

if (current < 0) select(0);
