"""Full-size fault drills: what the small CI tests check, at the sizes a real box meets.

Each subcommand prints a markdown table and exits nonzero when its pass criterion fails:

1. ``hostile``: an inspection service (demo model, inproc bus, 2 workers) takes N
   hostile messages round-robin from the kinds in ``tests/inspection/test_hostile.py``,
   with a valid 64x64 frame every ``--every`` hostile ones. Pass: every hostile message
   counted as malformed, every valid frame a verdict, no dead worker, no fault, RSS
   after a gc and a short settle within 10% of RSS at the start.
2. ``cameras``: valid 1024x1024 frames (zeros, sent as PNG) from N made-up camera ids.
   Pass: per-camera keys in ``accounting()`` and the live preview stay bounded by the
   configured cameras + 8 (+ ``?``), every message accounted for.
3. ``kill9``: ``inspector run`` as a subprocess, kill -9 at a random 1-4 s after each
   start, restarted N times. After each kill the store is opened read-only: integrity
   check ok and no row naming a missing image file (pass); image files no row names
   (orphans; reported) and verdicts published on the result socket but not stored
   (lost within the durability bound; reported).
4. ``sigterm``: ``inspector run`` with synthetic cameras paced at ``--overload`` times
   what the model inspects here, SIGTERM after ``--seconds``. Pass: exit 0 and every
   frame it says it received has a row in the store.
5. ``diskfull`` (needs root): ``inspector run`` with its store on a loop-mounted ext4,
   which another file fills to the last few MiB for ``--seconds``, then frees. Pass:
   every received verdict stored (or deleted later by retention, as documented), those
   while full without images, the disk alarm raised and cleared, images kept again.
6. ``login``: ``inspector run`` with its web UI and one camera; 8 clients (from 8
   loopback addresses where the OS allows) post wrong passwords for ``--seconds``.
   Pass: the verdicts' p99 latency during the flood within 2x of the quiet p99 before
   it, and no more error verdicts than in the quiet period (per second).

On a shared 2-core VM (figures in ``docs/reliability.md``):

    python benchmarks/faults.py hostile                      # 20,000 messages, ~20 s
    python benchmarks/faults.py hostile --messages 100000    # ~1 minute
    python benchmarks/faults.py cameras --ids 1000           # ~10 s
    python benchmarks/faults.py kill9 --kills 20             # ~1 minute
    python benchmarks/faults.py sigterm --overload 2         # ~15 s (--seconds 30: ~45 s)
    python benchmarks/faults.py diskfull --size-mb 16384     # ~1 minute, as root
    python benchmarks/faults.py login                        # ~2 minutes
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zmq

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # for tests.inspection.test_hostile

from camera.synthetic import PartGenerator  # noqa: E402
from inspector.bus import MAX_UNKNOWN_CAMERAS, FrameSender  # noqa: E402
from inspector.config import Config, parse_config  # noqa: E402
from inspector.inspection import (  # noqa: E402
    DEMO_MODEL,
    InspectionService,
    load_detector,
    thread_plan,
)
from inspector.model import Detector  # noqa: E402
from inspector.outputs import ResultSubscriber  # noqa: E402
from inspector.store import InspectionRecord  # noqa: E402
from tests.inspection.test_hostile import HOSTILE  # noqa: E402

Row = dict[str, Any]


# -- helpers ------------------------------------------------------------------------------------

def rss_mib() -> float:
    """This process's resident set size (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssPeak:
    """Samples VmRSS every 50 ms in the background; ``peak`` is the highest seen."""

    def __init__(self) -> None:
        self.peak = rss_mib()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, rss_mib())

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak


class CountSink:
    """Counts verdicts (keeping no record: holding frames would distort the RSS figures)."""

    def __init__(self) -> None:
        self.count = 0
        self.verdicts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, record: InspectionRecord) -> None:
        with self._lock:
            self.count += 1
            self.verdicts[record.verdict] += 1


