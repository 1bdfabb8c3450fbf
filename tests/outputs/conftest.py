"""Fixtures of the output tests: real Mosquitto brokers, stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .mosquitto import MOSQUITTO, Broker

MakeBroker = Callable[..., Broker]


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[MakeBroker]:
    """``make_broker(**options)``: a started broker of its own (options: ``Broker``'s)."""
    if not MOSQUITTO.exists():
        pytest.skip(f"the MQTT tests need Debian's mosquitto broker at {MOSQUITTO} "
                    "(apt-get install mosquitto)")
    brokers: list[Broker] = []

    def make(**options: object) -> Broker:
        broker = Broker(tmp_path / f"broker{len(brokers)}", **options)  # type: ignore[arg-type]
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def broker(make_broker: MakeBroker) -> Broker:
    """A started anonymous broker."""
    return make_broker()
