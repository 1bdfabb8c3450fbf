"""GenICam cameras (GigE Vision, USB3 Vision) through ``harvesters`` and a vendor GenTL producer.

Needs the ``genicam`` extra and the camera vendor's GenTL producer file (.cti).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camera.base import FrameSource, SourceFrame
from inspector.errors import SourceError, SourceUnavailable

logger = logging.getLogger(__name__)

# GenICam pixel formats -> how to turn the buffer into a BGR (or grey) image.
_BAYER_TO_BGR = {
    "BayerRG8": cv2.COLOR_BayerRG2BGR,
    "BayerBG8": cv2.COLOR_BayerBG2BGR,
    "BayerGR8": cv2.COLOR_BayerGR2BGR,
    "BayerGB8": cv2.COLOR_BayerGB2BGR,
}


def to_bgr(data: np.ndarray, width: int, height: int, pixel_format: str) -> np.ndarray:
    """Convert one GenICam buffer to an image the rest of the product understands (copied)."""
    if pixel_format in ("Mono8", "Mono16"):
        return data.reshape(height, width).copy()
    if pixel_format in _BAYER_TO_BGR:
        return cv2.cvtColor(data.reshape(height, width), _BAYER_TO_BGR[pixel_format])
    if pixel_format == "RGB8":
        return cv2.cvtColor(data.reshape(height, width, 3), cv2.COLOR_RGB2BGR)
    if pixel_format == "BGR8":
        return data.reshape(height, width, 3).copy()
    raise SourceError(
        f"unsupported GenICam pixel format {pixel_format!r}; set the camera to one of "
        f"Mono8, Mono16, RGB8, BGR8, {', '.join(_BAYER_TO_BGR)}"
    )


class GenICamSource(FrameSource):
    """One GenICam camera, found by serial number (or the first one the producer lists)."""

    def __init__(self, cti: Path, serial: str | None = None, timeout_ms: int = 1000) -> None:
        super().__init__(live=True)
        self.cti, self.serial, self.timeout_ms = cti, serial, timeout_ms
        self._harvester: Any = None
        self._acquirer: Any = None

    def open(self) -> None:
        try:
            from harvesters.core import Harvester
        except ImportError as exc:
            raise SourceUnavailable(
                "GenICam cameras need the 'genicam' extra: pip install 'edge-inspector[genicam]'"
            ) from exc
        if not self.cti.is_file():
            raise SourceError(f"GenTL producer {self.cti} does not exist")
        self.close()
        harvester = Harvester()
        try:
            harvester.add_file(str(self.cti))
            harvester.update()
            search = {"serial_number": self.serial} if self.serial else 0
            self._acquirer = harvester.create(search)
            self._acquirer.start()
        except Exception as exc:  # harvesters raises many unrelated types
            harvester.reset()
            raise SourceError(f"cannot open GenICam camera {self.serial or '#0'}: {exc}") from exc
        self._harvester = harvester

    def read(self) -> SourceFrame | None:
        if self._acquirer is None:
            raise SourceError("GenICam camera is not open")
        try:
            with self._acquirer.fetch(timeout=self.timeout_ms / 1000) as buffer:
                component = buffer.payload.components[0]
                image = to_bgr(
                    component.data, component.width, component.height, component.data_format
                )
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"GenICam fetch failed: {exc}") from exc
        return SourceFrame(image)

    def close(self) -> None:
        if self._acquirer is not None:
            try:
                self._acquirer.stop()
                self._acquirer.destroy()
            except Exception:  # closing a camera that already vanished
                logger.debug("error while closing GenICam camera", exc_info=True)
            self._acquirer = None
        if self._harvester is not None:
            self._harvester.reset()
            self._harvester = None

    def describe(self) -> str:
        return f"GenICam {self.serial or '#0'} via {self.cti.name}"
