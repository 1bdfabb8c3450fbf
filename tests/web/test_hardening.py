"""Findings of a security review, each as the request that showed it: live stream slots,
connection and body bounds, query numbers, label ownership, the export, /media links and
caching, the secret key file. Real Flask, real SQLite, a real waitress server where the
server is what matters."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import socket
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

import web.server
from inspector.config import parse_config
from web import create_app
from web.live import MAX_STREAMS
from web.server import WEB_NICENESS, WebServer, yielding_to_inspection

from .webutil import (
    PASSWORDS,
    FakeLive,
    HttpBrowser,
    filled_store,
    record,
    sign_in,
    wait_for,
    web_config,
)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    store = filled_store(tmp_path / "store")
    yield create_app(web_config(tmp_path / "store"), store, FakeLive())
    store.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WebServer]:
    store = filled_store(tmp_path / "store")
    served = WebServer(web_config(tmp_path / "store", host="127.0.0.1"), store, FakeLive())
    served.start()
    yield served
    served.close()
    store.close()




# --- live streams -------------------------------------------------------------------

def test_head_requests_take_no_stream_slot(app: Flask) -> None:
    client = app.test_client()
    sign_in(client, "operator")
    for _ in range(MAX_STREAMS + 2):
        assert client.head("/live/cam1.mjpg").status_code == 200
    assert app.extensions["live_slots"].active == 0
    response = client.get("/live/cam1.mjpg", buffered=False)
    assert response.status_code == 200 and next(response.response).startswith(b"--frame")
    response.close()
    assert app.extensions["live_slots"].active == 0


def test_the_viewer_beyond_the_limit_gets_a_503_page_with_retry_after(app: Flask) -> None:
    client = app.test_client()
    sign_in(client, "operator")
    streams = []
    for _ in range(MAX_STREAMS):
        response = client.get("/live/cam1.mjpg", buffered=False)
        next(response.response)  # the body has started: the slot is taken
        streams.append(response)
    refused = client.get("/live/cam1.mjpg")
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
    assert "live views are in use" in refused.text and refused.mimetype == "text/html"
    streams.pop().close()  # a viewer leaves: the generator's close frees its slot
    again = client.get("/live/cam1.mjpg", buffered=False)
    assert again.status_code == 200
    again.close()
    for response in streams:
        response.close()
    assert app.extensions["live_slots"].active == 0


def test_viewers_that_disconnect_free_their_slots(server: WebServer) -> None:
    browser = HttpBrowser(server.url)
    assert browser.sign_in("operator", PASSWORDS["operator"])[0] == 302

    def watch_and_leave() -> bool:
        """Open a stream, read its first frame, hang up; False when refused."""
        with socket.create_connection((browser.host, browser.port), timeout=5) as sock:
            sock.sendall(f"GET /live/cam1.mjpg HTTP/1.1\r\nHost: x\r\nCookie: "
                         f"{browser.cookie}\r\n\r\n".encode())
            head = sock.recv(65536)
            if not head.startswith(b"HTTP/1.1 200"):
                return False
            while b"--frame" not in head:
                chunk = sock.recv(65536)
                assert chunk, "closed before the first frame"
                head += chunk
            return True

    # The camera's frame never changes: before, a stream that had sent its frame slept
    # forever, never noticed the viewer leave, and kept its slot until restart.
    for attempt in range(MAX_STREAMS + 2):
        assert wait_for(watch_and_leave), f"viewer {attempt + 1} was refused"
    browser.close()
    assert wait_for(lambda: server.app.extensions["live_slots"].active == 0)


# --- connections and bodies ------------------------------------------------------------

def test_idle_connections_neither_lock_out_the_ui_nor_stay_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web.server, "CHANNEL_TIMEOUT_S", 2, raising=False)
    monkeypatch.setattr(web.server, "CLEANUP_INTERVAL_S", 1, raising=False)
    store = filled_store(tmp_path / "store")
    served = WebServer(web_config(tmp_path / "store", host="127.0.0.1"), store)
    served.start()
    idle: list[socket.socket] = []
    try:
        host, port = "127.0.0.1", served._server.effective_port
        # More than waitress's default limit of 100, which left the UI unreachable.
        idle = [socket.create_connection((host, port), timeout=5) for _ in range(150)]
        browser = HttpBrowser(served.url)  # answers at once, or times out
        assert browser.sign_in("qa", PASSWORDS["qa"])[0] == 302
        browser.close()
        idle[0].settimeout(8)
        assert idle[0].recv(1) == b""  # closed by the server once idle too long
    finally:
        for sock in idle:
            sock.close()
        served.close()
        store.close()


def test_a_huge_body_is_refused_from_its_headers_before_it_is_sent(server: WebServer) -> None:
    port = server._server.effective_port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 104857600\r\n\r\n" + b"a" * 1024)
        # Before, the server waited for all 100 MB: this read timed out.
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")


class CountingBody(io.RawIOBase):
    """A request body that counts what the app reads of it."""

    def __init__(self, size: int) -> None:
        self.size, self.left, self.read_bytes = size, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # the test client measures the body by seeking
        return True

    def tell(self) -> int:
        return self.size - self.left

    def seek(self, offset: int, whence: int = 0) -> int:
        self.left = self.size - (offset if whence == 0 else self.size + offset)
        return self.tell()

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        buffer[:n] = b"a" * n
        self.left -= n
        self.read_bytes += n
        return n


@pytest.mark.parametrize("path", ["/api/inspections/1/label", "/admin/users", "/logout"])
def test_unauthenticated_bodies_are_not_read(app: Flask, path: str) -> None:
    body = CountingBody(32 * 1024)
    response = app.test_client().post(
        path, input_stream=body, content_length=32 * 1024,
        content_type="application/x-www-form-urlencoded")
    assert response.status_code in (302, 401) and body.read_bytes == 0


def test_the_sign_in_form_is_held_to_a_few_kib(app: Flask) -> None:
    body = CountingBody(32 * 1024)
    response = app.test_client().post("/login", input_stream=body, content_length=32 * 1024,
                                      content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413 and body.read_bytes == 0


# --- numbers in query strings ------------------------------------------------------------

@pytest.mark.parametrize(("path", "status"), [
    ("/api/inspections?offset=" + "9" * 30, 200),
    ("/api/inspections?after_id=" + "9" * 30, 200),
    ("/api/inspections?limit=" + "9" * 30, 200),
    ("/api/inspections?limit=-5", 200),
    ("/api/inspections?since_hours=1e300", 200),
    ("/api/inspections?since_hours=-1e300", 200),
    ("/api/inspections?min_score=1e308&max_score=-1e308", 200),
    ("/api/inspections?since_hours=nan", 400),
    ("/api/inspections?since_hours=inf", 400),
    ("/api/inspections?min_score=nan", 400),
    ("/api/inspections?offset=1e5", 400),
    ("/api/inspections?after_id=abc", 400),
    ("/api/inspections?limit=" + "9" * 5000, 400),
    ("/api/export.zip?since_hours=1e300", 200),
    ("/review/?page=" + "9" * 30, 200),
    ("/review/?page=x", 400),
    ("/review/?since_hours=nan", 400),
    ("/api/stats?hours=1e300", 200),
    ("/api/stats?hours=nan", 400),
    ("/api/audit?limit=" + "9" * 30, 200),
    ("/api/audit?limit=zero", 400),
])
def test_numeric_query_arguments_are_clamped_or_refused(app: Flask, path: str,
                                                        status: int) -> None:
    client = app.test_client()
    sign_in(client, "admin")
    assert client.get(path).status_code == status


# --- labels and the export -----------------------------------------------------------

def test_an_operator_cannot_replace_a_label_set_by_qa_or_admin(app: Flask) -> None:
    store = app.extensions["store"]
    store.add_label(3, "defect", "qa", "scratch")
    store.add_label(6, "good", "admin")
    store.add_label(9, "defect", "operator")
    client = app.test_client()
    headers = {"X-CSRFToken": sign_in(client, "operator")}
    for inspection_id in (3, 6):
        before = store.get(inspection_id)["label"]
        response = client.post(f"/api/inspections/{inspection_id}/label",
                               json={"label": "good" if before == "defect" else "defect"},
                               headers=headers)
        assert response.status_code == 409 and "QA" in response.get_json()["error"]
        assert store.get(inspection_id)["label"] == before
    # Unlabeled samples and operators' own labels stay theirs to set and correct.
    for inspection_id in (0 + 1, 9):
        assert client.post(f"/api/inspections/{inspection_id}/label", json={"label": "good"},
                           headers=headers).status_code == 200
    qa = app.test_client()
    assert qa.post("/api/inspections/9/label", json={"label": "defect"},
                   headers={"X-CSRFToken": sign_in(qa, "qa")}).status_code == 200
    assert store.get(9)["label"] == "defect"


def test_the_export_neutralises_spreadsheet_formulas(app: Flask) -> None:
    store = app.extensions["store"]
    hostile = ['=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "-2+3",
               "@SUM(1)", "ok-id"]
    ids = store.add_inspections([dataclasses.replace(record(100 + i, "reject", 1.5),
                                                     part_id=part)
                                 for i, part in enumerate(hostile)])
    for inspection_id in ids:
        store.add_label(inspection_id, "defect", "qa")
    client = app.test_client()
    sign_in(client, "qa")
    archive = zipfile.ZipFile(io.BytesIO(client.get("/api/export.zip").data))
    rows = {int(r["id"]): r for r in csv.DictReader(
        io.StringIO(archive.read("labels.csv").decode()))}
    cells = [rows[i]["part_id"] for i in ids]
    assert cells == ["'" + p for p in hostile[:4]] + ["ok-id"]
    assert rows[ids[0]]["score"] == "1.5"  # numbers stay numbers


# --- /media -----------------------------------------------------------------------------

def test_media_refuses_symlinks_and_is_never_cached(app: Flask, tmp_path: Path) -> None:
    store = app.extensions["store"]
    client = app.test_client()
    sign_in(client, "qa")
    item = client.get("/api/inspections?verdict=reject").get_json()["items"][0]
    response = client.get(item["image_url"])
    assert response.status_code == 200 and response.data.startswith(b"\x89PNG")
    assert response.mimetype == "image/png"
    assert response.headers["Cache-Control"] == "private, no-store"
    assert "public" not in response.headers["Cache-Control"]
    secret = tmp_path / "outside.txt"
    secret.write_text("not for the web")
    real_image = store.root / item["image_url"].removeprefix("/media/")
    (store.images / "leak.jpg").symlink_to(secret)
    (store.images / "alias.jpg").symlink_to(real_image)  # even one that stays inside
    (store.images / "etc").symlink_to("/etc")
    for name in ("leak.jpg", "alias.jpg", "etc/hostname", "etc/passwd"):
        assert client.get(f"/media/images/{name}").status_code == 404, name


# --- the secret key file -------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"\n", b"short", b"\xff\xfe" * 40, b"z" * 64])
def test_an_empty_or_damaged_secret_key_file_is_replaced(tmp_path: Path,
                                                         content: bytes) -> None:
    root = tmp_path / "store"
    store = filled_store(root)
    try:
        (root / "web_secret_key").write_bytes(content)
        config = parse_config({"storage": {"root": str(root)}, "web": {"port": 0}})
        client = create_app(config, store).test_client()
        assert client.get("/login").status_code == 200
        key = (root / "web_secret_key").read_text()
        assert len(key) == 64 and int(key, 16) >= 0
        assert stat.S_IMODE(os.stat(root / "web_secret_key").st_mode) == 0o600
        again = create_app(config, store)
        assert again.config["SECRET_KEY"] == key  # a good key is kept across restarts
    finally:
        store.close()


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priority is Linux's")
def test_web_threads_serve_at_a_lower_priority_than_inspection() -> None:
    seen: list[int] = []

    def app(environ: dict, start_response: object) -> list[bytes]:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return [b""]

    served = yielding_to_inspection(app)
    thread = threading.Thread(target=lambda: [served({}, None) for _ in range(2)])
    thread.start()
    thread.join()
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen == [max(own, WEB_NICENESS)] * 2  # the serving thread only, and once
