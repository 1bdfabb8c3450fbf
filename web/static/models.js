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
