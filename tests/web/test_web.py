"""The web UI's server side: roles, CSRF, cookies, hostile requests, the JSON API."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask

from inspector.config import parse_config
from inspector.monitor import AlarmBoard, Condition
from inspector.store import SearchFilters
from web import create_app

from .webutil import PASSWORDS, FakeLive, filled_store, record, web_config
from .webutil import csrf_token as _csrf
from .webutil import sign_in as login


@pytest.mark.parametrize("path", ["/panel", "/review/", "/admin/", "/review/1"])
def test_unauthenticated_pages_redirect_to_login(app: Flask, path: str) -> None:
    response = app.test_client().get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("path", ["/api/inspections", "/api/panel", "/media/images/x.jpg"])
def test_unauthenticated_api_gets_401(app: Flask, path: str) -> None:
    assert app.test_client().get(path).status_code == 401


@pytest.mark.parametrize(
    ("role", "allowed", "forbidden"),
    [("operator", ["/panel", "/api/panel"], ["/review/", "/admin/", "/api/audit"]),
     ("qa", ["/review/", "/review/?view=disagreements"], ["/panel", "/admin/", "/api/panel"]),
     ("admin", ["/panel", "/review/", "/admin/", "/api/audit"], [])],
)
def test_each_role_sees_its_pages_and_gets_403_elsewhere(
    app: Flask, role: str, allowed: list[str], forbidden: list[str]
) -> None:
    client = app.test_client()
    login(client, role)
    for path in allowed:
        assert client.get(path).status_code == 200, path
    for path in forbidden:
        assert client.get(path).status_code == 403, path


def test_wrong_password_is_refused(app: Flask) -> None:
    client = app.test_client()
    token = _csrf(client)
    response = client.post("/login", data={"username": "qa", "password": "nope",
                                           "csrf_token": token})
    assert response.status_code == 200 and "Wrong user name or password" in response.text
    assert client.get("/review/").status_code == 302


def test_state_changing_requests_without_csrf_token_get_400(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/login", data={"username": "qa", "password": PASSWORDS["qa"]}
                       ).status_code == 400
    login(client, "qa")
    response = client.post("/api/inspections/1/label", json={"label": "good"})
    assert response.status_code == 400
    assert app.extensions["store"].get(1)["label"] is None


def test_a_label_with_the_token_is_stored_with_its_history(app: Flask) -> None:
    client = app.test_client()
    token = login(client, "qa")
    headers = {"X-CSRFToken": token}
    assert client.post("/api/inspections/1/label", json={"label": "defect",
                       "defect_type": "scratch"}, headers=headers).status_code == 200
    assert client.post("/api/inspections/1/label", json={"label": "good"},
                       headers=headers).status_code == 200
    detail = client.get("/api/inspections/1").get_json()
    assert detail["label"] == "good"
    assert [(h["label"], h["previous_label"]) for h in detail["history"]] == [
        ("defect", None), ("good", "defect")]
    audit = app.extensions["store"].audit_log()
    assert [a["action"] for a in audit[:2]] == ["label", "label"] and audit[0]["user"] == "qa"


@pytest.mark.parametrize(
    "body",
    [{"label": "maybe"}, {"label": "good", "defect_type": "scratch"},
     {"label": "defect", "defect_type": "not-a-type"}, {"label": "defect", "note": "x" * 5000},
     ["not", "an", "object"]],
)
def test_bad_label_requests_get_400(app: Flask, body: object) -> None:
    client = app.test_client()
    token = login(client, "qa")
    response = client.post("/api/inspections/1/label", json=body, headers={"X-CSRFToken": token})
    assert response.status_code in (400, 413)


def test_operators_may_only_confirm_or_override(app: Flask) -> None:
    client = app.test_client()
    token = login(client, "operator")
    headers = {"X-CSRFToken": token}
    assert client.post("/api/inspections/3/label", json={"label": "none"},
                       headers=headers).status_code == 400
    assert client.post("/api/inspections/3/label", json={"label": "good"},
                       headers=headers).status_code == 200
    assert client.post("/api/inspections/labels", json={"ids": [1], "label": "good"},
                       headers=headers).status_code == 403


def test_oversized_form_input_is_rejected(app: Flask) -> None:
    client = app.test_client()
    token = _csrf(client)
    response = client.post("/login", data={"username": "qa", "password": "x" * 200_000,
                                           "csrf_token": token})
    assert response.status_code == 413


@pytest.mark.parametrize(
    "path",
    ["/media/../inspections.db", "/media/images/../inspections.db", "/media/%2e%2e/web_secret_key",
     "/media/images/..%2f..%2fetc%2fpasswd", "/media/inspections.db", "/media//etc/passwd"],
)
def test_path_traversal_on_image_routes_gets_404(app: Flask, path: str) -> None:
    client = app.test_client()
    login(client, "qa")
    assert client.get(path, follow_redirects=True).status_code == 404


def test_stored_images_are_served(app: Flask) -> None:
    client = app.test_client()
    login(client, "qa")
    item = client.get("/api/inspections?verdict=reject").get_json()["items"][0]
    response = client.get(item["overlay_url"])
    assert response.status_code == 200 and response.mimetype == "image/jpeg"


def test_session_cookie_is_httponly_and_samesite(app: Flask, tmp_path: Path) -> None:
    client = app.test_client()
    token = _csrf(client)
    response = client.post("/login", data={"username": "qa", "password": PASSWORDS["qa"],
                                           "csrf_token": token})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    secure = create_app(web_config(tmp_path / "store", secure_cookies=True),
                        app.extensions["store"])
    client = secure.test_client()
    token = _csrf(client)
    cookie = client.post("/login", data={"username": "qa", "password": PASSWORDS["qa"],
                                         "csrf_token": token}).headers["Set-Cookie"]
    assert "Secure" in cookie


def test_open_redirects_after_login_are_refused(app: Flask) -> None:
    client = app.test_client()
    token = _csrf(client)
    response = client.post("/login?next=//evil.example/x", data={
        "username": "qa", "password": PASSWORDS["qa"], "csrf_token": token})
    assert response.headers["Location"] == "/"


def test_api_filters_and_rejects_bad_values(app: Flask) -> None:
    client = app.test_client()
    login(client, "qa")
    rejects = client.get("/api/inspections?verdict=reject").get_json()
    assert rejects["total"] == 4 and {i["verdict"] for i in rejects["items"]} == {"reject"}
    assert client.get("/api/inspections?min_score=1.0").get_json()["total"] == 4
    assert client.get("/api/inspections?verdict=bogus").status_code == 400
    assert client.get("/api/inspections?min_score=abc").status_code == 400
    assert client.get("/api/inspections/99999").status_code == 404


def test_disagreements_are_sorted_by_closeness_to_the_threshold(app: Flask) -> None:
    store = app.extensions["store"]
    store.add_label(2, "good", "qa")  # a pass labeled good: agreement
    store.add_label(4, "good", "qa")  # a reject (1.5) labeled good: disagreement
    store.add_label(3, "defect", "qa", "dent")  # a pass (0.5) labeled defect: disagreement
    client = app.test_client()
    login(client, "qa")
    items = client.get("/api/inspections?view=disagreements").get_json()["items"]
    assert sorted(i["id"] for i in items) == [3, 4]


def test_statistics_summarise_the_store(app: Flask) -> None:
    client = app.test_client()
    login(client, "operator")
    assert client.get("/stats").status_code == 200
    data = client.get("/api/stats?hours=1").get_json()
    series = data["series"]["cam1"]
    assert len(series["per_minute"]) == len(series["t"]) and min(series["per_minute"]) > 0
    assert all(0 <= r <= 1 for r in series["reject_rate"])
    hist = data["histogram"]
    assert sum(hist["pass"]) == 8 and sum(hist["reject"]) == 4
    assert data["latency"]["cam1"]["p50"] == pytest.approx(5.0)
    assert client.get("/api/stats?hours=abc").status_code == 400  # garbage is refused


def test_live_view_streams_jpeg_frames_and_is_absent_without_a_pipeline(
    app: Flask, tmp_path: Path
) -> None:
    client = app.test_client()
    login(client, "operator")
    assert "needs the UI inside" in client.get("/live").text
    assert client.get("/live/cam1.mjpg").status_code == 404
    live_app = create_app(web_config(tmp_path / "store"), app.extensions["store"], FakeLive())
    client = live_app.test_client()
    login(client, "operator")
    assert "cam1.mjpg" in client.get("/live").text
    response = client.get("/live/cam1.mjpg?overlay=1", buffered=False)
    chunk = next(response.response)
    assert chunk.startswith(b"--frame\r\nContent-Type: image/jpeg") and b"\xff\xd8" in chunk
    response.close()
    assert client.get("/live/nope.mjpg").status_code == 404


def app_registry(store):
    from inspector.loop import Registry

    return Registry(store)


def test_admin_changes_the_threshold_of_the_running_model_and_it_is_audited(
    tmp_path: Path,
) -> None:
    import zmq

    from inspector.inspection.demo import DEMO_MODEL
    from inspector.inspection.service import InspectionService
    from inspector.model.detector import Detector

    store = filled_store(tmp_path / "store")
    config = web_config(tmp_path / "store")
    context = zmq.Context()
    service = InspectionService(config, Detector.open(DEMO_MODEL, providers=("cpu",)), context)
    try:
        client = create_app(config, store, service).test_client()
        token = login(client, "admin")
        old = service.detector.threshold
        response = client.post("/admin/threshold", data={"threshold": "9.5",
                                                         "csrf_token": token})
        assert response.status_code == 302
        service._take_incoming()  # what the inspection loop does before its next batch
        assert service.detector.threshold == 9.5
        assert "a restart keeps it" in client.get("/admin/").text
        kept = app_registry(store).get(service.detector.model.sha256).card.threshold
        assert (kept.value, kept.method, kept.detail["set_by"]) == (9.5, "manual", "admin")
        entry = store.audit_log(1)[0]
        assert entry["action"] == "threshold" and entry["user"] == "admin"
        assert entry["detail"]["previous"] == old and entry["detail"]["threshold"] == 9.5
        client.post("/admin/threshold", data={"threshold": "-3", "csrf_token": token})
        service._take_incoming()
        assert service.detector.threshold == 9.5  # refused
        for garbage in ("abc", "nan", "inf"):
            page = client.post("/admin/threshold", data={"threshold": garbage,
                                                         "csrf_token": token},
                               follow_redirects=True).text
            assert f"Threshold not changed: &#39;{garbage}&#39; is not a number" in page
            assert "could not convert" not in page
        service._take_incoming()
        assert service.detector.threshold == 9.5
        assert "Undo the threshold change" in client.get("/admin/").text
        client.post("/admin/rollback", data={"csrf_token": token})
        service._take_incoming()
        assert service.detector.threshold == old
        undo = store.audit_log(1)[0]
        assert undo["action"] == "threshold" and undo["detail"]["undo"] is True
        assert undo["detail"]["threshold"] == old
        assert "Undo the threshold change" not in client.get("/admin/").text  # once only
        # Each change was kept for restarts: the registry's card says what runs now.
        kept = app_registry(store).get(service.detector.model.sha256)
        assert kept.card.threshold.value == old
        qa = create_app(config, store, service).test_client()
        login(qa, "qa")
        assert qa.post("/admin/threshold", data={"threshold": "1",
                                                 "csrf_token": _csrf(qa)}).status_code == 403
    finally:
        service.receiver.close()
        service.publisher.close()
        context.term()
        store.close()


def test_qa_exports_labeled_samples_as_a_dataset(app: Flask) -> None:
    import csv
    import io
    import zipfile

    store = app.extensions["store"]
    store.add_label(1, "defect", "qa", "scratch")
    store.add_label(2, "good", "qa")
    client = app.test_client()
    login(client, "qa")
    response = client.get("/api/export.zip")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert sorted(n for n in archive.namelist() if n.endswith(".png")) == [
        "defect/scratch/1.png", "good/2.png"]
    rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
    assert {(r["id"], r["label"]) for r in rows} == {("1", "defect"), ("2", "good")}
    assert store.audit_log(1)[0]["action"] == "export"
    operator = app.test_client()
    login(operator, "operator")
    assert operator.get("/api/export.zip").status_code == 403


def test_regions_drawn_on_a_defect_are_labeled_and_exported_as_masks(app: Flask) -> None:
    import csv
    import io
    import json
    import zipfile

    import numpy as np
    from PIL import Image

    client = app.test_client()
    token = login(client, "qa")
    boxes = [{"x": 2, "y": 3, "w": 4, "h": 5}, {"x": 60, "y": 60, "w": 40, "h": 40}]
    answer = client.post("/api/inspections/1/label", headers={"X-CSRFToken": token},
                         json={"label": "defect", "defect_type": "scratch", "regions": boxes})
    assert answer.status_code == 200
    assert client.get("/api/inspections/1").json["history"][-1]["regions"] == boxes
    for bad in ([{"x": 1}], [{"x": 1, "y": 1, "w": 1, "h": 1}] * 51, "everywhere"):
        refused = client.post("/api/inspections/2/label", headers={"X-CSRFToken": token},
                              json={"label": "defect", "regions": bad})
        assert refused.status_code == 400 and "region" in refused.json["error"]
    assert client.post("/api/inspections/labels", headers={"X-CSRFToken": token}, json={
        "ids": [2, 3], "label": "defect", "regions": boxes}).status_code == 400
    assert app.extensions["store"].label_history(2) == []

    archive = zipfile.ZipFile(io.BytesIO(client.get("/api/export.zip").data))
    [row] = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
    assert json.loads(row["regions"]) == boxes
    assert row["mask"] == "ground_truth/scratch/1_mask.png"
    frame = Image.open(io.BytesIO(archive.read(row["file"])))
    mask = np.array(Image.open(io.BytesIO(archive.read(row["mask"]))))
    assert mask.shape == (frame.height, frame.width)  # MVTec's layout: one mask per image
    inside = np.zeros(mask.shape, bool)
    for box in boxes:  # the second box is clipped to the frame
        inside[box["y"]:box["y"] + box["h"], box["x"]:box["x"] + box["w"]] = True
    assert set(np.unique(mask)) == {0, 255} and np.array_equal(mask == 255, inside)


def test_the_panel_shows_the_alarms_of_the_line(app: Flask, tmp_path: Path) -> None:
    board = AlarmBoard()
    monitor = SimpleNamespace(board=board, totals=lambda: {"cam1": {"captured": 3}})
    panel_app = create_app(web_config(tmp_path / "store"), app.extensions["store"], FakeLive(),
                           monitor)
    client = panel_app.test_client()
    login(client, "operator")
    assert client.get("/api/panel").get_json()["alarms"] == []
    board.update([Condition("drift", "score drift on cam1: the typical part scores 3.1", "cam1")])
    [alarm] = client.get("/api/panel").get_json()["alarms"]
    assert alarm["reason"] == "score drift on cam1: the typical part scores 3.1"
    assert (alarm["kind"], alarm["subject"]) == ("drift", "cam1")
    assert alarm["raised_ns"] == board.active()[0].raised_ns
    assert 'id="alarms"' in client.get("/panel").get_data(as_text=True)
    assert client.get("/api/accounting").get_json() == {"cam1": {"captured": 3}}


def test_the_ui_apart_from_inspection_shows_the_alarms_the_box_left_open(app: Flask) -> None:
    store = app.extensions["store"]
    store.log_alarm("camera_down", "cam2", "camera cam2 down: no frame for 6 s", 1_000)
    store.log_alarm("disk_low", "", "the store's filesystem is 93% full", 2_000)
    store.log_alarm("disk_low", "", "the store's filesystem is 91% full", 2_000, 3_000)
    client = app.test_client()
    login(client, "operator")
    assert [a["reason"] for a in client.get("/api/panel").get_json()["alarms"]] == [
        "camera cam2 down: no frame for 6 s"]
    history = client.get("/api/alarms").get_json()["items"]
    assert [(a["kind"], a["active"]) for a in history] == [("disk_low", False),
                                                          ("camera_down", True)]
    assert [a["kind"] for a in client.get("/api/alarms?active=1").get_json()["items"]] == [
        "camera_down"]




def test_the_audit_log_filters_by_action_and_user_and_reads_as_text(app: Flask) -> None:
    store = app.extensions["store"]
    store.audit("threshold", {"previous": 1.5, "threshold": 2.0}, "admin")
    store.audit("export", {"rows": 3}, "qa")
    store.audit("retention", {"deleted": 4}, None)
    client = app.test_client()
    login(client, "admin")
    page = client.get("/admin/?action=threshold").text
    assert "<b>previous</b> 1.5" in page and "<b>threshold</b> 2.0" in page
    assert "<b>rows</b>" not in page and "{&#34;" not in page  # no raw JSON
    assert "<b>rows</b> 3" in client.get("/admin/?user=qa").text
    by_box = client.get("/api/audit?user=system").get_json()["items"]
    assert [a["action"] for a in by_box][:1] == ["retention"]
    assert {a["user"] for a in by_box} == {None}
    assert "No entries match the filter" in client.get("/admin/?user=nobody").text


def test_the_statistics_rate_matches_the_panels_on_a_steady_stream(tmp_path: Path) -> None:
    """Two parts a second for five minutes: the panel's parts per minute and the
    statistics' latest rate (its bucket only partly over) agree."""
    store = filled_store(tmp_path / "store")  # and a camera of its own for the stream
    now = time.time_ns()
    store.add_inspections([dataclasses.replace(record(i, "pass", 0.2, "line"), frame=None,
                                               inspected_ns=now - i * 500_000_000,
                                               captured_ns=now - i * 500_000_000 - 10**6)
                           for i in range(600)])
    client = create_app(web_config(tmp_path / "store"), store).test_client()
    login(client, "operator")
    panel = next(t for t in client.get("/api/panel").get_json()["cameras"]
                 if t["camera"] == "line")["per_minute"]
    rates = client.get("/api/stats?hours=1").get_json()["series"]["line"]["per_minute"]
    assert panel == pytest.approx(120, rel=0.02)
    assert rates[-1] == pytest.approx(panel, rel=0.1)
    assert all(rate == pytest.approx(120, rel=0.1) for rate in rates[1:])
    store.close()


