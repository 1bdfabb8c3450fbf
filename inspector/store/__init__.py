"""The results store: every verdict in SQLite, its pictures as files, and the thread that writes it.

- ``store``: ``Store``, one object over the database and image files under one root,
  composed of the parts below
- ``inspections``: writing results in batches, querying them (``SearchFilters``)
- ``images``: the image files: rendering, atomic writes, paths, crash recovery
- ``labels``: the append-only label history
- ``accounts``: web UI users and the audit log
- ``models``: the models the store has seen and which one is active
- ``retention``: what history to keep (``RetentionPolicy``) and deleting the rest
- ``alarms``: the history of alarms raised and cleared
- ``db``, ``schema``: the shared SQLite connection and the schema's migration steps
- ``recorder``: the thread that writes verdicts to the store off the inspection path, one
  transaction a batch, from a bounded queue
"""

from inspector.store.inspections import SearchFilters
from inspector.store.recorder import Recorder
from inspector.store.records import LABELS, VERDICTS, InspectionRecord
from inspector.store.retention import RetentionPolicy
from inspector.store.store import Store

__all__ = ["LABELS", "VERDICTS", "InspectionRecord", "Recorder", "RetentionPolicy",
           "SearchFilters", "Store"]
