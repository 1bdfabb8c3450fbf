"""Shared by the store tests: a fresh store per test, records to write, small frames."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector.store import InspectionRecord, RetentionPolicy, Store

NOW = 1_700_000_000 * 10**9  # 2023-11-14 22:13:20 UTC
DAY = 86_400 * 10**9
HOUR = 3_600 * 10**9
DATE = "2023-11-14"
# A smooth frame: small files, so tests stay fast.
FRAME = np.dstack(
    [np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))] * 2 + [np.full((48, 64), 90)]
).astype(np.uint8)
MAP = np.zeros((48, 64), np.float32)
MAP[10:20, 20:30] = 1.0
# Noise does not compress: about 170 KB of JPEGs a record, to fill a tiny filesystem fast.
NOISY = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)


def record(
    seq: int,
    verdict: str = "reject",
    camera: str = "cam1",
    inspected_ns: int = NOW,
    frame: np.ndarray | None = FRAME,
    **fields: Any,
) -> InspectionRecord:
    values: dict[str, Any] = {
        "camera": camera,
        "seq": seq,
        "part_id": f"part-{seq}",
        "captured_ns": inspected_ns - 5_000_000,
        "inspected_ns": inspected_ns,
        "verdict": verdict,
        "score": 0.9 if verdict == "reject" else 0.1,
        "threshold": 0.5,
        "model_sha256": "ab" * 32,
        "latency_ms": {"queue": 1.0, "model": 12.5, "total": 14.0},
        "regions": [],
        "frame": frame,
        "anomaly_map": MAP if frame is not None else None,
    }
    values.update(fields)
    return InspectionRecord(**values)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(tmp_path / "var") as opened:
        yield opened


def image_files(store: Store) -> list[Path]:
    return sorted(p for p in store.images.rglob("*") if p.is_file())


def seqs(store: Store, **filters: Any) -> list[int]:
    return sorted(row["seq"] for row in store.recent(10_000, **filters))


def add_history(store: Store) -> tuple[list[int], int]:
    """Six passes 10..5 days old (seq 0..5), one reject 3 days old, one 1 hour old."""
    passes = [record(seq, "pass", inspected_ns=NOW - (10 - seq) * DAY) for seq in range(6)]
    rejects = [
        record(100, "reject", inspected_ns=NOW - 3 * DAY),
        record(101, "reject", inspected_ns=NOW - HOUR),
    ]
    ids = store.add_inspections([*passes, *rejects])
    return ids, store.image_bytes() // len(ids)


class FlakyStore(Store):
    def __init__(self, root: Path, failures: int, **options: Any) -> None:
        super().__init__(root, **options)
        self.failures = failures
        self.calls = 0
        self.retentions = 0

    def add_inspections(self, records: Any, pass_sample_rate: float = 1.0) -> list[int]:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("database hiccup")
        return super().add_inspections(records, pass_sample_rate)

    def apply_retention(self, policy: RetentionPolicy, now_ns: int | None = None) -> Any:
        self.retentions += 1
        return super().apply_retention(policy, now_ns)


def _red(pixel: np.ndarray) -> bool:
    """Red as a JPEG keeps it: close, not exact."""
    blue, green, red = (int(v) for v in pixel)
    return red > 150 and red > 2 * max(green, blue)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MiB filesystem (tmpfs), to fill up; skipped where mounting is not allowed."""
    mount_point = tmp_path / f"fs-{uuid.uuid4().hex[:8]}"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=10)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the room)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for size in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    handle.write(b"\xff" * size)
            except OSError:
                continue
    return filler
