"""Debian's chromium driven by Playwright, for the browser tests (never a downloaded
browser). Importing this skips the importing test module where either is missing (a
user's machine); CI installs both."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM}", allow_module_level=True)
expect = sync_api.expect


def launched() -> Iterator[object]:
    """One headless chromium for as long as the caller holds it."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


def sign_in(page: object, url: str, role: str, password: str) -> None:
    """Sign in through the form, as a person does."""
    page.goto(url + "login")
    page.fill("input[name=username]", role)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
