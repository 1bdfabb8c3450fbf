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

# The kernel's send and receive buffers of a TCP socket. ZeroMQ's high-water marks bound the
# messages in its own queues, but behind them Linux grows each TCP buffer on its own (up to
# tcp_wmem / tcp_rmem: 4 and 32 MiB by default), where frames wait unseen and age: 64 frames
# of 100 kB sat between a stalled inspector and its camera. A fixed size stops the growth
# (Linux doubles the value for its bookkeeping); 256 KiB still moves over 1 GB/s on a LAN.
TCP_BUFFER_BYTES = 256 * 1024


def open_socket(context: zmq.Context, kind: int, endpoint: str, bind: bool, **options: Any) -> Any:
    """A socket of ``kind`` bound or connected to ``endpoint``, closing with linger 0;
    ``options`` are ZeroMQ socket options by name (``SNDHWM=4``). Over TCP the kernel's
    buffers are bounded too (``TCP_BUFFER_BYTES``) unless ``options`` set them."""
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if endpoint.startswith("tcp://"):
        options = {"SNDBUF": TCP_BUFFER_BYTES, "RCVBUF": TCP_BUFFER_BYTES, **options}
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name), value)
    try:
        (sock.bind if bind else sock.connect)(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise BusError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {exc}") from exc
    return sock
