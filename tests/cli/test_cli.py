"""The ``inspector`` command as a user runs it: a real process, real sockets, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector import __version__
from tests.conftest import REPO_ROOT, free_tcp_port

INSPECTOR = [sys.executable, "-m", "inspector.cli.commands"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INSPECTOR, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
    )


def summary_lines(stdout: str) -> dict[str, dict]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {line.pop("camera"): line for line in lines}


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for n in range(5):
        cv2.imwrite(str(folder / f"{n}.png"), rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def write_config(tmp_path: Path, cameras: str, frames: str = "inproc://frames") -> Path:
    path = tmp_path / "inspector.toml"
    path.write_text(f'{cameras}\n[bus]\nframes = "{frames}"\n')
    return path


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"inspector {__version__}"


def test_no_command_prints_help() -> None:
    result = run()
    assert result.returncode == 2
    assert "check-config" in result.stdout


@pytest.mark.parametrize("transport", ["inproc", "tcp"])
def test_capture_accounts_for_every_frame(
    tmp_path: Path, image_folder: Path, transport: str
) -> None:
    frames = "inproc://frames" if transport == "inproc" else f"tcp://127.0.0.1:{free_tcp_port()}"
    config = write_config(
        tmp_path,
        f'[[cameras]]\nid = "fast"\ntype = "folder"\npath = "{image_folder}"\n'
        f'[[cameras]]\nid = "paced"\ntype = "folder"\npath = "images"\nfps = 20\n',
        frames,
    )
    result = run("capture", "--config", str(config), "--duration", "2", "--interval", "0.5")
    assert result.returncode == 0, result.stderr
    assert "fps  captured" in result.stdout  # live report lines
    totals = summary_lines(result.stdout)
    assert set(totals) == {"fast", "paced"}
    for counts in totals.values():
        assert counts["captured"] > 0
        assert counts["captured"] == counts["published"] + counts["dropped"]
        assert counts["malformed"] == 0
    # Everything published arrived. The paced camera may lose a frame or two while the fast
    # one floods the shared receiver on a busy machine, but no more.
    assert totals["paced"]["dropped"] <= max(2, totals["paced"]["captured"] // 10)
    assert totals["paced"]["received"] == totals["paced"]["published"]
    assert totals["fast"]["received"] == totals["fast"]["published"]
    assert "skipped unreadable image" in result.stderr


def test_capture_stops_cleanly_on_sigterm(tmp_path: Path, image_folder: Path) -> None:
    config = write_config(
        tmp_path, f'[[cameras]]\nid = "cam1"\ntype = "folder"\npath = "{image_folder}"\nfps = 50\n'
    )
    process = subprocess.Popen(
        [*INSPECTOR, "capture", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        # Signal only once the camera runs (the stop handlers are installed before it
        # opens), however slowly a loaded machine starts the process.
        for line in iter(process.stderr.readline, ""):  # "" once the process has ended
            if "opened" in line:
                break
        assert process.poll() is None, "capture ended before it opened its camera"
        time.sleep(0.5)  # a few frames at 50 fps
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    counts = summary_lines(stdout)["cam1"]
    assert counts["state"] == "stopped"
    assert counts["received"] == counts["published"] > 0


def test_capture_ends_when_finite_sources_end(tmp_path: Path, image_folder: Path) -> None:
    config = write_config(
        tmp_path,
        f'[[cameras]]\nid = "once"\ntype = "folder"\npath = "{image_folder}"\nloop = false\n',
    )
    result = run("capture", "--config", str(config), timeout=30)
    assert result.returncode == 0, result.stderr
    counts = summary_lines(result.stdout)["once"]
    assert counts == {
        "captured": 5,
        "published": 5,
        "dropped": 0,
        "reconnects": 0,
        "read_errors": 0,
        "state": "finished",
        "received": 5,
        "malformed": 0,
    }


def test_capture_keeps_going_when_a_camera_is_dead(tmp_path: Path, image_folder: Path) -> None:
    config = write_config(
        tmp_path,
        f'[[cameras]]\nid = "dead"\ntype = "folder"\npath = "{tmp_path / "missing"}"\n'
        "[cameras.watchdog]\nbackoff_initial_s = 0.1\nbackoff_max_s = 0.2\n"
        f'[[cameras]]\nid = "alive"\ntype = "folder"\npath = "{image_folder}"\nfps = 20\n',
    )
    result = run("capture", "--config", str(config), "--duration", "1.5")
    assert result.returncode == 0, result.stderr
    totals = summary_lines(result.stdout)
    assert totals["dead"]["captured"] == 0 and totals["dead"]["reconnects"] >= 2
    assert totals["dead"]["state"] == "stopped"
    assert totals["alive"]["received"] > 0
    assert "does not exist" in result.stderr


def test_capture_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[[cameras]]\nid = "x"\ntype = "folder"\npth = "a"\n')
    result = run("capture", "--config", str(config))
    assert result.returncode == 2
    assert "cameras[0].pth: unknown key (did you mean 'path'?)" in result.stderr
    empty = write_config(tmp_path, "")
    result = run("capture", "--config", str(empty))
    assert result.returncode == 2
    assert "no camera configured" in result.stderr


def test_capture_on_a_taken_port_is_a_clear_error(tmp_path: Path, image_folder: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path,
            f'[[cameras]]\nid = "a"\ntype = "folder"\npath = "{image_folder}"\n',
            f"tcp://127.0.0.1:{port}",
        )
        result = run("capture", "--config", str(config), "--duration", "1")
    assert result.returncode == 1
    assert f"cannot bind tcp://127.0.0.1:{port}" in result.stderr
