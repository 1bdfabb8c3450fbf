"""Frame sources behind one small interface, chosen by the camera's ``type`` key.

A source is driven by exactly one capture thread: ``open`` it, ``read`` frames,
``close`` it. ``read`` raises ``SourceError`` when the source is broken (the
watchdog then reopens it with backoff) and returns None when it has no frame
right now; a finite source that reached its end also sets ``finished``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2

from camera.base import FrameSource, SourceFrame
from inspector.config import (
    CameraConfig,
    DeviceCamera,
    FolderCamera,
    GenICamCamera,
    StreamCamera,
    SyntheticCamera,
    VideoCamera,
)
from inspector.errors import SourceError
from inspector.imaging import IMAGE_SUFFIXES
from inspector.logs import RateLimitedLog

logger = logging.getLogger(__name__)

class FolderSource(FrameSource):
    """Replays the images of a folder, sorted by path; the part id is the relative path."""

    def __init__(self, path: Path, recursive: bool = True, loop: bool = True) -> None:
        super().__init__()
        self.path, self.recursive, self.loop = path, recursive, loop
        self.skipped = 0  # unreadable files met so far
        self._files: list[Path] = []
        self._next = 0
        self._log = RateLimitedLog(logger)

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"image folder {self.path} does not exist")
        pattern = self.path.rglob("*") if self.recursive else self.path.glob("*")
        self._files = sorted(p for p in pattern if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.path}")
        self._next = 0
        self.finished = False

    def read(self) -> SourceFrame | None:
        # Skip unreadable files, but give up after one full pass of nothing but bad files.
        for _ in range(len(self._files)):
            if self._next >= len(self._files):
                if not self.loop:
                    self.finished = True
                    return None
                self._next = 0
            file = self._files[self._next]
            self._next += 1
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is not None:
                return SourceFrame(image, file.relative_to(self.path).as_posix())
            self.skipped += 1
            self._log.warning(str(self.path), "skipped unreadable image %s", file)
        raise SourceError(f"none of the {len(self._files)} files in {self.path} is readable")

    def describe(self) -> str:
        return f"folder {self.path}"


class OpenCVSource(FrameSource):
    """A video file, device or network stream through ``cv2.VideoCapture``."""

    def __init__(
        self,
        target: str | int,
        kind: str = "video",  # video, device or stream: how logs and errors name it
        api: int = cv2.CAP_ANY,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        loop: bool = False,
        live: bool = True,
        size: tuple[int | None, int | None] = (None, None),
    ) -> None:
        super().__init__(live)
        self.target, self.kind, self.api, self.loop, self.size = target, kind, api, loop, size
        self._params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(read_timeout_s * 1000),
        ]
        self._capture: Any = None

    def open(self) -> None:
        self.close()
        capture = cv2.VideoCapture(self.target, self.api, self._params)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open {self.describe()}")
        width, height = self.size
        if width:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._capture = capture
        self.finished = False

    def read(self) -> SourceFrame | None:
        if self._capture is None:
            raise SourceError(f"{self.describe()} is not open")
        ok, image = self._capture.read()
        if ok:
            return SourceFrame(image)
        if self.live:
            raise SourceError(f"no frame from {self.describe()}")
        # A file ended: rewind when looping, else report the end.
        if self.loop and self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            ok, image = self._capture.read()
            if ok:
                return SourceFrame(image)
            raise SourceError(f"{self.describe()} has no readable frame")
        self.finished = True
        return None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def describe(self) -> str:
        return f"{self.kind} {_redact(str(self.target))}"


def _redact(target: str) -> str:
    """Hide the password of ``rtsp://user:password@host`` in logs."""
    scheme, sep, rest = target.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        credentials, host = rest.split("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
    return target


class SyntheticSource(FrameSource):
    """Synthetic machined parts; part ids say the truth (``good-000042``, ``crack-000043``)."""

    def __init__(self, seed: int, width: int, height: int, defect_rate: float) -> None:
        from camera.synthetic import PartGenerator  # rendering code loads only when used

        super().__init__()
        self._generator = PartGenerator(seed, width, height, defect_rate)
        self._index = 0

    def open(self) -> None:
        """Nothing to open: the generator is always ready."""

    def read(self) -> SourceFrame | None:
        part = self._generator.render(self._index)
        self._index += 1
        return SourceFrame(part.image, f"{part.defect or 'good'}-{part.index:06d}")

    def describe(self) -> str:
        return "synthetic parts"


def make_source(config: CameraConfig) -> FrameSource:
    """The source for one camera's config (plugin by ``type`` key)."""
    watchdog = config.watchdog
    timeouts = {
        "open_timeout_s": watchdog.open_timeout_s,
        "read_timeout_s": watchdog.read_timeout_s,
    }
    match config:
        case FolderCamera():
            return FolderSource(config.path, config.recursive, config.loop)
        case VideoCamera():
            if not config.path.is_file():
                logger.warning("video file %s does not exist (yet)", config.path)
            return OpenCVSource(str(config.path), loop=config.loop, live=False, **timeouts)
        case DeviceCamera():
            size = (config.width, config.height)
            return OpenCVSource(config.device, "device", size=size, **timeouts)
        case StreamCamera():
            return OpenCVSource(config.url, "stream", api=cv2.CAP_FFMPEG, **timeouts)
        case SyntheticCamera():
            return SyntheticSource(config.seed, config.width, config.height, config.defect_rate)
        case GenICamCamera():
            from camera.genicam import GenICamSource

            return GenICamSource(config.cti, config.serial, config.timeout_ms)
    raise SourceError(f"no source for camera type {type(config).__name__}")
