"""CSRF (signed double-submit) and security headers for every response."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class SecurityMiddleware:
    """Plain ASGI rather than BaseHTTPMiddleware: the latter wraps every response in an extra
    stream and task, which cost a large share of request time under load (bench/reading_load)."""

    def __init__(self, app: ASGIApp, secret: str, secure_cookies: bool) -> None:
        self.app = app
        self.secret = secret
        self.secure_cookies = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        nonce = request.cookies.get(CSRF_COOKIE)
        fresh = not nonce or len(nonce) < 20
        if fresh:
            nonce = secrets.token_urlsafe(24)
        state = request.state
        state.csrf_nonce = nonce
        state.csrf_token = csrf_token_for(self.secret, nonce)
        path = scope["path"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if fresh or getattr(state, "rotate_csrf", False):
                    cookie = Response()
                    cookie.set_cookie(
                        CSRF_COOKIE,
                        state.csrf_nonce,
                        httponly=True,
                        samesite="lax",
                        secure=self.secure_cookies,
                        path="/",
                    )
                    headers.append("set-cookie", cookie.headers["set-cookie"])
                for name, value in _STATIC_HEADERS:
                    if name not in headers:
                        headers[name] = value
                if path != "/healthz" and "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


_STATIC_HEADERS = (
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
)


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
