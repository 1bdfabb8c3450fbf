"""The box wired to the line and the plant, all real: ``run_pipeline`` with the Modbus gate
and the MQTT output on, a pymodbus client playing the PLC and Mosquitto as the plant's
broker. The PLC triggers a part through its register and takes the verdict with the
handshake; the broker gets that verdict, the retained status and, when a camera's source
disappears, the "camera down" alarm on MQTT and in the PLC's alarm bits, cleared when it
returns; the status turns offline when the box stops."""

from __future__ import annotations

import socket
import threading
import time
from io import StringIO
from pathlib import Path
from typing import Any

from pymodbus.client import ModbusTcpClient

from inspector.config import parse_config
from inspector.errors import OutputError
from inspector.inspection import DEMO_MODEL, run_pipeline
from inspector.monitor import ALARM_KINDS
from inspector.outputs import BoxRegister, CameraRegister
from inspector.outputs.modbus import CAMERA_BASE, CAMERA_STRIDE
from tests.conftest import free_tcp_port
from tests.monitor.test_box_alarms import unpluggable

from .mosquitto import Broker
from .test_mqtt import Subscriber

CAMERA_DOWN_BIT = 1 << ALARM_KINDS.index("camera_down")


class Plc:
    """The PLC's side: holding-register reads and writes on the box's gate."""

    def __init__(self, port: int) -> None:
        self.client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)

    def read(self, address: int, count: int = 1) -> list[int]:
        response = self.client.read_holding_registers(address, count=count, device_id=1)
        assert not response.isError(), response
        return list(response.registers)

    def write(self, address: int, values: list[int]) -> None:
        response = self.client.write_registers(address, values, device_id=1)
        assert not response.isError(), response

    def until(self, address: int, done: Any, timeout_s: float = 20.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.client.connected or self.client.connect():
                value = self.read(address)[0]
                if done(value):
                    return value
            time.sleep(0.05)
        raise AssertionError(f"register {address} never got there")


def _ascii(registers: list[int]) -> str:
    raw = b"".join(r.to_bytes(2, "big") for r in registers)
    return raw.rstrip(b"\0").decode("ascii")


def test_plc_and_broker_take_verdicts_and_alarms_from_a_running_box(
        tmp_path: Path, broker: Broker) -> None:
    port = free_tcp_port()
    config = parse_config({
        "cameras": [
            {"id": "cam1", "type": "synthetic", "trigger": "software"},
            {"id": "cam2", "type": "synthetic", "fps": 20, "seed": 3,
             "watchdog": {"backoff_initial_s": 0.1, "backoff_max_s": 0.2}},
        ],
        "bus": {"frames": f"inproc://frames-{id(tmp_path)}",
                "results": f"inproc://results-{id(tmp_path)}"},
        "model": {"path": str(DEMO_MODEL), "intra_op_threads": 1},
        "storage": {"root": str(tmp_path / "store")},
        "alarms": {"camera_down_s": 1.0, "check_interval_s": 0.2},
        "outputs": {"box_id": "line7",
                    "modbus": {"listen": f"127.0.0.1:{port}", "heartbeat_ms": 100},
                    "mqtt": {"url": f"mqtt://127.0.0.1:{broker.port}", "prefix": "plant",
                             "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}},
    }, base_dir=tmp_path)
    unplug, sources = unpluggable("cam2")
    verdicts = Subscriber(broker.port, "plant/line7/cam1/verdict")
    alarms = Subscriber(broker.port, "plant/line7/alarms")
    stop = threading.Event()
    out = (tmp_path / "out.txt").open("w")
    runner = threading.Thread(target=run_pipeline, args=(config, stop, out),
                              kwargs={"source_factory": sources})
    runner.start()
    plc = Plc(port)
    try:
        # The box is alive (heartbeat moves) and ready before the PLC sends parts.
        first = plc.until(BoxRegister.HEARTBEAT, lambda v: v > 0)
        plc.until(BoxRegister.HEARTBEAT, lambda v: v != first)
        plc.until(BoxRegister.STATUS, lambda v: v & 1)
        status = Subscriber(broker.port, "plant/line7/status")
        status.wait_for(lambda m: m and m[-1].document["state"] == "online")

        cam1 = CAMERA_BASE  # the first camera's block
        part = b"P-42".ljust(16, b"\0")
        plc.write(cam1 + CameraRegister.TRIGGER_PART_ID,
                  [int.from_bytes(part[i:i + 2], "big") for i in range(0, 16, 2)])
        plc.write(cam1 + CameraRegister.TRIGGER, [1])
        plc.until(cam1 + CameraRegister.READY, lambda v: v == 1)
        shown = plc.read(cam1, CameraRegister.QUEUED)
        assert shown[CameraRegister.VERDICT] in (1, 2, 3)
        assert _ascii(shown[CameraRegister.PART_ID:CameraRegister.PART_ID + 8]) == "P-42"
        plc.write(cam1 + CameraRegister.ACK, [shown[CameraRegister.RESULT_NO]])
        plc.until(cam1 + CameraRegister.READY, lambda v: v == 0)

        [message] = verdicts.wait_for(lambda m: len(m) >= 1)
        assert message.document["part_id"] == "P-42"
        assert message.document["reject"] == bool(shown[CameraRegister.REJECT])

        unplug["cam2"].plugged.clear()
        raised = alarms.wait_for(lambda m: any(a.document["kind"] == "camera_down"
                                               and a.document["active"] for a in m))
        assert any(a.document["subject"] == "cam2" for a in raised)
        plc.until(BoxRegister.ALARMS, lambda v: v & CAMERA_DOWN_BIT)
        unplug["cam2"].plugged.set()
        alarms.wait_for(lambda m: any(a.document["kind"] == "camera_down"
                                      and not a.document["active"] for a in m))
        plc.until(BoxRegister.ALARMS, lambda v: not v & CAMERA_DOWN_BIT)
        assert CAMERA_STRIDE > CameraRegister.TRIGGER  # blocks do not overlap
    finally:
        plc.client.close()
        stop.set()
        runner.join(60)
        out.close()
    assert not runner.is_alive()
    status.wait_for(lambda m: m[-1].document["state"] == "offline")
    for subscriber in (verdicts, alarms, status):
        subscriber.close()


def test_a_taken_plc_port_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    """The gate cannot listen: run fails at once, naming the output, and leaves nothing
    running (no hang on the sockets the service had already opened)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = parse_config({
            "cameras": [{"id": "cam1", "type": "synthetic"}],
            "bus": {"frames": f"inproc://frames-{id(tmp_path)}",
                    "results": f"inproc://results-{id(tmp_path)}"},
            "model": {"path": str(DEMO_MODEL), "intra_op_threads": 1},
            "storage": {"root": str(tmp_path / "store")},
            "outputs": {"modbus": {"listen": f"127.0.0.1:{taken.getsockname()[1]}"}},
        }, base_dir=tmp_path)
        failed: list[BaseException] = []

        def run() -> None:
            try:
                run_pipeline(config, threading.Event(), StringIO())
            except BaseException as exc:
                failed.append(exc)

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        runner.join(30)
    assert not runner.is_alive(), "run_pipeline hung after the output failed to start"
    assert len(failed) == 1 and isinstance(failed[0], OutputError)
    assert str(failed[0]).startswith("outputs.modbus: ")
