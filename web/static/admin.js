// Admin: a threshold's consequences before it is set, on the running model's own scores:
// rejects among recent parts, false rejects and escapes on the labeled history.
"use strict";
const effectsSection = document.getElementById("effects");

function countsText(e, now, data) {
  const parts = [`At ${e.threshold.toPrecision(4)}: ${e.rejects} of ${data.recent} parts of ` +
    `the last ${data.hours} h would have been rejected (now ${now.rejects})`];
  if (data.labeled.good + data.labeled.defect > 0) {
    parts.push(`labeled history (${data.labeled.good} good, ${data.labeled.defect} defect): ` +
      `${e.false_rejects} false rejects (now ${now.false_rejects}), ` +
      `${e.escapes} escapes (now ${now.escapes})`);
  } else {
    parts.push("no labeled parts yet: label some on the Review page to see false rejects and escapes");
  }
  return parts.join("; ") + ".";
}

async function showEffects() {
  const readout = document.getElementById("effects-readout");
  let data;
  try {
    data = await (await fetch(effectsSection.dataset.url, { credentials: "same-origin" })).json();
  } catch (e) { readout.textContent = "Could not load the scores."; return; }
  const effects = data.effects || [];
  if (!effects.length) { readout.textContent = "No scores from the running model yet."; return; }
  const current = data.model.threshold;
  const nowIndex = Math.max(0, effects.findIndex((e) => e.threshold >= current));
  const now = effects[nowIndex];
  const slider = document.getElementById("effects-slider");
  slider.max = effects.length - 1;
  slider.value = nowIndex;
  const xs = effects.map((e) => e.threshold);
  const el = document.getElementById("effects-chart");
  const chart = new uPlot({
    width: el.clientWidth || 800, height: 220,
    scales: { x: { time: false } },
    axes: [{ stroke: "#9aa5b1" }, { stroke: "#9aa5b1" }],
    series: [{ label: "threshold" },
      { label: "recent rejects", stroke: "#d64545", width: 2 },
      { label: "false rejects", stroke: "#e0a100", width: 2 },
      { label: "escapes", stroke: "#3d8bfd", width: 2 }],
    hooks: { draw: [(u) => {
      const x = u.valToPos(effects[slider.value].threshold, "x", true);
      u.ctx.save(); u.ctx.strokeStyle = "#e6edf3"; u.ctx.beginPath();
      u.ctx.moveTo(x, u.bbox.top); u.ctx.lineTo(x, u.bbox.top + u.bbox.height);
      u.ctx.stroke(); u.ctx.restore();
    }] },
  }, [xs, effects.map((e) => e.rejects), effects.map((e) => e.false_rejects),
      effects.map((e) => e.escapes)], el);
  const input = document.querySelector('input[name="threshold"]');
  const update = (fill) => {
    const e = effects[slider.value];
    readout.textContent = countsText(e, now, data);
    if (fill && input) input.value = e.threshold.toPrecision(6);
    chart.redraw(false);
  };
  slider.addEventListener("input", () => update(true));
  update(false);
}

if (effectsSection) showEffects();
