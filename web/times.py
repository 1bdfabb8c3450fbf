"""Times as people at the box read them: in the box's time zone (``web.time_zone``, else the
system's), to the second, with the zone's abbreviation. Stored times stay Unix ns (UTC)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from flask import current_app


def time_zone() -> tzinfo | None:
    """The configured zone; None: the system's local zone."""
    name = current_app.extensions["inspector_config"].web.time_zone
    return None if name is None else ZoneInfo(name)


def local_time(ns: int | None) -> str:
    """``2026-12-03 15:02:11 CET`` for Unix nanoseconds; "" for None."""
    if ns is None:
        return ""
    zone = time_zone()
    # astimezone(): the system's zone with the offset it had then (summer time included)
    moment = (datetime.fromtimestamp(ns / 1e9, tz=zone) if zone is not None
              else datetime.fromtimestamp(ns / 1e9).astimezone())
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
