"""The closed loop end to end, over real components: the pipeline inspects a synthetic camera,
QA labels samples through the HTTP API, a refit job makes a candidate, its shadow report
shows before and after, an admin promotes it and it takes over between two frames with no
frame lost (new rows carry its sha256), and a rollback brings the old model back.

Real parts throughout: ``run_pipeline`` with its capture thread, ZeroMQ bus, ONNX model,
recorder and SQLite store, and the waitress-served UI spoken to over HTTP with a session
cookie and CSRF token, as a browser does. The one seam: the UI's job runner holds each job
at its start until the test opens a gate, so that "another job is running" (409) is seen
deterministically rather than by racing a fast refit.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from inspector.config import Config, parse_config
from inspector.inspection import run_pipeline
from inspector.local_api import WEB_URL_FILE
from inspector.loop import Cancelled, JobRunner
from inspector.store import SearchFilters, Store
from tests.web.webutil import HttpBrowser
from web.auth import add_user
from web.server import WebServer

CAMERA = "line1"
USERS = {"qa": ("quinn", "qa-secret-1"), "admin": ("ada", "admin-secret-1")}
GOOD_LABELS = 12  # labeled good frames the refit fits on (MIN_REFIT_SAMPLES is 10)
DEFECT_LABELS = 3  # labeled defects, so the shadow run has both classes
FRESH_GOOD_LABELS = 4  # labeled after the refit: good parts the candidate has not seen
CANDIDATE = "refit-1"
WAIT_S = 30.0  # the longest any single wait may take; the test never hangs


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = WAIT_S,
             every_s: float = 0.1) -> Any:
    """``check()``'s first truthy value, polled until ``timeout_s``; else the test fails."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


class Browser(HttpBrowser):
    """``HttpBrowser`` that also sends JSON with the CSRF header, as the pages' scripts do.

    Each request opens its own connection (waitress closes idle keep-alive ones after 15 s;
    a browser reconnects unnoticed), and every ``Set-Cookie`` replaces the session cookie.
    """

    def sign_in_as(self, role: str) -> str:
        name, password = USERS[role]
        status, _ = self.sign_in(name, password)
        assert status == 302, f"sign-in of {name} answered {status}"
        # Signing in starts a new session, whose CSRF token is on every page.
        status, page = self.call("GET", "/models")
        assert status == 200, page
        self.token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        return name

    def call(self, method: str, path: str, body: Any = None,
             query: dict[str, Any] | None = None) -> tuple[int, Any]:
        if query:
            path = f"{path}?{urlencode(query)}"
        headers = {"Cookie": self.cookie}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers.update({"Content-Type": "application/json", "X-CSRFToken": self.token})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
        try:
            conn.request(method, path, data, headers)
            response = conn.getresponse()
            raw = response.read()
            cookie = response.getheader("Set-Cookie")
        finally:
            conn.close()
        if cookie:
            self.cookie = cookie.split(";")[0]
        text = raw.decode()
        kind = response.getheader("Content-Type") or ""
        return response.status, json.loads(text) if kind.startswith("application/json") else text

    def get(self, path: str, **query: Any) -> Any:
        status, data = self.call("GET", path, query=query)
        assert status == 200, f"GET {path}: {status} {data}"
        return data

    def post(self, path: str, body: Any, expect: int = 200) -> Any:
        status, data = self.call("POST", path, body)
        assert status == expect, f"POST {path}: {status}, expected {expect}: {data}"
        return data

    def rows(self) -> list[dict]:
        """Every stored inspection of the camera, oldest (lowest seq) first."""
        rows: list[dict] = []
        while True:
            page = self.get("/api/inspections", camera=CAMERA, limit=500, offset=len(rows))
            rows += page["items"]
            if not page["items"] or len(rows) >= page["total"]:
                return sorted(rows, key=lambda r: r["seq"])

    def job_ended(self) -> dict | None:
        job = self.get("/api/jobs")["job"]
        return job if job is not None and job["state"] != "running" else None


