"""A results store with inspections in it, for the web tests."""

from __future__ import annotations

import http.client
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np
from flask.testing import FlaskClient

from inspector.config import Config, parse_config
from inspector.store import InspectionRecord, Store

PASSWORDS = {"operator": "op-secret-1", "qa": "qa-secret-1", "admin": "admin-secret-1"}


def web_config(root: Path, **web: object) -> Config:
    return parse_config({"storage": {"root": str(root)},
                         "web": {"secret_key": "test-key", "port": 0, **web}})


def record(seq: int, verdict: str, score: float, camera: str = "cam1",
           frame: bool = True) -> InspectionRecord:
    image = np.full((64, 64, 3), 90 + seq % 100, np.uint8)
    heat = np.zeros((64, 64), np.float32)
    heat[20:30, 20:30] = score
    now = time.time_ns()
    return InspectionRecord(
        camera=camera, seq=seq, part_id=f"p{seq}", captured_ns=now - 5_000_000, inspected_ns=now,
        verdict=verdict, score=score, threshold=1.0, model_sha256="ab" * 32,
        latency_ms={"total": 5.0}, regions=[{"x": 20, "y": 20, "w": 10, "h": 10}] if
        verdict == "reject" else [], frame=image if frame else None,
        anomaly_map=heat if frame else None, map_low=0.0, map_high=2.0,
    )


def filled_store(root: Path) -> Store:
    from web.auth import add_user

    store = Store(root)
    for role, password in PASSWORDS.items():
        add_user(store, role, role, password)
    store.add_inspections(
        [record(i, "reject" if i % 3 == 0 else "pass", 1.5 if i % 3 == 0 else 0.5)
         for i in range(12)],
        pass_sample_rate=1.0,
    )
    return store


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)


def sign_in(client: FlaskClient, role: str) -> str:
    """Sign ``client`` in as the user named ``role``; returns the new session's CSRF token."""
    token = csrf_token(client)
    response = client.post("/login", data={"username": role, "password": PASSWORDS[role],
                                           "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return csrf_token(client)  # signing in starts a new session, with a new token


class FakeLive:
    """The slice of a running InspectionService the live view reads: one camera whose
    frame never changes."""

    def __init__(self) -> None:
        from inspector.inspection import Preview
        from inspector.inspection.demo import DEMO_MODEL
        from inspector.model.detector import Detector

        self.detector = Detector.open(DEMO_MODEL, providers=("cpu",))
        self.previous = None  # no threshold change to undo
        self.live_shadow = None
        self.preview = Preview()
        frame = np.full((64, 64, 3), 120, np.uint8)
        self.preview.update("cam1", frame, np.ones((64, 64), np.float32), {"seq": 1})

    def accounting(self) -> dict:
        return {"cam1": {"received": 1, "inspected": 1}}


class HttpBrowser:
    """A minimal HTTP client of a real server, from one source address, that keeps the
    session cookie and the CSRF token like a browser."""

    def __init__(self, url: str, source: str = "127.0.0.1") -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10,
                                               source_address=(source, 0))
        self.conn.request("GET", "/login")
        response = self.conn.getresponse()
        page = response.read().decode()
        self.cookie = response.getheader("Set-Cookie").split(";")[0]
        self.token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

    def sign_in(self, name: str, password: str) -> tuple[int, str | None]:
        """POST the sign-in form; returns the status and the Retry-After header."""
        body = urlencode({"username": name, "password": password, "csrf_token": self.token})
        self.conn.request("POST", "/login", body, {
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": self.cookie})
        response = self.conn.getresponse()
        response.read()
        if response.status == 302:
            self.cookie = response.getheader("Set-Cookie").split(";")[0]
        return response.status, response.getheader("Retry-After")

    def close(self) -> None:
        self.conn.close()


def can_bind(address: str) -> bool:
    """Whether this host may use ``address`` as a source (all of 127.0.0.0/8 on Linux)."""
    with socket.socket() as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


def live_document(camera: str, seq: int, verdict: str, score: float | None,
                  threshold: float = 1.0, error: str | None = None) -> dict:
    """A result document as the inspection service hands the preview (the fields the live
    page reads)."""
    now = time.time_ns()
    return {"camera": camera, "seq": seq, "part_id": f"p{seq}", "verdict": verdict,
            "reject": verdict != "pass", "score": score, "threshold": threshold,
            "captured_ns": now - 5_000_000, "inspected_ns": now, "error": error}


class FakeLiveCameras(FakeLive):
    """``FakeLive`` with the given cameras, each showing a 64x64 frame and the result
    ``(verdict, score)``; ``show`` puts a new result up, as the running service does."""

    def __init__(self, results: dict[str, tuple[str, float | None]]) -> None:
        from inspector.inspection import Preview

        super().__init__()
        self.preview = Preview()
        self.seq = 0
        for camera, (verdict, score) in results.items():
            self.show(camera, verdict, score)

    def show(self, camera: str, verdict: str, score: float | None,
             error: str | None = None) -> None:
        self.seq += 1
        frame = np.full((64, 64, 3), 60 + (10 * self.seq) % 150, np.uint8)
        heat = np.zeros((64, 64), np.float32)
        heat[16:32, 16:32] = score or 0.0
        self.preview.update(camera, frame, heat,
                            live_document(camera, self.seq, verdict, score, error=error))

    def accounting(self) -> dict:
        return {camera: {"received": 1, "inspected": 1} for camera in self.preview.cameras()}


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False
