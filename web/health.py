"""Health and metrics for machines: ``/healthz``, ``/readyz`` and ``/metrics``, without login.

``/healthz`` says the process answers. ``/readyz`` says whether the box inspects as it
should (``inspector.monitor.Monitor.readiness``): 200 when ready, 503 with the failing
checks when not, so a load balancer, systemd or a plant dashboard can act on it.
``/metrics`` is the Prometheus text format; with ``web.metrics_token`` set it asks for
``Authorization: Bearer <token>``. Apart from ``inspector run`` (``inspector web`` on its
own) there is no inspection to watch: ``/readyz`` and ``/metrics`` answer 503.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    return jsonify(status="ok", time_ns=time.time_ns())


@bp.get("/readyz")
def readyz() -> Any:
    monitor = current_app.extensions.get("monitor")
    if monitor is None:
        return jsonify(ready=False, checks={"inspection": {
            "ok": False, "reason": "no inspection runs in this process"}}), 503
    ready, checks = monitor.readiness()
    return jsonify(ready=ready, checks=checks), 200 if ready else 503


@bp.get("/metrics")
def metrics() -> Any:
    token = current_app.extensions["inspector_config"].web.metrics_token
    if token is not None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response("metrics need the bearer token (web.metrics_token)\n", 401,
                            {"WWW-Authenticate": 'Bearer realm="metrics"'},
                            mimetype="text/plain")
    metrics = current_app.extensions.get("metrics")
    if metrics is None:
        return Response("no inspection runs in this process\n", 503, mimetype="text/plain")
    body, content_type = metrics.exposition()
    return Response(body, 200, content_type=content_type)
