"""Numbers from query strings: garbage is a 400, values out of range are clamped.

Every numeric query argument goes through here, so none reaches SQLite or the clock
arithmetic as a value that overflows (``offset=1e30``), poisons a comparison
(``nan``) or makes the request fail with a 500.
"""

from __future__ import annotations

import math
from typing import Any

from flask import abort, request

SQLITE_INT_MAX = 2**63 - 1
MAX_OFFSET = 10**9  # rows to skip: far past any store's history, far inside SQLite's range


def int_arg(args: Any, key: str, default: int, low: int, high: int) -> int:
    """``args[key]`` as an int clamped to ``[low, high]``; ``default`` when absent or empty."""
    value = args.get(key, "")
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:  # also text longer than Python's int parsing limit
        abort(400, f"{key} must be a whole number")
    return min(high, max(low, number))


def float_arg(args: Any, key: str, default: float | None, low: float = -math.inf,
              high: float = math.inf) -> float | None:
    """``args[key]`` as a finite float clamped to ``[low, high]``; ``default`` when absent
    or empty. ``nan`` and ``inf`` are garbage here: no filter or range means them."""
    value = args.get(key, "")
    if value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        abort(400, f"{key} must be a number")
    if not math.isfinite(number):
        abort(400, f"{key} must be a finite number")
    return min(high, max(low, number))


def number(values: Any, key: str, default: float | None, low: float = -math.inf,
           high: float = math.inf) -> float | None:
    """``values[key]`` (a JSON body or a form, where a number may be a number or text) by
    ``float_arg``'s rules; absent (None or empty) gives ``default``."""
    value = values.get(key)
    return float_arg({key: "" if value is None else str(value)}, key, default, low, high)


def json_object() -> dict[str, Any]:
    """The request's JSON body, which must be an object; anything else is a 400."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "send a JSON object")
    return body