def wait_until(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def service_config(root: Path, frames: str, results: str) -> Config:
    return parse_config({
        "cameras": [{"id": "cam1", "type": "synthetic", "latency_budget_ms": 60_000}],
        "bus": {"frames": frames, "results": results},
        "model": {"path": str(DEMO_MODEL), "intra_op_threads": 1},
        "storage": {"root": str(root / "store")},
        "inspection": {"workers": 2},
    }, base_dir=root)


def start_service(root: Path, context: zmq.Context
                  ) -> tuple[InspectionService, CountSink, str, zmq.Socket]:
    """A running service, its verdict counter, its frame endpoint and a raw PUSH socket
    connected to it (for messages no well-behaved sender would build)."""
    frames = f"inproc://faults-frames-{id(root)}"
    config = service_config(root, frames, f"inproc://faults-results-{id(root)}")
    sink = CountSink()
    detector = Detector.open(DEMO_MODEL, threads=1, providers=("cpu",))
    service = InspectionService(config, detector, context, sinks=[sink])
    service.start()
    raw = context.socket(zmq.PUSH)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(frames)
    return service, sink, frames, raw


def malformed(service: InspectionService) -> int:
    return sum(c["malformed"] for c in service.accounting().values())


def table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def header(**fields: Any) -> bytes:
    return json.dumps({"v": 1, "camera": "cam1", "seq": 0, "ts_ns": time.time_ns(),
                       "part_id": None, "dtype": "uint8", "shape": [64, 64, 3],
                       "encoding": "raw", **fields}).encode()


# -- 1. hostile messages ------------------------------------------------------------------------

def hostile(messages: int, every: int) -> Row:
    kinds = sorted(HOSTILE)
    built = {kind: HOSTILE[kind]() for kind in kinds}  # the same bytes each time
    good = np.full((64, 64, 3), 128, np.uint8)
    context = zmq.Context()
    with tempfile.TemporaryDirectory() as tmp:
        service, sink, frames, raw = start_service(Path(tmp), context)
        sender = FrameSender(frames, context, hwm=4)
        valid = 0

        def send_valid() -> None:
            nonlocal valid
            if not sender.wait_ready(30_000) or not sender.send(good, "cam1", valid,
                                                                time.time_ns()):
                raise RuntimeError("a valid frame could not be queued in 30 s")
            valid += 1

        # Warm-up: one of each kind and a few frames, so the start RSS has the steady state.
        for kind in kinds:
            raw.send_multipart(built[kind])
        for _ in range(5):
            send_valid()
        wait_until(lambda: sink.count == valid and malformed(service) == len(kinds), 60)
        warm_malformed, warm_valid = malformed(service), valid
        gc.collect()
        time.sleep(1.0)
        start_rss = rss_mib()
        peak = RssPeak()
        started = time.monotonic()
        for i in range(messages):
            raw.send_multipart(built[kinds[i % len(kinds)]])  # blocks at HWM: none dropped
            if (i + 1) % every == 0:
                send_valid()
        wait_until(lambda: sink.count == valid
                   and malformed(service) - warm_malformed == messages, 300)
        seconds = time.monotonic() - started
        peak_rss = peak.stop()
        gc.collect()
        time.sleep(2.0)
        gc.collect()
        end_rss = rss_mib()
        counted = malformed(service) - warm_malformed
        dead, faults = service.dead_workers(), service.faults
        cameras = sorted(service.accounting())
        sender.close()
        raw.close(linger=0)
        service.stop(drain_quiet_ms=50)
    context.term()
    row = {
        "hostile_kinds": len(kinds), "hostile_sent": messages, "malformed_counted": counted,
        "valid_sent": valid - warm_valid, "verdicts": sink.count - warm_valid,
        "verdict_kinds": dict(sink.verdicts), "dead_workers": len(dead), "faults": faults,
        "accounting_keys": cameras, "seconds": round(seconds, 1),
        "messages_per_s": round((messages + valid - warm_valid) / seconds),
        "rss_start_mib": round(start_rss, 1), "rss_peak_mib": round(peak_rss, 1),
        "rss_end_mib": round(end_rss, 1),
        "rss_end_vs_start": round(end_rss / start_rss - 1, 4),
    }
    row["pass"] = bool(counted == messages and row["valid_sent"] == row["verdicts"]
                       and not dead and faults == 0 and abs(row["rss_end_vs_start"]) <= 0.10)
    print(table([
        ("hostile kinds (round-robin)", len(kinds)),
        ("hostile messages sent", messages),
        ("malformed counted", counted),
        ("valid 64x64 frames sent / verdicts", f"{row['valid_sent']} / {row['verdicts']}"),
        ("verdicts by kind (warm-up included)",
         ", ".join(f"{k} {v}" for k, v in sorted(sink.verdicts.items()))),
        ("dead workers / service.faults", f"{len(dead)} / {faults}"),
        ("per-camera keys in accounting()", ", ".join(cameras)),
        ("time, messages/s", f"{row['seconds']} s, {row['messages_per_s']}"),
        ("RSS start / peak / end MiB", f"{row['rss_start_mib']} / {row['rss_peak_mib']} / "
                                       f"{row['rss_end_mib']}"),
        ("RSS end vs start", f"{row['rss_end_vs_start']:+.1%}"),
        ("criterion met", "yes" if row["pass"] else "NO"),
    ]))
    return row


# -- 2. made-up camera ids ----------------------------------------------------------------------

def cameras(ids: int, side: int) -> Row:
    payload = cv2.imencode(".png", np.zeros((side, side, 3), np.uint8))[1].tobytes()
    context = zmq.Context()
    with tempfile.TemporaryDirectory() as tmp:
        service, sink, _, raw = start_service(Path(tmp), context)
        gc.collect()
        start_rss = rss_mib()
        peak = RssPeak()
        started = time.monotonic()
        admitted_rss = start_rss
        for i in range(ids):
            raw.send_multipart([header(camera=f"fake{i}", seq=i, encoding="png",
                                       shape=[side, side, 3]), payload])
            if i + 1 == MAX_UNKNOWN_CAMERAS:  # the admitted ones through: their state is kept
                wait_until(lambda: sink.count == MAX_UNKNOWN_CAMERAS, 120)
                gc.collect()
                admitted_rss = rss_mib()

        def accounted() -> int:
            a = service.accounting()
            return sum(c["received"] + c["malformed"] for c in a.values())

        wait_until(lambda: accounted() == ids and sink.count == min(ids, MAX_UNKNOWN_CAMERAS),
                   300)
        seconds = time.monotonic() - started
        peak_rss = peak.stop()
        gc.collect()
        time.sleep(2.0)
        end_rss = rss_mib()
        accounting = service.accounting()
        previews = service.preview.cameras()
        dead, faults = service.dead_workers(), service.faults
        raw.close(linger=0)
        service.stop(drain_quiet_ms=50)
    context.term()
    bound = len(service.config.cameras) + MAX_UNKNOWN_CAMERAS
    row = {
        "ids": ids, "png_bytes": len(payload), "decoded_mib": round(side * side * 3 / 2**20, 1),
        "received": sum(c["received"] for c in accounting.values()),
        "malformed": sum(c["malformed"] for c in accounting.values()),
        "verdicts": sink.count, "accounting_keys": len(accounting),
        "preview_cameras": len(previews), "bound": bound, "dead_workers": len(dead),
        "faults": faults, "seconds": round(seconds, 1), "rss_start_mib": round(start_rss, 1),
        "rss_admitted_mib": round(admitted_rss, 1), "rss_peak_mib": round(peak_rss, 1),
        "rss_end_mib": round(end_rss, 1),
    }
    row["pass"] = bool(row["accounting_keys"] <= bound + 1 and row["preview_cameras"] <= bound
                       and row["received"] + row["malformed"] == ids and not dead
                       and faults == 0)
    print(table([
        ("made-up camera ids (one frame each)", ids),
        ("frame", f"{side}x{side}x3 zeros as PNG: {len(payload)} bytes sent, "
                  f"{row['decoded_mib']} MiB decoded"),
        ("received (admitted) / malformed (refused)", f"{row['received']} / {row['malformed']}"),
        ("verdicts", sink.count),
        ("keys in accounting() (bound: cameras + 8, plus ?)",
         f"{row['accounting_keys']} (≤ {bound + 1})"),
        ("cameras in the live preview", f"{row['preview_cameras']} (≤ {bound})"),
        ("dead workers / service.faults", f"{len(dead)} / {faults}"),
        (f"RSS start / after the {MAX_UNKNOWN_CAMERAS} admitted / peak / end MiB",
         f"{row['rss_start_mib']} / {row['rss_admitted_mib']} / {row['rss_peak_mib']} / "
         f"{row['rss_end_mib']}"),
        ("time", f"{row['seconds']} s"),
        ("criterion met", "yes" if row["pass"] else "NO"),
    ]))
    return row


# -- inspector run as a subprocess --------------------------------------------------------------

def write_run_config(root: Path, cams: list[tuple[str, float]], web_port: int | None = None,
                     storage: str = "") -> Path:
    """A config like the tests': synthetic cameras, the demo model, the store under root;
    the web UI on 127.0.0.1:``web_port`` when given; ``storage``: more [storage] lines."""
    cam_tables = "".join(f"""
[[cameras]]
id = "{cam}"
type = "synthetic"
seed = {i + 7}
defect_rate = 0.3
fps = {fps:.2f}
""" for i, (cam, fps) in enumerate(cams))
    path = root / "run.toml"
    path.write_text(f"""{cam_tables}
[bus]
frames = "ipc://{root}/frames.sock"
results = "ipc://{root}/results.sock"

[model]
path = "{DEMO_MODEL}"

[storage]
root = "{root / 'store'}"
{storage}

[web]
{"enabled = false" if web_port is None else f'host = "127.0.0.1"{chr(10)}port = {web_port}'}
""")
    return path


def start_run(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "inspector.cli.commands", "run", "--config", str(config),
         "--interval", "1"],
        stdout=subprocess.PIPE, stderr=log.open("a"), text=True, cwd=REPO_ROOT)


