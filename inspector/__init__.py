"""Edge inspection appliance: the core (frame bus, detector, results store, CLI)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edge-inspector")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
