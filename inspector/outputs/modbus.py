"""The PLC's reject gate: a Modbus TCP server the PLC polls for verdicts, heartbeat and alarms
(register map, handshake, trigger and the PLC's fail-safe logic: docs/integration.md).

Bounds: each camera's results wait in a FIFO of ``QUEUE_LENGTH`` (beyond it the oldest goes,
counted and shown to the PLC); the cameras are fixed by the config; the request rate is bounded
only by the PLC and whoever else reaches the port (Modbus has no authentication: firewall it).
Requests are served on the gate's own thread and event loop, and ``publish`` only touches
in-memory state under a lock held for microseconds, so no flood of requests holds up inspection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from enum import IntEnum
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from inspector.config import ModbusConfig
from inspector.monitor import ALARM_KINDS, Alarm

logger = logging.getLogger(__name__)

MAP_VERSION = 1  # raised whenever a register moves or changes meaning
QUEUE_LENGTH = 32  # results waiting per camera, far more than parts between camera and gate
BOX_SIZE = 16  # the box block: registers 0-15
CAMERA_BASE = 100  # camera i's block starts at CAMERA_BASE + CAMERA_STRIDE * i
CAMERA_STRIDE = 50
MAX_CAMERAS = (0x10000 - CAMERA_BASE) // CAMERA_STRIDE
PART_ID_REGISTERS = 8  # 16 ASCII characters, two per register, high byte first
NO_SCORE = 0xFFFF
VERDICT_CODES = {"pass": 1, "reject": 2, "error": 3}  # 0: no result shown
ALARM_WORDS = 2  # alarm bits 0-31, numbered by ALARM_KINDS
START_TIMEOUT_S, CLOSE_TIMEOUT_S = 10.0, 5.0

if len(ALARM_KINDS) > 16 * ALARM_WORDS:
    raise ImportError("more alarm kinds than the PLC's alarm registers hold: add a word")


class BoxRegister(IntEnum):
    """The box block (holding registers, mirrored as input registers); all read-only."""

    MAP_VERSION = 0
    HEARTBEAT = 1  # +1 every heartbeat_ms while the box runs and is ready; wraps at 65535
    STATUS = 2  # bit 0 ready, bit 1 results lost on some camera, bit 2 some alarm active
    ALARMS = 3  # alarm bits 0-15 (ALARM_KINDS order); ALARMS + 1: bits 16-31
    CAMERAS = 5
    HEARTBEAT_MS = 6


class CameraRegister(IntEnum):
    """Offsets in a camera's block. Below ACK read-only; ACK and after written by the PLC."""

    READY = 0  # 1: a result is shown in the registers below
    RESULT_NO = 1  # the shown result's number (1-65535, wraps past 0); 0: none
    VERDICT = 2  # VERDICT_CODES
    REJECT = 3  # what the gate does: the document's reject; 1 also when no result is shown
    SCORE = 4  # score x 1000, NO_SCORE when not scored
    THRESHOLD = 5  # threshold x 1000, NO_SCORE when none
    SEQ = 6  # the frame counter, low 32 bits: SEQ high word, SEQ + 1 low word
    PART_ID = 8  # PART_ID_REGISTERS registers of ASCII, NUL padded
    QUEUED = 16  # results waiting behind the shown one
    FLAGS = 17  # bit 0: results lost (latched until CLEAR_LOST)
    RESULTS = 18  # 32-bit counters, high word first: verdicts received,
    REJECTS = 20  # of them rejects,
    LOST = 22  # dropped unacknowledged,
    TRIGGERS = 24  # triggers fired
    ACK = 30  # PLC writes RESULT_NO: that result goes, the next is shown
    CLEAR_LOST = 31  # PLC writes 1: FLAGS bit 0 clears
    TRIGGER_PART_ID = 32  # PART_ID_REGISTERS registers the PLC fills before triggering
    TRIGGER = 40  # PLC writes a new nonzero value: one software trigger


_RESULT = slice(CameraRegister.VERDICT, CameraRegister.QUEUED)  # what a verdict fills in
_NO_RESULT = (0, 1, NO_SCORE, NO_SCORE, 0, 0) + (0,) * PART_ID_REGISTERS
_PART_ID = slice(CameraRegister.TRIGGER_PART_ID, CameraRegister.TRIGGER)
# 6 reads back its write. Refused: coils (1, 2, 5, 15), 22, 23 (its write stands if its read fails)
_READS, _WRITES = frozenset({3, 4, 6}), frozenset({6, 16})
_COUNTERS = ("presented", "acknowledged", "overflowed", "triggers", "trigger_failures",
             "refused_reads", "refused_writes", "unknown_cameras", "malformed")


