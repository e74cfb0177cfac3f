"""The baseline for bench/reading_load.py: a bare ASGI app under the same uvicorn, answering
the same request shapes with a fragment of similar size and no templates or auth.

With ``BARE_SQLITE_PATH`` set, each POST also inserts one row into that SQLite file (WAL, one
connection per worker process, committed before the reply): "bare uvicorn + one SQLite
insert", the floor under any answer that must be durable before the reader moves on. With
``BARE_IMAGE_BYTES`` set, a GET under ``/image/`` answers that many bytes, as the reading
server's image of the same study would (bench/startup.py sets neither: it only asks /healthz).
"""

from __future__ import annotations

import itertools
import os
import sqlite3

_counter = itertools.count()
_FRAGMENT = (
    '<section id="reading-panel" data-entry="{entry}">'
    + '<img src="/img/x" alt="Image 1 of 40">' * 8
    + "</section>"
).encode()
_IMAGE = b"\0" * int(os.environ.get("BARE_IMAGE_BYTES", "0"))
_db: sqlite3.Connection | None = None


def create_table(path: str) -> None:
    """Run once by the bench before the workers start, so they never race to create it."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS answers (id INTEGER PRIMARY KEY, entry TEXT)")


def _insert(entry: str) -> None:
    global _db
    path = os.environ.get("BARE_SQLITE_PATH")
    if not path:
        return
    if _db is None:
        _db = sqlite3.connect(path, timeout=15, isolation_level=None)
        _db.execute("PRAGMA synchronous=NORMAL")  # as the app's SQLite pragmas
    _db.execute("INSERT INTO answers (entry) VALUES (?)", (entry,))


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain the body, as the real server must
        message = await receive()
        more = message.get("more_body", False)
    entry = str(next(_counter))
    if scope["method"] == "POST":
        # On the event loop, not a thread: the cheapest way one insert can be made.
        _insert(entry)
    if _IMAGE and "/image/" in scope["path"]:
        body, kind = _IMAGE, b"image/png"
    else:
        body, kind = _FRAGMENT.replace(b"{entry}", entry.encode()), b"text/html; charset=utf-8"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]})
    await send({"type": "http.response.body", "body": body})
