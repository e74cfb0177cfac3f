"""What one answer costs the database, on SQLite and PostgreSQL: the SQL statements of an
answer POST and of the fetch of the image it moves on to, counted with SQLAlchemy's
``before_cursor_execute`` event around real requests to the app.

The bounds are the statements each request cannot do without, listed below; a change that adds
a query to the answer path (a lookup the per-process sequence cache already answers, a second
read of the reader or the study) fails here, as does one whose cost grows with the reader's
position in the study."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from support import ROOT, Env

from app.db import get_engine, session_scope
from app.main import create_app
from app.models import Answer
from app.reading.sequence_cache import CACHE

sys.path.insert(0, str(ROOT / "bench"))
from load_study import build_study

ENTRY_RE = re.compile(r'data-entry="([^"]+)"')
POSITION_RE = re.compile(r'data-position="(\d+)"')
CSRF_RE = re.compile(r'"X-CSRF-Token": "([^"]+)"')

# An answer POST: the signed-in session, the reader with their study, this entry's stored
# answer with the reader's answer count, the first unanswered entry (read in the transaction
# that writes, for double submits in other workers), the INSERT, and marking the next image
# as shown. The entry behind the opaque id, the next image's id and the end of the sequence
# come from the sequence cache.
ANSWER_STATEMENTS = (
    "session",
    "reader and study",
    "stored answer and count",
    "current entry",
    "insert",
    "mark next shown",
)
# The image that answer moves on to: the session and the reader; the image key is cached.
IMAGE_STATEMENTS = ("session", "reader and study")
ANSWERS = 5


@contextmanager
def listening(*hooks: tuple[Any, str, Callable[..., None]]) -> Iterator[None]:
    """SQLAlchemy event listeners (target, event name, function) for the block's length."""
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        yield
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)


@contextmanager
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_rest) -> None:  # type: ignore[no-untyped-def]
        seen.append(" ".join(statement.split()))

    with listening((get_engine(), "before_cursor_execute", record)):
        yield seen


def _shown(html: str) -> tuple[str, int]:
    entry, position = ENTRY_RE.search(html), POSITION_RE.search(html)
    assert entry and position, html[:300]
    return entry.group(1), int(position.group(1))


def test_answer_and_next_image_cost_a_fixed_few_statements(env: Env) -> None:
    CACHE.clear()  # as a freshly started worker: the first visit reads the sequence
    study = build_study(2, ANSWERS)
    base = f"/read/{study.study_id}"
    client = TestClient(
        create_app(), cookies={"sb_session": study.cookies[0], "sb_csrf": "stmt-nonce-0"}
    )
    page = client.get(base)
    assert page.status_code == 200
    token = CSRF_RE.search(page.text)
    assert token is not None
    headers = {"HX-Request": "true", "X-CSRF-Token": token.group(1)}
    entry, position = _shown(page.text)

    answer_counts, image_counts, listings = [], [], []
    for _ in range(ANSWERS - 1):
        data = {"entry": entry, "answer": "real", "duration_ms": "900"}
        with statements() as seen:
            response = client.post(f"{base}/answer", data=data, headers=headers)
        assert response.status_code == 200, response.text
        answer_counts.append(len(seen))
        listings.append(seen)
        following, next_position = _shown(response.text)
        assert next_position == position + 1  # and a partial, not the whole page
        assert response.text.lstrip().startswith('<section id="reading-panel"')
        with statements() as seen:
            image = client.get(f"{base}/image/{following}")
        assert image.status_code == 200
        image_counts.append(len(seen))
        listings.append(seen)
        entry, position = following, next_position

    assert max(answer_counts) <= len(ANSWER_STATEMENTS), listings
    assert max(image_counts) <= len(IMAGE_STATEMENTS), listings
    # The same at every position: nothing is read per answer given so far.
    assert len(set(answer_counts)) == 1 and len(set(image_counts)) == 1, listings
    assert sum(s.upper().startswith("INSERT INTO ANSWERS") for s in listings[0]) == 1


@contextmanager
def checkouts_and_commits() -> Iterator[list[str]]:
    """Every pool checkout and every COMMIT, in order, through the engine's events."""
    seen: list[str] = []
    engine = get_engine()
    with listening(
        (engine.pool, "checkout", lambda *_: seen.append("checkout")),
        (engine, "commit", lambda *_: seen.append("commit")),
    ):
        yield seen


