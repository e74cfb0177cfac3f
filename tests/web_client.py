"""A browser-like HTTP client for tests: keeps cookies, finds the CSRF token in pages."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi.testclient import TestClient

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


class WebClient:
    """Wraps either a TestClient (in-process app) or an httpx.Client (real server)."""

    def __init__(self, client: TestClient | httpx.Client) -> None:
        self.client = client

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(url, **kwargs)

    def post_form(
        self, url: str, data: dict[str, str], *, token_from: str = "/login", **kwargs: Any
    ) -> httpx.Response:
        """POST like a browser: load a page of ours, take its token, submit the form."""
        token = csrf_from(self.client.get(token_from).text)
        return self.client.post(url, data={**data, "csrf_token": token}, **kwargs)

    def login(self, username: str, password: str) -> httpx.Response:
        return self.post_form(
            "/login", {"username": username, "password": password}, follow_redirects=False
        )


@contextmanager
def session_clients(app: Any) -> Iterator[Callable[[int], WebClient]]:
    """`make(user_id)`: a client of `app` already signed in as that user (a session started
    in the database, its cookie signed), for tests that act as many users at once."""
    from app.auth.service import start_session
    from app.auth.tokens import sign
    from app.db import session_scope
    from app.deps import SESSION_COOKIE
    from app.models import User

    clients: list[TestClient] = []

    def make(user_id: int) -> WebClient:
        with session_scope() as db:
            user = db.get(User, user_id)
            assert user is not None
            token, _ = start_session(db, user, hours=1)
        client = TestClient(app, base_url="http://testserver").__enter__()
        clients.append(client)
        client.cookies.set(SESSION_COOKIE, sign(app.state.secret_key, "session", token))
        return WebClient(client)

    try:
        yield make
    finally:
        for client in clients:
            client.__exit__(None, None, None)
