"""The PLC reject gate over real Modbus TCP: a pymodbus client plays the PLC against a real
gate on a free port."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.client import ModbusTcpClient

from inspector.config import ModbusConfig
from inspector.monitor import ALARM_KINDS, Alarm
from inspector.outputs.modbus import (
    CAMERA_BASE,
    CAMERA_STRIDE,
    MAP_VERSION,
    NO_SCORE,
    QUEUE_LENGTH,
    BoxRegister,
    CameraRegister,
    ModbusGate,
)

UNIT = 3
CAMERAS = ["cam1", "cam2"]
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, GATEWAY_NO_RESPONSE = 1, 2, 3, 11
R = CameraRegister


def block(index: int, offset: int = 0) -> int:
    return CAMERA_BASE + CAMERA_STRIDE * index + offset


def verdict(seq: int, kind: str = "pass", score: float | None = 0.25,
            part_id: str | None = None, reject: bool | None = None) -> dict[str, Any]:
    return {"camera": "cam1", "seq": seq, "part_id": part_id, "verdict": kind,
            "reject": kind != "pass" if reject is None else reject, "score": score,
            "threshold": 0.5, "model_sha256": None, "captured_ns": 1, "inspected_ns": 2,
            "latency_ms": {"total": 1.0}, "regions": [], "error": None}


def text(registers: list[int]) -> str:
    return b"".join(r.to_bytes(2, "big") for r in registers).rstrip(b"\0").decode("ascii")


def ascii_registers(value: str, count: int = 8) -> list[int]:
    raw = value.encode().ljust(2 * count, b"\0")
    return [raw[i] << 8 | raw[i + 1] for i in range(0, 2 * count, 2)]


class Plc:
    """The PLC's side: a real Modbus TCP client with a short timeout."""

    def __init__(self, port: int, unit: int = UNIT) -> None:
        self.unit = unit
        self.client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert self.client.connect()

    def read(self, address: int, count: int = 1) -> list[int]:
        response = self.client.read_holding_registers(address, count=count, device_id=self.unit)
        assert not response.isError(), response
        return response.registers

    def read_error(self, address: int, count: int = 1) -> int:
        response = self.client.read_holding_registers(address, count=count, device_id=self.unit)
        assert response.isError(), response
        return response.exception_code

    def write(self, address: int, *values: int) -> int | None:
        """The exception code of writing ``values`` from ``address``, None when accepted."""
        if len(values) == 1:
            response = self.client.write_register(address, values[0], device_id=self.unit)
        else:
            response = self.client.write_registers(address, list(values), device_id=self.unit)
        return response.exception_code if response.isError() else None

    def box(self) -> list[int]:
        return self.read(0, 16)

    def camera(self, index: int) -> list[int]:
        return self.read(block(index), CAMERA_STRIDE)

    def take(self, index: int) -> list[int]:
        """Read the shown result and acknowledge it, as the PLC's cycle does."""
        registers = self.camera(index)
        assert registers[R.READY] == 1
        assert self.write(block(index, R.ACK), registers[R.RESULT_NO]) is None
        return registers

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def make_gate(request: pytest.FixtureRequest) -> Callable[..., ModbusGate]:
    def make(heartbeat_ms: int = 10_000, unit: int = UNIT, port: int = 0,
             **kwargs: Any) -> ModbusGate:
        config = ModbusConfig(listen=f"127.0.0.1:{port}", unit_id=unit, heartbeat_ms=heartbeat_ms)
        gate = ModbusGate(config, kwargs.pop("cameras", CAMERAS), **kwargs)
        request.addfinalizer(gate.close)
        gate.start()
        return gate

    return make


@pytest.fixture
def make_plc(request: pytest.FixtureRequest) -> Callable[..., Plc]:
    def make(gate: ModbusGate, unit: int = UNIT) -> Plc:
        plc = Plc(gate.address[1], unit)
        request.addfinalizer(plc.close)
        return plc

    return make


@pytest.fixture
def triggered() -> list[tuple[str, str | None]]:
    return []


@pytest.fixture
def gate(make_gate: Callable[..., ModbusGate], triggered: list) -> ModbusGate:
    return make_gate(trigger=lambda camera, part_id: triggered.append((camera, part_id)))


@pytest.fixture
def plc(make_plc: Callable[..., Plc], gate: ModbusGate) -> Iterator[Plc]:
    yield make_plc(gate)


