"""Prometheus metrics of the running box (``GET /metrics``).

Counters are read from the monitor when scraped, so ``/metrics``, the panel and the
pipeline's report show the same numbers from one source (``Monitor.totals``). Latency
is the one thing observed as verdicts leave: ``Metrics.publish`` is an output.

Label sets are bounded: cameras by the config (frames from any other camera are counted
under ``camera="other"`` in the histograms), alarm kinds by ``ALARM_KINDS``, outputs by
the config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from inspector.monitor.alarms import ALARM_KINDS
from inspector.monitor.monitor import Monitor

# Seconds; verdict budgets are tens of milliseconds to a second.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STAGES = ("queue", "model", "total")
FRAME_COUNTERS = {  # counter: what it counts, per camera
    "captured": "frames read from the camera",
    "published": "frames sent to inspection",
    "dropped": "frames dropped at capture because inspection was behind",
    "received": "frames inspection took in",
    "inspected": "frames that reached the model or were judged",
    "malformed": "bus messages refused as malformed",
    "stale": "frames older than their latency budget on arrival (error verdicts)",
}
VERDICT_COUNTERS = {"passed": "pass", "rejected": "reject", "errors": "error"}
OutputStats = Callable[[], dict[str, Any]]
MetricsText = tuple[bytes, str]


def _package_version() -> str:
    try:
        return version("edge-inspector")
    except PackageNotFoundError:
        return "unknown"


class Metrics:
    """The box's metrics registry; ``publish`` observes each verdict's latency."""

    def __init__(self, monitor: Monitor,
                 outputs: dict[str, OutputStats] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._cameras = {c.id for c in monitor.config.cameras}
        self._latency = Histogram(
            "inspector_latency_seconds", "Time from capture to each stage's end, per verdict",
            ["camera", "stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_BoxCollector(monitor, outputs or {}))

    def publish(self, camera: str, document: dict[str, Any]) -> None:
        """An output: observe the verdict's latencies."""
        label = camera if camera in self._cameras else "other"
        for stage, ms in document.get("latency_ms", {}).items():
            if stage in STAGES:
                self._latency.labels(label, stage).observe(ms / 1000)

    def exposition(self) -> MetricsText:
        """The Prometheus text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _BoxCollector:
    """Reads the monitor at every scrape."""

    def __init__(self, monitor: Monitor, outputs: dict[str, OutputStats]) -> None:
        self._monitor = monitor
        self._outputs = outputs
        self._version = _package_version()

    def collect(self) -> Iterator[Metric]:
        monitor = self._monitor
        totals = monitor.totals()
        for key, meaning in FRAME_COUNTERS.items():
            family = CounterMetricFamily(f"inspector_frames_{key}", f"Frames: {meaning}",
                                         labels=["camera"])
            for camera, counts in totals.items():
                family.add_metric([camera], counts[key])
            yield family
        verdicts = CounterMetricFamily("inspector_verdicts", "Verdicts by kind",
                                       labels=["camera", "verdict"])
        for camera, counts in totals.items():
            for key, verdict in VERDICT_COUNTERS.items():
                verdicts.add_metric([camera, verdict], counts[key])
        yield verdicts
        yield from self._model()
        yield from self._recorder()
        yield from self._alarms()
        yield from self._output_stats()
        info = InfoMetricFamily("inspector_build", "The software running")
        info.add_metric([], {"version": self._version})
        yield info

    def _model(self) -> Iterator[Metric]:
        detector = self._monitor.service.detector
        info = InfoMetricFamily("inspector_model", "The active model")
        info.add_metric([], {"name": detector.card.name, "sha256": detector.model.sha256})
        yield info
        yield GaugeMetricFamily("inspector_model_threshold", "The active reject threshold",
                                value=detector.threshold)

    def _recorder(self) -> Iterator[Metric]:
        recorder, monitor = self._monitor.recorder, self._monitor
        yield GaugeMetricFamily("inspector_recorder_backlog",
                                "Verdicts waiting to be written to the store",
                                value=recorder.pending())
        yield GaugeMetricFamily("inspector_recorder_lag_seconds",
                                "Age of the oldest verdict not yet written", value=recorder.lag_s())
        yield CounterMetricFamily("inspector_recorder_dropped",
                                  "Verdicts not recorded (queue full)", value=recorder.dropped)
        yield CounterMetricFamily("inspector_recorder_failed",
                                  "Verdicts the store failed to write", value=recorder.failed)
        used = monitor.disk_used()
        if used is not None:
            yield GaugeMetricFamily("inspector_disk_used_ratio",
                                    "Share of the store's filesystem in use", value=used)
        yield CounterMetricFamily("inspector_images_skipped",
                                  "Verdicts stored without their images (disk full, failed "
                                  "write)", value=monitor.store.images_skipped)

    def _alarms(self) -> Iterator[Metric]:
        active = self._monitor.board.active()
        count = GaugeMetricFamily("inspector_alarms", "Alarms raised now, by kind",
                                  labels=["kind"])
        for kind in ALARM_KINDS:
            count.add_metric([kind], sum(1 for a in active if a.kind == kind))
        yield count
        each = GaugeMetricFamily("inspector_alarm_active", "1 for each alarm raised now; "
                                 "raised_timestamp gives when", labels=["kind", "subject"])
        since = GaugeMetricFamily("inspector_alarm_raised_timestamp_seconds",
                                  "When each alarm raised now was raised (Unix time)",
                                  labels=["kind", "subject"])
        for alarm in active:
            each.add_metric([alarm.kind, alarm.subject], 1)
            since.add_metric([alarm.kind, alarm.subject], alarm.raised_ns / 1e9)
        yield each
        yield since

    def _output_stats(self) -> Iterator[Metric]:
        if not self._outputs:
            return
        family = GaugeMetricFamily("inspector_output", "Each output's own counters (sent, "
                                   "queued, dropped, connected, ...)", labels=["output", "stat"])
        for name, stats in self._outputs.items():
            for key, value in stats().items():
                if isinstance(value, bool | int | float):
                    family.add_metric([name, key], float(value))
        yield family
