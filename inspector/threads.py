"""Thread priorities: background work that must yield the CPU to inspection."""

from __future__ import annotations

import os
import threading


def lower_priority(niceness: int) -> bool:
    """Run the calling thread at ``niceness`` (Linux schedules threads on their own);
    False where the OS has no per-thread priority or does not permit it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):
        return False
    return True
