// The Models page: follows the background job (refit, shadow run) until it ends, then
// reloads once so the new candidate or report shows.
"use strict";
const section = document.getElementById("job");
const csrf = document.querySelector('meta[name="csrf-token"]').content;

async function poll() {
  let job;
  try {
    job = (await (await fetch("/api/jobs", { credentials: "same-origin" })).json()).job;
  } catch (e) { setTimeout(poll, 5000); return; }
  if (!job) return;
  document.getElementById("job-state").textContent = job.state;
  document.getElementById("job-stage").textContent = job.stage;
  document.getElementById("job-progress").value = job.fraction || 0;
  if (job.state === "running") { setTimeout(poll, 2000); return; }
  window.location.reload();
}

const cancel = document.getElementById("job-cancel");
if (cancel) {
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    await fetch("/api/jobs/cancel", { method: "POST", credentials: "same-origin",
                                      headers: { "X-CSRFToken": csrf } });
  });
}
if (section && section.dataset.state === "running") setTimeout(poll, 2000);

// A running live shadow: its counts and latest disagreements, every 2 s.
const liveShadow = document.getElementById("live-shadow");

function row(...cells) {
  const tr = document.createElement("tr");
  cells.forEach((c) => { const td = document.createElement("td"); td.textContent = c; tr.append(td); });
  return tr;
}

async function pollLiveShadow() {
  let shadow;
  try {
    shadow = (await (await fetch("/api/live-shadow", { credentials: "same-origin" })).json()).shadow;
  } catch (e) { setTimeout(pollLiveShadow, 5000); return; }
  if (!shadow) return;
  for (const key of ["scored", "offered", "disagreements"]) {
    document.getElementById(`ls-${key}`).textContent = shadow[key];
  }
  const table = document.getElementById("ls-recent");
  const header = table.querySelector("tr");
  table.replaceChildren(header, ...shadow.recent_disagreements.map((d) => row(
    d.camera, d.seq, `${d.active_verdict} ${d.active_score.toPrecision(4)}`,
    `${d.verdict} ${d.score.toPrecision(4)}`)));
  document.getElementById("ls-state").textContent = shadow.running
    ? `${(shadow.seconds_left / 60).toFixed(1)} min left` : "ended";
  if (shadow.running) setTimeout(pollLiveShadow, 2000);
}
if (liveShadow && liveShadow.dataset.running) setTimeout(pollLiveShadow, 2000);
