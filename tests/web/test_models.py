"""The Models page and API: listing, promoting with confirmation, rolling back, and the box's
own commands acting through the local API token."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest
from flask import Flask

from inspector.cli import main
from inspector.imaging import list_images
from inspector.local_api import API_TOKEN_FILE, WEB_URL_FILE
from inspector.loop import MIN_REFIT_SAMPLES, Registry
from inspector.model import LoadedModel, load_model, sha256_bytes
from inspector.store import SearchFilters
from web import create_app
from web.server import WebServer

from .webutil import filled_store, record, sign_in, web_config


class RecordingInspection:
    """A running inspection's side of a switch: the models it was handed."""

    def __init__(self) -> None:
        self.used: list[str] = []
        self.live_shadow = None

    def use_model(self, model: LoadedModel) -> None:
        self.used.append(model.sha256)


def second(model: LoadedModel, name: str = "candidate") -> LoadedModel:
    onnx = model.onnx + b"\0" * 7  # other bytes, the same graph: another sha256
    card = model.card.model_copy(update={"name": name, "onnx_sha256": sha256_bytes(onnx)})
    return LoadedModel(card, onnx, model.path)


@pytest.fixture
def boxed(tmp_path: Path, model_dir: Path) -> Iterator[tuple[Flask, RecordingInspection, str]]:
    """An app over a store whose registry keeps the running model and one candidate."""
    store = filled_store(tmp_path / "store")
    registry = Registry(store)
    running = load_model(model_dir)
    registry.startup_model(running)
    registry.add(second(running), "candidate", origin={"kind": "refit", "by": "qa"})
    inspection = RecordingInspection()
    store.log_alarm("drift", "cam1", "score drift on cam1: the typical part scores 3 (fitted "
                    "2, threshold 4), up", 1_000)  # as the running box writes it
    app = create_app(web_config(tmp_path / "store"), store, inspection)
    yield app, inspection, running.sha256
    store.close()


def test_the_models_page_lists_kept_models_for_qa_only(boxed) -> None:
    app, _, running = boxed
    client = app.test_client()
    sign_in(client, "operator")
    assert client.get("/models").status_code == 403
    assert client.get("/api/models").status_code == 403
    client = app.test_client()
    sign_in(client, "qa")
    page = client.get("/models").get_data(as_text=True)
    assert "candidate" in page and running[:12] in page and "refit by qa" in page
    assert "score drift on cam1" in page  # the alarm a QA engineer acts on with a refit
    listing = client.get("/api/models").get_json()
    assert listing["active"] == running
    assert {m["name"]: m["active"] for m in listing["models"]}["candidate"] is False


def test_promotion_needs_the_name_confirmed_and_an_admin(boxed) -> None:
    app, inspection, running = boxed
    qa = app.test_client()
    token = sign_in(qa, "qa")
    refused = qa.post("/api/models/candidate/promote", json={"confirm": "candidate"},
                      headers={"X-CSRFToken": token})
    assert refused.status_code == 403 and "admin" in refused.get_json()["error"]
    admin = app.test_client()
    token = sign_in(admin, "admin")
    unconfirmed = admin.post("/api/models/candidate/promote", json={},
                             headers={"X-CSRFToken": token})
    assert unconfirmed.status_code == 400 and "confirm" in unconfirmed.get_json()["error"]
    unknown = admin.post("/api/models/nope/promote", json={"confirm": "nope"},
                         headers={"X-CSRFToken": token})
    assert unknown.status_code == 404
    assert inspection.used == []
    done = admin.post("/api/models/candidate/promote", json={"confirm": "candidate"},
                      headers={"X-CSRFToken": token})
    assert done.status_code == 200 and done.get_json()["promoted"] == "candidate"
    registry = app.extensions["registry"]
    assert inspection.used == [registry.get("candidate").sha256]
    assert registry.active_sha() == registry.get("candidate").sha256
    audit = [json.loads(a["detail_json"]) for a in registry.store.audit_log(5)
             if a["action"] == "model"]
    assert audit[0]["action"] == "promote" and audit[0]["name"] == "candidate"
    back = admin.post("/api/models/rollback", json={}, headers={"X-CSRFToken": token})
    assert back.status_code == 200 and inspection.used[-1] == running


def test_qa_may_promote_where_the_config_allows(tmp_path: Path, model_dir: Path) -> None:
    store = filled_store(tmp_path / "store")
    registry = Registry(store)
    registry.startup_model(load_model(model_dir))
    registry.add(second(load_model(model_dir)), "candidate")
    app = create_app(web_config(tmp_path / "store", qa_can_promote=True), store, None)
    qa = app.test_client()
    token = sign_in(qa, "qa")
    page = qa.get("/models/candidate/promote").get_data(as_text=True)
    assert "Yes, promote candidate" in page
    done = qa.post("/models/candidate/promote", data={"confirm": "candidate",
                                                      "csrf_token": token})
    assert done.status_code == 302
    flashed = qa.get("/models").get_data(as_text=True)
    assert "next `inspector run` starts with" in flashed  # no pipeline in this process
    assert registry.active_sha() == registry.get("candidate").sha256
    store.close()


