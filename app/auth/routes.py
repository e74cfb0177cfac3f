"""Login, logout and invitation links."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from app.auth import ratelimit, service
from app.auth.tokens import sign, unsign
from app.config import get_settings
from app.deps import SESSION_COOKIE, DbDep, MaybeUser
from app.models import Study
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
def login(
    request: Request,
    db: DbDep,
    username: Annotated[str, Form(max_length=120)],
    password: Annotated[str, Form(max_length=1000)],
    next: Annotated[str, Form()] = "/",
) -> Response:
    settings = get_settings()
    limits = ratelimit.Limits(
        settings.login_max_failures,
        settings.login_max_failures_per_address,
        settings.login_window_s,
    )
    address = request.client.host if request.client else "unknown"
    now = utcnow()
    # Checked before the password: while blocked, even the right password must not tell a
    # guesser that it was right.
    wait = ratelimit.retry_after(db, username, address, now, limits)
    if wait:
        minutes = math.ceil(wait / 60)
        response = render(
            request,
            "auth/login.html",
            {
                "error": "Too many failed sign-ins for this account or from this address. "
                f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                "username": username,
                "next": _safe_next(next),
            },
            status_code=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    try:
        user = service.authenticate(db, username, password)
    except service.AuthError as exc:
        ratelimit.record_failure(db, username, address, now, limits.window_s)
        db.commit()
        return render(
            request,
            "auth/login.html",
            {"error": exc.message, "username": username, "next": _safe_next(next)},
            status_code=exc.status_code,
        )
    ratelimit.clear(db, username)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        service.end_session(db, unsign(request.app.state.secret_key, "session", old))
    hours = settings.session_hours
    token, _ = service.start_session(db, user, hours=hours)
    db.commit()
    rotate_csrf(request)
    response = redirect(request, _safe_next(next))
    _set_session_cookie(request, response, token, hours)
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
def invite_page(request: Request, token: str, db: DbDep) -> Response:
    # GET only shows the invitation: mail scanners and link previews fetch URLs, and a GET
    # that consumed the single-use token would burn it before the reader ever clicked.
    try:
        invite = service.find_invite(db, token)
    except service.AuthError as exc:
        return render(
            request, "errors/error.html", {"message": exc.message}, status_code=exc.status_code
        )
    study = db.get(Study, invite.study_id)
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
