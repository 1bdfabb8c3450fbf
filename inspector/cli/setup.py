"""What every command shares: the usage exit status, and loading a config with its logging."""

from __future__ import annotations

from pathlib import Path

from inspector.config import Config, load_config
from inspector.logs import setup_logging

EXIT_USAGE = 2


def load_logged_config(path: Path, runnable: bool = False) -> Config:
    """Load a config file (``runnable``: with the checks ``run`` needs) and set up logging."""
    config = load_config(path, runnable=runnable)
    setup_logging(config.logging.level, config.logging.file, config.logging.format)
    return config
