"""What every frame source is: the interface a capture thread drives, and the frame it yields.

Kept apart from the concrete sources so that optional backends (GenICam) can build on it
without importing the factory that chooses them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SourceFrame:
    """One frame as a source delivers it; ``part_id`` names the part when the source knows it."""

    image: np.ndarray
    part_id: str | None = None


class FrameSource(ABC):
    """What a capture thread needs from a camera."""

    def __init__(self, live: bool = False) -> None:
        # A live source (camera, stream) produces frames whether or not anyone reads them:
        # in trigger mode it is read continuously so that the triggered frame is fresh.
        self.live = live
        self.finished = False

    @abstractmethod
    def open(self) -> None:
        """Make the source ready; raise ``SourceError`` when it cannot be opened."""

    @abstractmethod
    def read(self) -> SourceFrame | None:
        """The next frame; None when there is none now (or ever, once ``finished``)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing
        """Release the device. Safe to call more than once and on a source never opened."""

    def describe(self) -> str:
        return type(self).__name__
