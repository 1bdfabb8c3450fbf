"""The product's one exception tree.

Every error the product raises on purpose derives from ``InspectorError``, so a
caller can catch everything of ours in one clause and still tell the kinds apart::

    InspectorError
    ├── ConfigError          bad or unreadable configuration (names the key path)
    ├── WireError            a frame message that fails validation (counted, dropped)
    ├── BusError             a ZeroMQ endpoint that cannot be bound or connected
    ├── SourceError          a camera source that cannot open or read
    │   └── SourceUnavailable  an optional backend (e.g. GenICam) is not installed
    ├── ModelError           a model that cannot be loaded, verified or run here
    │   └── UnknownModel       no such model in the registry
    ├── ImageError           an image file or array the detector cannot take
    └── OutputError          an output to the line or plant (PLC gate) that cannot start
"""

from __future__ import annotations


class InspectorError(Exception):
    """Base class of every error the product raises on purpose."""


class ConfigError(InspectorError):
    """Configuration is invalid. ``problems`` holds one ``key.path: reason`` line each."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(problems))


class WireError(InspectorError):
    """A frame message failed validation; the receiver counts and drops it."""


class BusError(InspectorError):
    """A bus endpoint could not be bound or connected."""


class SourceError(InspectorError):
    """A frame source failed to open or to deliver a frame."""


class SourceUnavailable(SourceError):
    """A source type needs an optional package that is not installed."""


class ModelError(InspectorError):
    """A model cannot be loaded, verified or run (missing provider, bad hash, bad input)."""


class UnknownModel(ModelError):
    """No model of that name (or sha256) is kept in the model registry."""


class ImageError(InspectorError):
    """An image is unreadable, empty, not an image, or has a shape the detector cannot take."""


class OutputError(InspectorError):
    """An output (the PLC's Modbus gate) cannot start, e.g. its port is taken."""
