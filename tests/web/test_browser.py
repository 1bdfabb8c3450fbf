"""The web UI in a real headless browser: Debian's chromium driven by Playwright.

Skips where chromium or Playwright is missing (a user's machine); CI installs both.
Screenshots of the panel and the review page land in ``artifacts/``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.store import SearchFilters
from tests.conftest import REPO_ROOT
from web.server import WebServer

from .browserutil import sign_in as signed_in
from .browserutil import sync_api
from .webutil import PASSWORDS, filled_store, record, web_config

ARTIFACTS = REPO_ROOT / "artifacts"
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WebServer]:
    store = filled_store(tmp_path / "store")
    web = WebServer(web_config(tmp_path / "store", host="127.0.0.1"), store)
    web.start()
    yield web
    web.close()
    store.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def sign_in(page: object, server: WebServer, role: str) -> None:
    signed_in(page, server.url, role, PASSWORDS[role])


@pytest.mark.parametrize(("role", "landing"), [("operator", "/panel"), ("qa", "/review/"),
                                                ("admin", "/panel")])
def test_each_role_signs_in_and_lands_on_its_page(page, server, role, landing) -> None:
    sign_in(page, server, role)
    assert page.url.endswith(landing)
    assert page.locator(".logout span").inner_text() == f"{role} ({role})"


@pytest.mark.parametrize(("role", "forbidden"), [("operator", ["/review/", "/admin/"]),
                                                  ("qa", ["/panel", "/admin/"])])
def test_pages_outside_a_role_answer_403(page, server, role, forbidden) -> None:
    sign_in(page, server, role)
    for path in forbidden:
        assert page.goto(server.url + path.lstrip("/")).status == 403


def test_operator_sees_a_new_reject_without_reloading_and_overrides_it(page, server) -> None:
    store = server.app.extensions["store"]
    sign_in(page, server, "operator")
    page.wait_for_selector(".reject-card")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "panel-1280x800.png"))
    (new_id,) = store.add_inspections([record(500, "reject", 1.9, camera="cam2")])
    card = page.locator(f'.reject-card[data-id="{new_id}"]')
    card.wait_for()  # appears by polling; the page is never reloaded
    assert page.locator('.tile[data-camera="cam2"]').count() == 1
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.screenshot(path=str(ARTIFACTS / "panel-1920x1080.png"))
    card.get_by_role("button", name="Override to good").click()
    card.wait_for(state="detached")
    assert store.get(new_id)["label"] == "good"
    assert store.label_history(new_id)[-1]["user"] == "operator"


def test_error_verdicts_stand_apart_from_the_rejects_to_review(page, server) -> None:
    """Errors are the box's problem, not the part's: the panel lists them by cause in their
    own place, and the reject queue holds only rejects."""
    store = server.app.extensions["store"]
    late = [dataclasses.replace(record(600 + i, "error", 0.0), score=None, frame=None,
                                anomaly_map=None, regions=[],
                                error=f"late: verdict after {1200 + i} ms, budget 1000 ms")
            for i in range(5)]
    stale = dataclasses.replace(late[0], seq=700, error="stale: 3000 ms old on arrival")
    store.add_inspections([*late, stale])
    sign_in(page, server, "operator")
    causes = page.locator("#errors .error-cause")
    sync_api.expect(causes).to_have_count(2)
    sync_api.expect(causes.first).to_contain_text("cam1: late · 5 in the last hour")
    sync_api.expect(causes.nth(1)).to_contain_text("cam1: stale · 1 in the last hour")
    rejects = store.search_count(SearchFilters(unreviewed_rejects=True, verdict="reject"))
    sync_api.expect(page.locator(".reject-card")).to_have_count(rejects)
    sync_api.expect(page.locator("#queue-total")).to_have_text(f"({rejects})")
    assert page.locator(".reject-card", has_text="late:").count() == 0


def test_qa_labels_ten_samples_by_keyboard_with_the_cursor_advancing(page, server) -> None:
    store = server.app.extensions["store"]
    sign_in(page, server, "qa")
    page.wait_for_selector(".card.selected")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review-1280x800.png"))
    ids = [int(x) for x in page.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.id)")]
    assert len(ids) >= 10
    keys = ["g", "d", "3", "g", "g", "d", "1", "g", "2", "g"]  # one key per sample, no moves
    for index, key in enumerate(keys):
        page.keyboard.press(key)
        # Locator waits, not wait_for_function: the page's CSP forbids evaluating strings.
        sync_api.expect(page.locator(".card.selected")).to_have_attribute(
            "data-id", str(ids[index + 1]))  # labeled, and the cursor moved on
    types = server.app.config["DEFECT_TYPES"]
    expected = {"g": ("good", None), "d": ("defect", None)} | {
        str(n): ("defect", types[n - 1]) for n in (1, 2, 3)}
    for inspection_id, key in zip(ids, keys, strict=False):
        row = store.get(inspection_id)
        assert (row["label"], row["defect_type"]) == expected[key], (inspection_id, key)
    page.keyboard.press("u")  # undo the last one: back to unlabeled, the cursor back on it
    sync_api.expect(page.locator("#status")).to_have_text(f"#{ids[9]}: unlabeled")
    sync_api.expect(page.locator(".card.selected")).to_have_attribute("data-id", str(ids[9]))
    assert store.get(ids[9])["label"] is None
    assert [h["label"] for h in store.label_history(ids[9])] == ["good", "none"]


def test_statistics_page_draws_its_charts_from_local_scripts(page, server) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    sign_in(page, server, "qa")
    page.goto(server.url + "stats")
    page.wait_for_selector("#histogram canvas")
    assert page.locator(".chart canvas").count() == 4
    sync_api.expect(page.locator("#latency tr")).to_have_count(2)  # header + cam1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "stats-1280x800.png"), full_page=True)
    assert all(url.startswith(server.url) for url in requests)  # nothing from the network


def test_a_label_with_a_note_from_the_detail_view(page, server) -> None:
    store = server.app.extensions["store"]
    sign_in(page, server, "qa")
    page.goto(server.url + "review/4")
    page.fill("#note", "burr on the rim")
    page.locator("#note").blur()
    page.keyboard.press("d")
    sync_api.expect(page.locator("#status")).to_have_text("#4: defect")
    assert store.label_history(4)[-1]["note"] == "burr on the rim"


def test_bulk_labels_the_selection_and_then_clears_it(page, server) -> None:
    store = server.app.extensions["store"]
    sign_in(page, server, "qa")
    page.wait_for_selector(".card.selected")
    ids = [int(x) for x in page.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.id)")]
    for inspection_id in ids[:3]:
        page.locator(f'.card[data-id="{inspection_id}"] .pick').check()
    page.get_by_role("button", name="Mark selected defect").click()
    sync_api.expect(page.locator("#status")).to_have_text("3 samples marked defect")
    assert [store.get(i)["label"] for i in ids[:3]] == ["defect"] * 3
    sync_api.expect(page.locator(".card .pick:checked")).to_have_count(0)
    badge = page.locator(f'.card[data-id="{ids[0]}"] .label')
    sync_api.expect(badge).to_have_text("defect")
    assert badge.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(214, 69, 69)"


def test_the_detail_page_labels_by_mouse_and_steps_through_the_filtered_samples(
        page, server) -> None:
    store = server.app.extensions["store"]
    sign_in(page, server, "qa")
    page.goto(server.url + "review/?verdict=reject")
    page.wait_for_selector(".card.selected")
    ids = [int(x) for x in page.locator(".card").evaluate_all("cs => cs.map(c => c.dataset.id)")]
    assert len(ids) >= 3 and all(store.get(i)["verdict"] == "reject" for i in ids)
    page.locator(f'.card[data-id="{ids[0]}"] a').click()
    page.wait_for_url(f"**/review/{ids[0]}?verdict=reject")
    sync_api.expect(page.locator(".label-buttons")).to_have_css("outline-style", "none")
    types = server.app.config["DEFECT_TYPES"]
    page.get_by_role("button", name=f"2 {types[1]}").click()
    sync_api.expect(page.locator("#status")).to_have_text(f"#{ids[0]}: defect · {types[1]}")
    assert (store.get(ids[0])["label"], store.get(ids[0])["defect_type"]) == ("defect", types[1])
    page.get_by_role("link", name="next (older) →").click()  # the next reject, not any sample
    page.wait_for_url(f"**/review/{ids[1]}?verdict=reject")
    page.keyboard.press("j")  # the keys step too
    page.wait_for_url(f"**/review/{ids[2]}?verdict=reject")
    page.keyboard.press("k")
    page.wait_for_url(f"**/review/{ids[1]}?verdict=reject")
    page.get_by_role("button", name="Good", exact=True).click()
    sync_api.expect(page.locator("#status")).to_have_text(f"#{ids[1]}: good")


def test_undo_survives_a_page_change_and_done_cards_fade_in_the_unlabeled_view(
        page, server) -> None:
    store = server.app.extensions["store"]
    sign_in(page, server, "qa")
    page.goto(server.url + "review/?label=none")
    page.wait_for_selector(".card.selected")
    first = page.locator(".card.selected").get_attribute("data-id")
    page.keyboard.press("g")
    sync_api.expect(page.locator(f'.card[data-id="{first}"]')).to_have_class(re.compile("done"))
    assert store.get(int(first))["label"] == "good"
    page.goto(server.url + "stats")  # another page, then back to the grid
    page.goto(server.url + "review/?label=good")
    page.wait_for_selector(".card.selected")
    page.keyboard.press("u")
    sync_api.expect(page.locator("#status")).to_have_text(f"#{first}: unlabeled")
    assert store.get(int(first))["label"] is None


def test_an_operator_undoes_a_mis_tap_on_the_panel(page, server) -> None:
    store = server.app.extensions["store"]
    sign_in(page, server, "operator")
    card = page.locator(".reject-card").first
    card.wait_for()
    sample = int(card.get_attribute("data-id"))
    card.get_by_role("button", name="Override to good").click()
    sync_api.expect(page.locator(f'.reject-card[data-id="{sample}"]')).to_have_count(0)
    assert store.get(sample)["label"] == "good"
    undo = page.locator("#undo")
    sync_api.expect(undo).to_contain_text(f"#{sample} marked good (override)")
    undo.get_by_role("button", name="Undo").click()
    sync_api.expect(undo).to_be_hidden()
    sync_api.expect(page.locator(f'.reject-card[data-id="{sample}"]')).to_have_count(1)  # back
    assert store.get(sample)["label"] is None
    assert [h["label"] for h in store.label_history(sample)] == ["good", "none"]


def test_a_region_is_drawn_zoomed_labeled_and_exported(page, server) -> None:
    import csv
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    store = server.app.extensions["store"]
    sample = next(r["id"] for r in store.search(SearchFilters(verdict="reject"), 50)
                  if r["image_path"])
    sign_in(page, server, "qa")
    page.goto(server.url + f"review/{sample}")
    image = page.locator("#stage-image")
    sync_api.expect(image).to_have_js_property("complete", True)
    width, height = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")

    def drag(fx0: float, fy0: float, fx1: float, fy1: float) -> None:
        box = page.locator("#boxes").bounding_box()
        page.mouse.move(box["x"] + fx0 * box["width"], box["y"] + fy0 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + fx1 * box["width"], box["y"] + fy1 * box["height"], steps=5)
        page.mouse.up()

    drag(0.25, 0.25, 0.5, 0.75)  # a box over a quarter of the frame's width, half its height
    page.keyboard.press("+")  # zoomed in, a second box is still in frame pixels
    sync_api.expect(page.locator("#zoom-level")).to_have_text("150%")
    assert page.locator("#stage").bounding_box()["width"] > page.locator(
        "#zoom-view").bounding_box()["width"] * 1.3
    page.locator("#zoom-view").evaluate("v => v.scrollTo(0, 0)")
    drag(0.05, 0.05, 0.1, 0.1)
    sync_api.expect(page.locator("#region-list li")).to_have_count(2)
    sync_api.expect(page.locator("#drawn-count")).to_contain_text("not saved yet")
    types = server.app.config["DEFECT_TYPES"]
    page.keyboard.press("1")  # the first defect type, with the boxes
    sync_api.expect(page.locator("#status")).to_have_text(
        f"#{sample}: defect · {types[0]} with 2 boxes")
    sync_api.expect(page.locator("#drawn-count")).to_have_text("2")
    first, second = store.label_history(sample)[-1]["regions"]
    assert first["x"] == pytest.approx(width * 0.25, abs=3)
    assert first["w"] == pytest.approx(width * 0.25, abs=3)
    assert first["h"] == pytest.approx(height * 0.5, abs=3)
    assert second["w"] < first["w"] / 3  # drawn at 150%: a small box, not a scaled one

    # The boxes come back with the page, and go out with the dataset as a mask.
    page.reload()
    sync_api.expect(page.locator("#boxes rect")).to_have_count(2)
    response = page.request.get(server.url + "api/export.zip?label=defect")
    archive = zipfile.ZipFile(io.BytesIO(response.body()))
    row = next(r for r in csv.DictReader(io.StringIO(archive.read("labels.csv").decode()))
               if r["id"] == str(sample))
    mask = np.array(Image.open(io.BytesIO(archive.read(row["mask"]))))
    assert mask.shape == (height, width)
    assert (mask == 255).sum() == first["w"] * first["h"] + second["w"] * second["h"]


@pytest.mark.parametrize(("role", "path", "status", "says"), [
    ("operator", "admin/", 403, "Forbidden"),
    ("qa", "review/999999", 404, "Not Found"),
    ("qa", "review/?verdict=bogus", 400, "verdict must be one of"),
])
def test_refusals_are_styled_pages_with_the_menu(page, server, role, path, status,
                                                 says) -> None:
    sign_in(page, server, role)
    response = page.goto(server.url + path)
    assert response.status == status
    sync_api.expect(page.locator("main")).to_contain_text(says)
    # The site's own page: its stylesheet, its menu, a way back.
    sync_api.expect(page.locator("body")).to_have_css("background-color", "rgb(16, 20, 24)")
    sync_api.expect(page.locator(".bar nav a").first).to_be_visible()
    sync_api.expect(page.get_by_role("button", name="Sign out")).to_be_visible()
