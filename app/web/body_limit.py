"""Refuse oversized url-encoded form bodies before anything reads them.

Starlette's form parser keeps every url-encoded field in memory (up to 1000 fields of 1 MB), and
the app-wide CSRF check parses the form of every POST, signed in or not: one 150 MB POST to
/login held 150 MB of server memory (tests/integration/test_upload_limits.py). The app's own
forms are a few kilobytes; files come as multipart, which spools to disk and is limited per
route (app/imagesets/routes.py).
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_FORM_BYTES = 1024 * 1024
_URLENCODED = b"application/x-www-form-urlencoded"


class FormBodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_FORM_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = _problem(scope, self.max_bytes) if scope["type"] == "http" else None
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, message = problem
        await PlainTextResponse(message, status_code=status)(scope, receive, send)


def _problem(scope: Scope, max_bytes: int) -> tuple[int, str] | None:
    headers = dict(scope["headers"])
    if not headers.get(b"content-type", b"").lower().startswith(_URLENCODED):
        return None
    raw = headers.get(b"content-length")
    if raw is None:
        # Chunked: the size is known only once read. Browsers always send a length for forms.
        chunked = b"transfer-encoding" in headers
        return (411, "Forms need a Content-Length header.") if chunked else None
    if not raw.isdigit():
        return 400, "The Content-Length header is not a number."
    if int(raw) > max_bytes:
        return 413, f"The form is {int(raw):,} bytes, over the {max_bytes:,} byte limit."
    return None
