"""The results store: every verdict in SQLite, its pictures as files, and the thread that writes it.

- ``store``: ``Store``, the results database and image files under one root
- ``recorder``: the thread that writes verdicts to the store off the inspection path
"""

from inspector.store.recorder import Recorder
from inspector.store.store import (
    LABELS,
    VERDICTS,
    InspectionRecord,
    RetentionPolicy,
    SearchFilters,
    Store,
)

__all__ = ["LABELS", "VERDICTS", "InspectionRecord", "Recorder", "RetentionPolicy",
           "SearchFilters", "Store"]