def read_store(root: Path) -> Row:
    """The store as it is on disk, opened read-only (nothing repaired)."""
    db = root / "store" / "inspections.db"
    if not db.exists():
        return {"exists": False, "integrity": "no database yet", "rows": 0, "keys": set(),
                "missing": 0, "orphans": 0, "temps": 0}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        try:
            rows = conn.execute("SELECT camera, seq, captured_ns, image_path, overlay_path, "
                                "thumb_path FROM inspections").fetchall()
        except sqlite3.OperationalError:  # killed before the schema was created
            rows = []
    finally:
        conn.close()
    named = {p for r in rows for p in r[3:] if p}
    missing = sum(1 for p in named if not (root / "store" / p).is_file())
    files = [p for p in (root / "store" / "images").rglob("*") if p.is_file()]
    temps = [p for p in files if p.name.endswith(".tmp")]
    orphans = [p for p in files if not p.name.endswith(".tmp")
               and p.relative_to(root / "store").as_posix() not in named]
    return {"exists": True, "integrity": integrity, "rows": len(rows),
            "keys": {(r[0], r[1], r[2]) for r in rows}, "missing": missing,
            "orphans": len(orphans), "temps": len(temps)}


class Published:
    """Collects (camera, seq, captured_ns) of every verdict published on the result socket."""

    def __init__(self, endpoint: str) -> None:
        self.keys: set[tuple[str, int, int]] = set()
        self._subscriber = ResultSubscriber(endpoint)  # connects; follows restarts
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.is_set():
            got = self._subscriber.recv(timeout_ms=100)
            if got is not None:
                doc = got[1]
                self.keys.add((doc["camera"], doc["seq"], doc["captured_ns"]))

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._subscriber.close()


