"""Shared fixtures: real ZeroMQ contexts and endpoints, and the shared datasets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS = REPO_ROOT.parent / "shared" / "datasets"
TRANSPORTS = ("inproc", "ipc", "tcp")


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_endpoint(transport: str, tmp_path: Path) -> str:
    """A fresh endpoint of the given transport that nothing else uses."""
    if transport == "inproc":
        return f"inproc://test-{id(tmp_path)}"
    if transport == "ipc":
        return f"ipc://{tmp_path}/frames.sock"
    return f"tcp://127.0.0.1:{free_tcp_port()}"


@pytest.fixture(params=TRANSPORTS)
def endpoint(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_endpoint(request.param, tmp_path)


@pytest.fixture
def datasets() -> Path:
    """The shared MVTec-AD-layout datasets; tests that need them skip on a user's machine."""
    if not DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {DATASETS}")
    return DATASETS
