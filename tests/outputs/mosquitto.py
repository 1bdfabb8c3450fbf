"""A real Mosquitto broker for the MQTT tests: its own config file and port in a test's
folder, started and stopped by the test, so a test can take the broker away and bring it
back on the same port. Debian's ``mosquitto`` package (installed by ``.ci/run``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..conftest import free_tcp_port

MOSQUITTO = Path("/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
OPENSSL = shutil.which("openssl")


@dataclass(frozen=True)
class TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """Write a CA and a server certificate with the ``openssl`` command."""
    assert OPENSSL is not None
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for command in (
        [OPENSSL, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
         "-subj", "/CN=test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [OPENSSL, "req", *ec, "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=127.0.0.1"],
        [OPENSSL, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "san.ext"],
    ):
        subprocess.run(command, cwd=folder, check=True, capture_output=True, timeout=30)
    return TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")


class Broker:
    """One ``mosquitto`` process on 127.0.0.1 with a free port of its own.

    ``users`` (name -> password) turns anonymous access off; ``tls`` adds an mqtts://
    listener on a second port; ``persistence`` keeps retained messages and sessions (and
    the messages queued for them) across ``stop`` and ``start``.
    """

    def __init__(self, folder: Path, users: dict[str, str] | None = None,
                 tls: TlsFiles | None = None, persistence: bool = False) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_tcp_port()
        self.tls_port = free_tcp_port() if tls else None
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.tls_url = f"mqtts://127.0.0.1:{self.tls_port}" if tls else None
        self.config_path = folder / "mosquitto.conf"
        self.log_path = folder / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} 127.0.0.1",
                 f"log_dest file {self.log_path}",
                 "log_type error", "log_type warning", "log_type notice",
                 "log_type information",
                 f"persistence {'true' if persistence else 'false'}",
                 f"persistence_location {folder}/",
                 "max_queued_messages 0"]  # a persistent session's queue: no bound here
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to "mosquitto", which cannot write here
        if users:
            assert MOSQUITTO_PASSWD is not None
            passwords = folder / "passwords"
            for i, (name, password) in enumerate(users.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run([MOSQUITTO_PASSWD, *create, "-b", str(passwords), name,
                                password], check=True, capture_output=True, timeout=30)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {tls.ca}",
                      f"certfile {tls.cert}", f"keyfile {tls.key}"]
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start it and return once every listener accepts connections."""
        assert not self.running
        self._process = subprocess.Popen([str(MOSQUITTO), "-c", str(self.config_path)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        for port in filter(None, (self.port, self.tls_port)):
            while not self._accepts(port):
                if self._process.poll() is not None:
                    _, err = self._process.communicate()
                    raise RuntimeError(f"mosquitto exited with {self._process.returncode}: "
                                       f"{err.decode(errors='replace')}{self.log()}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not listen on {port}: {self.log()}")
                time.sleep(0.02)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate it (it saves its persistence file first) and wait for it to end."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        if process.stderr is not None:
            process.stderr.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False