class _Camera:
    """One camera's results and registers; the gate's lock guards it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: deque[tuple[int, tuple[int, ...]]] = deque()  # (number, result registers)
        self.number = 0  # the last result number given
        self.lost = False
        self.counts = [0, 0, 0, 0]  # RESULTS, REJECTS, LOST, TRIGGERS
        self.written = [0] * CAMERA_STRIDE  # what the PLC last wrote: ACK and after

    def enqueue(self, result: tuple[int, ...]) -> bool:
        """``result`` joins the FIFO; whether the oldest had to go."""
        self.number = self.number % 0xFFFF + 1  # 1-65535: 0 means none and acks nothing
        full = len(self.queue) == QUEUE_LENGTH
        if full:  # the PLC is not keeping up: the oldest goes, and the PLC is told
            self.queue.popleft()
            self.lost = True
            self.counts[2] += 1
        self.queue.append((self.number, result))
        self.counts[0] += 1
        self.counts[1] += result[1]
        return full

    def block(self) -> list[int]:
        block = self.written[:]  # zeros below ACK
        if self.queue:
            block[CameraRegister.READY] = 1
            block[CameraRegister.RESULT_NO], block[_RESULT] = self.queue[0]
        else:
            block[_RESULT] = _NO_RESULT
        block[CameraRegister.QUEUED] = max(len(self.queue) - 1, 0)
        block[CameraRegister.FLAGS] = int(self.lost)
        block[CameraRegister.RESULTS:CameraRegister.RESULTS + 8] = [
            word for count in self.counts for word in _words(count)]
        return block

    def accepts(self, offset: int, value: int) -> bool:
        if offset == CameraRegister.ACK:  # the shown result, or a repeat of the last ack
            shown = self.queue[0][0] if self.queue else None
            return value in (shown, self.written[CameraRegister.ACK])
        if offset == CameraRegister.CLEAR_LOST:
            return value in (0, 1)
        return offset == CameraRegister.TRIGGER or all(  # else a part id: printable ASCII
            b == 0 or 0x20 <= b <= 0x7E for b in (value >> 8, value & 0xFF))

    def apply(self, offset: int, value: int) -> tuple[bool, bool]:
        """Act on a write ``accepts`` allowed: (a result went, a trigger fired)."""
        acked = offset == CameraRegister.ACK and bool(self.queue) and self.queue[0][0] == value
        if acked:
            self.queue.popleft()
        elif offset == CameraRegister.CLEAR_LOST and value == 1:
            self.lost = False
        fired = offset == CameraRegister.TRIGGER and value not in (0, self.written[offset])
        self.written[offset] = value
        return acked, fired


class ModbusGate:
    """The reject gate's Modbus TCP server: an ``Output`` for verdicts and an alarm listener,
    serving the PLC from a thread of its own. ``start`` binds, ``close`` stops."""

    def __init__(self, config: ModbusConfig, cameras: list[str],
                 trigger: Callable[[str, str | None], None] | None = None,
                 ready: Callable[[], bool] = lambda: True) -> None:
        if len(set(cameras)) != len(cameras) or len(cameras) > MAX_CAMERAS:
            raise ValueError(f"Modbus gate: cameras must be unique, at most {MAX_CAMERAS}")
        host, _, port = config.listen.rpartition(":")
        if not 0 <= int(port) <= 0xFFFF:
            raise ValueError(f"outputs.modbus.listen: port {port} is not 0-65535")
        self._config, self._listen = config, (host, int(port))
        self._trigger, self._ready = trigger, ready
        self._cameras = [_Camera(name) for name in cameras]
        self._by_name = {camera.name: camera for camera in self._cameras}
        last = CameraRegister.TRIGGER if trigger is not None else CameraRegister.CLEAR_LOST
        self._writable = range(CameraRegister.ACK, last + 1)
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._alarms: list[set[str]] = [set() for _ in ALARM_KINDS]  # active subjects per kind
        self._heartbeat, self._is_ready = 0, False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the server thread's, and
        self._stop: asyncio.Event | None = None  # what ends it
        self._bound: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the gate listens on: the real port once started, when listen asks 0."""
        return self._bound or self._listen

    def publish(self, camera: str, document: dict[str, Any]) -> None:
        """Queue a verdict for the PLC (an ``Output``): never blocks beyond the lock, never
        raises. A camera not in the config is counted and ignored."""
        try:
            if (state := self._by_name.get(camera)) is None:
                self._count("unknown_cameras")
                return
            result, malformed = _encode(document)
            with self._lock:
                was_lost, dropped = state.lost, state.enqueue(result)
                self._counts["presented"] += 1
                self._counts["malformed"] += malformed
                self._counts["overflowed"] += dropped
            if dropped and not was_lost:  # once until the PLC clears it: no flood of lines
                logger.warning("Modbus gate: the PLC did not acknowledge %s's results in time; "
                               "the oldest are dropped", camera)
        except Exception:  # an output must never take inspection down
            logger.exception("Modbus gate: could not take a verdict of %r", camera)

    def on_alarm(self, alarm: Alarm) -> None:
        """Set or clear the alarm bit of ``alarm.kind``: set while any subject has it raised."""
        with self._lock:
            subjects = self._alarms[ALARM_KINDS.index(alarm.kind)]  # conditions know no others
            (subjects.add if alarm.active else subjects.discard)(alarm.subject)

    def stats(self) -> dict[str, int]:
        """Totals over all cameras since start. presented (verdicts queued for the PLC) =
        acknowledged + overflowed + queued; refused_*: requests answered with an exception."""
        with self._lock:
            return {**self._counts, "queued": sum(len(c.queue) for c in self._cameras),
                    "heartbeat": self._heartbeat}

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    async def _serve(self, function_code: int, start: int, address: int, count: int,
                     registers: list[int], values: list[int] | list[bool] | None,
                     ) -> ExcCodes | None:
        """pymodbus's action for every request: fill ``registers`` for a read, act on a write,
        or answer with an exception code (the request then changes nothing)."""
        kind = "refused_reads" if function_code in (1, 2, 3, 4) else "refused_writes"
        if function_code not in (_READS if values is None else _WRITES):
            self._count(kind)
            return ExcCodes.ILLEGAL_FUNCTION
        with self._lock:
            if values is None:
                code, fired = self._read(address, count, registers, address - start), []
            else:
                code, fired = self._write(address, [int(v) for v in values])
            self._counts[kind] += code is not None
        if code is not None:
            return code
        for camera, part_id in fired if self._trigger is not None else ():
            try:  # outside the lock: the callback may take its time
                self._trigger(camera, part_id)
            except Exception:
                logger.exception("Modbus gate: the software trigger of %s failed", camera)
                self._count("trigger_failures")
        return None

    def _locate(self, address: int) -> tuple[_Camera | None, int] | None:
        """(camera, or None for the box block; offset) of a mapped register, else None."""
        if 0 <= address < BOX_SIZE:
            return None, address
        index, offset = divmod(address - CAMERA_BASE, CAMERA_STRIDE)
        return (self._cameras[index], offset) if 0 <= index < len(self._cameras) else None

    def _read(self, address: int, count: int, registers: list[int], at: int) -> ExcCodes | None:
        """Under the lock: the registers from ``address`` into ``registers[at:]``, unless some
        are not mapped."""
        where = [self._locate(register) for register in range(address, address + count)]
        if None in where:
            return ExcCodes.ILLEGAL_ADDRESS
        blocks = {camera: camera.block() if camera else self._box_block() for camera, _ in where}
        registers[at:at + count] = [blocks[camera][offset] for camera, offset in where]
        return None

    def _box_block(self) -> list[int]:
        alarms = sum(1 << bit for bit, subjects in enumerate(self._alarms) if subjects)
        status = (int(self._is_ready) | int(any(c.lost for c in self._cameras)) << 1
                  | int(alarms != 0) << 2)
        block = [MAP_VERSION, self._heartbeat, status,
                 *((alarms >> 16 * word) & 0xFFFF for word in range(ALARM_WORDS)),
                 len(self._cameras), self._config.heartbeat_ms]
        return block + [0] * (BOX_SIZE - len(block))

    def _write(self, address: int, values: list[int],
               ) -> tuple[ExcCodes | None, list[tuple[str, str | None]]]:
        """Under the lock: check every register and value, then apply them all, or none.
        Returns an exception code, or the triggers to fire."""
        targets = [(self._locate(address + i), value) for i, value in enumerate(values)]
        if any(w is None or w[0] is None or w[1] not in self._writable for w, _ in targets):
            return ExcCodes.ILLEGAL_ADDRESS, []
        if not all(camera.accepts(offset, value) for (camera, offset), value in targets):
            return ExcCodes.ILLEGAL_VALUE, []
        fired: list[_Camera] = []
        for (camera, offset), value in targets:
            acked, triggered = camera.apply(offset, value)
            self._counts["acknowledged"] += acked
            fired += [camera] if triggered else []
        for camera in fired:  # after the whole write: a part id written with it counts
            camera.counts[3] += 1
            self._counts["triggers"] += 1
        return None, [(camera.name, _decode_text(camera.written[_PART_ID])) for camera in fired]

    def start(self) -> None:
        """Bind and serve on a thread of the gate's own; ``OSError`` naming the address when
        it cannot listen."""
        if self._thread is not None:
            raise RuntimeError("the Modbus gate was already started")
        bound: Future[tuple[str, int]] = Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(bound),),
                                        name="modbus-gate", daemon=True)
        self._thread.start()
        try:
            self._bound = bound.result(START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise
        logger.info("Modbus gate listening on %s:%s, unit %s, %d cameras", *self._bound,
                    self._config.unit_id or "any", len(self._cameras))

    def close(self) -> None:
        """Stop the server and its thread; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                self._loop.call_soon_threadsafe(self._stop.set)
        thread.join(CLOSE_TIMEOUT_S)
        if thread.is_alive():
            logger.warning("Modbus gate: the server thread did not stop in %s s", CLOSE_TIMEOUT_S)

    async def _main(self, bound: Future[tuple[str, int]]) -> None:
        """The server thread's event loop: serve until ``close``, ticking the heartbeat."""
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            server = ModbusTcpServer(self._devices(), address=self._listen)
            await server.serve_forever(background=True)
        except Exception as exc:  # pymodbus logs the OS's reason as a warning just before
            bound.set_exception(OSError(
                f"Modbus gate cannot listen on {self._config.listen} (outputs.modbus.listen): "
                "the address is in use, not one of this host's, or a port below 1024 without "
                "the privilege") if isinstance(exc, RuntimeError) else exc)
            return
        bound.set_result(server.transport.sockets[0].getsockname()[:2])
        heartbeat = asyncio.create_task(self._beat())
        try:
            await self._stop.wait()
        finally:
            heartbeat.cancel()
            await server.shutdown()

    def _devices(self) -> list[SimDevice]:
        """The gate's unit, whose action sees all 65536 registers and decides what is mapped;
        unit 0 stands for every other unit id, refused, unless the gate's own is 0 (any)."""
        units = {0: _other_unit, self._config.unit_id: self._serve}
        return [SimDevice(unit, [SimData(0, count=0x10000, datatype=DataType.REGISTERS)],
                          action=action) for unit, action in units.items()]

    async def _beat(self) -> None:
        """Every heartbeat_ms: the counter ticks when the box is ready (``ready()``)."""
        failing = False
        while True:
            await asyncio.sleep(self._config.heartbeat_ms / 1000)
            try:
                ready, failing = bool(self._ready()), False
            except Exception:
                if not failing:  # once per spell, not twice a second
                    logger.exception("Modbus gate: the ready check failed; shown as not ready")
                ready, failing = False, True
            with self._lock:
                self._is_ready = ready
                self._heartbeat = (self._heartbeat + ready) & 0xFFFF


async def _other_unit(*_: Any) -> ExcCodes:
    return ExcCodes.GATEWAY_NO_RESPONSE


def _encode(document: Any) -> tuple[tuple[int, ...], bool]:
    """The result registers (VERDICT to PART_ID) of a verdict document, and whether it was
    malformed; a malformed one shows as an error and a reject (fail-safe)."""
    get = document.get if isinstance(document, dict) else {}.get
    verdict, reject, seq, part_id = get("verdict"), get("reject"), get("seq"), get("part_id")
    verdict = VERDICT_CODES.get(verdict) if isinstance(verdict, str) else None
    good_seq = isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0
    malformed = verdict is None or not isinstance(reject, bool) or not good_seq
    if malformed:
        verdict, reject, seq = VERDICT_CODES["error"], True, seq if good_seq else 0
    return (verdict, int(reject), _milli(get("score")), _milli(get("threshold")), *_words(seq),
            *_encode_text(part_id if isinstance(part_id, str) else "")), malformed


def _milli(value: Any) -> int:
    """x 1000 as an unsigned register, clamped below NO_SCORE, which stands for none."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return NO_SCORE
    return int(min(max(value, 0), (NO_SCORE - 1) / 1000) * 1000 + 0.5)  # no float overflow


def _words(value: int) -> tuple[int, int]:
    """The low 32 bits of ``value`` as two registers, high word first."""
    return (value >> 16) & 0xFFFF, value & 0xFFFF


def _encode_text(text: str) -> list[int]:
    """Printable ASCII (others become '?'), truncated, NUL padded, high byte first."""
    raw = bytes(c if 0x20 <= c <= 0x7E else 0x3F for c in text.encode("ascii", "replace"))
    raw = raw[:2 * PART_ID_REGISTERS].ljust(2 * PART_ID_REGISTERS, b"\0")
    return [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]


def _decode_text(registers: Sequence[int]) -> str | None:
    """The PLC's part id: up to the first NUL, trailing spaces dropped; None when empty."""
    raw = b"".join(r.to_bytes(2, "big") for r in registers).split(b"\0", 1)[0]
    return raw.decode("ascii").rstrip() or None
