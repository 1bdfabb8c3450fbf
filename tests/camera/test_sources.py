"""Frame sources on real files and a real local HTTP stream; device and GenICam failure paths."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from camera.base import FrameSource
from camera.genicam import GenICamSource, to_bgr
from camera.sources import FolderSource, OpenCVSource, make_source
from inspector.config import parse_config
from inspector.errors import ConfigError, SourceError, SourceUnavailable
from tests.conftest import free_tcp_port

FAST = {"open_timeout_s": 2.0, "read_timeout_s": 2.0}


def source_for(camera: dict) -> FrameSource:
    config = parse_config({"cameras": [{"id": "cam", **camera}]}, environ={})
    return make_source(config.cameras[0])


def read_all(source: FrameSource, limit: int = 100) -> list:
    frames = []
    for _ in range(limit):
        frame = source.read()
        if frame is None:
            break
        frames.append(frame)
    return frames


# --- folder ------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "parts"
    for name, value in [("b.png", 20), ("a.jpg", 10), ("sub/c.bmp", 30), ("sub/deeper/d.png", 40)]:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((24, 32, 3), value, np.uint8))
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_replays_sorted_with_relative_part_ids(folder: Path) -> None:
    source = FolderSource(folder, loop=False)
    source.open()
    frames = read_all(source)
    assert [f.part_id for f in frames] == ["a.jpg", "b.png", "sub/c.bmp", "sub/deeper/d.png"]
    assert [int(f.image.mean() + 0.5) for f in frames] == [10, 20, 30, 40]
    assert all(f.image.shape == (24, 32, 3) for f in frames)
    assert source.finished


def test_folder_loops(folder: Path) -> None:
    source = FolderSource(folder, loop=True)
    source.open()
    ids = [source.read().part_id for _ in range(6)]  # type: ignore[union-attr]
    assert ids[4:] == ["a.jpg", "b.png"] and not source.finished


def test_folder_without_recursion(folder: Path) -> None:
    source = FolderSource(folder, recursive=False, loop=False)
    source.open()
    assert [f.part_id for f in read_all(source)] == ["a.jpg", "b.png"]


def test_unreadable_files_are_skipped_and_counted(folder: Path) -> None:
    (folder / "0-corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (folder / "0-empty.jpg").write_bytes(b"")
    source = FolderSource(folder, loop=False)
    source.open()
    assert read_all(source)[0].part_id == "a.jpg"
    assert source.skipped == 2


def test_a_folder_of_only_broken_files_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"garbage")
    source = FolderSource(tmp_path)
    source.open()
    with pytest.raises(SourceError, match="none of the 1 files"):
        source.read()


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=f"{tmp_path / 'nope'} does not exist"):
        FolderSource(tmp_path / "nope").open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        FolderSource(tmp_path / "empty").open()


# --- video file and HTTP stream -----------------------------------------------------------


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    for n in range(10):
        writer.write(np.full((48, 64, 3), 20 + n * 20, np.uint8))
    writer.release()
    return path


def brightness(frames: list) -> list[int]:
    return [round(float(f.image.mean())) for f in frames]


def test_video_file_plays_in_order(video: Path) -> None:
    source = source_for({"type": "video", "path": str(video), "loop": False})
    source.open()
    frames = read_all(source)
    source.close()
    assert len(frames) == 10 and source.finished
    assert all(abs(b - (20 + n * 20)) <= 3 for n, b in enumerate(brightness(frames)))


def test_video_file_loops_from_the_start(video: Path) -> None:
    source = source_for({"type": "video", "path": str(video)})
    source.open()
    frames = read_all(source, limit=25)
    source.close()
    assert len(frames) == 25
    assert abs(brightness(frames)[10] - 20) <= 3  # frame 0 again


def test_missing_or_corrupt_video_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot open video"):
        source_for({"type": "video", "path": str(tmp_path / "absent.avi")}).open()
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(np.random.default_rng(0).bytes(5000))
    source = source_for({"type": "video", "path": str(corrupt), "loop": False})
    with pytest.raises(SourceError):
        source.open()
        if source.read() is None:  # opened but nothing decodable: also an error for a file
            raise SourceError("no frame")


@pytest.fixture
def http_server(video: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(video.parent))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_stream_over_http(http_server: str) -> None:
    source = source_for({"type": "stream", "url": f"{http_server}/clip.avi", "watchdog": FAST})
    source.open()
    try:
        frames = [source.read() for _ in range(5)]
    finally:
        source.close()
    assert all(f is not None and f.image.shape == (48, 64, 3) for f in frames)


def test_unreachable_stream_is_a_source_error() -> None:
    url = f"http://127.0.0.1:{free_tcp_port()}/nothing.avi"
    source = source_for({"type": "stream", "url": url, "watchdog": FAST})
    with pytest.raises(SourceError, match="cannot open stream"):
        source.open()


def test_a_stream_that_dies_raises_on_read(http_server: str) -> None:
    source = source_for({"type": "stream", "url": f"{http_server}/clip.avi", "watchdog": FAST})
    source.open()
    try:
        with pytest.raises(SourceError, match="no frame from stream"):
            for _ in range(50):  # the clip has 10 frames: a live stream does not just "end"
                source.read()
    finally:
        source.close()


def test_stream_passwords_never_reach_the_logs() -> None:
    source = OpenCVSource("rtsp://operator:secret@10.0.0.5:554/stream1", "stream")
    assert "secret" not in source.describe()
    assert "operator" in source.describe()


# --- device -------------------------------------------------------------------------------


def test_absent_device_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="cannot open device"):
        source_for({"type": "device", "device": "/dev/video99", "watchdog": FAST}).open()


@pytest.mark.parametrize("device", [-1, True, "", 1.5])
def test_bad_device_values_are_config_errors(device: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"cameras": [{"id": "c", "type": "device", "device": device}]}, environ={})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("cameras[0].device: ")


# --- GenICam -----------------------------------------------------------------------------


def test_genicam_pixel_formats() -> None:
    h, w = 4, 6
    mono = np.arange(h * w, dtype=np.uint8)
    assert to_bgr(mono, w, h, "Mono8").shape == (h, w)
    assert to_bgr(mono.astype(np.uint16), w, h, "Mono16").dtype == np.uint16
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = 200  # red
    assert to_bgr(rgb.ravel(), w, h, "RGB8")[0, 0].tolist() == [0, 0, 200]
    assert to_bgr(rgb.ravel(), w, h, "BGR8")[0, 0].tolist() == [200, 0, 0]
    assert to_bgr(mono, w, h, "BayerRG8").shape == (h, w, 3)
    with pytest.raises(SourceError, match=r"unsupported GenICam pixel format 'YUV422'.*Mono8"):
        to_bgr(mono, w, h, "YUV422")


@pytest.mark.skipif(
    importlib.util.find_spec("harvesters") is not None, reason="harvesters is installed here"
)
def test_genicam_without_the_extra_says_how_to_get_it(tmp_path: Path) -> None:
    source = GenICamSource(tmp_path / "producer.cti")
    with pytest.raises(SourceUnavailable, match=r"pip install 'edge-inspector\[genicam\]'"):
        source.open()
    source.close()  # safe on a source that never opened


# --- synthetic -----------------------------------------------------------------------------


def test_synthetic_source_names_parts_by_their_truth() -> None:
    camera = {"type": "synthetic", "seed": 3, "width": 96, "height": 80, "defect_rate": 0.5}
    first, second = source_for(camera), source_for(camera)
    first.open()
    second.open()
    a = [first.read() for _ in range(12)]
    b = [second.read() for _ in range(12)]
    assert [f.part_id for f in a] == [f.part_id for f in b]  # type: ignore[union-attr]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))  # type: ignore[union-attr]
    assert a[0].image.shape == (80, 96, 3)  # type: ignore[union-attr]
    kinds = {f.part_id.rsplit("-", 1)[0] for f in a}  # type: ignore[union-attr]
    assert "good" in kinds and len(kinds) > 1
    assert a[5].part_id.endswith("-000005")  # type: ignore[union-attr]
    always = source_for({**camera, "defect_rate": 1.0})
    assert not any(always.read().part_id.startswith("good") for _ in range(10))  # type: ignore[union-attr]
