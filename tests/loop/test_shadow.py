"""The shadow run: a candidate scored beside the active model on the labeled, stored history."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from camera.synthetic import DEFECT_TYPES
from inspector.errors import InspectorError
from inspector.imaging import list_images, read_image
from inspector.loop import Cancelled
from inspector.loop.shadow import (
    CURVE_POINTS,
    NoLabeledHistory,
    ShadowReport,
    labeled_history,
    shadow_run,
)
from inspector.model import Detector, LoadedModel, load_model
from inspector.store import InspectionRecord, Store

NOW = 1_700_000_000 * 10**9
SEC = 10**9
ALL_PASS, ALL_REJECT = 1e9, -1e9  # thresholds no score reaches / every score reaches


def with_threshold(model: LoadedModel, value: float, name: str) -> LoadedModel:
    """The same graph under another name and threshold: a verdict change without a refit."""
    card = model.card.model_copy(update={
        "name": name, "threshold": model.card.threshold.model_copy(update={"value": value})})
    return LoadedModel(card, model.onnx, model.path)


def record(seq: int, frame: np.ndarray | None, camera: str = "cam1",
           inspected_ns: int | None = None) -> InspectionRecord:
    at = NOW + seq * SEC if inspected_ns is None else inspected_ns
    return InspectionRecord(
        camera=camera, seq=seq, part_id=None, captured_ns=at - 1000, inspected_ns=at,
        verdict="pass", score=0.1, threshold=0.5, model_sha256="ab" * 32, latency_ms={},
        regions=[], frame=frame)


def add(store: Store, seq: int, frame: np.ndarray | None, label: str | None,
        defect_type: str | None = None, **fields: object) -> int:
    [row_id] = store.add_inspections([record(seq, frame, **fields)])  # type: ignore[arg-type]
    if label is not None:
        store.add_label(row_id, label, "qa", defect_type=defect_type)
    return row_id


def frame_file(store: Store, row_id: int) -> Path:
    return store.root / store.get(row_id)["image_path"]


@pytest.fixture(scope="module")
def tiny(model_dir: Path) -> LoadedModel:
    return load_model(model_dir)


@pytest.fixture(scope="module")
def parts(category: Path) -> list[tuple[np.ndarray, str, str | None]]:
    """Four good parts and three defective ones: (frame, label, defect type)."""
    goods = [(read_image(p), "good", None) for p in list_images(category / "test/good")[:4]]
    defects = [(read_image(list_images(category / f"test/{d}")[0]), "defect", d)
               for d in DEFECT_TYPES[:3]]
    return goods + defects


@pytest.fixture
def labeled(store: Store, parts: list) -> list[int]:
    """The parts stored and labeled, oldest first; the defects interleaved with the goods."""
    order = [0, 4, 1, 5, 2, 6, 3]
    return [add(store, seq, parts[i][0], parts[i][1], parts[i][2])
            for seq, i in enumerate(order)]


def scores_of(store: Store, detector: Detector, ids: list[int]) -> dict[int, float]:
    """What the model scores each stored frame (the kept JPEG), scored here directly."""
    return {i: detector.predict(read_image(frame_file(store, i))).score for i in ids}


def run(store: Store, tiny: LoadedModel, before: float, after: float,
        **options: object) -> ShadowReport:
    return shadow_run(store, with_threshold(tiny, before, "active"),
                      with_threshold(tiny, after, "candidate"), threads=1, **options)  # type: ignore[arg-type]


def test_history_is_labeled_rows_with_frames_oldest_first(store: Store, parts: list) -> None:
    frame = parts[0][0]
    newer = add(store, 1, frame, "good")
    older = add(store, 2, frame, "defect", "dent", inspected_ns=NOW - 5 * SEC)
    other_camera = add(store, 3, frame, "good", camera="cam2")
    add(store, 4, frame, None)  # never labeled
    cleared = add(store, 5, frame, "good")
    store.add_label(cleared, "none", "qa")  # label cleared again: not labeled any more
    add(store, 6, None, "good")  # labeled, but no frame was kept
    gone = add(store, 7, frame, "defect")
    frame_file(store, gone).unlink()  # labeled, its frame deleted since

    rows, lacking = labeled_history(store)
    assert [r["id"] for r in rows] == [older, newer, other_camera]
    assert lacking == 2
    assert all(r["frame_path"].is_file() for r in rows)
    assert (rows[0]["label"], rows[0]["defect_type"]) == ("defect", "dent")

    rows, lacking = labeled_history(store, cameras=["cam2"])
    assert ([r["id"] for r in rows], lacking) == ([other_camera], 0)
    rows, lacking = labeled_history(store, since_ns=NOW)
    assert ([r["id"] for r in rows], lacking) == ([newer, other_camera], 2)
    assert labeled_history(store, cameras=[]) == ([], 0)


def test_before_and_after_count_false_rejects_and_escapes(store: Store, tiny: LoadedModel,
                                                          labeled: list[int]) -> None:
    # The active model passes everything, the candidate rejects everything.
    report = run(store, tiny, ALL_PASS, ALL_REJECT)
    before, after = report.to_json()["before"], report.to_json()["after"]
    assert (report.labeled, report.lacking_frame, report.unreadable) == (7, 0, 0)
    assert before["confusion"] == {"true_rejects": 0, "false_rejects": 0, "true_passes": 4,
                                   "escapes": 3}
    assert (before["false_rejects"], before["escapes"], before["rejects"]) == (0, 3, 0)
    assert after["confusion"] == {"true_rejects": 3, "false_rejects": 4, "true_passes": 0,
                                  "escapes": 0}
    assert (after["false_rejects"], after["escapes"], after["rejects"]) == (4, 0, 7)
    assert (before["model"], before["threshold"], before["sha256"]) == ("active", ALL_PASS,
                                                                        tiny.sha256)
    assert (after["model"], after["threshold"]) == ("candidate", ALL_REJECT)
    # Every verdict flips; each flip says what it was and links its thumbnail.
    assert [c["id"] for c in report.changed] == labeled
    for change in report.changed:
        row = store.get(change["id"])
        assert (change["before_verdict"], change["after_verdict"]) == ("pass", "reject")
        assert (change["label"], change["defect_type"]) == (row["label"], row["defect_type"])
        assert (change["camera"], change["inspected_ns"]) == (row["camera"],
                                                              row["inspected_ns"])
        assert change["thumb_path"] == row["thumb_path"] is not None
        assert change["before_score"] == pytest.approx(change["after_score"])  # one graph


def test_changed_lists_exactly_the_flipped_samples(store: Store, tiny: LoadedModel,
                                                   labeled: list[int],
                                                   detector: Detector) -> None:
    scores = scores_of(store, detector, labeled)
    ranked = sorted(scores.values())
    assert len(set(ranked)) == len(ranked), "the test needs distinct scores"
    # Before: the top two rejected; after: the top five. The middle three flip.
    before_t = (ranked[4] + ranked[5]) / 2
    after_t = (ranked[1] + ranked[2]) / 2
    report = run(store, tiny, before_t, after_t)

    flipped = [i for i in labeled if after_t <= scores[i] < before_t]
    assert len(flipped) == 3
    assert [c["id"] for c in report.changed] == flipped
    assert all((c["before_verdict"], c["after_verdict"]) == ("pass", "reject")
               for c in report.changed)
    assert [c["after_score"] for c in report.changed] == pytest.approx(
        [scores[i] for i in flipped])

    labels = {i: store.get(i)["label"] for i in labeled}
    for side, t in ((report.before, before_t), (report.after, after_t)):
        assert side.confusion == {
            "true_rejects": sum(labels[i] == "defect" and scores[i] >= t for i in labeled),
            "false_rejects": sum(labels[i] == "good" and scores[i] >= t for i in labeled),
            "true_passes": sum(labels[i] == "good" and scores[i] < t for i in labeled),
            "escapes": sum(labels[i] == "defect" and scores[i] < t for i in labeled)}
    # AUROC: the share of (defect, good) pairs the model ranks the right way round.
    pairs = [(scores[d], scores[g]) for d in labeled if labels[d] == "defect"
             for g in labeled if labels[g] == "good"]
    expected = sum(d > g for d, g in pairs) / len(pairs)
    assert report.before.auroc == pytest.approx(expected)
    assert report.after.auroc == pytest.approx(expected)

    # The candidate's curve: counts at each threshold, over its whole score range.
    curve = report.curve
    assert 1 < len(curve) <= CURVE_POINTS
    assert curve[0]["threshold"] == pytest.approx(ranked[0])
    assert curve[-1]["threshold"] == pytest.approx(ranked[-1])
    assert [p["threshold"] for p in curve] == sorted(p["threshold"] for p in curve)
    for point in curve:
        t = point["threshold"]
        assert point["false_rejects"] == sum(labels[i] == "good" and scores[i] >= t
                                             for i in labeled)
        assert point["escapes"] == sum(labels[i] == "defect" and scores[i] < t
                                       for i in labeled)
    assert (curve[0]["false_rejects"], curve[0]["escapes"]) == (4, 0)  # all rejected


def test_an_unreadable_frame_is_skipped_and_counted(store: Store, tiny: LoadedModel,
                                                    labeled: list[int]) -> None:
    frame_file(store, labeled[2]).write_bytes(b"not a jpeg at all")
    calls: list[tuple[int, int]] = []
    report = run(store, tiny, ALL_PASS, ALL_REJECT,
                 progress=lambda done, total: calls.append((done, total)))
    assert (report.labeled, report.unreadable, report.lacking_frame) == (6, 1, 0)
    assert [c["id"] for c in report.changed] == labeled[:2] + labeled[3:]
    # Progress follows every frame, the unreadable one included.
    assert calls == [(n, 7) for n in range(1, 8)]


def test_auroc_is_none_when_only_one_class_is_labeled(store: Store, tiny: LoadedModel,
                                                      parts: list) -> None:
    for seq, (frame, _, _) in enumerate(parts[:3]):
        add(store, seq, frame, "good")
    result = run(store, tiny, ALL_PASS, ALL_PASS).to_json()
    assert result["before"]["auroc"] is None and result["after"]["auroc"] is None
    assert result["changed"] == []
    assert (result["labeled"], result["before"]["confusion"]["true_passes"]) == (3, 3)


def test_no_labeled_frame_is_a_clear_error(store: Store, tiny: LoadedModel,
                                           parts: list) -> None:
    add(store, 1, None, "good")
    gone = add(store, 2, parts[0][0], "defect")
    frame_file(store, gone).unlink()
    add(store, 3, parts[0][0], None)  # a frame, but no label
    with pytest.raises(NoLabeledHistory) as caught:
        run(store, tiny, ALL_PASS, ALL_REJECT)
    assert isinstance(caught.value, InspectorError)
    assert "2 labeled inspection(s) lack a stored frame" in str(caught.value)
    assert "review pages" in str(caught.value)
    assert caught.value.lacking_frame == 2


def test_only_unreadable_frames_is_the_same_error(store: Store, tiny: LoadedModel,
                                                  parts: list) -> None:
    broken = add(store, 1, parts[0][0], "good")
    frame_file(store, broken).write_bytes(b"")
    with pytest.raises(NoLabeledHistory, match="1 stored frame\\(s\\) are unreadable"):
        run(store, tiny, ALL_PASS, ALL_REJECT)


def test_should_stop_cancels_between_frames(store: Store, tiny: LoadedModel,
                                            labeled: list[int]) -> None:
    calls: list[tuple[int, int]] = []
    with pytest.raises(Cancelled, match="after 2 of 7"):
        run(store, tiny, ALL_PASS, ALL_REJECT,
            progress=lambda done, total: calls.append((done, total)),
            should_stop=lambda: len(calls) >= 2)
    assert calls == [(1, 7), (2, 7)]
    assert issubclass(Cancelled, InspectorError)


def test_the_report_is_json(store: Store, tiny: LoadedModel, labeled: list[int]) -> None:
    result = json.loads(json.dumps(run(store, tiny, ALL_PASS, ALL_REJECT).to_json()))
    assert {"labeled", "lacking_frame", "unreadable", "before", "after", "changed",
            "curve"} <= set(result)
    for side in (result["before"], result["after"]):
        assert {"model", "sha256", "threshold", "confusion", "false_rejects", "escapes",
                "auroc", "rejects"} <= set(side)
        assert isinstance(side["auroc"], float)
    assert result["after"]["rejects"] == 7
    assert {"id", "camera", "inspected_ns", "label", "defect_type", "before_score",
            "after_score", "before_verdict", "after_verdict", "thumb_path"} <= set(
                result["changed"][0])
    assert all(isinstance(c["after_score"], float) for c in result["changed"])
    assert set(result["curve"][0]) == {"threshold", "false_rejects", "escapes"}
