// Statistics charts, drawn with the bundled uPlot (static/vendor/uplot, MIT).
"use strict";
const COLOURS = ["#3d8bfd", "#e0a100", "#1f9d55", "#d64545", "#9b59b6", "#17becf"];
const charts = [];

function cell(tag, text) { const c = document.createElement(tag); c.textContent = text; return c; }

function table(id, header, rows) {
  const t = document.getElementById(id);
  const head = document.createElement("tr");
  header.forEach((h) => head.append(cell("th", h)));
  t.replaceChildren(head, ...rows.map((r) => {
    const tr = document.createElement("tr"); r.forEach((v) => tr.append(cell("td", v))); return tr;
  }));
}

function lines(id, data, key, percent) {
  const cameras = Object.keys(data.series);
  const times = [...new Set(cameras.flatMap((c) => data.series[c].t))].sort((a, b) => a - b);
  const columns = [times, ...cameras.map((c) => {
    const s = data.series[c]; const at = new Map(s.t.map((t, i) => [t, s[key][i]]));
    return times.map((t) => (at.has(t) ? (percent ? 100 * at.get(t) : at.get(t)) : null));
  })];
  const el = document.getElementById(id);
  charts.push(new uPlot({
    width: el.clientWidth || 900, height: 220,
    series: [{}, ...cameras.map((c, i) => ({ label: c, stroke: COLOURS[i % COLOURS.length], width: 2 }))],
    axes: [{ stroke: "#9aa5b1" }, { stroke: "#9aa5b1" }],
    scales: { x: { time: true, range: [data.since_s, data.until_s] } },
  }, columns, el));
}

function histogram(data) {
  const h = data.histogram;
  const el = document.getElementById("histogram");
  if (!h.edges.length) { el.textContent = "no scores yet"; return; }
  const mids = h.edges.slice(0, -1).map((e, i) => (e + h.edges[i + 1]) / 2);
  const bars = uPlot.paths.bars({ size: [0.9, 40] });
  const threshold = h.threshold;
  charts.push(new uPlot({
    width: el.clientWidth || 900, height: 220,
    series: [{}, { label: "pass", fill: "#1f9d55aa", stroke: "#1f9d55", paths: bars },
             { label: "reject / error", fill: "#d64545aa", stroke: "#d64545", paths: bars }],
    axes: [{ stroke: "#9aa5b1" }, { stroke: "#9aa5b1" }],
    scales: { x: { time: false } },
    hooks: { draw: [(u) => {
      if (threshold === null) return;
      const x = u.valToPos(threshold, "x", true);
      const ctx = u.ctx; ctx.save(); ctx.strokeStyle = "#f2f4f6"; ctx.setLineDash([6, 4]);
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke(); ctx.restore();
    }] },
  }, [mids, h.pass, h.reject], el));
}

async function load(hours) {
  const response = await fetch(`/api/stats?hours=${encodeURIComponent(hours)}`);
  if (!response.ok) return;
  const data = await response.json();
  charts.splice(0).forEach((c) => c.destroy());
  lines("throughput", data, "per_minute", false);
  lines("rejects", data, "reject_rate", true);
  lines("yield", data, "yield", true);
  histogram(data);
  const m = data.model;
  document.getElementById("model").textContent = m ?
    `model ${m.name} (${m.sha256.slice(0, 12)}), threshold ${m.threshold === null ? "–" : m.threshold.toFixed(3)}` : "";
  table("latency", ["camera", "p50", "p90", "p99", "frames"],
    Object.entries(data.latency).map(([c, l]) => [c, l.p50, l.p90, l.p99, l.n]));
  const acc = data.accounting || {};
  const keys = ["received", "inspected", "stale", "malformed", "passed", "rejected", "errors"];
  table("accounting", ["camera", ...keys], Object.entries(acc).map(([c, a]) => [c, ...keys.map((k) => a[k])]));
}

document.getElementById("range").addEventListener("submit", (event) => {
  event.preventDefault(); load(new FormData(event.target).get("hours"));
});
load(24);
