"""The web app over a store filled with sample inspections, shared by the web tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from web import create_app

from .webutil import filled_store, web_config


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A headless chromium per test module (skips where none is installed)."""
    from .browserutil import launched

    yield from launched()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    store = filled_store(tmp_path / "store")
    yield create_app(web_config(tmp_path / "store"), store)
    store.close()
