"""CSRF (signed double-submit) and security headers for every response."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from app.auth.tokens import csrf_token_for, csrf_token_valid

CSRF_COOKIE = "sb_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

# htmx needs no inline script or style when its indicator styles are turned off (see base.html),
# so the policy can forbid inline code outright.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; "
    "object-src 'none'"
)


class SecurityMiddleware(BaseHTTPMiddleware):
    def __init__(self, app, secret: str, secure_cookies: bool) -> None:  # type: ignore[no-untyped-def]
        super().__init__(app)
        self.secret = secret
        self.secure_cookies = secure_cookies

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        nonce = request.cookies.get(CSRF_COOKIE)
        fresh = not nonce or len(nonce) < 20
        if fresh:
            nonce = secrets.token_urlsafe(24)
        request.state.csrf_nonce = nonce
        request.state.csrf_token = csrf_token_for(self.secret, nonce)
        response = await call_next(request)
        if fresh or getattr(request.state, "rotate_csrf", False):
            response.set_cookie(
                CSRF_COOKIE,
                request.state.csrf_nonce,
                httponly=True,
                samesite="lax",
                secure=self.secure_cookies,
                path="/",
            )
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if request.url.path != "/healthz" and "cache-control" not in headers:
            headers["Cache-Control"] = "no-store"
        return response


def rotate_csrf(request: Request) -> None:
    """New nonce at login and logout, so a token seen before authentication is worthless after."""
    request.state.csrf_nonce = secrets.token_urlsafe(24)
    request.state.rotate_csrf = True


async def csrf_protect(request: Request) -> None:
    """App-wide dependency: every state-changing request carries a valid token."""
    if request.method in SAFE_METHODS:
        return
    submitted = request.headers.get(CSRF_HEADER)
    if not submitted:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            submitted = value if isinstance(value, str) else None
    nonce = request.cookies.get(CSRF_COOKIE)
    if not csrf_token_valid(request.app.state.secret_key, nonce, submitted):
        raise HTTPException(
            403,
            "The form's security token is missing or out of date. Reload the page and try again.",
        )