# -- 3. kill -9 ---------------------------------------------------------------------------------

def kill9(kills: int, low_s: float, high_s: float, seed: int, keep: Path | None) -> Row:
    rng = random.Random(seed)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        root = Path(tmp)
        config = write_run_config(root, [("syn", 30.0)])
        published = Published(f"ipc://{root}/results.sock")
        before = 0
        for n in range(1, kills + 1):
            published.keys.clear()
            process = start_run(config, root / "stderr.log")
            after = rng.uniform(low_s, high_s)
            try:
                time.sleep(after)
            finally:
                os.kill(process.pid, signal.SIGKILL)
                process.communicate(timeout=30)
            time.sleep(0.3)  # the subscriber takes what was in flight
            state = read_store(root)
            lost = len(published.keys - state["keys"])
            rows.append({"kill": n, "after_s": round(after, 2), "rows_this_run":
                         state["rows"] - before, "published": len(published.keys),
                         "lost": lost, "integrity": state["integrity"],
                         "missing": state["missing"], "orphans": state["orphans"],
                         "temps": state["temps"]})
            before = state["rows"]
        published.close()
        final = read_store(root)
        if keep is not None:
            print(f"store kept under {root}")
    print("| kill | after s | rows this run | published | published, not stored | "
          "integrity | rows, missing file | orphan files | .tmp files |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kill']} | {r['after_s']} | {r['rows_this_run']} | {r['published']} | "
              f"{r['lost']} | {r['integrity']} | {r['missing']} | {r['orphans']} | "
              f"{r['temps']} |")
    ok = all(r["integrity"] in ("ok", "no database yet") and r["missing"] == 0 for r in rows)
    ok = ok and final["integrity"] == "ok" and final["missing"] == 0
    lost = [r["lost"] for r in rows]
    print()
    print(table([
        ("kills", kills), ("rows in the store at the end", final["rows"]),
        ("integrity_check at the end", final["integrity"]),
        ("rows naming a missing file (any kill / end)",
         f"{sum(r['missing'] for r in rows)} / {final['missing']}"),
        ("orphan image files at the end", final["orphans"]),
        (".tmp files at the end", final["temps"]),
        ("published but not stored, per kill (min / median / max)",
         f"{min(lost)} / {int(np.median(lost))} / {max(lost)}"),
        ("criterion met", "yes" if ok else "NO"),
    ]))
    return {"kills": rows, "final_rows": final["rows"], "final_integrity": final["integrity"],
            "final_missing": final["missing"], "final_orphans": final["orphans"],
            "pass": ok}


