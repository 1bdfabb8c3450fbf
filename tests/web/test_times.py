"""Times on the pages read in the box's zone (``web.time_zone``), never as raw nanoseconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.config import parse_config
from inspector.errors import ConfigError
from web import create_app

from .webutil import filled_store, sign_in


def test_times_follow_the_configured_zone_with_summer_time(tmp_path: Path) -> None:
    store = filled_store(tmp_path / "store")
    config = parse_config({"storage": {"root": str(tmp_path / "store")},
                           "web": {"secret_key": "k", "time_zone": "Europe/Berlin"}})
    app = create_app(config, store)
    with app.app_context():
        from web.times import local_time

        assert local_time(1_767_225_600 * 10**9) == "2026-01-01 01:00:00 CET"  # winter
        assert local_time(1_782_864_000 * 10**9) == "2026-07-01 02:00:00 CEST"  # summer
        assert local_time(None) == ""
    client = app.test_client()
    sign_in(client, "qa")
    item = client.get("/api/inspections?limit=1").get_json()["items"][0]
    assert item["time"].endswith(("CET", "CEST"))
    store.add_label(item["id"], "good", "qa")
    response = client.get(f"/review/{item['id']}")
    assert response.status_code == 200
    labeled_ns = store.label_history(item["id"])[-1]["created_ns"]
    with app.app_context():
        assert local_time(labeled_ns) in response.text
    assert str(labeled_ns) not in response.text  # no raw nanoseconds
    store.close()


def test_an_unknown_zone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"web\.time_zone: unknown time zone 'Mars/Olympus'"):
        parse_config({"web": {"time_zone": "Mars/Olympus"}})
