"""The baseline for bench/reading_load.py: a bare ASGI app under the same uvicorn, answering
the same request shapes with a fragment of similar size and no database, templates or auth."""

from __future__ import annotations

import itertools

_counter = itertools.count()
_FRAGMENT = (
    '<section id="reading-panel" data-entry="{entry}">'
    + '<img src="/img/x" alt="Image 1 of 40">' * 8
    + "</section>"
).encode()


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain the body, as the real server must
        message = await receive()
        more = message.get("more_body", False)
    body = _FRAGMENT.replace(b"{entry}", str(next(_counter)).encode())
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/html; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})
