"""Retention: what goes first, what is never deleted, the age and disk caps."""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest

import inspector.store.retention as retention_module
from inspector.store import RetentionPolicy, Store

from .conftest import DAY, NOW, add_history, record, seqs


def test_retention_deletes_the_oldest_unlabeled_passes_first(store: Store) -> None:
    _, per_record = add_history(store)
    total = store.image_bytes()
    result = store.apply_retention(RetentionPolicy(max_bytes=total - per_record - 1), NOW)
    assert result == {"deleted": 2, "freed_bytes": 2 * per_record, "orphans_removed": 0}
    assert seqs(store) == [2, 3, 4, 5, 100, 101]
    assert store.image_bytes() == total - 2 * per_record
    assert all((store.root / r["image_path"]).is_file() for r in store.recent(100))
    # Emptied day folders go with their files.
    assert len(list((store.images / "cam1").iterdir())) == 6


def test_retention_never_deletes_labeled_samples_or_recent_rejects(store: Store) -> None:
    ids, _ = add_history(store)
    store.add_label(ids[0], "good", "qa")
    store.add_label(ids[1], "defect", "qa", defect_type="dent")
    result = store.apply_retention(RetentionPolicy(max_bytes=0), NOW)
    assert result["deleted"] == 5  # four passes, then the old reject
    assert seqs(store) == [0, 1, 101]
    for row in store.recent(100):
        assert (store.root / row["image_path"]).is_file()
    assert len(store.label_history(ids[0])) == 1
    # Once the recent reject is old enough it may go; labeled samples never.
    store.apply_retention(RetentionPolicy(max_bytes=0), NOW + 2 * DAY)
    assert seqs(store) == [0, 1]


def test_keep_days_removes_old_unlabeled_passes_only(store: Store) -> None:
    ids, _ = add_history(store)
    store.add_inspections([record(200, "pass", inspected_ns=NOW - 9 * DAY, frame=None)])
    store.add_label(ids[0], "good", "qa")
    result = store.apply_retention(RetentionPolicy(keep_days=6.5), NOW)
    assert result["deleted"] == 4  # seq 1, 2, 3 and the imageless 200
    assert seqs(store) == [0, 4, 5, 100, 101]
    assert store.apply_retention(RetentionPolicy(keep_days=6.5), NOW)["deleted"] == 0
    with sqlite3.connect(store.db_path) as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit")]
    assert actions.count("retention") == 1


def test_max_disk_percent_uses_the_filesystem_of_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No free-space floor: only the percentage decides here.
    store = Store(tmp_path / "var", min_free_bytes=0, reserve_bytes=0)
    _, per_record = add_history(store)
    usage = namedtuple("usage", "total used free")

    def disk_usage(path: Any) -> Any:
        assert Path(path) == store.root
        used = 43 * per_record + store.image_bytes()  # 51 records' worth of 100
        return usage(100 * per_record, used, 100 * per_record - used)

    monkeypatch.setattr(retention_module.shutil, "disk_usage", disk_usage)
    store.apply_retention(RetentionPolicy(max_disk_percent=49.0), NOW)
    assert seqs(store) == [2, 3, 4, 5, 100, 101]
    store.close()
