"""Running under systemd: sd_notify over real datagram sockets, the watchdog, the unit file
in deploy/, and the example config of docs/install.md validated by the real parser."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import tempfile
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.cli import main
from inspector.config import parse_config
from inspector.systemd import ServiceNotifier, notify, watchdog_interval_s

from .conftest import REPO_ROOT

UNIT = REPO_ROOT / "deploy" / "inspector.service"
ENV_EXAMPLE = REPO_ROOT / "deploy" / "inspector.env.example"
INSTALL_DOC = REPO_ROOT / "docs" / "install.md"


# --- sd_notify ----------------------------------------------------------------------------


def _receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode("utf-8")


def _nothing_waiting(sock: socket.socket) -> bool:
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(timeout)
    return False


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket, as systemd listens on, and its NOTIFY_SOCKET value."""
    folder = tmp_path
    if len(str(tmp_path / "notify")) > 100:  # sun_path holds 108 bytes
        folder = Path(tempfile.mkdtemp(prefix="sd"))
    path = folder / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield sock, str(path)
    path.unlink(missing_ok=True)


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"inspector-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        yield sock, "@" + name


def test_notify_to_a_path_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, address = notify_socket
    assert notify("READY=1\nSTATUS=up", {"NOTIFY_SOCKET": address})
    assert _receive(sock) == "READY=1\nSTATUS=up"


def test_notify_to_an_abstract_socket(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, address = abstract_socket
    assert notify("WATCHDOG=1", {"NOTIFY_SOCKET": address})
    assert _receive(sock) == "WATCHDOG=1"


def test_notify_outside_systemd_is_a_no_op() -> None:
    assert notify("READY=1", {}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": ""}) is False


def test_notify_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG", logger="inspector.systemd"):
        assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
        assert notify("READY=1", {"NOTIFY_SOCKET": "@" + uuid.uuid4().hex}) is False
        assert notify("READY=1", {"NOTIFY_SOCKET": "vsock:2:1234"}) is False
        assert notify("READY=1", {"NOTIFY_SOCKET": "/" + "x" * 200}) is False  # too long
    assert all(record.levelname == "DEBUG" for record in caplog.records)
    assert any("failed" in record.getMessage() for record in caplog.records)


def test_watchdog_interval() -> None:
    own = str(os.getpid())
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": own}) == 0.5
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000",
                                "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}) is None
    for usec in ("", "0", "-5", "abc", "1.5"):
        assert watchdog_interval_s({"WATCHDOG_USEC": usec}) is None, usec
    assert watchdog_interval_s({}) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_notifier_states(notify_socket: tuple[socket.socket, str]) -> None:
    sock, address = notify_socket
    notifier = ServiceNotifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled and notifier.watchdog_s is None
    assert notifier.ready("inspecting 2 cameras")
    assert _receive(sock) == "READY=1\nSTATUS=inspecting 2 cameras"
    assert notifier.ready()
    assert _receive(sock) == "READY=1"
    assert notifier.status("top: 120 inspected\nside: 118 inspected")  # one line
    assert _receive(sock) == "STATUS=top: 120 inspected side: 118 inspected"
    assert notifier.stopping("draining")
    assert _receive(sock) == "STOPPING=1\nSTATUS=draining"
    assert not notifier.tick(healthy=True)  # no watchdog configured
    assert _nothing_waiting(sock)


def test_tick_feeds_the_watchdog_at_half_its_interval(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, address = notify_socket
    clock = FakeClock()
    notifier = ServiceNotifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "10000000",
                                "WATCHDOG_PID": str(os.getpid())}, clock=clock)
    assert notifier.watchdog_s == 10.0
    assert notifier.tick(healthy=True)  # the first one at once
    assert _receive(sock) == "WATCHDOG=1"
    sent = 0
    for _ in range(49):  # a loop waking every 0.1 s, for 4.9 s
        clock.now += 0.1
        sent += notifier.tick(healthy=True)
    assert sent == 0 and _nothing_waiting(sock)
    clock.now += 0.11  # 5.01 s after the first: half the interval
    assert notifier.tick(healthy=True)
    assert _receive(sock) == "WATCHDOG=1"
    assert not notifier.tick(healthy=True)
    assert _nothing_waiting(sock)


def test_tick_withholds_the_watchdog_while_unhealthy(
    notify_socket: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    sock, address = notify_socket
    clock = FakeClock()
    notifier = ServiceNotifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000"},
                               clock=clock)
    assert notifier.tick(healthy=True)
    assert _receive(sock) == "WATCHDOG=1"
    with caplog.at_level("ERROR", logger="inspector.systemd"):
        for _ in range(100):
            clock.now += 0.1
            assert not notifier.tick(healthy=False)
    assert _nothing_waiting(sock)
    assert len(caplog.records) == 1  # said once, not every pass
    clock.now += 0.1
    assert notifier.tick(healthy=True)  # recovered (systemd would have restarted it)
    assert _receive(sock) == "WATCHDOG=1"


def test_notifier_without_systemd_does_nothing() -> None:
    notifier = ServiceNotifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.status("x")
    assert not notifier.stopping()
    assert not notifier.tick(healthy=True)
    quiet = ServiceNotifier({})
    assert quiet.watchdog_s is None and not quiet.tick(healthy=True)


def test_notifier_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, abstract_socket: tuple[socket.socket, str]
) -> None:
    sock, address = abstract_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = ServiceNotifier()
    assert notifier.watchdog_s == 4.0
    assert notifier.ready()
    assert _receive(sock) == "READY=1"