class GatedJobs(JobRunner):
    """The real job runner, whose jobs wait at their start for ``gate`` (once open, it stays
    open): while a job waits, another start must be refused."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def start(self, kind: str, job: Any, description: str | None = None) -> str:
        def gated(report: Any, should_stop: Any) -> Any:
            report("waiting for the test's gate", 0.0)
            if not self.gate.wait(WAIT_S):
                raise Cancelled("the test never opened the gate")
            return job(report, should_stop)

        return super().start(kind, gated, description)


class Line:
    """``run_pipeline`` in a thread, as ``inspector run`` would run it, with the UI."""

    def __init__(self, config: Config, out: Path) -> None:
        self.config = config
        self.stop = threading.Event()
        self.jobs = GatedJobs()
        self.totals: dict[str, dict[str, Any]] | None = None
        self.error: BaseException | None = None
        self._out = out.open("w")
        self.thread = threading.Thread(target=self._run, name="test-pipeline", daemon=True)

    def _web_server(self, config: Config, store: Store, service: Any, *watch: Any) -> WebServer:
        server = WebServer(config, store, service, *watch)
        server.app.extensions["jobs"] = self.jobs
        return server

    def _run(self) -> None:
        try:
            self.totals = run_pipeline(self.config, self.stop, self._out, interval_s=1.0,
                                       web_server=self._web_server)
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc

    def url(self) -> str:
        url_file = Path(self.config.storage.root) / WEB_URL_FILE

        def ready() -> str | None:
            if self.error is not None or not self.thread.is_alive():
                raise AssertionError(f"the pipeline ended before its UI came up: {self.error!r}")
            return url_file.read_text() if url_file.is_file() else None

        return wait_for("the web UI", ready, 60.0)

    def close(self) -> None:
        self.stop.set()
        self.jobs.gate.set()  # a job left waiting must not outlive the test
        self.thread.join(60)
        self._out.close()
        assert not self.thread.is_alive(), "the pipeline did not stop within 60 s"
        if self.error is not None:
            raise self.error


@pytest.fixture
def line(tmp_path: Path, model_dir: Path) -> Iterator[Line]:
    root = tmp_path / "store"
    with Store(root) as store:  # users first, as `inspector users add` makes them
        for role, (name, password) in USERS.items():
            add_user(store, name, role, password)
    config = parse_config({
        "cameras": [{"id": CAMERA, "type": "synthetic", "seed": 7, "width": 128, "height": 128,
                     "defect_rate": 0.3, "fps": 10, "latency_budget_ms": 10_000}],
        "bus": {"frames": f"inproc://loop-frames-{id(tmp_path)}",
                "results": f"inproc://loop-results-{id(tmp_path)}"},
        "model": {"path": str(model_dir), "intra_op_threads": 1, "providers": ["cpu"]},
        "inspection": {"workers": 1},
        "storage": {"root": str(root), "pass_sample_rate": 1.0},
        "web": {"enabled": True, "port": 0, "secret_key": "loop-test-key"},
    }, base_dir=tmp_path)
    running = Line(config, tmp_path / "out.txt")
    running.thread.start()
    try:
        yield running
    finally:
        if running.thread.is_alive():  # the test failed before stopping it
            running.stop.set()
            running.jobs.gate.set()
            running.thread.join(60)


def runs(shas: list[str | None]) -> list[str]:
    """The models of consecutive rows, each run of one model once (rows with no model,
    i.e. stale errors, left out)."""
    out: list[str] = []
    for sha in shas:
        if sha is not None and (not out or out[-1] != sha):
            out.append(sha)
    return out


def test_relabel_refit_shadow_promote_and_rollback_on_a_running_line(line: Line) -> None:
    url = line.url()
    qa, admin = Browser(url), Browser(url)
    qa_name, admin_name = qa.sign_in_as("qa"), admin.sign_in_as("admin")

    # -- the line runs; the active model is the configured one -------------------------------
    models = qa.get("/api/models")
    old_sha = models["active"]
    assert old_sha is not None and [m["active"] for m in models["models"]] == [True]
    old_name = models["models"][0]["name"]

    def enough_rows() -> list[dict] | None:
        rows = qa.rows()
        good = [r for r in rows if r["part_id"].startswith("good-") and r["image_url"]]
        defect = [r for r in rows if not r["part_id"].startswith("good-") and r["image_url"]]
        return rows if len(good) >= GOOD_LABELS and len(defect) >= DEFECT_LABELS else None

    rows = wait_for("enough stored parts to label", enough_rows)
    assert {r["model_sha256"] for r in rows} == {old_sha}

    # -- QA labels samples through the API, as the review page does ----------------------------
    labeled: list[int] = []
    for row in [r for r in rows if r["part_id"].startswith("good-")][:GOOD_LABELS]:
        answer = qa.post(f"/api/inspections/{row['id']}/label", {"label": "good"})
        assert answer["label"] == "good"
        labeled.append(row["id"])
    for row in [r for r in rows if not r["part_id"].startswith("good-")][:DEFECT_LABELS]:
        kind = row["part_id"].rsplit("-", 1)[0]  # crack-000043: the generator's truth
        answer = qa.post(f"/api/inspections/{row['id']}/label",
                         {"label": "defect", "defect_type": kind})
        assert answer["label"] == "defect" and answer["defect_type"] == kind
        labeled.append(row["id"])
    samples = qa.get("/api/models/refit/samples", cameras=CAMERA)
    assert samples["labeled_good"] == samples["frames"] == GOOD_LABELS and samples["enough"]

    # -- a refit job; while it runs a second job is refused ------------------------------------
    qa.post("/api/models/refit", {"name": "../evil"}, expect=400)
    started = qa.post("/api/models/refit", {"name": CANDIDATE, "cameras": [CAMERA],
                                            "since_hours": 1.0, "include_passes": False},
                      expect=202)["job"]
    assert started["kind"] == "refit" and started["state"] == "running"
    refused = qa.post("/api/models/refit", {"name": "refit-2"}, expect=409)
    assert "running" in refused["error"]
    refused = qa.post(f"/api/models/{old_name}/shadow", {}, expect=409)
    assert "running" in refused["error"]
    assert qa.get("/api/jobs")["job"]["id"] == started["id"]
    line.jobs.gate.set()
    job = wait_for("the refit job to end", qa.job_ended)
    assert job["id"] == started["id"] and job["state"] == "done", job
    assert job["result"]["name"] == CANDIDATE and job["result"]["active"] is False

    models = qa.get("/api/models")
    entries = {m["name"]: m for m in models["models"]}
    candidate = entries[CANDIDATE]
    new_sha = candidate["sha256"]
    assert models["active"] == old_sha != new_sha and candidate["active"] is False
    assert candidate["origin"]["kind"] == "refit" and candidate["origin"]["by"] == qa_name
    assert candidate["origin"]["from_sha256"] == old_sha
    assert candidate["origin"]["samples"]["labeled_good"] == GOOD_LABELS
    qa.post("/api/models/refit", {"name": CANDIDATE}, expect=409)  # the name is taken

    # -- QA labels parts the candidate was not fitted on: a shadow run leaves those out --------
    def fresh_goods() -> list[dict] | None:
        fresh = [r for r in qa.rows() if r["part_id"].startswith("good-") and r["image_url"]
                 and r["id"] not in labeled]
        return fresh if len(fresh) >= FRESH_GOOD_LABELS else None

    for row in wait_for("fresh good parts", fresh_goods)[:FRESH_GOOD_LABELS]:
        assert qa.post(f"/api/inspections/{row['id']}/label", {"label": "good"})["label"] == "good"
        labeled.append(row["id"])

    # -- the shadow run: before (the active model) and after (the candidate) -------------------
    status, _ = qa.call("GET", f"/api/models/{CANDIDATE}/shadow")
    assert status == 404  # no shadow run yet
    shadow_job = qa.post(f"/api/models/{CANDIDATE}/shadow", {"cameras": [CAMERA]},
                         expect=202)["job"]
    assert shadow_job["kind"] == "shadow"
    job = wait_for("the shadow job to end", qa.job_ended)
    assert job["id"] == shadow_job["id"] and job["state"] == "done", job
    report = qa.get(f"/api/models/{CANDIDATE}/shadow")
    with_frames = [r for state in ("good", "defect") for r in
                   qa.get("/api/inspections", label=state, limit=500)["items"] if r["image_url"]]
    assert sorted(r["id"] for r in with_frames) == sorted(labeled)
    assert len(with_frames) == GOOD_LABELS + DEFECT_LABELS + FRESH_GOOD_LABELS
    assert report["excluded_training"] == GOOD_LABELS  # the frames it was fitted on
    assert report["labeled"] == DEFECT_LABELS + FRESH_GOOD_LABELS
    assert report["lacking_frame"] == 0
    assert report["before"]["sha256"] == old_sha and report["after"]["sha256"] == new_sha
    for side in ("before", "after"):
        figures = report[side]
        assert sum(figures["confusion"].values()) == report["labeled"]
        assert 0 <= figures["false_rejects"] <= FRESH_GOOD_LABELS
        assert 0 <= figures["escapes"] <= DEFECT_LABELS
        assert figures["auroc"] is not None and 0.0 <= figures["auroc"] <= 1.0
        assert figures["threshold"] > 0
    assert all(c["id"] in labeled and c["before_verdict"] != c["after_verdict"]
               for c in report["changed"])
    # The tiny model was fitted on other parts (seed 3) and rejects this line's good ones;
    # the candidate learned them from QA's labels: fewer false rejects, no more escapes.
    assert report["after"]["false_rejects"] < report["before"]["false_rejects"], report
    assert report["after"]["escapes"] <= report["before"]["escapes"], report
    assert report["curve"] and all({"threshold", "false_rejects", "escapes"} <= set(p)
                                   for p in report["curve"])
    listed = {m["name"]: m for m in qa.get("/api/models")["models"]}[CANDIDATE]
    assert listed["shadow"]["labeled"] == report["labeled"]

    # -- promotion: confirmed by an admin; it takes over between two frames --------------------
    qa.post(f"/api/models/{CANDIDATE}/promote", {"confirm": CANDIDATE}, expect=403)
    admin.post(f"/api/models/{CANDIDATE}/promote", {}, expect=400)  # not confirmed
    assert admin.get("/api/models")["active"] == old_sha
    last_before = qa.rows()[-1]
    promoted = admin.post(f"/api/models/{CANDIDATE}/promote", {"confirm": CANDIDATE})
    assert promoted["promoted"] == CANDIDATE and promoted["sha256"] == new_sha
    assert "inspector run" not in promoted["takes_effect"]  # the running line, not a restart
    assert admin.get("/api/models")["active"] == new_sha

    def rows_of(sha: str, count: int, after_seq: int) -> list[dict] | None:
        rows = qa.rows()
        newer = [r for r in rows if r["seq"] > after_seq and r["model_sha256"] == sha]
        return rows if len(newer) >= count else None

    rows = wait_for("rows scored by the candidate", lambda: rows_of(new_sha, 5,
                                                                   last_before["seq"]))
    first_new = next(r for r in rows if r["model_sha256"] == new_sha)
    assert first_new["id"] > last_before["id"]  # no row from before the promotion has it
    promote_at = admin.get("/api/models")["activations"][0]
    assert promote_at["action"] == "promote" and promote_at["sha256"] == new_sha
    assert promote_at["user"] == admin_name
    # The model swaps between two frames: at most the frame being scored when it was
    # promoted (one worker, batches of one) still gets the old model afterwards.
    late = [r for r in rows if r["inspected_ns"] > promote_at["at_ns"]
            and r["model_sha256"] == old_sha]
    assert len(late) <= 1, late

    # -- rollback: one action; newer rows carry the old model again ---------------------------
    qa.post("/api/models/rollback", {}, expect=403)
    last_promoted = qa.rows()[-1]
    back = admin.post("/api/models/rollback", {})
    assert back["active"] == old_name and back["sha256"] == old_sha
    models = admin.get("/api/models")
    assert models["active"] == old_sha and models["previous"] == CANDIDATE
    rows = wait_for("rows scored by the old model again",
                    lambda: rows_of(old_sha, 5, last_promoted["seq"]))

    audit = [a for a in admin.get("/api/audit", limit=50)["items"] if a["action"] == "model"]
    actions = [(a["detail"]["action"], a["user"], a["detail"]["sha256"]) for a in audit]
    assert actions[:2] == [("rollback", admin_name, old_sha), ("promote", admin_name, new_sha)]
    accounting = admin.get("/api/accounting")[CAMERA]
    assert accounting["received"] >= len(rows) and accounting["malformed"] == 0

    # -- stop; every frame is accounted for, across both swaps ---------------------------------
    line.close()
    totals = line.totals[CAMERA]
    assert totals["captured"] == totals["published"] + totals["dropped"]
    assert totals["received"] == totals["published"] and totals["malformed"] == 0
    assert totals["received"] == totals["inspected"] + totals["stale"]
    assert totals["stale"] == 0  # each received frame went through a model
    assert totals["passed"] + totals["rejected"] + totals["errors"] == totals["received"]
    with Store(Path(line.config.storage.root)) as store:
        stored = store.search(SearchFilters(camera=CAMERA), limit=100_000)
    assert len(stored) == totals["received"]
    seqs = sorted(r["seq"] for r in stored)
    assert len(set(seqs)) == len(seqs) and seqs[-1] < totals["captured"]
    assert totals["captured"] - len(seqs) == totals["dropped"]  # the gaps are the drops
    by_seq = sorted(stored, key=lambda r: r["seq"])
    shas = [r["model_sha256"] for r in by_seq]
    assert runs(shas) == [old_sha, new_sha, old_sha]  # one promotion, one rollback
    switch = next(i for i, r in enumerate(by_seq) if r["model_sha256"] == new_sha)
    if totals["dropped"] == 0:  # no frame missing where the model changed
        assert by_seq[switch]["seq"] == by_seq[switch - 1]["seq"] + 1
    out = (Path(line.config.storage.root).parent / "out.txt").read_text()
    assert f"web UI: {url}" in out