# -- 4. SIGTERM under overload ------------------------------------------------------------------

def model_fps(seconds: float = 4.0) -> tuple[float, int]:
    """Frames/s the demo model manages on 256x256 parts here, run as ``inspector run``
    would (its thread plan: workers side by side), and the number of workers."""
    config = parse_config({"cameras": [{"id": "syn", "type": "synthetic"}],
                           "model": {"path": str(DEMO_MODEL)}}, base_dir=REPO_ROOT)
    detector = load_detector(config, DEMO_MODEL)
    workers = thread_plan(config).workers
    images = [PartGenerator(seed=5).render(i).image for i in range(8)]
    done = [0] * workers
    until = time.monotonic() + seconds

    def work(k: int) -> None:
        while time.monotonic() < until:
            detector.predict(images[done[k] % len(images)])
            done[k] += 1

    threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds, workers


def sigterm(overload: float, seconds: float, n_cameras: int, keep: Path | None) -> Row:
    capacity, workers = model_fps()
    fps = overload * capacity / n_cameras
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        root = Path(tmp)
        config = write_run_config(root, [(f"syn{i}", fps) for i in range(n_cameras)])
        started = time.monotonic()
        process = start_run(config, root / "stderr.log")
        try:
            # SIGTERM once it has inspected for the given time (start-up not counted).
            wait_until(lambda: read_store(root)["rows"] > 0, 120)
            time.sleep(seconds)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            out, _ = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        stop_s = time.monotonic() - signalled
        run_s = signalled - started
        summary = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        db = root / "store" / "inspections.db"
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            stored = dict(conn.execute(
                "SELECT camera, count(*) FROM inspections GROUP BY camera").fetchall())
        alarms = [line for line in out.splitlines() if "ALARM" in line]
        stderr_tail = (root / "stderr.log").read_text()[-2000:]
    rows = []
    for s in summary:
        rows.append({**s, "stored": stored.get(s["camera"], 0),
                     "unstored": s["received"] - stored.get(s["camera"], 0)})
    print(f"model alone: {capacity:.1f} frames/s with {workers} worker(s); "
          f"{n_cameras} camera(s) at {fps:.1f} fps each = {overload:g}x; "
          f"SIGTERM after {seconds:g} s of inspection")
    print("| camera | captured | published | dropped at capture | received | inspected | "
          "stale | errors | stored rows | received, not stored |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['camera']} | {r['captured']} | {r['published']} | {r['dropped']} | "
              f"{r['received']} | {r['inspected']} | {r['stale']} | {r['errors']} | "
              f"{r['stored']} | {r['unstored']} |")
    if alarms:
        print("alarms printed: " + "; ".join(sorted({a.split("ALARM: ")[-1][:80]
                                                     for a in alarms})))
    captured, received = (sum(r[k] for r in rows) for k in ("captured", "received"))
    print(f"captured / received = {captured} / {received} = "
          f"{captured / max(received, 1):.1f}x what was inspected; SIGTERM {run_s:.1f} s "
          f"after start (start-up included), exit {stop_s:.1f} s after it")
    ok = process.returncode == 0 and bool(rows) and all(r["unstored"] == 0 for r in rows)
    print(f"exit code {process.returncode}; criterion met: {'yes' if ok else 'NO'}")
    if process.returncode != 0:
        print(stderr_tail)
    return {"model_fps": round(capacity, 1), "workers": workers, "camera_fps": round(fps, 1),
            "run_s": round(run_s, 1), "stop_s": round(stop_s, 1),
            "cameras": rows, "returncode": process.returncode, "alarms": alarms, "pass": ok}