def wait_for(check: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_box_block_describes_the_map(plc: Plc) -> None:
    box = plc.box()
    assert box[BoxRegister.MAP_VERSION] == MAP_VERSION
    assert box[BoxRegister.CAMERAS] == len(CAMERAS)
    assert box[BoxRegister.HEARTBEAT_MS] == 10_000
    assert plc.client.read_input_registers(0, count=16, device_id=UNIT).registers == box


def test_heartbeat_ticks_while_ready_and_stops_when_not(make_gate, make_plc) -> None:
    ready = threading.Event()
    ready.set()
    plc = make_plc(make_gate(heartbeat_ms=50, ready=ready.is_set))
    first = plc.read(BoxRegister.HEARTBEAT)[0]
    wait_for(lambda: plc.read(BoxRegister.HEARTBEAT)[0] >= first + 2)
    assert plc.read(BoxRegister.STATUS)[0] & 1 == 1

    ready.clear()
    wait_for(lambda: plc.read(BoxRegister.STATUS)[0] & 1 == 0)
    stopped = plc.read(BoxRegister.HEARTBEAT)[0]
    time.sleep(0.3)  # six beats
    assert plc.read(BoxRegister.HEARTBEAT)[0] == stopped

    ready.set()
    wait_for(lambda: plc.read(BoxRegister.HEARTBEAT)[0] != stopped)


def test_a_failing_ready_check_stops_the_heartbeat(make_gate, make_plc) -> None:
    def broken() -> bool:
        raise RuntimeError("no idea")

    gate = make_gate(heartbeat_ms=50, ready=broken)
    plc = make_plc(gate)
    time.sleep(0.2)
    assert plc.read(BoxRegister.HEARTBEAT, 2) == [0, 0]  # no beat, not ready
    assert gate.stats()["heartbeat"] == 0


def test_the_plc_takes_every_verdict_in_order(gate: ModbusGate, plc: Plc) -> None:
    assert plc.camera(0)[:R.QUEUED] == [0, 0, 0, 1, NO_SCORE, NO_SCORE, 0, 0] + [0] * 8
    gate.publish("cam1", verdict(70_000, "pass", 0.2504, "P-1"))
    gate.publish("cam1", verdict(70_001, "reject", 1.5, "A-PART-ID-LONGER-THAN-16"))
    gate.publish("cam1", verdict(2**40 + 5, "error", None, None, reject=True))

    first = plc.take(0)
    assert first[R.VERDICT:R.PART_ID] == [1, 0, 250, 500, 1, 70_000 - 65_536]  # seq high, low
    assert text(first[R.PART_ID:R.QUEUED]) == "P-1"
    assert first[R.QUEUED] == 2
    second = plc.take(0)
    assert second[R.RESULT_NO] == first[R.RESULT_NO] + 1
    assert second[R.VERDICT:R.SCORE + 1] == [2, 1, 1500]
    assert text(second[R.PART_ID:R.QUEUED]) == "A-PART-ID-LONGER"  # 16 characters kept
    third = plc.take(0)
    assert third[R.VERDICT:R.PART_ID] == [3, 1, NO_SCORE, 500, 0, 5]  # low 32 bits of seq
    assert third[R.QUEUED] == 0

    after = plc.camera(0)
    assert after[R.READY] == 0 and after[R.VERDICT] == 0
    assert after[R.REJECT] == 1  # nothing shown reads as reject: fail-safe
    assert after[R.RESULTS:R.TRIGGERS] == [0, 3, 0, 2, 0, 0]  # results, rejects, lost
    assert plc.camera(1)[R.RESULTS:R.REJECTS] == [0, 0]  # the other camera saw nothing
    stats = gate.stats()
    assert (stats["presented"], stats["acknowledged"], stats["queued"]) == (3, 3, 0)


def test_a_repeated_ack_takes_nothing_more_and_a_wrong_one_is_refused(
        gate: ModbusGate, plc: Plc) -> None:
    gate.publish("cam2", verdict(1))
    gate.publish("cam2", verdict(2))
    shown = plc.camera(1)[R.RESULT_NO]
    ack = block(1, R.ACK)
    assert plc.write(ack, shown) is None
    assert plc.write(ack, shown) is None  # a retry after a lost response: no second result
    assert plc.camera(1)[R.SEQ + 1] == 2
    assert plc.write(ack, shown + 5) == ILLEGAL_VALUE
    assert plc.read(ack) == [shown]
    assert plc.camera(1)[R.SEQ + 1] == 2
    assert gate.stats()["acknowledged"] == 1


def test_scores_clamp_and_odd_documents_show_as_errors(gate: ModbusGate, plc: Plc) -> None:
    scores = (-1.0, 0.0004, 65.534, 70, 10**400, float("inf"), float("nan"))
    for score in scores:
        gate.publish("cam1", verdict(1, "reject", score))
    assert [plc.take(0)[R.SCORE] for _ in scores] == [0, 0, *[NO_SCORE - 1] * 4, NO_SCORE]

    gate.publish("cam1", {"verdict": "maybe", "seq": 4})
    gate.publish("cam1", {"verdict": "pass", "seq": -1, "reject": False})
    gate.publish("cam1", None)  # type: ignore[arg-type]  # never raises
    gate.publish("cam1", verdict(9, "pass", part_id="Pièce\n7"))
    for _ in range(3):
        assert plc.take(0)[R.VERDICT:R.SCORE] == [3, 1]  # error, reject
    assert text(plc.take(0)[R.PART_ID:R.QUEUED]) == "Pi?ce?7"
    gate.publish("cam9", verdict(1))
    stats = gate.stats()
    assert (stats["malformed"], stats["unknown_cameras"], stats["queued"]) == (3, 1, 0)


def test_overflow_drops_the_oldest_counts_it_and_latches_until_cleared(
        gate: ModbusGate, plc: Plc) -> None:
    for seq in range(QUEUE_LENGTH + 3):
        gate.publish("cam1", verdict(seq))
    assert gate.stats()["overflowed"] == 3
    shown = plc.camera(0)
    assert shown[R.SEQ + 1] == 3  # the three oldest went
    assert shown[R.QUEUED] == QUEUE_LENGTH - 1
    assert shown[R.FLAGS] & 1 and shown[R.LOST:R.LOST + 2] == [0, 3]
    assert plc.read(BoxRegister.STATUS)[0] & 2
    plc.take(0)
    assert plc.camera(0)[R.FLAGS] & 1  # latched: an ack does not clear it

    clear = block(0, R.CLEAR_LOST)
    assert plc.write(clear, 2) == ILLEGAL_VALUE
    assert plc.write(clear, 0) is None and plc.camera(0)[R.FLAGS] & 1
    assert plc.write(clear, 1) is None
    assert plc.camera(0)[R.FLAGS] & 1 == 0 and plc.read(BoxRegister.STATUS)[0] & 2 == 0
    assert plc.camera(0)[R.LOST:R.LOST + 2] == [0, 3]  # the count stays
    stats = gate.stats()
    assert stats["presented"] == stats["acknowledged"] + stats["overflowed"] + stats["queued"]


def test_the_trigger_register_fires_once_per_new_value(
        gate: ModbusGate, plc: Plc, triggered: list) -> None:
    part_id, trigger = block(1, R.TRIGGER_PART_ID), block(1, R.TRIGGER)
    assert plc.write(part_id, *ascii_registers("P-77"), 1) is None  # part id and trigger at once
    assert triggered == [("cam2", "P-77")]
    assert plc.write(trigger, 1) is None  # the same value again: no trigger
    assert plc.write(trigger, 0) is None  # zero never triggers
    assert plc.write(trigger, 1) is None  # new again after zero
    assert plc.write(part_id, *ascii_registers("  ")) is None  # blank: no part id
    assert plc.write(trigger, 2) is None
    assert triggered == [("cam2", "P-77"), ("cam2", "P-77"), ("cam2", None)]
    assert plc.write(part_id, 0x4101) == ILLEGAL_VALUE  # not printable ASCII
    assert plc.read(trigger) == [2]
    assert plc.camera(1)[R.TRIGGERS:R.TRIGGERS + 2] == [0, 3]
    assert gate.stats()["triggers"] == 3


def test_a_failing_trigger_is_counted_and_the_gate_goes_on(make_gate, make_plc) -> None:
    def broken(camera: str, part_id: str | None) -> None:
        raise RuntimeError("camera gone")

    gate = make_gate(trigger=broken)
    plc = make_plc(gate)
    assert plc.write(block(0, R.TRIGGER), 9) is None
    assert gate.stats()["trigger_failures"] == 1
    assert plc.box()[BoxRegister.MAP_VERSION] == MAP_VERSION


def test_without_a_trigger_its_registers_are_not_writable(make_gate, make_plc) -> None:
    plc = make_plc(make_gate())
    assert plc.write(block(0, R.TRIGGER), 1) == ILLEGAL_ADDRESS
    assert plc.write(block(0, R.TRIGGER_PART_ID), 0x4142) == ILLEGAL_ADDRESS


def test_alarm_bits_follow_raise_and_clear(gate: ModbusGate, plc: Plc) -> None:
    down, drift = ALARM_KINDS.index("camera_down"), ALARM_KINDS.index("drift")

    def alarm(kind: str, subject: str, active: bool = True) -> None:
        gate.on_alarm(Alarm(kind, subject, "why", 1, None if active else 2))

    def bits() -> int:
        low, high = plc.read(BoxRegister.ALARMS, 2)
        return low | high << 16

    assert bits() == 0 and plc.read(BoxRegister.STATUS)[0] & 4 == 0
    alarm("camera_down", "cam1")
    alarm("camera_down", "cam2")
    alarm("drift", "cam2")
    assert bits() == 1 << down | 1 << drift and plc.read(BoxRegister.STATUS)[0] & 4
    alarm("camera_down", "cam1", active=False)
    assert bits() == 1 << down | 1 << drift  # cam2 still down
    alarm("camera_down", "cam2", active=False)
    alarm("drift", "cam2", active=False)
    alarm("drift", "cam2", active=False)  # a clear heard twice changes nothing
    assert bits() == 0 and plc.read(BoxRegister.STATUS)[0] & 4 == 0


def test_writes_outside_the_plc_registers_are_refused_and_change_nothing(
        gate: ModbusGate, plc: Plc) -> None:
    gate.publish("cam1", verdict(5, "reject", 2.0, "X"))

    def snapshot() -> list[int]:
        return plc.box() + plc.camera(0) + plc.camera(1)

    before = snapshot()
    read_only = [*range(16), *(block(0, o) for o in range(R.ACK)), block(1, R.READY),
                 block(0, R.TRIGGER + 1), block(1, CAMERA_STRIDE - 1)]
    unmapped = [16, CAMERA_BASE - 1, block(len(CAMERAS)), 65_535]
    for address in read_only + unmapped:
        assert plc.write(address, 1) == ILLEGAL_ADDRESS, address
    assert plc.write(block(0, R.ACK - 1), 0, 1) == ILLEGAL_ADDRESS  # one writable among them
    c = plc.client
    for response in (c.write_coil(0, True, device_id=UNIT),
                     c.write_coils(0, [True] * 3, device_id=UNIT),
                     c.mask_write_register(address=block(0, R.ACK), device_id=UNIT),
                     c.readwrite_registers(read_address=0, read_count=1,
                                           address=block(0, R.TRIGGER), values=[7],
                                           device_id=UNIT)):
        assert response.isError() and response.exception_code == ILLEGAL_FUNCTION, response
    assert snapshot() == before
    assert gate.stats()["refused_writes"] == len(read_only) + len(unmapped) + 5


def test_reads_outside_the_map_answer_with_an_exception(gate: ModbusGate, plc: Plc) -> None:
    for address, count in ((16, 1), (CAMERA_BASE - 1, 2), (block(len(CAMERAS)), 1),
                           (block(len(CAMERAS)) - 1, 2), (65_535, 1)):
        assert plc.read_error(address, count) == ILLEGAL_ADDRESS, address
    # Past the end of the address space: pymodbus refuses it before the gate is asked.
    assert plc.read_error(65_500, 100) == ILLEGAL_ADDRESS
    assert plc.client.read_coils(0, count=1, device_id=UNIT).exception_code == ILLEGAL_FUNCTION
    assert plc.read(0, 16) == plc.box()  # still serving
    assert len(plc.read(CAMERA_BASE, 2 * CAMERA_STRIDE)) == 100  # two blocks in one request
    assert gate.stats()["refused_reads"] == 6


def test_other_unit_ids_are_refused_unless_the_gate_is_unit_zero(make_gate, make_plc) -> None:
    assert make_plc(make_gate(), unit=UNIT + 1).read_error(0) == GATEWAY_NO_RESPONSE
    assert make_plc(make_gate(), unit=0).read_error(0) == GATEWAY_NO_RESPONSE
    any_unit = make_gate(unit=0)
    for unit in (0, 1, 247):
        assert make_plc(any_unit, unit=unit).box()[BoxRegister.MAP_VERSION] == MAP_VERSION


WRITES = st.tuples(
    st.one_of(st.integers(0, 20), st.integers(CAMERA_BASE - 2, block(len(CAMERAS)) + 2),
              st.integers(0, 65_535)),
    st.lists(st.one_of(st.integers(0, 3), st.integers(0, 65_535)), min_size=1, max_size=12))


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(WRITES, max_size=6), publishes=st.integers(0, 3))
def test_fuzzed_writes_keep_the_gate_answering_with_a_valid_state(
        gate: ModbusGate, plc: Plc, writes: list[tuple[int, list[int]]], publishes: int) -> None:
    for seq in range(publishes):
        gate.publish(CAMERAS[seq % 2], verdict(seq))
    for address, values in writes:
        values = values[:65_536 - address]
        plc.write(address, *values)  # accepted or refused, never a hang or a crash
    assert plc.box()[BoxRegister.MAP_VERSION] == MAP_VERSION
    for index in range(len(CAMERAS)):
        registers = plc.camera(index)
        assert registers[R.READY] in (0, 1) and registers[R.REJECT] in (0, 1)
        assert registers[R.VERDICT] in (0, 1, 2, 3) and registers[R.FLAGS] in (0, 1)
        assert registers[R.QUEUED] < QUEUE_LENGTH
        assert (registers[R.READY] == 0) == (registers[R.RESULT_NO] == 0)
    stats = gate.stats()
    assert stats["presented"] == stats["acknowledged"] + stats["overflowed"] + stats["queued"]


