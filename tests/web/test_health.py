"""/healthz, /readyz and /metrics answer machines without a session; /metrics keeps its token."""

from __future__ import annotations

from pathlib import Path

from web import create_app

from .webutil import filled_store, web_config


def test_health_answers_without_login_and_readiness_needs_inspection(tmp_path: Path) -> None:
    store = filled_store(tmp_path / "store")
    client = create_app(web_config(tmp_path / "store"), store).test_client()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json()["status"] == "ok"
    ready = client.get("/readyz")  # `inspector web` alone: nothing inspects here
    assert ready.status_code == 503 and ready.get_json()["ready"] is False
    assert client.get("/metrics").status_code == 503
    store.close()


def test_metrics_ask_for_the_configured_bearer_token(tmp_path: Path) -> None:
    store = filled_store(tmp_path / "store")
    token = "s3cret-token-for-metrics"
    client = create_app(web_config(tmp_path / "store", metrics_token=token), store).test_client()
    for header in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        refused = client.get("/metrics", headers=header)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    # The right token passes the gate (503 here: no inspection in this process).
    assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}
                      ).status_code == 503
    store.close()
