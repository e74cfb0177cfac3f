"""Refuse oversized form bodies, url-encoded or multipart, before anything reads them.

Starlette's form parser keeps every url-encoded field in memory (up to 1000 fields of 1 MB), and
spools every multipart body to disk; the app-wide CSRF check parses the form of every POST,
signed in or not. One 150 MB url-encoded POST to /login held 150 MB of server memory, and a
300 MB multipart POST to /login was written to disk in full before its 403
(tests/integration/test_upload_limits.py, test_input_integrity.py).

The app's own forms are a few kilobytes, so every form body gets a small cap; a route that takes
files declares its own with ``@upload_limit(...)``. A Content-Length over the cap is refused with
413 before a byte of the body is read (a url-encoded one before the app runs; a multipart one
once the router has picked the route, since the cap is the route's); a body without one
(chunked) is counted as it streams in and refused as soon as it passes the cap, so nothing
beyond the cap ever reaches the form parser or the disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_FORM_BYTES = 1024 * 1024
# Room for the multipart framing and the small text fields around a route's file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
_URLENCODED = b"application/x-www-form-urlencoded"
_MULTIPART = b"multipart/form-data"
_LIMIT_ATTRIBUTE = "max_upload_bytes"

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def upload_limit(max_file_bytes: int | Callable[[], int]) -> Callable[[Endpoint], Endpoint]:
    """Declare that a route takes a multipart upload of up to ``max_file_bytes`` (or what the
    callable returns when a request arrives, for limits that come from settings).

    Put it below the route decorator, so the route registers the marked function.
    """

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _LIMIT_ATTRIBUTE, max_file_bytes)
        return endpoint

    return mark


def size_text(n: int) -> str:
    return f"{n / (1024 * 1024):,.0f} MB" if n >= 1024 * 1024 else f"{n:,} bytes"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` inside the app, so the app's own error page carries the 413."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


class _Limit:
    def __init__(self, max_bytes: int, what: str, shown: str) -> None:
        self.max_bytes = max_bytes
        self.what = what
        self.shown = shown  # the limit as the refusal names it

    def message(self, size: int | None) -> str:
        if size is None:
            return f"The {self.what} is over the {self.shown} limit."
        return f"The {self.what} is {size_text(size)}, over the {self.shown} limit."


class FormBodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_FORM_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = _content_type(scope) if scope["type"] == "http" else b""
        if not content_type.startswith((_URLENCODED, _MULTIPART)):
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(b"content-length")
        if raw is not None and not raw.isdigit():
            await _refuse(scope, receive, send, 400, "The Content-Length header is not a number.")
            return
        length = None if raw is None else int(raw)
        if content_type.startswith(_URLENCODED):
            # The same cap for every route: refused here, before the app runs at all.
            limit = _form_limit(self.max_bytes)
            if length is not None and length > limit.max_bytes:
                await _refuse(scope, receive, send, 413, limit.message(length))
                return
            await self.app(scope, _limited(receive, length, lambda: limit), send)
            return
        # A multipart cap depends on the route, known once the router has matched it (it sets
        # scope["endpoint"]) and before any handler or dependency reads the body.
        await self.app(scope, _limited(receive, length, lambda: self._multipart(scope)), send)

    def _multipart(self, scope: Scope) -> _Limit:
        declared = getattr(scope.get("endpoint"), _LIMIT_ATTRIBUTE, None)
        if declared is None:
            # Routes that take no file get no more room than a url-encoded form.
            return _form_limit(self.max_bytes)
        max_file_bytes = declared() if callable(declared) else declared
        return _Limit(
            max_file_bytes + MULTIPART_OVERHEAD_BYTES, "upload", size_text(max_file_bytes)
        )


def _limited(receive: Receive, length: int | None, limit_now: Callable[[], _Limit]) -> Receive:
    """``receive`` that raises BodyTooLarge on its first call when the Content-Length is over
    the cap (so no byte is read), and otherwise once the streamed body passes the cap, before
    the chunk that passes it reaches the form parser (which would spool it to disk)."""
    limit: _Limit | None = None
    seen = 0

    async def receive_limited() -> Message:
        nonlocal limit, seen
        if limit is None:
            limit = limit_now()
            if length is not None and length > limit.max_bytes:
                raise BodyTooLarge(limit.message(length))
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit.max_bytes:
                raise BodyTooLarge(limit.message(None))
        return message

    return receive_limited


def _content_type(scope: Scope) -> bytes:
    return dict(scope["headers"]).get(b"content-type", b"").lower()


def _form_limit(max_bytes: int) -> _Limit:
    return _Limit(max_bytes, "form", f"{max_bytes:,} byte")


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    await PlainTextResponse(message, status_code=status)(scope, receive, send)
