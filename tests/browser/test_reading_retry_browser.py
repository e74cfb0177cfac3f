"""The reading page in Debian chromium sends an answer again when its request fails (network
error, then 503 from a busy server), shows "Saving…" meanwhile, keeps the answer from changing
under the retry, and the server stores it exactly once."""

from __future__ import annotations

import sys

import pytest
from playwright.sync_api import Browser, Route, expect
from sqlalchemy import select
from support import ROOT

from app.db import session_scope
from app.models import Answer, ScheduleEntry

sys.path.insert(0, str(ROOT / "bench"))
from load_study import build_study

pytestmark = pytest.mark.browser


def test_failed_submits_are_retried_with_a_saving_state_and_stored_once(
    browser: Browser, sqlite_env, server_factory
) -> None:  # type: ignore[no-untyped-def]
    study = build_study(1, 3)  # no confidence, no reason: R then Enter answers
    server = server_factory(sqlite_env)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": "sb_session", "value": study.cookies[0], "url": server.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The aborted request is logged by the browser and by htmx itself (a console.error naming
    # each of its failure events): expected here. Anything else, a CSP violation included, is
    # a bug.
    expected = ("Failed to load resource", "htmx:sendError", "htmx:afterRequest")
    page.on(
        "console",
        lambda m: (
            errors.append(m.text) if m.type == "error" and not m.text.startswith(expected) else None
        ),
    )

    posts: list[str] = []

    def flaky(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        posts.append(route.request.post_data or "")
        if len(posts) == 1:
            route.abort("connectionreset")  # the connection drops: nothing reached the server
        elif len(posts) == 2:
            # Retry-After 3: the page waits about that long, time enough to look at it.
            route.fulfill(status=503, headers={"Retry-After": "3"}, body="busy")
        else:
            route.continue_()

    page.route(f"{server.url}/read/{study.study_id}/answer", flaky)
    page.goto(f"{server.url}/read/{study.study_id}")
    panel = page.locator("#reading-panel")
    expect(panel).to_have_attribute("data-bound", "true")
    expect(panel).to_have_attribute("data-position", "1")
    page.keyboard.press("r")
    page.keyboard.press("Enter")

    saving = page.locator("#save-state")
    expect(saving).to_contain_text("Saving… the server is busy (error 503); trying again")
    expect(saving).to_be_visible()
    # While it is being sent again the answer cannot change: this F is ignored.
    page.keyboard.press("f")
    expect(page.locator('input[name="answer"][value="real"]')).to_be_checked()

    expect(panel).to_have_attribute("data-position", "2", timeout=20_000)
    expect(page.locator("#save-state")).to_be_hidden()
    expect(page.locator("#answer-error")).to_be_empty()
    context.close()

    assert len(posts) == 3
    assert all("answer=real" in body for body in posts)  # the same answer every time
    with session_scope() as db:
        stored = db.execute(
            select(Answer.answer, ScheduleEntry.position).join(
                ScheduleEntry, ScheduleEntry.id == Answer.schedule_entry_id
            )
        ).all()
    assert [tuple(row) for row in stored] == [("real", 0)]  # the first image (0-based)
    assert errors == []


def test_a_submit_that_keeps_failing_ends_in_a_clear_message_with_the_answer_kept(
    browser: Browser, sqlite_env, server_factory
) -> None:  # type: ignore[no-untyped-def]
    study = build_study(1, 3)
    server = server_factory(sqlite_env)
    context = browser.new_context()
    context.add_cookies([{"name": "sb_session", "value": study.cookies[0], "url": server.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.clock.install()  # the backoff's timers run when we say, not in 25 real seconds
    posts: list[str] = []

    def busy(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        posts.append(route.request.post_data or "")
        route.fulfill(status=503, headers={"Retry-After": "2"}, body="busy")

    page.route(f"{server.url}/read/{study.study_id}/answer", busy)
    page.goto(f"{server.url}/read/{study.study_id}")
    panel = page.locator("#reading-panel")
    expect(panel).to_have_attribute("data-bound", "true")
    page.keyboard.press("u")
    page.keyboard.press("Enter")
    error = page.locator("#answer-error")
    expect(page.locator("#save-state")).to_contain_text("Saving")
    for _ in range(20):  # bounded: the page gives up after six retries
        # Wait for this try's reply: a retry scheduled, or the final message.
        page.wait_for_function(
            "() => document.querySelector('#save-state').textContent.includes('trying again')"
            " || document.querySelector('#answer-error').textContent !== ''"
        )
        if error.text_content():
            break
        page.clock.run_for(20_000)  # past the longest backoff: the next try goes out
    expect(error).to_contain_text("Your answer was not saved")
    expect(error).to_contain_text("press Enter to try again")
    expect(page.locator("#save-state")).to_be_hidden()
    # Still on the same image, the answer still chosen and changeable again.
    expect(panel).to_have_attribute("data-position", "1")
    expect(page.locator('input[name="answer"][value="uncertain"]')).to_be_checked()
    context.close()
    assert len(posts) == 7  # the first send and six retries, then the reader decides
    with session_scope() as db:
        assert db.scalars(select(Answer)).all() == []
    assert errors == []