def test_a_page_post_without_its_csrf_token_is_refused(boxed) -> None:
    app, inspection, _ = boxed
    admin = app.test_client()
    sign_in(admin, "admin")
    assert admin.post("/models/rollback").status_code == 400
    assert inspection.used == []


def test_the_local_token_acts_as_admin_from_this_host_only(boxed) -> None:
    app, inspection, running = boxed
    root = app.extensions["registry"].store.root
    token = (root / API_TOKEN_FILE).read_text()
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}", "X-Inspector-Actor": "ops <b>"}
    answer = client.post("/api/models/candidate/promote", json={"confirm": "candidate"},
                         headers=auth)  # no CSRF token: none is needed with the API token
    assert answer.status_code == 200, answer.get_data(as_text=True)
    registry = app.extensions["registry"]
    assert registry.store.activations(1)[0]["user"] == "local:opsb"
    elsewhere = client.post("/api/models/rollback", json={}, headers=auth,
                            environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert elsewhere.status_code == 401
    wrong = client.post("/api/models/rollback", json={},
                        headers={"Authorization": "Bearer " + "0" * 64})
    assert wrong.status_code == 401
    assert registry.active_sha() != running and len(inspection.used) == 1
    assert (root / API_TOKEN_FILE).stat().st_mode & 0o077 == 0


def test_promote_and_rollback_commands_act_on_the_running_box(tmp_path: Path, model_dir: Path,
                                                              capsys) -> None:
    root = tmp_path / "store"
    store = filled_store(root)
    registry = Registry(store)
    running = load_model(model_dir)
    registry.startup_model(running)
    registry.add(second(running), "candidate")
    inspection = RecordingInspection()
    config_path = tmp_path / "inspector.toml"
    config_path.write_text(f'[storage]\nroot = "{root}"\n[web]\nport = 0\n')
    config = web_config(root)
    server = WebServer(config, store, inspection)
    server.start()
    try:
        assert (root / WEB_URL_FILE).read_text() == server.url
        assert main(["promote", "candidate", "--config", str(config_path)]) == 0
        assert "promoted candidate" in capsys.readouterr().out
        assert inspection.used == [registry.get("candidate").sha256]
        assert main(["promote", "nope", "--config", str(config_path)]) == 1
        assert "no model 'nope'" in capsys.readouterr().err
        assert main(["rollback", "--config", str(config_path)]) == 0
        assert inspection.used[-1] == running.sha256
    finally:
        server.close()
    assert main(["rollback", "--config", str(config_path)]) == 1
    assert "no web UI answers" in capsys.readouterr().err
    store.close()


def test_the_commands_say_when_no_box_has_run_here(tmp_path: Path, capsys) -> None:
    config_path = tmp_path / "inspector.toml"
    config_path.write_text(f'[storage]\nroot = "{tmp_path / "store"}"\n')
    assert main(["rollback", "--config", str(config_path)]) == 1
    assert "start `inspector run` first" in capsys.readouterr().err



# -- refits and shadow runs as jobs ---------------------------------------------------------

def _wait_for_job(client, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get("/api/jobs").get_json()["job"]
        if job["state"] != "running":
            return job
        time.sleep(0.1)
    raise AssertionError("the job did not end in time")


@pytest.fixture
def labeled(boxed, category: Path) -> tuple[Flask, list[int]]:
    """The boxed app with 10 parts labeled good and 2 defects, with stored frames."""
    app = boxed[0]
    store = app.extensions["registry"].store
    frames = [cv2.imread(str(p)) for p in list_images(category / "train/good")]
    good = [record(100 + i, "pass", 0.5) for i in range(MIN_REFIT_SAMPLES)]
    good = [dataclasses.replace(r, frame=frames[i % len(frames)]) for i, r in enumerate(good)]
    ids = store.add_inspections([*good, record(200, "reject", 1.5), record(201, "reject", 1.5)])
    for inspection_id in ids[:-2]:
        store.add_label(inspection_id, "good", "qa")
    for inspection_id in ids[-2:]:
        store.add_label(inspection_id, "defect", "qa")
    return app, ids


def test_a_refit_and_a_shadow_run_from_the_page_s_api(labeled) -> None:
    app, ids = labeled
    qa = app.test_client()
    token = sign_in(qa, "qa")
    headers = {"X-CSRFToken": token}
    preview = qa.get("/api/models/refit/samples").get_json()
    assert (preview["labeled_good"], preview["enough"]) == (MIN_REFIT_SAMPLES, True)
    started = qa.post("/api/models/refit", json={"name": "refit-1"}, headers=headers)
    assert started.status_code == 202 and started.get_json()["job"]["kind"] == "refit"
    busy = qa.post("/api/models/refit", json={"name": "refit-2"}, headers=headers)
    job = _wait_for_job(qa)
    assert job["state"] == "done", job["error"]
    if busy.status_code != 202:  # the first job was still running: one at a time
        assert busy.status_code == 409 and "is running" in busy.get_json()["error"]
    entry = app.extensions["registry"].get("refit-1")
    assert (entry.origin["by"], entry.active) == ("qa", False)

    assert qa.post("/api/models/refit-1/shadow", json={},
                   headers=headers).status_code == 202
    assert _wait_for_job(qa)["state"] == "done"
    report = qa.get("/api/models/refit-1/shadow").get_json()
    assert report["excluded_training"] == MIN_REFIT_SAMPLES  # fitted on: not judged on
    assert report["labeled"] == len(ids) - MIN_REFIT_SAMPLES
    assert report["before"]["sha256"] == boxed_sha(app)
    page = qa.get("/models/refit-1/shadow").get_data(as_text=True)
    assert "would change" in page and "false rejects" in page
    # Every labeled-good frame went into the fit: the page asks for fresh labels.
    assert "Too few labeled parts to judge" in page
    assert f"0 good and 2 defective parts it was\nnot fitted on ({MIN_REFIT_SAMPLES} it was" in page
    link = re.search(r'href="([^"]+)">Label parts inspected since it was made', page).group(1)
    assert link.startswith("/review/?") and "label=none" in link and "since_hours=1" in link
    assert qa.get(link.replace("&amp;", "&")).status_code == 200
    assert "false rejects" in qa.get("/models").get_data(as_text=True)
    assert "what it would change" not in qa.get("/models/refit-1/promote").get_data(as_text=True)


def test_enough_fresh_labels_ask_for_no_more(labeled) -> None:
    from web.models import FRESH_DEFECT, FRESH_GOOD, _fresh_labels

    app, _ = labeled
    entry = app.extensions["registry"].entries()[0]
    confusion = {"true_passes": FRESH_GOOD - 3, "false_rejects": 3, "true_rejects": FRESH_DEFECT,
                 "escapes": 0}
    with app.test_request_context():
        assert _fresh_labels(entry, {"after": {"confusion": confusion}}) is None
        fewer = {**confusion, "escapes": 0, "true_rejects": FRESH_DEFECT - 1}
        asked = _fresh_labels(entry, {"after": {"confusion": fewer}})
    assert asked is not None and (asked["good"], asked["defect"]) == (FRESH_GOOD,
                                                                      FRESH_DEFECT - 1)


def boxed_sha(app: Flask) -> str:
    return app.extensions["registry"].active_sha()


def test_jobs_refuse_bad_input_with_a_reason(labeled) -> None:
    app, _ = labeled
    qa = app.test_client()
    headers = {"X-CSRFToken": sign_in(qa, "qa")}
    for body, reason in [({"name": "../x"}, "model name"), ({}, "model name"),
                         ({"name": "ok", "cameras": ["a/b"]}, "camera id"),
                         ({"name": "ok", "cameras": "x" * 10}, None),
                         ({"name": "ok", "since_hours": "nan"}, "finite"),
                         ({"name": "candidate"}, "already kept")]:
        answer = qa.post("/api/models/refit", json=body, headers=headers)
        if reason is None:  # a comma-separated string is a list of one camera: accepted
            assert answer.status_code == 202
            _wait_for_job(qa)
            continue
        assert answer.status_code in (400, 409) and reason in answer.get_json()["error"], body
    assert qa.post("/api/models/refit", data="[]", headers={
        **headers, "Content-Type": "application/json"}).status_code == 400
    assert qa.post("/api/models/nope/shadow", json={}, headers=headers).status_code == 404
    assert qa.get("/api/models/candidate/shadow").status_code == 404  # none yet
    assert qa.get("/models/candidate/shadow").status_code == 404
    assert qa.post("/api/jobs/cancel", headers=headers).get_json() == {"cancelled": False}


# -- a threshold's consequences before it is set ----------------------------------------------

class ScoringModel:
    """The running model as the admin page reads it: its hash and threshold."""

    def __init__(self, sha256: str, threshold: float) -> None:
        card = SimpleNamespace(name="line-model", threshold=SimpleNamespace(
            value=threshold, method="manual"))
        self.detector = SimpleNamespace(model=SimpleNamespace(sha256=sha256), threshold=threshold,
                                        card=card)
        self.previous = None


def test_the_admin_sees_what_a_threshold_would_do_before_setting_it(tmp_path: Path) -> None:
    store = filled_store(tmp_path / "store")  # 12 rows scored by "ab"*32: 4 at 1.5, 8 at 0.5
    ids = [row["id"] for row in store.search(SearchFilters(), 100)]
    labels = dict(zip(ids[:6], ["good", "good", "good", "defect", "defect", "good"], strict=True))
    for inspection_id, label in labels.items():
        store.add_label(inspection_id, label, "qa")
    other = record(99, "reject", 7.0)  # another model's score: not this model's consequence
    store.add_inspections([dataclasses.replace(other, model_sha256="cd" * 32)])
    app = create_app(web_config(tmp_path / "store"), store, ScoringModel("ab" * 32, 1.0))
    admin = app.test_client()
    sign_in(admin, "admin")
    assert "What a threshold would do" in admin.get("/admin/").get_data(as_text=True)
    data = admin.get("/admin/threshold/effects?hours=1").get_json()
    assert data["recent"] == 12 and data["labeled"] == {"good": 4, "defect": 2}
    scores = {row["id"]: row["score"] for row in store.search(SearchFilters(), 100)}
    good = [scores[i] for i, label in labels.items() if label == "good"]
    defect = [scores[i] for i, label in labels.items() if label == "defect"]
    recent = [s for i, s in scores.items() if i in ids]
    by_threshold = {round(e["threshold"], 9): e for e in data["effects"]}
    assert 1.0 in by_threshold  # the current threshold is always a point of the curve
    for t, effect in by_threshold.items():
        assert effect["false_rejects"] == sum(s >= t for s in good)
        assert effect["escapes"] == sum(s < t for s in defect)
        assert effect["rejects"] == sum(s >= t for s in recent)
    assert max(by_threshold) == 1.5  # the other model's 7.0 is not on this model's curve
    qa = app.test_client()
    sign_in(qa, "qa")
    assert qa.get("/admin/threshold/effects").status_code == 403
    assert admin.get("/admin/threshold/effects?hours=nan").status_code == 400
    store.close()


# -- live shadow ----------------------------------------------------------------------------

def test_a_live_shadow_from_the_api(tmp_path: Path) -> None:
    import zmq

    from inspector.inspection import DEMO_MODEL, InspectionService
    from inspector.model import Detector
    from tests.loop.test_live_shadow import strict

    store = filled_store(tmp_path / "store")
    registry = Registry(store)
    running = load_model(DEMO_MODEL)
    registry.startup_model(running)
    registry.add(strict(running), "candidate")
    config = web_config(tmp_path / "store")
    alone = create_app(config, store, None).test_client()
    headers = {"X-CSRFToken": sign_in(alone, "qa")}
    refused = alone.post("/api/models/candidate/live-shadow", json={}, headers=headers)
    assert refused.status_code == 409 and "inspector run" in refused.get_json()["error"]
    context = zmq.Context()
    service = InspectionService(config, Detector.open(DEMO_MODEL, providers=("cpu",)), context)
    service.start()
    try:
        app = create_app(config, store, service)
        qa = app.test_client()
        headers = {"X-CSRFToken": sign_in(qa, "qa")}
        for body, code in [({"minutes": "nan"}, 400), ({"minutes": 0}, 400),
                           ({"minutes": 1e9}, 400)]:
            assert qa.post("/api/models/candidate/live-shadow", json=body,
                           headers=headers).status_code == code, body
        active = qa.post(f"/api/models/{running.card.name}/live-shadow", json={},
                         headers=headers)
        assert active.status_code == 409 and "active model" in active.get_json()["error"]
        started = qa.post("/api/models/candidate/live-shadow", json={"minutes": 5},
                          headers=headers)
        assert started.status_code == 202 and started.get_json()["shadow"]["running"]
        again = qa.post("/api/models/candidate/live-shadow", json={}, headers=headers)
        assert again.status_code == 409 and "is running" in again.get_json()["error"]
        assert "Live shadow: candidate" in qa.get("/models").get_data(as_text=True)
        assert qa.get("/api/live-shadow").get_json()["shadow"]["model"] == "candidate"
        assert store.audit_log(1)[0]["action"] == "live_shadow"
        admin = app.test_client()
        admin_headers = {"X-CSRFToken": sign_in(admin, "admin")}
        assert admin.post("/api/models/candidate/promote", json={"confirm": "candidate"},
                          headers=admin_headers).status_code == 200
        status = qa.get("/api/live-shadow").get_json()["shadow"]
        assert not status["running"] and status["stopped_by"] == "candidate promoted"
        assert qa.post("/api/live-shadow/stop", headers=headers).get_json() == {"stopped": False}
    finally:
        service.stop(drain_quiet_ms=10)
        context.term()
        store.close()
