"""The baseline for bench/login_burst.py: a bare ASGI app under the same uvicorn that does only
what a sign-in cannot avoid, the same argon2 check of the same hash on a worker thread, at most
one per core at once, with no database, templates, CSRF or sessions."""

from __future__ import annotations

import os
from urllib.parse import parse_qs

from anyio import CapacityLimiter, to_thread

from app.auth.passwords import check_password, default_concurrency

HASH = os.environ.get("BARE_LOGIN_HASH", "")
_limiter: CapacityLimiter | None = None


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    global _limiter
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    status, headers = 200, [(b"content-type", b"text/plain")]
    if scope["method"] == "POST":
        if _limiter is None:
            _limiter = CapacityLimiter(default_concurrency())
        password = parse_qs(body.decode()).get("password", [""])[0]
        verdict = await to_thread.run_sync(check_password, password, HASH, limiter=_limiter)
        status = 303 if verdict.ok else 401
        headers.append((b"location", b"/"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})
