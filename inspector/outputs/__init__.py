"""Where verdicts leave the box: sinks that never block inspection.

- ``results``: the ZeroMQ result channel, one JSON document per verdict (PUB/SUB)
"""

from inspector.outputs.results import ResultPublisher, ResultSubscriber

__all__ = ["ResultPublisher", "ResultSubscriber"]