def test_the_panel_lists_errors_by_cause_apart_from_the_reject_queue(app: Flask) -> None:
    store = app.extensions["store"]
    before = app.test_client()
    login(before, "operator")
    queued = before.get("/api/panel").get_json()["queue_total"]
    errors = [dataclasses.replace(record(800 + i, "error", 0.0, "cam3"), score=None, frame=None,
                                  anomaly_map=None, regions=[], error=message)
              for i, message in enumerate(["model failed: out of memory",
                                           "model failed: out of memory", "stale: 2 s old"])]
    store.add_inspections(errors)
    panel = before.get("/api/panel").get_json()
    assert panel["queue_total"] == queued  # errors are not rejects to review
    assert all(item["verdict"] == "reject" for item in panel["queue"])
    causes = {(e["camera"], e["cause"]): e["count"] for e in panel["errors"]}
    assert causes == {("cam3", "model failed"): 2, ("cam3", "stale"): 1}
    assert panel["errors"][0]["message"] == "model failed: out of memory"


def test_the_panel_shows_every_configured_camera_and_marks_a_dead_one(tmp_path: Path) -> None:
    """Inside `inspector run`: the tiles are the config's cameras, a camera that never
    delivered included and marked down; a camera only an old run knew is left out."""
    store = filled_store(tmp_path / "store")  # today's rows come from "cam1", an old run's
    config = parse_config({"storage": {"root": str(tmp_path / "store")},
                           "web": {"secret_key": "k", "port": 0},
                           "cameras": [{"id": "press1", "type": "synthetic"},
                                       {"id": "press2", "type": "synthetic"}]})
    board = AlarmBoard()
    board.update([Condition("camera_down", "camera press2 down: no frame for 9 s", "press2")])
    monitor = SimpleNamespace(board=board, totals=dict)
    client = create_app(config, store, FakeLive(), monitor).test_client()
    login(client, "operator")
    tiles = {t["camera"]: t for t in client.get("/api/panel").get_json()["cameras"]}
    assert list(tiles) == ["press1", "press2"]
    assert tiles["press1"]["down"] is None
    assert tiles["press2"]["down"] == "camera press2 down: no frame for 9 s"
    store.close()


def test_the_review_grid_says_why_a_card_has_no_image_and_counts_pages(app: Flask) -> None:
    store = app.extensions["store"]
    store.add_inspections([record(900, "pass", 0.1, frame=False)])
    client = app.test_client()
    login(client, "qa")
    page = client.get("/review/").text
    assert "no image: passes keep theirs at a rate of 10%" in page  # storage default
    assert "page 1 of 1" in page


def test_an_operator_takes_back_only_their_own_last_label(app: Flask) -> None:
    store = app.extensions["store"]
    [mine, qas] = [row["id"] for row in store.search(SearchFilters(verdict="reject"), 2)]
    operator = app.test_client()
    token = login(operator, "operator")

    def post(inspection_id: int, label: str) -> int:
        return operator.post(f"/api/inspections/{inspection_id}/label", json={"label": label},
                             headers={"X-CSRFToken": token}).status_code

    assert post(mine, "none") == 400  # nothing of theirs to take back
    assert post(mine, "defect") == 200
    assert post(mine, "none") == 200  # the undo of their own tap
    assert store.get(mine)["label"] is None
    store.add_label(qas, "good", "qa")
    assert post(qas, "none") == 400  # QA's label is QA's to change
    assert store.get(qas)["label"] == "good"
