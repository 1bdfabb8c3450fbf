"""Opening ZeroMQ sockets the one way the product does: linger 0, failures as ``BusError``.

The same code runs as threads of one process (``inproc://``, which needs one
shared ``zmq.Context``), as processes on one box (``ipc://``) or across hosts
(``tcp://``). Every socket is closed with ``linger=0`` so that shutdown never
waits on an absent peer.
"""

from __future__ import annotations

from typing import Any

import zmq

from inspector.errors import BusError


def open_socket(context: zmq.Context, kind: int, endpoint: str, bind: bool, **options: Any) -> Any:
    """A socket of ``kind`` bound or connected to ``endpoint``, closing with linger 0;
    ``options`` are ZeroMQ socket options by name (``SNDHWM=4``)."""
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name), value)
    try:
        (sock.bind if bind else sock.connect)(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise BusError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {exc}") from exc
    return sock