# -- 5. disk full ------------------------------------------------------------------------------

def fill_disk(folder: Path, leave_bytes: int) -> Path:
    """A file taking all but about ``leave_bytes`` of the filesystem's free space; with 0,
    every last block it can get."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as handle:  # a failed write leaves nothing to flush
        free = shutil.disk_usage(folder).free
        size = max(0, free - leave_bytes)
        while size > 0:
            try:
                os.posix_fallocate(handle.fileno(), 0, size)
                break
            except OSError:  # the filesystem's own overhead: ask for a little less
                size -= 4 * 2**20
        if leave_bytes == 0:
            handle.seek(0, os.SEEK_END)
            for chunk in (2**20, 2**16, 2**12):
                try:
                    while True:
                        handle.write(b"\0" * chunk)
                except OSError:
                    pass
            os.fsync(handle.fileno())
    return filler


def diskfull(size_mb: int, fps: float, full_s: float, protected: bool,
             keep: Path | None) -> Row:
    """``inspector run`` on a loop-mounted ext4 of ``size_mb``, filled to the last bytes by
    another file for ``full_s`` seconds, then given its space back. ``protected``: only
    rejects keep pictures (retention keeps them a day), so retention cannot make room and
    the disk is filled to its last block: SQLite itself meets the full disk."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        print("needs root and mkfs.ext4 to mount a loop filesystem; skipped")
        return {"pass": False, "skipped": True}
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        root = Path(tmp)
        image, disk = root / "disk.img", root / "disk"
        disk.mkdir()
        subprocess.run(["truncate", "-s", f"{size_mb}M", str(image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(disk)], check=True)
        try:
            # Every pass keeps its picture, so the store writes images as fast as it can.
            config = write_run_config(disk, [("syn0", fps)], storage="pass_sample_rate = "
                                      + ("0.0" if protected else "1.0"))
            process = start_run(config, root / "stderr.log")
            try:
                wait_until(lambda: read_store(disk)["rows"] > 0, 120)
                time.sleep(5)
                full = (time.time_ns(), 0)
                filler = fill_disk(disk, 0 if protected else 2 * 2**20)  # someone else
                free_when_full = shutil.disk_usage(disk).free
                time.sleep(full_s)
                filler.unlink()
                full = (full[0], time.time_ns())
                time.sleep(5)  # room again: images resume, the alarm clears
                process.send_signal(signal.SIGTERM)
                out, _ = process.communicate(timeout=120)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            summary = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            db = disk / "store" / "inspections.db"
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                rows = conn.execute("SELECT count(*) FROM inspections").fetchone()[0]
                during = conn.execute(
                    "SELECT count(*), sum(image_path IS NULL) FROM inspections "
                    "WHERE inspected_ns BETWEEN ? AND ?", full).fetchone()
                after = conn.execute(
                    "SELECT count(*), sum(image_path IS NOT NULL) FROM inspections "
                    "WHERE inspected_ns > ?", (full[1] + 2 * 10**9,)).fetchone()
                alarms = conn.execute(
                    "SELECT kind, raised_ns, cleared_ns FROM alarms WHERE kind IN "
                    "('disk_full', 'disk_low', 'storage_error') ORDER BY id").fetchall()
                integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
                # Retention makes room by deleting the oldest unlabeled passes, by design.
                retained_away = sum(json.loads(detail)["deleted"] for (detail,) in conn.execute(
                    "SELECT detail_json FROM audit WHERE action = 'retention'"))
            log = (root / "stderr.log").read_text()
            stderr_tail = log[-1500:]
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)
    released = "released the" in log
    reserve = "kept (not needed)" if not released else "released" + (
        ", allocated again" if "allocated the" in log.split("released the")[-1] else "")
    received = sum(s["received"] for s in summary)
    full_alarm = [a for a in alarms if a[0] == "disk_full"]
    raised_in_time = any(full[0] <= a[1] <= full[1] for a in full_alarm)
    cleared = bool(full_alarm) and all(a[2] is not None for a in full_alarm)
    print(table([
        ("filesystem", f"ext4 on a loop device, {size_mb} MiB"),
        ("camera", f"1 synthetic at {fps:g} fps, "
                   + ("only rejects' pictures kept" if protected else "every picture kept")),
        ("seconds full", f"{full_s:g} (free then: {free_when_full / 2**20:.1f} MiB)"),
        ("received / stored rows + deleted by retention", f"{received} / {rows} + "
                                                          f"{retained_away}"),
        ("verdicts while full / of them without images", f"{during[0]} / {during[1] or 0}"),
        ("verdicts 2 s after space came back / with images", f"{after[0]} / {after[1] or 0}"),
        ("alarms (kind, raised, cleared)", [(k, r is not None, c is not None)
                                            for k, r, c in alarms]),
        ("the store's 16 MiB reserve", reserve),
        ("integrity check", integrity),
        ("exit code", process.returncode),
    ]))
    ok = (process.returncode == 0 and received == rows + retained_away and during[0] > 0
          and raised_in_time and cleared and (after[1] or 0) > 0 and integrity == "ok")
    print(f"criterion met (every verdict stored while full, alarm raised and cleared, "
          f"images back): {'yes' if ok else 'NO'}")
    if not ok:
        print(stderr_tail)
    return {"size_mb": size_mb, "protected": protected, "reserve": reserve,
            "received": received, "rows": rows,
            "deleted_by_retention": retained_away, "during": list(during),
            "after": list(after), "alarms": alarms, "integrity": integrity,
            "returncode": process.returncode, "pass": ok}


