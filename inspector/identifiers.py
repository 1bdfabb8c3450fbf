"""What a camera id, part id and frame counter may be: one set of rules for every end.

The frame bus checks them on arrival and the store before it writes, with these same
functions, so whatever the bus accepts the store accepts: one hostile header can never
pass the gate and then make the store refuse a batch of other cameras' verdicts.
Each check raises ``ValueError`` naming the field; callers wrap it in their own error.
"""

from __future__ import annotations

import numbers
import re
from typing import Any

MAX_CAMERA_ID = 64
MAX_PART_ID = 128
MAX_COUNTER = 2**63 - 1  # SQLite's INTEGER, and the range of a signed 64-bit PLC register

# Camera ids become folder names and log fields: letters, digits, "_", "-" and ".", but no
# ".." anywhere and not "." alone. fullmatch, because "$" also matches before a final "\n".
_CAMERA_ID = re.compile(rf"[A-Za-z0-9_.-]{{1,{MAX_CAMERA_ID}}}")


def check_camera_id(value: Any, field: str = "camera id") -> str:
    """``value`` when it is a usable camera id, else ``ValueError``."""
    if not isinstance(value, str) or not _CAMERA_ID.fullmatch(value) or ".." in value or (
        value == "."
    ):
        raise ValueError(f"{field} must be 1-{MAX_CAMERA_ID} of A-Z a-z 0-9 _ - . without "
                         f"'..', got {shown(value)}")
    return value


def check_part_id(value: Any, field: str = "part_id") -> str | None:
    """``value`` when it is null or a printable id the store can encode, else ``ValueError``."""
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_PART_ID:
        raise ValueError(f"{field} must be null or 1-{MAX_PART_ID} characters, got "
                         f"{shown(value)}")
    # Control characters forge log lines and CSV rows; lone surrogates cannot be stored.
    # Neither is printable (categories Cc and Cs).
    if not value.isprintable():
        raise ValueError(f"{field} must be printable UTF-8 text, got {shown(value)}")
    return value


def check_counter(value: Any, field: str) -> int:
    """``value`` as an int when it is an integer (NumPy's too, not a bool) in 0..2^63-1,
    else ``ValueError``."""
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
            or not 0 <= value <= MAX_COUNTER):
        raise ValueError(f"{field} must be an integer in 0..2^63-1, got {shown(value)}")
    return int(value)


def shown(value: Any) -> str:
    """A bounded, escaped rendering of a refused value, safe to put in a log line."""
    text = ascii(value)
    return text if len(text) <= 80 else text[:77] + "..."
