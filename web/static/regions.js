// The detail page's frame: zoom, the heatmap, and boxes drawn around defects.
// Boxes are kept in the stored frame's own pixels (what the export's masks need), whatever
// the zoom; review.js sends them with the next Defect label through window.regionEditor.
"use strict";
(() => {
  const stage = document.getElementById("stage");
  if (!stage) return;  // no frame kept: nothing to draw on
  const image = document.getElementById("stage-image");
  const svg = document.getElementById("boxes");
  const view = document.getElementById("zoom-view");
  const list = document.getElementById("region-list");
  const level = document.getElementById("zoom-level");
  const heatmapButton = document.getElementById("show-heatmap");
  const SVG = "http://www.w3.org/2000/svg";
  const MAX_BOXES = 50;  // the store's bound (inspector.store.records.MAX_LABEL_REGIONS)
  const ZOOMS = [1, 1.5, 2, 3, 4, 6, 8];
  let boxes = JSON.parse(stage.dataset.regions || "[]");
  let saved = JSON.stringify(boxes);
  let zoom = 0;  // index into ZOOMS
  let drawing = null;

  const size = () => ({ w: image.naturalWidth || 1, h: image.naturalHeight || 1 });

  function render() {
    const { w, h } = size();
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.replaceChildren(...boxes.concat(drawing ? [drawing] : []).map((b, i) => {
      const rect = document.createElementNS(SVG, "rect");
      for (const key of ["x", "y"]) rect.setAttribute(key, b[key]);
      rect.setAttribute("width", b.w);
      rect.setAttribute("height", b.h);
      rect.setAttribute("class", b === drawing ? "box drawing" : "box");
      rect.dataset.index = i;
      return rect;
    }));
    list.replaceChildren(...boxes.map((b, i) => {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "remove";
      remove.addEventListener("click", () => { boxes.splice(i, 1); render(); });
      const item = document.createElement("li");
      item.append(`${b.w}×${b.h} px at (${b.x}, ${b.y}) `, remove);
      return item;
    }));
    const count = document.getElementById("drawn-count");
    const unsaved = JSON.stringify(boxes) !== saved;
    if (count) count.textContent = `${boxes.length}${unsaved ? " (not saved yet)" : ""}`;
  }

  // A pointer position in frame pixels, clamped to the frame.
  function point(event) {
    const rect = svg.getBoundingClientRect();
    const { w, h } = size();
    const clamp = (v, hi) => Math.max(0, Math.min(hi, v));
    return {
      x: clamp(Math.round((event.clientX - rect.left) / rect.width * w), w),
      y: clamp(Math.round((event.clientY - rect.top) / rect.height * h), h),
    };
  }

  let start = null;
  svg.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || boxes.length >= MAX_BOXES) return;
    start = point(event);
    drawing = { x: start.x, y: start.y, w: 0, h: 0 };
    svg.setPointerCapture(event.pointerId);
    event.preventDefault();
  });
  svg.addEventListener("pointermove", (event) => {
    if (!start) return;
    const p = point(event);
    drawing = { x: Math.min(start.x, p.x), y: Math.min(start.y, p.y),
                w: Math.abs(p.x - start.x), h: Math.abs(p.y - start.y) };
    render();
  });
  const finish = () => {
    if (drawing && drawing.w >= 1 && drawing.h >= 1) boxes.push(drawing);
    start = drawing = null;
    render();
  };
  svg.addEventListener("pointerup", finish);
  svg.addEventListener("pointercancel", () => { start = drawing = null; render(); });

  function setZoom(index) {
    zoom = Math.max(0, Math.min(ZOOMS.length - 1, index));
    stage.style.width = `${ZOOMS[zoom] * 100}%`;  // the view scrolls; boxes scale along
    level.textContent = `${ZOOMS[zoom] * 100}%`;
  }
  document.getElementById("zoom-in").addEventListener("click", () => setZoom(zoom + 1));
  document.getElementById("zoom-out").addEventListener("click", () => setZoom(zoom - 1));
  document.getElementById("zoom-fit").addEventListener("click", () => setZoom(0));

  function toggleHeatmap() {
    if (!heatmapButton) return;
    const on = heatmapButton.getAttribute("aria-pressed") !== "true";
    heatmapButton.setAttribute("aria-pressed", String(on));
    image.src = on ? stage.dataset.heatmap : stage.dataset.frame;  // the same size
  }
  heatmapButton?.addEventListener("click", toggleHeatmap);

  document.addEventListener("keydown", (event) => {
    if (event.target.matches("input, select, textarea") || event.ctrlKey || event.metaKey) return;
    if (event.key === "+" || event.key === "=") setZoom(zoom + 1);
    else if (event.key === "-") setZoom(zoom - 1);
    else if (event.key === "0") setZoom(0);
    else if (event.key === "h") toggleHeatmap();
    else if (event.key === "Backspace" && boxes.length) { boxes.pop(); render(); }
    else return;
    event.preventDefault();
  });

  image.addEventListener("load", render);
  if (image.complete) render();

  window.regionEditor = {
    boxes: () => boxes.map((b) => ({ x: b.x, y: b.y, w: b.w, h: b.h })),
    // After a label is stored: what it kept becomes the saved state (a good label keeps none).
    saved(kept) { boxes = kept.map((b) => ({ ...b })); saved = JSON.stringify(boxes); render(); },
  };
})();
