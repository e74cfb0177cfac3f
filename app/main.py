"""create_app(): the FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.accounts.admin_routes import router as admin_router
from app.accounts.routes import router as auth_router
from app.config import get_settings
from app.datasets.routes import router as datasets_router
from app.db import get_sessionmaker
from app.deps import Forbidden, LoginRequired, MaybeUser
from app.domain.not_found import NotFound
from app.evaluation.routes import router as evaluation_router
from app.gans.routes import router as gans_router
from app.imagesets.routes import router as imagesets_router
from app.jobs import service as job_service
from app.jobs.routes import router as jobs_router
from app.reading.routes import router as reading_router
from app.studies.from_samples_routes import router as study_from_samples_router
from app.studies.results_routes import router as results_router
from app.studies.routes import router as studies_router
from app.sweeps.routes import router as sweeps_router
from app.web.body_limit import FormBodyLimitMiddleware
from app.web.glossary import router as glossary_router
from app.web.health import router as health_router
from app.web.security import SecurityMiddleware, csrf_protect
from app.web.templating import ROOT, redirect, render

log = logging.getLogger(__name__)


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "") and not request.headers.get(
        "hx-request"
    )


def _error(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": message}, status_code=status)
    return render(request, "errors/error.html", {"message": message}, status_code=status)


def _reap_once() -> None:
    # Two independent sweeps: a broker that is down must not stop dead workers' jobs failing.
    try:
        with get_sessionmaker()() as db:
            reaped = job_service.reap_stale(db)
        if reaped:
            log.warning("marked %d jobs without heartbeat as failed", reaped)
    except Exception:
        log.exception("reaping jobs without heartbeat failed")
    try:
        with get_sessionmaker()() as db:
            sent = job_service.redispatch_lost(db)
        if sent:
            log.warning("sent again %d queued jobs the broker did not hold: %s", len(sent), sent)
    except Exception as exc:  # typically the broker is still down: try again next round
        log.warning("re-sending queued jobs failed: %s: %s", type(exc).__name__, exc)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    interval = get_settings().reaper_interval_s

    async def reaper() -> None:
        while True:
            with contextlib.suppress(Exception):
                await run_in_threadpool(_reap_once)
            await asyncio.sleep(interval)

    task = asyncio.create_task(reaper())
    try:
        yield
    finally:
        task.cancel()


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="synthbench",
        lifespan=_lifespan,
        dependencies=[Depends(csrf_protect)],
        # No Swagger UI: FastAPI's page loads it from a CDN and starts it with an inline script,
        # both of which the CSP (script-src 'self') blocks, so it only ever showed a blank page.
        # The schema stays at /openapi.json for any OpenAPI viewer or client generator.
        docs_url=None,
        redoc_url=None,
    )
    app.state.secret_key = settings.resolved_secret_key()
    # Added first, so SecurityMiddleware (outermost) also puts its headers on a 413.
    app.add_middleware(FormBodyLimitMiddleware)
    app.add_middleware(
        SecurityMiddleware,
        secret=app.state.secret_key,
        secure_cookies=settings.secure_cookies,
    )
    app.mount("/static", StaticFiles(directory=str(ROOT / "static")), name="static")

    for router in (
        health_router,
        glossary_router,
        auth_router,
        admin_router,
        jobs_router,
        datasets_router,
        gans_router,
        evaluation_router,
        sweeps_router,
        study_from_samples_router,
        imagesets_router,
        # Fixed paths (/studies/import) before /studies/{study_id} in the studies router.
        results_router,
        studies_router,
        reading_router,
    ):
        app.include_router(router)

    @app.get("/")
    def home(request: Request, principal: MaybeUser) -> Response:
        if principal is None:
            return redirect(request, "/login")
        return redirect(request, "/jobs" if principal.is_researcher else "/read")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: LoginRequired) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": "Sign in first."}, status_code=401)
        return redirect(request, f"/login?next={request.url.path}")

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return _error(request, 403, exc.message)

    # Every service's not-found (a job, dataset, study, sweep, image set, user...): one 404.
    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return _error(request, 404, exc.message)

    # An id or page past 64 bits (/jobs/9223372036854775808) is a valid int to FastAPI, but
    # SQLite refuses to bind it before any lookup. No row can have such an id: 404, not 500.
    @app.exception_handler(OverflowError)
    async def id_out_of_range(request: Request, exc: OverflowError) -> Response:
        if "too large to convert to SQLite INTEGER" not in str(exc):
            raise exc
        return _error(request, 404, "This page does not exist.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and message == "Not Found":
            message = "This page does not exist."
        return _error(request, exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
            for e in exc.errors()
        )
        return _error(request, 422, f"The request was not valid: {problems}")

    return app