# --- the unit file ------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as section -> key -> values (keys may repeat), continuation lines
    joined, comments dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"setting outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a setting: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


UNIT_SECTIONS = parse_unit(UNIT.read_text(encoding="utf-8"))
SERVICE = UNIT_SECTIONS["Service"]


def setting(key: str) -> str:
    values = SERVICE.get(key, [])
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def seconds(value: str) -> float:
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def exec_start() -> list[str]:
    return shlex.split(setting("ExecStart"))


def doc_config_path() -> str:
    paths = set(re.findall(r"/etc/inspector/[\w.-]+\.toml", INSTALL_DOC.read_text("utf-8")))
    assert len(paths) == 1, paths
    return paths.pop()


def test_the_unit_runs_inspector_run_with_the_documented_config() -> None:
    argv = exec_start()
    assert argv[0] == "/opt/inspector/venv/bin/inspector"
    assert argv[1:4] == ["run", "--config", doc_config_path()]
    assert "--duration" not in argv  # a service runs until stopped


def test_the_unit_is_a_notify_service_with_a_watchdog() -> None:
    assert setting("Type") == "notify"
    assert 5 <= seconds(setting("WatchdogSec")) <= 120
    assert seconds(setting("TimeoutStartSec")) >= 90  # loading and warming up the model


def test_the_unit_restarts_on_failure_and_drains_on_sigterm() -> None:
    assert setting("Restart") == "on-failure"
    assert 1 <= seconds(setting("RestartSec")) <= 60
    assert setting("KillSignal") == "SIGTERM"
    # Cameras 5 s + inspection drain 30 s + the recorder's 10,000-verdict queue at
    # ~230 records/s (docs/reliability.md) ~ 45 s.
    assert seconds(setting("TimeoutStopSec")) >= 90
    assert "KillMode" not in SERVICE or setting("KillMode") in {"control-group", "mixed"}


def test_the_unit_runs_unprivileged_and_hardened() -> None:
    user = setting("User")
    assert user == "inspector" and user not in {"root", "0"}
    assert "video" in setting("SupplementaryGroups").split()
    assert setting("NoNewPrivileges") == "yes"
    assert setting("ProtectSystem") == "strict"
    assert setting("ProtectHome") == "yes"
    assert setting("PrivateTmp") == "yes"
    assert setting("StateDirectory") == "inspector"
    assert "/var/lib/inspector" in setting("ReadWritePaths").split()
    # No capability unless a drop-in adds one for Modbus on port 502.
    assert setting("CapabilityBoundingSet") == ""
    assert "AmbientCapabilities" not in SERVICE
    # These would shut out cameras and GPUs.
    assert "PrivateDevices" not in SERVICE and "ProtectClock" not in SERVICE
    assert "DeviceAllow" not in SERVICE


def test_the_unit_reads_secrets_and_logs_to_the_journal() -> None:
    assert setting("EnvironmentFile") == "-/etc/inspector/env"
    assert setting("StandardError") == "journal"
    assert UNIT_SECTIONS["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_unit_flags_are_accepted_by_inspector_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = exec_start()[1:]
    argv[argv.index("--config") + 1] = str(tmp_path / "missing.toml")
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:  # the arguments parse; the missing file is reported (exit 2, not argparse's)
        assert main(argv) == 2
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert "missing.toml: file not found" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["run"], ["check-config"], ["users", "add"]])
def test_the_documented_commands_exist(command: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: inspector {' '.join(command)}" in capsys.readouterr().out


# --- docs/install.md ----------------------------------------------------------------------


def doc_toml() -> dict:
    blocks = re.findall(r"```toml\n(.*?)```", INSTALL_DOC.read_text("utf-8"), re.S)
    assert len(blocks) == 1, "docs/install.md should hold exactly one TOML example"
    return tomllib.loads(blocks[0])


def env_example() -> dict[str, str]:
    env = {}
    for line in ENV_EXAMPLE.read_text("utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep and name == name.strip() and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), line
            env[name] = value
    return env


def test_the_documented_config_is_valid() -> None:
    config = parse_config(doc_toml(), environ={}, source="docs/install.md")
    assert [camera.id for camera in config.cameras] == ["top", "side"]
    assert str(config.storage.root) == "/var/lib/inspector"
    assert setting("StateDirectory") == Path(config.storage.root).name
    assert config.outputs.modbus is not None and config.outputs.modbus.listen == "0.0.0.0:5020"
    assert config.outputs.mqtt is not None
    assert config.outputs.mqtt.url == "mqtt://broker.plant.local:1883"
    assert config.outputs.mqtt.prefix and config.outputs.box_id
    assert config.web.host == "0.0.0.0"
    doc = INSTALL_DOC.read_text("utf-8")
    assert f"http://HOST:{config.web.port}/healthz" in doc
    assert f"port {config.web.port} proto tcp" in doc  # the firewall opens the same port
    modbus_port = config.outputs.modbus.listen.rsplit(":", 1)[1]
    assert f"port {modbus_port} proto tcp" in doc


def test_the_env_example_applies_to_the_documented_config() -> None:
    env = env_example()
    assert {"INSPECTOR_MQTT_PASSWORD", "INSPECTOR__WEB__METRICS_TOKEN"} <= set(env)
    config = parse_config(doc_toml(), environ=env, source="deploy/inspector.env.example")
    assert config.web.metrics_token == env["INSPECTOR__WEB__METRICS_TOKEN"]
    assert config.outputs.mqtt is not None
    assert config.outputs.mqtt.password_env in env
