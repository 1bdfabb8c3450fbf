"""Every page at the three screen sizes the box is used on: a 10-inch touch panel
(1024x600), a desk (1280x800) and a large monitor (1920x1080). No page may scroll sideways
(a gloved operator cannot), and the operator's buttons stay finger-sized.

With ``SCREENSHOTS_DIR`` set, each page's screenshot at each size lands there:
``SCREENSHOTS_DIR=docs/screens pytest tests/web/test_screens.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from web.server import WebServer

from .browserutil import sign_in
from .webutil import PASSWORDS, FakeLiveCameras, filled_store, web_config

SIZES = {"panel-10in": (1024, 600), "desk": (1280, 800), "monitor": (1920, 1080)}
PAGES = {  # role: pages it works on
    "operator": ["panel", "live", "stats"],
    "qa": ["review/", "review/1", "models"],
    "admin": ["admin/"],
}
SHOTS = os.environ.get("SCREENSHOTS_DIR")
FINGER_PX = 44  # the smallest comfortable touch target (WCAG 2.5.5)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    root = tmp_path_factory.mktemp("screens") / "store"
    store = filled_store(root)
    live = FakeLiveCameras({"cam1": ("pass", 0.42), "cam2": ("reject", 1.7)})
    web = WebServer(web_config(root, host="127.0.0.1"), store, live)
    web.start()
    yield web
    web.close()
    store.close()


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("role", list(PAGES))
def test_pages_fit_the_screen_without_sideways_scrolling(browser, box, role: str,
                                                         size: str) -> None:
    width, height = SIZES[size]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in(page, box.url, role, PASSWORDS[role])
        for path in PAGES[role]:
            assert page.goto(box.url + path).status == 200, path
            if path == "live":  # its streams never let the network go idle
                page.wait_for_selector(".verdict-bar")
                page.wait_for_function("() => [...document.images].every(i => i.complete)")
            else:
                page.wait_for_load_state("networkidle")
            overflow = page.evaluate("() => document.documentElement.scrollWidth")
            assert overflow <= width, f"{path} at {width}x{height} scrolls sideways ({overflow})"
            if path == "panel":
                page.wait_for_selector(".reject-card button")
                heights = page.locator(".reject-card button").evaluate_all(
                    "bs => bs.map(b => b.getBoundingClientRect().height)")
                assert min(heights) >= FINGER_PX
                # The first card's buttons are on screen without scrolling.
                bottom = page.locator(".reject-card").first.locator("button").last.evaluate(
                    "b => b.getBoundingClientRect().bottom")
                assert bottom <= height, f"the first reject's buttons end at {bottom}px"
            if SHOTS:
                Path(SHOTS).mkdir(parents=True, exist_ok=True)
                name = path.strip("/").replace("/", "-") or "index"
                page.screenshot(path=str(Path(SHOTS) / f"{name}-{width}x{height}.png"))
    finally:
        context.close()
