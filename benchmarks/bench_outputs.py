"""What the line and plant outputs cost inspection: verdict latency with no outputs, with a
dead MQTT broker and a PLC that stopped polling, with a live broker, and with a PLC that
polls and acknowledges every verdict.

One pipeline (the demo model, one camera of 256x256 parts, recorder and store as
``inspector run`` builds them) is paced at 50% and 90% of its measured throughput. At each
load the set-ups take turns in short windows (each in turn, twice), so each
comparison is between neighbours on a machine whose speed drifts; "none" is measured
twice, so the gap between its two rows is the noise the other rows must exceed to mean
anything. The dead broker is a port nothing listens on (the output keeps reconnecting and
buffering); the PLC that stopped polling leaves the gate's queues full (every new verdict
pushes out the oldest).
The live broker is Debian's mosquitto on a free port, when installed. The broker and the
PLC's client run on the same cores as the box here (on a line they are other machines),
so their own CPU is part of what the live rows show.

    python benchmarks/bench_outputs.py               # ~4 minutes
    python benchmarks/bench_outputs.py --seconds 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_pipeline import Run, frames
from pymodbus.client import ModbusTcpClient

from inspector.config import ModbusConfig, MqttConfig
from inspector.outputs import CameraRegister, ModbusGate, MqttOutput
from inspector.outputs.modbus import CAMERA_BASE

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Polling:
    """A PLC that reads camera 0's result every 10 ms (a typical PLC poll) and acknowledges
    it."""

    def __init__(self, port: int) -> None:
        self.client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        self.stop = threading.Event()
        self.acked = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.client.connect()
        while not self.stop.wait(0.01):
            block = self.client.read_holding_registers(CAMERA_BASE, count=2, device_id=1)
            if not block.isError() and block.registers[CameraRegister.READY]:
                self.client.write_register(CAMERA_BASE + CameraRegister.ACK,
                                           block.registers[CameraRegister.RESULT_NO],
                                           device_id=1)
                self.acked += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.client.close()


def outputs(run: Run, broker_port: int) -> tuple[list[Any], list[Any]]:
    """Started MQTT output and Modbus gate for ``broker_port``; (outputs, things to close)."""
    cameras = [camera.id for camera in run.config.cameras]
    mqtt = MqttOutput(MqttConfig(url=f"mqtt://127.0.0.1:{broker_port}", qos=1,
                                 reconnect_min_s=0.5, reconnect_max_s=2.0), "bench")
    gate = ModbusGate(ModbusConfig(listen="127.0.0.1:0"), cameras)
    mqtt.start()
    gate.start()
    return [mqtt, gate], [mqtt, gate]


def window(run: Run, images: list[np.ndarray], seconds: float, fps: float,
           extra: list[Any]) -> np.ndarray:
    base = run.service.outputs[:1]  # the result feed
    run.service.outputs = base + [output.publish for output in extra]
    try:
        run.feed(images, seconds, fps)
    finally:
        run.service.outputs = base
    with run.lock:
        return np.array(run.latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="per window")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    images = frames()
    rows = []
    broker = None
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp), cameras=1, workers="auto", max_batch=1)
        closing: list[Any] = []
        try:
            dead, closers = outputs(run, free_port())  # nothing listens there
            closing += closers
            setups: dict[str, list[Any]] = {"none": [], "dead broker, PLC not polling": dead}
            if shutil.which(MOSQUITTO):
                port = free_port()
                broker = subprocess.Popen([MOSQUITTO, "-p", str(port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                live, closers = outputs(run, port)
                closing += closers
                setups["live broker"] = live[:1]
            polled, closers = outputs(run, free_port())
            closing += closers
            closing.append(Polling(polled[1].address[1]))
            setups["PLC polling and acknowledging"] = polled[1:]
            setups["none, again (the noise between windows)"] = []
            full = run.feed(images, args.seconds, None)
            print(f"throughput {full:.1f} verdicts/s (1 camera, saturated)", flush=True)
            for load in (0.5, 0.9):
                fps = load * full
                got: dict[str, list[np.ndarray]] = {name: [] for name in setups}
                for _ in range(2):
                    for name, extra in setups.items():
                        got[name].append(window(run, images, args.seconds, fps, extra))
                quiet_p99 = float(np.percentile(np.concatenate(got["none"]), 99))
                for name, windows in got.items():
                    latencies = np.concatenate(windows)
                    row = {"load": load, "fps": round(fps, 1), "outputs": name,
                           "p50_ms": round(float(np.percentile(latencies, 50)), 1),
                           "p99_ms": round(float(np.percentile(latencies, 99)), 1),
                           "late_over_2x_quiet_p99": int(np.sum(latencies > 2 * quiet_p99)),
                           "verdicts": int(latencies.size)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            for output in dead:
                print(f"{type(output).__name__} (dead/not polled): {output.stats()}")
        finally:
            for thing in reversed(closing):
                thing.close()
            run.close()
            if broker is not None:
                broker.terminate()
                broker.wait(5)
    print("\n| load | outputs | fps | p50 ms | p99 ms | verdicts > 2x p99 with none |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['load']:.0%} | {r['outputs']} | {r['fps']} | {r['p50_ms']} | "
              f"{r['p99_ms']} | {r['late_over_2x_quiet_p99']} of {r['verdicts']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
