"""The inspection core: frames from the bus in, verdicts out to the publisher, recorder and preview.

Worker threads share the detector (one ONNX Runtime session may run several
frames at once). Each worker in turn takes the frames waiting on the bus (up to
``max_batch``, waiting at most ``batch_wait_ms`` to fill a batch), marks frames
already older than their camera's latency budget as ``error`` without running
the model, scores the rest in one batch, and decides each verdict::

    pass    score <  threshold
    reject  score >= threshold
    error   stale on arrival, later than the budget, or the model failed on it

Verdicts of one camera leave in the order its frames arrived, whichever worker
scored them: a verdict ready early is parked until its camera's earlier ones
have left, and the worker goes on to the next frame meanwhile.

Every frame the receiver accepted is accounted for, per camera:
``received = inspected + stale`` (``malformed`` messages never count as received).
A new model loads and warms up on another thread and takes over between two
batches; the previous one stays loaded for rollback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import zmq

from inspector.bus import MAX_UNKNOWN_CAMERAS, Frame, FrameReceiver
from inspector.config import Config, SyntheticCamera
from inspector.errors import InspectorError
from inspector.inspection.detectors import load_detector, thread_plan
from inspector.inspection.load import CAPACITY_WINDOW_S, SATURATED, WorkerLoad
from inspector.inspection.preview import Preview
from inspector.inspection.regions import find_regions
from inspector.inspection.verdicts import Result, Verdict
from inspector.loop import DriftMonitor, LiveShadow
from inspector.model import (
    Detector,
    LoadedModel,
    Prediction,
    ScoreScale,
    Threshold,
)
from inspector.outputs import Output, ResultPublisher, curve_server
from inspector.store import InspectionRecord

logger = logging.getLogger(__name__)

COUNTERS = ("inspected", "stale", "passed", "rejected", "errors")
FAULT_PAUSE_S = 0.01
SHADOW_WINDOW_S = 2.0  # a live shadow stands aside when inspection was busy over this


class InspectionService:
    """Receives, inspects and fans out; ``start()``, then ``stop()`` drains and closes."""

    def __init__(
        self,
        config: Config,
        detector: Detector,
        context: zmq.Context,
        sinks: list[Callable[[InspectionRecord], None]] | None = None,
        clock: Callable[[], int] = time.time_ns,
        outputs: list[Output] | None = None,
    ) -> None:
        self.config = config
        self._budgets = {c.id: c.latency_budget_ms for c in config.cameras}
        self._scales = {c.id: c.mm_per_pixel for c in config.cameras}
        self._drift_alarm = {c.id: c.drift_alarm for c in config.cameras}
        # Frames from a camera the config does not name get the config's default budget.
        self._default_budget = SyntheticCamera.model_fields["latency_budget_ms"].default
        self.detector = detector
        self.previous: Detector | None = None
        self._incoming: Detector | None = None
        self._rolling_back = False  # the incoming model is the previous one coming back
        self._swap_lock = threading.Lock()
        self.swaps = 0
        self.sinks = list(sinks or [])
        # Per-camera state is bounded by the cameras the receiver admits: the configured
        # ones and at most MAX_UNKNOWN_CAMERAS others.
        self.receiver = FrameReceiver(config.bus.frames, context, config.bus.recv_hwm,
                                      config.bus.max_frame_bytes,
                                      known_cameras=[c.id for c in config.cameras])
        self.preview = Preview(len(config.cameras) + MAX_UNKNOWN_CAMERAS)
        self.live_shadow: LiveShadow | None = None  # a candidate beside the active model
        self.drift = DriftMonitor(config.inspection.drift_window, config.inspection.drift_limit,
                                  len(config.cameras) + MAX_UNKNOWN_CAMERAS)
        self.counts: dict[str, Counter[str]] = {}
        self.faults = 0  # unforeseen failures a worker survived
        self._load = WorkerLoad()
        self._clock = clock
        self._stop = threading.Event()
        self._drain_quiet_ms = 300
        self._receive_lock = threading.Lock()  # one worker at a time takes frames
        self.publisher = ResultPublisher(config.bus.results, context,
                                         curve=curve_server(config.bus))
        # Where each verdict's document goes, in its camera's order: the result feed first,
        # then the line and the plant (PLC, MQTT, metrics). Each returns at once.
        self.outputs: list[Output] = [self.publisher.publish, *(outputs or [])]
        # Per camera: tickets handed out in arrival order, the next ticket to leave, verdicts
        # parked until their turn, and whether a worker is busy sending them out.
        self._issued: Counter[str] = Counter()
        self._next_out: Counter[str] = Counter()
        self._parked: dict[str, dict[int, Verdict]] = {}
        self._sending: set[str] = set()
        self._order_lock = threading.Lock()
        plan = thread_plan(config)
        self.workers = plan.workers
        threads = plan.intra_op_threads
        logger.info("inspection: %d worker(s), %s per model run", plan.workers,
                    f"{threads} thread(s)" if threads else "ONNX Runtime's default threads")
        self._threads = [threading.Thread(target=self._work, name=f"inspector-{i}", daemon=True)
                         for i in range(self.workers)]

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, drain_quiet_ms: int = 300, timeout_s: float = 30.0) -> None:
        """Inspect every frame still arriving until the bus is quiet, then close the sockets
        (of a service never started too: it opened them when made)."""
        self._drain_quiet_ms = drain_quiet_ms
        self._stop.set()
        if self.live_shadow is not None:  # its results are stored while the store is open
            self.live_shadow.stop("inspection stopped")
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            logger.error("inspection workers did not stop within %.0f s", timeout_s)
            return
        self.receiver.close()
        self.publisher.close()

    # -- models -------------------------------------------------------------------------------

    def swap_model(self, model: str | Path | LoadedModel, wait: bool = False) -> threading.Thread:
        """Load and warm up ``model`` in the background; it takes over between two batches."""

        def load() -> None:
            try:
                self.use_model(model)
            except InspectorError as exc:
                logger.error("model swap refused: %s", exc)

        loader = threading.Thread(target=load, name="model-loader", daemon=True)
        loader.start()
        if wait:
            loader.join()
        return loader

    def use_model(self, model: str | Path | LoadedModel) -> Detector:
        """Load and warm up ``model`` now (a ``ModelError`` when it cannot run here); it takes
        over between two batches, so no frame is lost or scored twice."""
        detector = load_detector(self.config, model)
        with self._swap_lock:
            self._incoming = detector
        return detector

    def set_threshold(self, value: float, user: str | None = None) -> LoadedModel:
        """Decide with a new threshold from the next batch on: a copy of the model with an
        edited card (the ONNX bytes and their hash stay the same), loaded and warmed up
        before this returns it. The registry keeps it across restarts when told to
        (``Registry.keep_threshold``); ``inspector calibrate`` sets one from samples."""
        if not value > 0 or value == float("inf"):
            raise ValueError(f"threshold must be a positive number, got {value}")
        current = self.detector
        card = current.card
        threshold = Threshold(value=float(value), method="manual",
                              detail={"set_by": user, "previous": card.threshold.value})
        low = min(card.score_scale.low, value)
        edited = card.model_copy(update={
            "threshold": threshold, "score_scale": ScoreScale(low=low, high=2 * value - low)})
        model = LoadedModel(edited, current.model.onnx, current.model.path)
        self.use_model(model)
        return model

    def rollback(self) -> bool:
        """Back to the previous model, once (False when none): an undo, not a toggle."""
        with self._swap_lock:
            if self.previous is None:
                return False
            self._incoming, self._rolling_back = self.previous, True
            return True

    def _take_incoming(self) -> None:
        with self._swap_lock:
            incoming, self._incoming = self._incoming, None
            if incoming is None:
                return
            self.previous = None if self._rolling_back else self.detector
            self.detector, self._rolling_back = incoming, False
            self.swaps += 1
        logger.info("model %s (%s…) now inspecting", incoming.card.name,
                    incoming.model.sha256[:12])

    # -- accounting ---------------------------------------------------------------------------

    def accounting(self) -> dict[str, dict[str, int]]:
        """Per camera: received, malformed, and what became of the received frames."""
        received, malformed = self.receiver.received.copy(), self.receiver.malformed.copy()
        cameras = set(received) | set(malformed) | set(self.counts)
        return {
            camera: {
                "received": received[camera], "malformed": malformed[camera],
                **{key: self.counts.get(camera, Counter())[key] for key in COUNTERS},
            }
            for camera in sorted(cameras)
        }

    # -- the loop -----------------------------------------------------------------------------

    def capacity_alarm(self, window_s: float = CAPACITY_WINDOW_S) -> str | None:
        """Why the box cannot keep up, judged over the last ``window_s``; None while it can.

        Saturated: the workers waited for frames less than 5% of the time, so frames
        queue and, the queues being short, cameras drop them at capture.
        """
        busy = self._load.busy_share(self.workers, window_s)
        if busy is not None and busy >= SATURATED:
            return (f"capacity: inspection busy {busy:.0%} of the last {window_s:.0f} s; "
                    "frames are dropped at capture")
        return None

    def dead_workers(self) -> list[str]:
        """Workers that ended while the service was not stopping (should be none; each
        survives whatever it meets, but health checks must see it if one does not)."""
        if self._stop.is_set():
            return []
        return [t.name for t in self._threads if t.ident is not None and not t.is_alive()]

    def _work(self) -> None:
        """One worker's loop; its failure boundary: nothing unforeseen ends it."""
        while True:
            try:
                waited = time.monotonic()
                with self._receive_lock:
                    batch = self._next_batch()
                self._load.idle(time.monotonic() - waited)
                if batch is None:
                    return
                if batch:
                    self._take_incoming()  # a swap waiting takes over before this batch
                    self._inspect_safely(batch)
            except Exception:
                self.faults += 1
                logger.exception("inspection worker survived an unforeseen failure")
                time.sleep(FAULT_PAUSE_S)  # a failure that repeats must not spin a core
            except BaseException:
                logger.critical("inspection worker %s died", threading.current_thread().name,
                                exc_info=True)
                raise

    def _next_batch(self) -> list[tuple[Frame, int]] | None:
        """Frames for one model run, each with its camera's ticket; [] when none came in
        time, None once stopping and the bus has been quiet for the drain period (the
        cameras have stopped; everything that was still arriving has been taken)."""
        stopping = self._stop.is_set()
        first = self.receiver.recv(timeout_ms=self._drain_quiet_ms if stopping else 100)
        if first is None:
            return None if stopping else []
        frames = [first]
        deadline = time.monotonic() + self.config.inspection.batch_wait_ms / 1000
        while len(frames) < self.config.inspection.max_batch:
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
            frame = self.receiver.recv(timeout_ms=left_ms)
            if frame is None:
                break
            frames.append(frame)
        batch = []
        for frame in frames:
            camera = frame.header.camera
            batch.append((frame, self._issued[camera]))
            self._issued[camera] += 1
        return batch

    def _inspect_safely(self, batch: list[tuple[Frame, int]]) -> None:
        """Inspect; should anything unforeseen fail, every frame of the batch still gets a
        verdict (``error``), so accounting holds and later frames are not held back."""
        try:
            self._inspect(batch)
        except Exception as exc:  # the worker must survive to inspect the next frame
            logger.exception("inspection failed")
            for frame, ticket in batch:
                if not self._delivered(frame.header.camera, ticket):
                    self._emit(frame, ticket, None, None, {}, f"internal error: {exc}")

    def _inspect(self, batch: list[tuple[Frame, int]]) -> None:
        arrived = self._clock()
        fresh: list[tuple[Frame, int]] = []
        for frame, ticket in batch:
            age_ms = (arrived - frame.header.ts_ns) / 1e6
            budget = self._budget(frame.header.camera)
            if age_ms > budget:
                self._emit(frame, ticket, None, None, {"queue": round(age_ms, 3)},
                           f"stale: {age_ms:.0f} ms old on arrival, budget {budget:.0f} ms",
                           counter="stale")
            else:
                fresh.append((frame, ticket))
        if not fresh:
            return
        detector = self.detector
        started = time.perf_counter()
        try:
            predictions = detector.predict_batch([frame.image for frame, _ in fresh])
        except InspectorError as exc:
            for frame, ticket in fresh:
                self._emit(frame, ticket, None, detector, {}, f"model failed: {exc}")
            return
        model_ms = round((time.perf_counter() - started) * 1000, 3)
        for (frame, ticket), prediction in zip(fresh, predictions, strict=True):
            queue_ms = round((arrived - frame.header.ts_ns) / 1e6, 3)
            self._emit(frame, ticket, prediction, detector,
                       {"queue": queue_ms, "model": model_ms}, None)

    def _emit(self, frame: Frame, ticket: int, prediction: Prediction | None,
              detector: Detector | None, latency: dict[str, float], error: str | None,
              counter: str = "inspected") -> None:
        """Hand a scored (or failed) frame to its camera's queue of verdicts."""
        camera = frame.header.camera
        regions = []
        if error is None and prediction is not None and prediction.verdict == "reject":
            regions = find_regions(prediction.anomaly_map, prediction.threshold,
                                   self.config.inspection.min_region_px,
                                   self._scales.get(camera))
        verdict = Verdict(frame, prediction, detector, latency, error, counter, regions)
        with self._order_lock:
            self._parked.setdefault(camera, {})[ticket] = verdict
            if camera in self._sending:
                return  # the worker sending this camera's verdicts will send this one too
            self._sending.add(camera)
        while True:  # send this camera's verdicts for as long as the next one is ready
            with self._order_lock:
                ready = self._parked[camera].pop(self._next_out[camera], None)
                if ready is None:
                    self._sending.discard(camera)
                    return
                self._next_out[camera] += 1
            try:
                self._send(ready)
            except Exception:  # a broken sink must not strand the verdicts behind this one
                logger.exception("sending the verdict of %s seq %s failed", camera,
                                 ready.frame.header.seq)

    def _delivered(self, camera: str, ticket: int) -> bool:
        with self._order_lock:
            return ticket < self._next_out[camera] or ticket in self._parked.get(camera, {})

    def _send(self, v: Verdict) -> None:
        """Decide, count and fan out one verdict; called in each camera's arrival order."""
        header, prediction, detector, error = v.frame.header, v.prediction, v.detector, v.error
        inspected_ns = self._clock()
        total_ms = (inspected_ns - header.ts_ns) / 1e6
        latency = {**v.latency, "total": round(total_ms, 3)}
        budget = self._budget(header.camera)
        if error is None and total_ms > budget:
            error = f"late: verdict after {total_ms:.0f} ms, budget {budget:.0f} ms"
        verdict = "error" if error is not None or prediction is None else prediction.verdict
        counts = self.counts.setdefault(header.camera, Counter())
        counts[v.counter] += 1
        counts[{"pass": "passed", "reject": "rejected", "error": "errors"}[verdict]] += 1
        record = v.record(verdict, error, latency, inspected_ns)
        result = Result(record, verdict == "reject" or (
            verdict == "error" and self.config.inspection.error_is_reject))
        document = result.document()
        for output in self.outputs:
            try:
                output(header.camera, document)
            except Exception:  # one broken output must not keep the verdict from the others
                logger.exception("output %r failed on %s seq %s", output, header.camera,
                                 header.seq)
        self.preview.update(header.camera, record.frame, record.anomaly_map, document)
        if prediction is not None and detector is not None:
            if self._drift_alarm.get(header.camera, True):
                self.drift.observe(header.camera, detector.model.sha256, prediction.score)
            shadow = self.live_shadow
            if shadow is not None and verdict != "error":  # never waits: see LiveShadow
                shadow.offer(header.camera, header.seq, inspected_ns, record.frame,
                             detector.model.sha256, prediction.score, verdict,
                             self._load.busy_share(self.workers, SHADOW_WINDOW_S))
        for sink in self.sinks:
            sink(record)

    def _budget(self, camera: str) -> float:
        return self._budgets.get(camera, self._default_budget)
