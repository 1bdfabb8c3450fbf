"""The live view and the panel's camera tiles in a real browser, as a gloved operator at
1.5 m uses them on a 1024x600 touch panel: verdicts readable on each camera, a heatmap
toggle per camera worked by touch, a still frame for the viewer beyond the stream limit,
and panel tiles that hold a reject instead of flickering.

Time in the page is Playwright's clock, paused and moved on by the test, so nothing waits
for a poll interval or depends on how fast this machine is.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from web.live import MAX_STREAMS, STILL_REFRESH_S, STREAM_RETRY_S
from web.server import WebServer

from .browserutil import expect
from .browserutil import sign_in as signed_in
from .webutil import (
    PASSWORDS,
    FakeLiveCameras,
    HttpBrowser,
    filled_store,
    record,
    wait_for,
    web_config,
)

PANEL_10IN = {"width": 1024, "height": 600}
TOUCH_PX = 48  # the smallest target asked of the live page's controls


@pytest.fixture
def live(request: pytest.FixtureRequest) -> FakeLiveCameras:
    """The cameras and their latest results (a test may pass its own, indirectly)."""
    return FakeLiveCameras(getattr(request, "param",
                                   {"cam1": ("pass", 0.42), "cam2": ("reject", 1.73)}))


@pytest.fixture
def server(tmp_path: Path, live: FakeLiveCameras) -> Iterator[WebServer]:
    store = filled_store(tmp_path / "store")
    web = WebServer(web_config(tmp_path / "store", host="127.0.0.1"), store, live)
    web.start()
    yield web
    web.close()
    store.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    """A touch panel: 1024x600, touch events, time under the test's control."""
    context = browser.new_context(viewport=PANEL_10IN, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    start = datetime.datetime.now()
    page.clock.install(time=start)
    page.clock.pause_at(start + datetime.timedelta(seconds=1))
    yield page
    context.close()


def sign_in(page: object, server: WebServer, role: str = "operator") -> None:
    signed_in(page, server.url, role, PASSWORDS[role])




def test_each_camera_shows_its_verdict_and_score_in_words_and_colour(page, server, live):
    sign_in(page, server)
    page.goto(server.url + "live")
    cam1 = page.locator('figure[data-camera="cam1"] .verdict-bar')
    cam2 = page.locator('figure[data-camera="cam2"] .verdict-bar')
    expect(cam1).to_have_attribute("data-verdict", "pass")
    expect(cam1).to_contain_text("PASS")
    expect(cam1).to_contain_text("score 0.420 / threshold 1.000")
    expect(cam2).to_have_attribute("data-verdict", "reject")
    expect(cam2).to_contain_text("REJECT")
    expect(cam2).to_contain_text("score 1.730 / threshold 1.000")
    # Colour as well as the word, and a word big enough to read across the line.
    expect(cam1).to_have_css("background-color", "rgb(21, 128, 61)")
    expect(cam2).to_have_css("background-color", "rgb(185, 28, 28)")
    word = cam2.locator(".word").evaluate("w => parseFloat(getComputedStyle(w).fontSize)")
    assert word >= 40
    # A new result turns up on the page by polling, without a reload.
    live.show("cam1", "error", None, error="late: verdict after 1200 ms, budget 1000 ms")
    page.clock.run_for(1000)
    expect(cam1).to_have_attribute("data-verdict", "error")
    expect(cam1).to_contain_text("ERROR")
    expect(cam1).to_contain_text("late: verdict after 1200 ms")
    expect(cam2).to_have_attribute("data-verdict", "reject")  # the other camera unchanged
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PANEL_10IN["width"]


def test_the_heatmap_toggles_per_camera_by_touch(page, server) -> None:
    sign_in(page, server)
    page.goto(server.url + "live")
    toggles = {cam: page.locator(f'figure[data-camera="{cam}"] .heat-toggle')
               for cam in ("cam1", "cam2")}
    images = {cam: page.locator(f'figure[data-camera="{cam}"] img') for cam in ("cam1", "cam2")}
    for toggle in toggles.values():
        box = toggle.bounding_box()
        assert box["height"] >= TOUCH_PX and box["width"] >= TOUCH_PX, box
    toggles["cam1"].tap()
    expect(toggles["cam1"]).to_have_attribute("aria-pressed", "true")
    expect(toggles["cam1"]).to_have_text("Hide heatmap")
    expect(images["cam1"]).to_have_attribute("src", "/live/cam1.mjpg?overlay=1")
    expect(toggles["cam2"]).to_have_attribute("aria-pressed", "false")  # cam2 untouched
    expect(images["cam2"]).to_have_attribute("src", "/live/cam2.mjpg?overlay=0")
    toggles["cam2"].tap()
    toggles["cam1"].tap()
    expect(images["cam1"]).to_have_attribute("src", "/live/cam1.mjpg?overlay=0")
    expect(images["cam2"]).to_have_attribute("src", "/live/cam2.mjpg?overlay=1")
    expect(toggles["cam1"]).to_have_text("Show heatmap")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PANEL_10IN["width"]


@pytest.mark.parametrize("live", [{"cam1": ("pass", 0.3)}], indirect=True)
def test_the_viewer_beyond_the_stream_limit_sees_stills_then_a_stream(page, server) -> None:
    slots = server.app.extensions["live_slots"]
    viewer = HttpBrowser(server.url)
    assert viewer.sign_in("operator", PASSWORDS["operator"])[0] == 302
    streams = []
    try:
        for _ in range(MAX_STREAMS):  # the first MAX_STREAMS viewers, each with a stream
            sock = socket.create_connection((viewer.host, viewer.port), timeout=10)
            streams.append(sock)
            sock.sendall(f"GET /live/cam1.mjpg HTTP/1.1\r\nHost: x\r\nCookie: "
                         f"{viewer.cookie}\r\n\r\n".encode())
            head = b""
            while b"--frame" not in head:  # the body has started: the slot is taken
                chunk = sock.recv(65536)
                assert chunk, "closed before the first frame"
                head += chunk
            assert head.startswith(b"HTTP/1.1 200")
        assert slots.active == MAX_STREAMS

        sign_in(page, server)  # one viewer more
        page.goto(server.url + "live")
        tile = page.locator('figure[data-camera="cam1"]')
        image, note = tile.locator("img"), tile.locator(".still-note")
        expect(note).to_have_text(f"All {MAX_STREAMS} live streams are in use; showing a "
                                  f"still frame refreshed every {STILL_REFRESH_S} s.")
        expect(image).to_have_attribute("src", "/live/cam1.jpg?overlay=0&n=1")
        expect(image).to_have_js_property("naturalWidth", 64)  # a real frame, decoded
        expect(tile.locator(".verdict-bar")).to_have_attribute("data-verdict", "pass")
        with page.expect_response(lambda r: "/live/cam1.jpg" in r.url) as still:
            page.clock.run_for(1000 * STILL_REFRESH_S)
        assert still.value.status == 200
        assert still.value.headers["content-type"] == "image/jpeg"
        expect(image).to_have_attribute("src", "/live/cam1.jpg?overlay=0&n=2")
        # Both stills are of one unchanged frame: encoded once, however often asked.
        assert server.app.extensions["live_stills"].encoded == 1
        assert slots.active == MAX_STREAMS  # stills take no stream slot

        streams.pop().close()  # a viewer leaves; the page takes its slot at the next try
        assert wait_for(lambda: slots.active == MAX_STREAMS - 1)
        page.clock.run_for(1000 * STREAM_RETRY_S)
        expect(image).to_have_attribute("src", "/live/cam1.mjpg?overlay=0")
        expect(note).to_be_hidden()
        assert wait_for(lambda: slots.active == MAX_STREAMS)
    finally:
        for sock in streams:
            sock.close()
        viewer.close()


def test_a_panel_tile_holds_a_reject_and_counts_recent_rejects(page, server) -> None:
    store = server.app.extensions["store"]
    sign_in(page, server)  # an operator lands on the panel
    tile = page.locator('.tile[data-camera="cam1"]')
    # The sample store: 12 parts today, 4 of them rejects, the newest a pass.
    expect(tile).to_have_attribute("data-verdict", "pass")
    expect(tile.locator(".rate")).to_have_text("4 rejects in 12 parts today")
    # 120 more parts between two polls: 3 rejects early on, the newest a pass. Showing
    # only the newest verdict, the tile would read PASS and the rejects would go unseen.
    rejects = (5, 40, 90)
    parts = [record(1000 + i, "reject" if i in rejects else "pass",
                    1.5 if i in rejects else 0.5, frame=False) for i in range(120)]
    store.add_inspections(parts)
    page.clock.run_for(2000)  # the next poll
    expect(tile).to_have_attribute("data-verdict", "reject")
    expect(tile.locator(".verdict-big")).to_have_text("reject")
    expect(tile.locator(".held-note")).to_contain_text("last reject")
    expect(tile.locator(".rate")).to_have_text("3 rejects in last 120 parts")
    page.clock.run_for(2000)  # still held at the poll after: it cannot flash by
    expect(tile).to_have_attribute("data-verdict", "reject")
    page.clock.run_for(4000)  # no reject since: the tile goes back to the newest verdict
    expect(tile).to_have_attribute("data-verdict", "pass")
    expect(tile.locator(".held-note")).to_have_text("")
    expect(tile.locator(".rate")).to_have_text("3 rejects in last 120 parts")


def test_an_operator_works_the_whole_shift_by_touch_alone(page, server, live) -> None:
    """Sign in, override a reject, undo the mis-tap, confirm a defect, look at the live
    view with one camera's heatmap, and read the statistics: every step a tap on a
    finger-sized target (typing only on the sign-in form, as on the panel's on-screen
    keyboard); no hover, no key press."""
    store = server.app.extensions["store"]
    page.goto(server.url + "login")
    page.fill("input[name=username]", "operator")
    page.fill("input[name=password]", PASSWORDS["operator"])
    page.locator("button[type=submit]").tap()
    page.wait_for_url("**/panel")

    def tap(locator: object) -> None:
        box = locator.bounding_box()
        assert box["height"] >= 44 and box["width"] >= 44, box  # a gloved finger's size
        locator.tap()

    cards = page.locator(".reject-card")
    cards.first.wait_for()
    first = int(cards.first.get_attribute("data-id"))
    tap(cards.first.get_by_role("button", name="Override to good"))
    expect(page.locator(f'.reject-card[data-id="{first}"]')).to_have_count(0)
    tap(page.locator("#undo").get_by_role("button", name="Undo"))
    expect(page.locator(f'.reject-card[data-id="{first}"]')).to_have_count(1)
    assert store.get(first)["label"] is None
    tap(page.locator(f'.reject-card[data-id="{first}"]').get_by_role(
        "button", name="Confirm defect"))
    expect(page.locator(f'.reject-card[data-id="{first}"]')).to_have_count(0)
    assert store.get(first)["label"] == "defect"

    tap(page.get_by_role("link", name="Live"))
    page.wait_for_url("**/live")
    toggle = page.locator('figure[data-camera="cam2"] .heat-toggle')
    tap(toggle)
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(page.locator('figure[data-camera="cam1"] .heat-toggle')).to_have_attribute(
        "aria-pressed", "false")
    tap(page.get_by_role("link", name="Statistics"))
    page.wait_for_url("**/stats")
    tap(page.get_by_role("link", name="Panel"))
    page.wait_for_url("**/panel")
    # Nothing on the operator's pages depends on a hover state to be found or used.
    hover_rules = page.evaluate("""() => [...document.styleSheets].flatMap(sheet => {
        try { return [...sheet.cssRules].map(r => r.cssText); } catch { return []; }
      }).filter(text => text.includes(':hover'))""")
    assert hover_rules == []
