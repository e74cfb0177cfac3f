"""A minimal browser for the app in this process: requests straight into the ASGI app.

The blinding audit walks a study as a reader's browser would. In tests a TestClient does that,
but it needs httpx, a test-only dependency; ``synthbench study audit`` runs in production
installations, so it uses this instead: no network, no server, no lifespan (so no background
tasks), cookies kept like a browser keeps them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import unquote, urlencode

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message

HOST = "testserver"


def _run(coroutine: Coroutine[Any, Any, Reply]) -> Reply:
    """asyncio.run, also from a thread whose event loop is already running (a notebook, or
    Playwright's sync API in the same process): asyncio.run refuses to nest, so the request
    then runs on a loop of its own in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass(frozen=True)
class Reply:
    status_code: int
    headers: Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


@dataclass
class InProcessClient:
    app: ASGIApp
    cookies: dict[str, str] = field(default_factory=dict)

    def get(self, url: str, **_: Any) -> Reply:
        return self._request("GET", url, b"", {})

    def post(
        self, url: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        extra = {"content-type": "application/x-www-form-urlencoded", **(headers or {})}
        return self._request("POST", url, urlencode(data or {}).encode(), extra)

    def _request(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        path, _, query = url.partition("?")
        sent = {"host": HOST, "content-length": str(len(body)), **headers}
        if self.cookies:
            sent["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in sent.items()]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": raw_headers,
            "client": ("127.0.0.1", 50000),
            "server": (HOST, 80),
        }
        reply = _run(_call(self.app, scope, body))
        self._keep_cookies(reply.headers)
        return reply

    def _keep_cookies(self, headers: Headers) -> None:
        for line in headers.getlist("set-cookie"):
            for name, morsel in SimpleCookie(line).items():
                if morsel.value and morsel["max-age"] != "0":
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)


async def _call(app: ASGIApp, scope: dict[str, Any], body: bytes) -> Reply:
    done = asyncio.Event()
    status, raw_headers, chunks = 500, [], []
    request_sent = False

    async def receive() -> Message:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # a disconnect only once the response is complete
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, raw_headers
        if message["type"] == "http.response.start":
            status, raw_headers = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
    except Exception:
        # Starlette answers an unhandled error with a 500 and then re-raises it; the 500 is
        # what a browser would see, so it is the reply.
        if not done.is_set():
            raise
    return Reply(status, Headers(raw=raw_headers), b"".join(chunks))
