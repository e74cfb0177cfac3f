"""A researcher signs in, launches the demo job from the form and watches it succeed live."""

from __future__ import annotations

import re

import pytest
from conftest import screenshot
from playwright.sync_api import Page, expect
from support import make_user

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_researcher_launches_a_job_and_sees_it_succeed(
    page: Page, sqlite_env, server_factory
) -> None:  # type: ignore[no-untyped-def]
    make_user("rosa", "rosa-password-1", "researcher")
    # `serve` with its embedded worker: the same process tree `make demo` starts.
    server = server_factory(sqlite_env, embedded_worker=True)
    page.goto(f"{server.url}/jobs")
    expect(page).to_have_url(re.compile(r"/login\?next=/jobs$"))
    page.get_by_label("Username").fill("rosa")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    page.get_by_label("Password").fill("rosa-password-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/jobs$"))

    page.locator('select[name="collection"]').select_option("paediatric-cxr")
    page.get_by_role("button", name="Start job").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    expect(page.locator(".flash")).to_contain_text("queued")
    # No reload: htmx polls the status fragment until the job ends.
    expect(page.locator("#status")).to_have_text("succeeded", timeout=90_000)
    expect(page.get_by_role("heading", name="Result: 16 images")).to_be_visible()
    expect(page.locator("svg.histogram rect")).to_have_count(32)
    screenshot(page, "job-page")

    page.get_by_role("link", name="All jobs").click()
    expect(page.locator("[data-job-status]").first).to_have_text("succeeded")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator(".flash")).to_have_text("You are signed out.")
