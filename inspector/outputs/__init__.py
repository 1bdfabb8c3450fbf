"""Where verdicts leave the box: outputs that never block inspection.

- ``results``: the result feed, one JSON document per verdict (PUB/SUB, CurveZMQ optional),
  and ``Output``, what every output is to the inspection service
"""

from inspector.outputs.results import (
    SCHEMA_PATH,
    CurveServer,
    Output,
    ResultPublisher,
    ResultSubscriber,
    curve_server,
)

__all__ = ["SCHEMA_PATH", "CurveServer", "Output", "ResultPublisher", "ResultSubscriber",
           "curve_server"]