def test_a_reading_request_is_one_connection_and_one_transaction(env: Env) -> None:
    """Who is asking is looked up in the request's own unit of work: an answer takes one
    pooled connection and commits once (the caller, the reads and the writes together), and
    an image takes one connection and commits nothing. On PostgreSQL each extra checkout is a
    pre-ping round trip and each extra transaction two more; a session check with a
    transaction of its own before the endpoint's made an answer two of each."""
    study = build_study(1, 3)
    base = f"/read/{study.study_id}"
    client = TestClient(
        create_app(), cookies={"sb_session": study.cookies[0], "sb_csrf": "unit-nonce-0"}
    )
    with checkouts_and_commits() as seen:
        page = client.get(base)
    assert page.status_code == 200 and seen == ["checkout", "commit"], seen
    token = CSRF_RE.search(page.text)
    assert token is not None
    headers = {"HX-Request": "true", "X-CSRF-Token": token.group(1)}
    entry, _ = _shown(page.text)
    with checkouts_and_commits() as seen:
        response = client.post(
            f"{base}/answer", data={"entry": entry, "answer": "real"}, headers=headers
        )
    assert response.status_code == 200 and seen == ["checkout", "commit"], seen
    with checkouts_and_commits() as seen:
        image = client.get(f"{base}/image/{_shown(response.text)[0]}")
    assert image.status_code == 200 and seen == ["checkout"], seen
    # Signed out, the same answer goes to the login page and stores nothing.
    anonymous = TestClient(create_app())
    login = CSRF_RE.search(anonymous.get("/login").text)
    assert login is not None
    refused = anonymous.post(
        f"{base}/answer",
        data={"entry": entry, "answer": "fake"},
        headers={"HX-Request": "true", "X-CSRF-Token": login.group(1)},
    )
    assert refused.headers.get("hx-redirect") == f"/login?next={base}/answer"
    with session_scope() as db:
        assert db.scalars(select(Answer.answer)).all() == ["real"]


def test_cached_sequences_stay_per_reader(env: Env) -> None:
    """The cache answers who may see what only for the reader it was read for: another
    reader's opaque ids stay unknown to them, for images and answers alike, and a worker
    that lost its copy (a restart) reads it again and carries on."""
    study = build_study(2, 3)
    base = f"/read/{study.study_id}"
    clients, shown, headers = [], [], []
    for index, cookie in enumerate(study.cookies):
        client = TestClient(
            create_app(), cookies={"sb_session": cookie, "sb_csrf": f"stmt-nonce-{index}"}
        )
        page = client.get(base)
        token = CSRF_RE.search(page.text)
        assert page.status_code == 200 and token is not None
        clients.append(client)
        shown.append(_shown(page.text)[0])
        headers.append({"HX-Request": "true", "X-CSRF-Token": token.group(1)})

    theirs = shown[1]
    assert clients[0].get(f"{base}/image/{theirs}").status_code == 404
    refused = clients[0].post(
        f"{base}/answer", data={"entry": theirs, "answer": "real"}, headers=headers[0]
    )
    assert refused.status_code == 404

    CACHE.clear()
    response = clients[0].post(
        f"{base}/answer", data={"entry": shown[0], "answer": "fake"}, headers=headers[0]
    )
    assert response.status_code == 200 and _shown(response.text)[1] == 2
    # A double submit after the restart is still the same answer, not a second one.
    again = clients[0].post(
        f"{base}/answer", data={"entry": shown[0], "answer": "fake"}, headers=headers[0]
    )
    assert again.status_code == 200 and _shown(again.text) == _shown(response.text)


TINY_COMPARE = ["--readers", "2", "--answers", "2", "--think-s", "0.05", "--workers", "1"]


def test_compare_bench_runs_at_a_tiny_size() -> None:
    """bench/reading_load.py --compare, as CI runs every bench: both phases against the bare
    baseline, images fetched, and the database checked against the clients' log."""
    done = subprocess.run(
        [sys.executable, "bench/reading_load.py", "--compare", *TINY_COMPARE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("ratio of answers/s (synthbench / bare)") == 2, done.stdout
    assert "0 lost, 0 duplicated, 0 misattributed" in done.stdout


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    yield
    CACHE.clear()
