"""GET /healthz: is the database reachable, is the broker reachable."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.db import get_engine

router = APIRouter()


def _database_ok() -> tuple[bool, str]:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return True, get_engine().dialect.name
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"[:300]


def _broker_ok() -> tuple[bool, str]:
    from app.queue import celery_app

    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
            _ = conn.default_channel  # opens a channel: the transport really answered
            return True, conn.transport_cls if isinstance(conn.transport_cls, str) else "ok"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"[:300]


@router.get("/healthz")
def healthz() -> JSONResponse:
    db_ok, db_detail = _database_ok()
    broker_ok, broker_detail = _broker_ok()
    healthy = db_ok and broker_ok
    body = {
        "status": "ok" if healthy else "degraded",
        "database": {"ok": db_ok, "detail": db_detail},
        "broker": {"ok": broker_ok, "detail": broker_detail},
    }
    return JSONResponse(body, status_code=200 if healthy else 503)