def test_garbage_on_the_wire_leaves_other_connections_served(gate: ModbusGate, plc: Plc) -> None:
    rng = random.Random(7)
    payloads = [b"", b"\x00", b"\x00\x01\x00\x00\xff\xff\x03", b"\x00\x01\x00\x00\x00\x06\x03\x03",
                b"GET / HTTP/1.1\r\n\r\n"] + [rng.randbytes(rng.randint(1, 300)) for _ in range(20)]
    for payload in payloads:
        with socket.create_connection(gate.address, timeout=2) as raw:
            raw.sendall(payload)
    assert plc.box()[BoxRegister.MAP_VERSION] == MAP_VERSION


def test_publish_does_not_wait_for_a_flood_of_requests(gate: ModbusGate, plc: Plc) -> None:
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            plc.client.read_holding_registers(CAMERA_BASE, count=125, device_id=UNIT)
            plc.client.write_register(5, 1, device_id=UNIT)

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        slowest = 0.0
        for seq in range(300):
            began = time.perf_counter()
            gate.publish("cam1", verdict(seq))
            slowest = max(slowest, time.perf_counter() - began)
    finally:
        stop.set()
        flooder.join(5)
    assert not flooder.is_alive()
    assert slowest < 0.1
    assert gate.stats()["presented"] == 300


def test_close_stops_the_server_and_frees_the_port(make_gate, make_plc) -> None:
    gate = make_gate()
    port = gate.address[1]
    plc = make_plc(gate)
    before = threading.active_count()
    gate.close()
    gate.close()  # idempotent
    assert threading.active_count() == before - 1
    plc.close()
    late = ModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    try:
        assert not late.connect()
    finally:
        late.close()
    again = make_gate(port=port)  # the port can be bound again at once
    assert make_plc(again).box()[BoxRegister.MAP_VERSION] == MAP_VERSION


def test_a_bind_failure_raises_at_start_naming_the_address(make_gate) -> None:
    taken = make_gate().address[1]
    gate = ModbusGate(ModbusConfig(listen=f"127.0.0.1:{taken}"), CAMERAS)
    try:
        with pytest.raises(OSError, match=f"127.0.0.1:{taken}"):
            gate.start()
    finally:
        gate.close()


def test_bad_camera_lists_are_refused() -> None:
    config = ModbusConfig(listen="127.0.0.1:0")
    with pytest.raises(ValueError, match="unique"):
        ModbusGate(config, ["cam1", "cam1"])
