"""The audit's in-process client works whether or not an event loop already runs here."""

from __future__ import annotations

import asyncio

from starlette.types import Receive, Scope, Send

from app.reading.asgi_client import InProcessClient


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"set-cookie", b"a=1")]})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def test_plain_call() -> None:
    client = InProcessClient(hello)
    reply = client.get("/x")
    assert (reply.status_code, reply.text, client.cookies) == (200, "/x", {"a": "1"})


def test_call_from_inside_a_running_event_loop() -> None:
    # As under Playwright's sync API or in a notebook: asyncio.run alone would refuse to nest.
    async def inside() -> str:
        return InProcessClient(hello).get("/inside").text

    assert asyncio.run(inside()) == "/inside"