# -- 6. login flood -----------------------------------------------------------------------------

def latencies(root: Path, since_ns: int, until_ns: int) -> tuple[np.ndarray, int]:
    """Total latencies (ms) of the verdicts decided in the window, and how many were errors."""
    db = root / "store" / "inspections.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT json_extract(latency_json, '$.total'), verdict FROM inspections "
            "WHERE inspected_ns BETWEEN ? AND ?", (since_ns, until_ns)).fetchall()
    totals = np.array([t for t, _ in rows if t is not None], dtype=float)
    return totals, sum(verdict == "error" for _, verdict in rows)


def login(clients: int, quiet_s: float, flood_s: float, fps: float, keep: Path | None) -> Row:
    from tests.web.webutil import HttpBrowser, can_bind  # clients of a real server

    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        root = Path(tmp)
        config = write_run_config(root, [("cam1", fps)], web_port=free_port())
        subprocess.run([sys.executable, "-m", "inspector.cli", "users", "add", "flooded",
                        "--role", "operator", "--config", str(config), "--password-stdin"],
                       input="the-right-password-1\n", text=True, check=True,
                       capture_output=True, cwd=REPO_ROOT)
        process = start_run(config, root / "stderr.log")
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
        reader.start()
        try:
            wait_until(lambda: any(line.startswith("web UI:") for line in lines), 120)
            url = next(line.split()[-1] for line in lines if line.startswith("web UI:"))
            wait_until(lambda: read_store(root)["rows"] > 0, 120)
            quiet = (time.time_ns(), 0)
            time.sleep(quiet_s)
            quiet = (quiet[0], time.time_ns())
            statuses: Counter[int] = Counter()
            lock = threading.Lock()
            until = time.monotonic() + flood_s
            many = can_bind("127.0.0.2")

            def flood(index: int) -> None:
                browser = HttpBrowser(url, f"127.0.0.{10 + index}" if many else "127.0.0.1")
                n = 0
                try:
                    while time.monotonic() < until:
                        name = "flooded" if index < 2 else f"nobody{index}-{n}"
                        code, _ = browser.sign_in(name, f"guess{n}")
                        with lock:
                            statuses[code] += 1
                        n += 1
                finally:
                    browser.close()

            flood_start = time.time_ns()
            threads = [threading.Thread(target=flood, args=(i,)) for i in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(flood_s + 60)
            flooded = (flood_start, time.time_ns())
            right = HttpBrowser(url, "127.0.0.200" if many else "127.0.0.1")
            other_user_code = right.sign_in("nobody-else", "x")[0]
            right.close()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        quiet_ms, quiet_errors = latencies(root, *quiet)
        flood_ms, flood_errors = latencies(root, *flooded)
    p99 = {name: float(np.percentile(v, 99)) if v.size else float("nan")
           for name, v in (("quiet", quiet_ms), ("flood", flood_ms))}
    allowed_errors = quiet_errors * flood_s / quiet_s
    ok = bool(flood_ms.size) and p99["flood"] <= 2 * p99["quiet"] and (
        flood_errors <= allowed_errors)
    print(table([
        ("camera", f"1 synthetic at {fps:g} fps, demo model, web UI in the same process"),
        ("flood clients (source addresses)", f"{clients} ({'127.0.0.10+' if many else 'one'})"),
        ("quiet / flood seconds", f"{quiet_s:g} / {flood_s:g}"),
        ("sign-in answers during the flood", dict(sorted(statuses.items()))),
        ("verdicts quiet / flood", f"{quiet_ms.size} / {flood_ms.size}"),
        ("latency p50 quiet / flood ms", f"{np.median(quiet_ms):.1f} / {np.median(flood_ms):.1f}"),
        ("latency p99 quiet / flood ms", f"{p99['quiet']:.1f} / {p99['flood']:.1f}"),
        ("error verdicts quiet / flood", f"{quiet_errors} / {flood_errors}"),
        ("another client's sign-in after the flood", other_user_code),
        ("criterion met (p99 within 2x, no extra errors)", "yes" if ok else "NO"),
    ]))
    return {"clients": clients, "statuses": dict(statuses), "p99_ms": p99,
            "verdicts": [int(quiet_ms.size), int(flood_ms.size)],
            "errors": [quiet_errors, flood_errors], "pass": ok}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]




