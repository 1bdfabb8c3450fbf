"""A results store with inspections in it, for the web tests."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

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
