"""Login, logout and invitation links."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.auth import ratelimit, service, signin
from app.auth.tokens import sign, unsign
from app.config import get_settings
from app.db import DatabaseBusy
from app.deps import SESSION_COOKIE, DbDep, MaybeUser
from app.models.types import utcnow
from app.web.security import rotate_csrf
from app.web.templating import redirect, render

router = APIRouter()


def _set_session_cookie(request: Request, response: Response, token: str, hours: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        sign(request.app.state.secret_key, "session", token),
        max_age=hours * 3600,
        httponly=True,
        samesite="lax",
        secure=get_settings().secure_cookies,
        path="/",
    )


def _safe_next(next_url: str | None) -> str:
    # Only same-site paths: an open redirect after login is a phishing aid.
    if next_url and next_url.startswith("/") and not next_url.startswith("//"):
        return next_url
    return "/"


@router.get("/login")
def login_page(request: Request, principal: MaybeUser, next: str | None = None) -> Response:
    if principal is not None:
        return redirect(request, "/")
    return render(request, "auth/login.html", {"next": _safe_next(next)})


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form(max_length=120)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form()] = "/",
) -> Response:
    # Async on purpose: signin.sign_in moves the database steps and the password check to
    # threads itself, so a burst of sign-ins waits on the event loop rather than holding the
    # request threads (and their connections) that every other page needs.
    settings = get_settings()
    limits = ratelimit.Limits(
        settings.login_max_failures,
        settings.login_max_failures_per_address,
        settings.login_window_s,
    )
    attempt = signin.Attempt(
        username=username,
        password=password,
        address=ratelimit.client_address(
            request.client.host if request.client else None,
            request.headers.get("x-forwarded-for"),
            settings.trusted_proxies,
        ),
        now=utcnow(),
        old_token=unsign(
            request.app.state.secret_key, "session", request.cookies.get(SESSION_COOKIE)
        ),
    )
    again = {"username": username, "next": _safe_next(next)}
    try:
        outcome = await signin.sign_in(
            attempt,
            limits,
            hours=settings.session_hours,
            concurrency=settings.password_check_concurrency,
        )
    except DatabaseBusy as exc:
        return _busy(request, again, exc)
    if isinstance(outcome, signin.Blocked):
        minutes = math.ceil(outcome.wait_s / 60)
        response = render(
            request,
            "auth/login.html",
            {
                "error": "Too many failed sign-ins for this account or from this address. "
                f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                **again,
            },
            status_code=429,
        )
        response.headers["Retry-After"] = str(outcome.wait_s)
        return response
    if isinstance(outcome, signin.Refused):
        return render(
            request,
            "auth/login.html",
            {"error": outcome.message, **again},
            status_code=outcome.status_code,
        )
    rotate_csrf(request)
    response = redirect(request, _safe_next(next))
    _set_session_cookie(request, response, outcome.token, settings.session_hours)
    return response


def _busy(request: Request, again: dict[str, str], exc: DatabaseBusy) -> Response:
    response = render(
        request,
        "auth/login.html",
        {"error": "The server is busy. Please sign in again in a few seconds.", **again},
        status_code=503,
    )
    response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


@router.post("/logout")
def logout(request: Request, db: DbDep) -> Response:
    token = unsign(request.app.state.secret_key, "session", request.cookies.get(SESSION_COOKIE))
    service.end_session(db, token)
    db.commit()
    rotate_csrf(request)
    response = redirect(request, "/login", flash="You are signed out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/invite/{token}")
def invite_page(request: Request, token: str, db: DbDep, principal: MaybeUser) -> Response:
    # The reader who accepted this link opens it again to go on reading (the mail is where
    # they find the study): their signed-in browser continues instead of a "used" error.
    study_id = service.study_accepted_by(db, token, principal)
    if study_id is not None:
        return redirect(request, f"/read/{study_id}")
    # GET only shows the invitation: mail scanners and link previews fetch URLs, and a GET
    # that consumed the single-use token would burn it before the reader ever clicked.
    try:
        _, study = service.invited_study(db, token)
    except service.AuthError as exc:
        return render(
            request, "errors/error.html", {"message": exc.message}, status_code=exc.status_code
        )
    return render(request, "auth/invite.html", {"study": study, "token": token})


@router.post("/invite/{token}")
def accept_invite(request: Request, token: str, db: DbDep) -> Response:
    try:
        reader, invite = service.accept_invite(db, token)
    except service.AuthError as exc:
        db.rollback()
        return render(
            request, "errors/error.html", {"message": exc.message}, status_code=exc.status_code
        )
    hours = get_settings().session_hours
    session_token, _ = service.start_session(db, reader, hours=hours, study_id=invite.study_id)
    db.commit()
    rotate_csrf(request)
    response = redirect(request, f"/read/{invite.study_id}")
    _set_session_cookie(request, response, session_token, hours)
    return response
