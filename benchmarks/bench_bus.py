"""Frame bus throughput: the product's FrameSender/FrameReceiver against a bare pyzmq loop.

For each frame size, encoding and transport, one sender thread pushes N frames
and the main thread receives them, once through the product's bus (encode,
validate, decode) and once through bare PUSH/PULL sockets carrying the same
bytes (raw: a header and the array, zero-copy; jpeg: the pre-encoded file, so
the ratio shows what compression costs). Runs alternate so that machine noise
hits both alike; the figure is the median ratio product / bare.

    python benchmarks/bench_bus.py            # full run, prints a markdown table
    python benchmarks/bench_bus.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import zmq

from inspector.bus import FrameReceiver, FrameSender

SIZES = {"256x256": (256, 256), "1MP": (1024, 1024), "5MP": (2048, 2448)}
FRAME_BYTES_BUDGET = {"256x256": 3000, "1MP": 600, "5MP": 120}  # frames per run, raw


def test_image(height: int, width: int) -> np.ndarray:
    """A smooth gradient with mild noise: compresses like a real part, not like pure noise."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:height, 0:width]
    base = (xs * 255 // max(width - 1, 1) + ys * 64 // max(height - 1, 1)).astype(np.int32)
    noise = rng.normal(0, 3, (height, width)).astype(np.int32)
    grey = np.clip(base + noise, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.stack([grey, grey[::-1], 255 - grey], axis=2))


def endpoint_for(transport: str, tmp: Path, tag: str) -> str:
    if transport == "inproc":
        return f"inproc://bench-{tag}"
    if transport == "ipc":
        return f"ipc://{tmp}/{tag}.sock"
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def timed(sender: Callable[[], None], receiver: Callable[[], None]) -> float:
    """Seconds from the first send to the last receive."""
    thread = threading.Thread(target=sender)
    started = time.perf_counter()
    thread.start()
    receiver()
    elapsed = time.perf_counter() - started
    thread.join()
    return elapsed


def run_product(
    context: zmq.Context, endpoint: str, image: np.ndarray, encoding: str, count: int
) -> float:
    # Queues deep enough for the whole run on both sides: neither loop ever waits for room,
    # so the product sender (which drops rather than block) and the bare one run alike.
    receiver = FrameReceiver(endpoint, context, hwm=count + 10)
    sender = FrameSender(endpoint, context, hwm=count + 10)

    def send() -> None:
        for seq in range(count):
            if not sender.send(image, "cam1", seq, time.time_ns(), None, encoding):
                raise RuntimeError("frame dropped in a throughput run")

    def receive() -> None:
        got = 0
        while got < count:
            if receiver.recv(timeout_ms=5000) is None:
                raise RuntimeError("product bus stalled")
            got += 1

    try:
        return timed(send, receive)
    finally:
        sender.close()
        receiver.close()


def run_bare(
    context: zmq.Context, endpoint: str, payload: np.ndarray | bytes, shape: tuple, count: int
) -> float:
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.setsockopt(zmq.RCVHWM, count + 10)
    pull.bind(endpoint)
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.setsockopt(zmq.SNDHWM, count + 10)
    push.connect(endpoint)
    header = json.dumps({"shape": list(shape)}).encode()
    raw = isinstance(payload, np.ndarray)

    def send() -> None:
        for _ in range(count):
            push.send_multipart([header, payload], copy=False)

    def receive() -> None:
        for _ in range(count):
            _, body = pull.recv_multipart(copy=False)
            data = np.frombuffer(body.buffer, np.uint8)  # the least any receiver does
            if raw:
                data.reshape(shape)

    try:
        return timed(send, receive)
    finally:
        push.close(linger=0)
        pull.close(linger=0)


def measure(
    size: str, encoding: str, transport: str, repeats: int, scale: float, tmp: Path
) -> dict[str, object]:
    height, width = SIZES[size]
    image = test_image(height, width)
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    count = max(10, int(FRAME_BYTES_BUDGET[size] * scale / (4 if encoding == "jpeg" else 1)))
    context = zmq.Context()
    product_s, bare_s = [], []
    try:
        # warm-up: sockets, caches and codecs
        run_product(context, endpoint_for(transport, tmp, "w1"), image, encoding, 5)
        for run in range(repeats):
            tag = f"{size}-{encoding}-{run}"
            bare_payload = image if encoding == "raw" else jpeg
            bare_s.append(
                run_bare(
                    context,
                    endpoint_for(transport, tmp, f"b{tag}"),
                    bare_payload,
                    image.shape,
                    count,
                )
            )
            product_s.append(
                run_product(
                    context, endpoint_for(transport, tmp, f"p{tag}"), image, encoding, count
                )
            )
    finally:
        context.destroy(linger=0)
    product, bare = statistics.median(product_s), statistics.median(bare_s)
    return {
        "size": size,
        "encoding": encoding,
        "transport": transport,
        "frames": count,
        "frame_bytes": image.nbytes if encoding == "raw" else len(jpeg),
        "product_fps": count / product,
        "bare_fps": count / bare,
        "product_mb_s": count * image.nbytes / product / 1e6,
        "ratio": bare / product,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the frames, 1 repeat")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--encodings", nargs="+", default=["raw", "jpeg"])
    parser.add_argument("--transports", nargs="+", default=["inproc", "ipc", "tcp"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    scale, repeats = (0.1, 1) if args.quick else (1.0, args.repeats)
    results = []
    print(
        "| frame | encoding | transport | frames | bytes/frame | product fps | bare fps "
        "| product MB/s | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for encoding in args.encodings:
                for transport in args.transports:
                    row = measure(size, encoding, transport, repeats, scale, Path(tmp))
                    results.append(row)
                    print(
                        f"| {size} | {encoding} | {transport} | {row['frames']} "
                        f"| {row['frame_bytes']:,} | {row['product_fps']:.0f} "
                        f"| {row['bare_fps']:.0f} | {row['product_mb_s']:.0f} "
                        f"| {row['ratio']:.2f} |",
                        flush=True,
                    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