# -- main ---------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    sub = parser.add_subparsers(dest="drill", required=True)
    p = sub.add_parser("hostile", help="hostile frame-bus messages against a running service")
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--every", type=int, default=100, help="a valid frame per this many")
    p = sub.add_parser("cameras", help="valid frames from many made-up camera ids")
    p.add_argument("--ids", type=int, default=1000)
    p.add_argument("--side", type=int, default=1024)
    p = sub.add_parser("kill9", help="kill -9 inspector run, restart, check the store")
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--low", type=float, default=1.0, help="earliest kill, s after start")
    p.add_argument("--high", type=float, default=4.0, help="latest kill, s after start")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", type=Path, help="make the store here and print where")
    p = sub.add_parser("sigterm", help="SIGTERM inspector run under overload")
    p.add_argument("--overload", type=float, default=2.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--keep", type=Path)
    p = sub.add_parser("diskfull", help="inspector run on a loop ext4 that another file fills")
    p.add_argument("--size-mb", type=int, default=2048)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=20.0, help="seconds the disk stays full")
    p.add_argument("--protected", action="store_true",
                   help="only rejects keep pictures: retention cannot make room")
    p.add_argument("--keep", type=Path)
    p = sub.add_parser("login", help="a sign-in flood against the web UI of inspector run")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--quiet", type=float, default=20.0, help="seconds measured before it")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of flood")
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--keep", type=Path)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; drill {args.drill}", flush=True)
    if args.drill == "hostile":
        row = hostile(args.messages, args.every)
    elif args.drill == "cameras":
        row = cameras(args.ids, args.side)
    elif args.drill == "kill9":
        row = kill9(args.kills, args.low, args.high, args.seed, args.keep)
    elif args.drill == "sigterm":
        row = sigterm(args.overload, args.seconds, args.cameras, args.keep)
    elif args.drill == "diskfull":
        row = diskfull(args.size_mb, args.fps, args.seconds, args.protected, args.keep)
    else:
        row = login(args.clients, args.quiet, args.seconds, args.fps, args.keep)
    if args.json:
        args.json.write_text(json.dumps(row, indent=2, default=str) + "\n")
    return 0 if row["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
