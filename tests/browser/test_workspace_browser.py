"""The research workspace in a real browser: a researcher launches a sweep of tiny jobs from
the form, watches it complete live, opens the dataset's benchmark dashboard (one point per
grid point), moves a GAN's snapshot slider, and turns a sampling job into a reader study
with one click."""

from __future__ import annotations

import re

import pytest
from conftest import screenshot
from evaluation_fixtures import import_cxr
from playwright.sync_api import Page, expect
from sqlalchemy import select
from support import make_user

from app.db import session_scope
from app.models import Job

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def _sweep_jobs(job_type: str) -> list[int]:
    with session_scope() as db:
        query = select(Job.id).where(Job.type == job_type, Job.sweep_id.is_not(None))
        return list(db.scalars(query.order_by(Job.id)))


def test_sweep_dashboard_slider_and_study(page: Page, sqlite_env, server_factory) -> None:  # type: ignore[no-untyped-def]
    owner = make_user("uma", "uma-password-1", "researcher")
    dataset_id = import_cxr(sqlite_env, owner)
    server = server_factory(sqlite_env, embedded_worker=True)
    page.goto(f"{server.url}/login")
    page.get_by_label("Username").fill("uma")
    page.get_by_label("Password").fill("uma-password-1")
    page.get_by_role("button", name="Sign in").click()

    page.get_by_role("link", name="Sweeps").click()
    page.get_by_label("Name").fill("Images per class")
    page.get_by_label("Resolutions (px)").fill("32")
    page.get_by_label("Training images per class").fill("2, 0")
    page.get_by_label("Training length (kimg)").fill("0.064")
    page.get_by_label("Tick (kimg)").fill("0.032")
    page.get_by_label("Snapshot every N ticks").fill("1")
    page.get_by_label("Images per class to sample").fill("4")
    page.get_by_label("Epochs").fill("2")
    page.get_by_label("Queue for GAN, sampling and classifier jobs").select_option("cpu")
    page.get_by_role("button", name="Start the sweep").click()
    expect(page).to_have_url(re.compile(r"/sweeps/\d+$"))
    # htmx refreshes the table until every stage of both points has finished.
    synthetic_aucs = page.locator("[data-auc-synthetic]")
    expect(synthetic_aucs).to_have_count(2)
    for i in range(2):
        expect(synthetic_aucs.nth(i)).to_have_text(re.compile(r"\d\.\d{3}"), timeout=300_000)
    expect(page.locator("#sweep-points")).not_to_have_attribute("hx-get", re.compile("."))
    screenshot(page, "sweep-page")

    page.get_by_role("link", name="benchmark dashboard").click()
    expect(page.get_by_role("heading", name=re.compile("Benchmark dashboard"))).to_be_visible()
    expect(page.locator("#points tbody tr")).to_have_count(2)  # one per grid point
    expect(page.locator("#axes svg.line-chart")).to_have_count(1)  # only images/class varies
    screenshot(page, "benchmark-dashboard")

    gan_id = _sweep_jobs("train_gan")[0]
    page.goto(f"{server.url}/jobs/{gan_id}")
    slider = page.locator("#snapshot-slider")
    expect(slider).to_be_visible()
    slider.fill("1")
    expect(page.locator("#slider-grid figcaption")).to_contain_text("Snapshot 1 ")

    sample_id = _sweep_jobs("sample")[0]
    page.goto(f"{server.url}/jobs/{sample_id}")
    page.get_by_role("button", name="Create a reader study from these samples").click()
    expect(page).to_have_url(re.compile(r"/studies/\d+$"))
    expect(page.locator("h1")).to_contain_text("Reader study:")
    expect(page.locator(".flash")).to_be_visible()
    screenshot(page, "study-from-samples")
    assert dataset_id > 0
