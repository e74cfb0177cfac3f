"""GET /healthz reports the database and the broker, on both databases."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.main import create_app


def test_healthz_reports_database_and_broker(env) -> None:  # type: ignore[no-untyped-def]
    with TestClient(create_app()) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["database"]["detail"] in {"sqlite", "postgresql"}
    assert body["broker"]["ok"] is True


def test_healthz_is_503_when_the_broker_is_unreachable(sqlite_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from support import point_celery_at

    point_celery_at("redis://127.0.0.1:1/0")
    with TestClient(create_app()) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False
    assert response.json()["database"]["ok"] is True
