"""The ``inspector`` command as a user runs it: a real process, real sockets, real files."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np
import pytest

from inspector import __version__
from tests.conftest import REPO_ROOT, free_tcp_port

INSPECTOR = [sys.executable, "-m", "inspector.cli"]
HEAVY = ("onnx", "onnxruntime", "inspector.fitting")  # seconds to import; no use to --version


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


def test_version_and_help_import_nothing_heavy() -> None:
    code = (
        "import json, sys\n"
        "from inspector.cli import main\n"
        "for argv in (['--version'], ['--help'], []):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(json.dumps(sorted(set({HEAVY!r}) & set(sys.modules))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert f"inspector {__version__}" in result.stdout and "check-config" in result.stdout
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_fit_help_shows_the_fitting_defaults() -> None:
    from inspector.fitting import FitOptions

    result = run("calibrate", "--help")
    assert result.returncode == 0, result.stderr
    assert f"(default {FitOptions().margin})" in " ".join(result.stdout.split())


def test_check_config_and_run_report_the_same_problems(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        '[[cameras]]\nid = "a"\ntype = "folder"\npath = "absent"\n'
        '[[cameras]]\nid = "a"\ntype = "synthetic"\n'
        f'[model]\npath = "{tmp_path / "no-model"}"\n',
    )
    checked = run("check-config", str(config))
    ran = run("run", "--config", str(config), "--duration", "1")
    assert (checked.returncode, ran.returncode) == (2, 2), ran.stdout
    lines = sorted(checked.stderr.splitlines())
    assert lines == sorted(f"{config}: {line}" for line in [
        f"cameras[0].path: {tmp_path}/absent does not exist",
        "cameras[1].id: camera id 'a' is used twice (also by cameras[0])",
        f"model.path: {tmp_path}/no-model does not exist",
    ])
    assert sorted(ran.stderr.splitlines()) == lines


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


def _read_lines(stream: TextIO) -> queue.Queue[str | None]:
    """The lines of ``stream`` as they come, then None: waited for with a timeout, never a
    blocking read that would hang the test when the child hangs."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_capture_stops_cleanly_on_sigterm(tmp_path: Path, image_folder: Path) -> None:
    config = write_config(
        tmp_path, f'[[cameras]]\nid = "cam1"\ntype = "folder"\npath = "{image_folder}"\nfps = 50\n'
    )
    stderr = tmp_path / "stderr.txt"  # a file: a pipe nobody reads could fill and stall it
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            [*INSPECTOR, "capture", "--config", str(config), "--interval", "0.2"],
            stdout=subprocess.PIPE, stderr=errors, text=True, cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    stdout = []
    try:
        # Signal once the child says frames flow: its report lines come from the capture
        # loop, which starts after the stop handlers, however slowly a loaded machine runs.
        lines = _read_lines(process.stdout)
        while True:
            line = lines.get(timeout=60)
            assert line is not None, f"capture ended early: {stderr.read_text()}"
            stdout.append(line)
            if re.search(r"cam1 .* captured [1-9]", line):
                break
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        while (line := lines.get(timeout=15)) is not None:
            stdout.append(line)
    finally:
        process.kill()
        process.stdout.close()
    assert process.returncode == 0, stderr.read_text()
    counts = summary_lines("".join(stdout))["cam1"]
    assert counts["state"] == "stopped"
    assert counts["received"] == counts["published"] > 0


def test_capture_ends_when_finite_sources_end(tmp_path: Path, image_folder: Path) -> None:
    config = write_config(
        tmp_path,
        # Paced: unpaced, a busy machine lets the short bus queue drop a frame (counted,
        # as it should be) and the totals below would then differ.
        f'[[cameras]]\nid = "once"\ntype = "folder"\npath = "{image_folder}"\nloop = false\n'
        'fps = 20\n',
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


def test_users_add_creates_and_never_silently_resets(tmp_path: Path) -> None:
    config = tmp_path / "box.toml"
    config.write_text(f'[storage]\nroot = "{tmp_path / "store"}"\n')
    created = run("users", "add", "ana", "--role", "qa", "--config", str(config))
    assert created.returncode == 0 and "user ana (qa) created; password: " in created.stdout
    again = run("users", "add", "ana", "--role", "admin", "--config", str(config))
    assert again.returncode == 2
    assert "already exists (role qa)" in again.stderr and "--reset" in again.stderr
    reset = run("users", "add", "ana", "--role", "admin", "--reset", "--config", str(config))
    assert reset.returncode == 0 and "user ana (admin) reset" in reset.stdout


@pytest.mark.parametrize("folders", [("/missing/good", None), (None, "/missing/defects")])
def test_calibrate_on_a_missing_folder_says_so_without_a_traceback(
        folders: tuple[str | None, str | None]) -> None:
    images, defects = folders
    args = ["calibrate", str(REPO_ROOT / "models/demo"), "--images",
            images or str(REPO_ROOT / "sample_images/train/good")]
    result = run(*args, *(["--defects", defects] if defects else []))
    assert result.returncode == 1
    assert f"{images or defects}: not a folder" in result.stderr
    assert "Traceback" not in result.stderr
