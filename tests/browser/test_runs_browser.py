"""A researcher finds runs in a long job list (type, status, name search, paging) and compares
two trained GAN runs: one chart per metric with a series per run, grids side by side."""

from __future__ import annotations

import re

import pytest
from conftest import screenshot
from dataset_fixtures import write_folder
from playwright.sync_api import Page, expect
from support import make_user

from app.datasets.options import parse_import_options
from app.datasets.service import start_import
from app.db import session_scope
from app.gans.options import gan_config
from app.gans.service import start_training
from app.jobs import service
from app.jobs.specs import JobSpec
from app.models import Dataset, JobStatus
from workers.runner import execute

pytestmark = [pytest.mark.browser, pytest.mark.worker]

TINY = {"kimg": "0.064", "tick_kimg": "0.032", "snapshot_ticks": "1", "batch_size": "16"}


def _train(dataset_id: int, owner: int, name: str, arch: str) -> int:
    with session_scope() as db:
        dataset = db.get(Dataset, dataset_id)
        assert dataset is not None
        config = gan_config({**TINY, "arch": arch}, preset="tiny-cpu", resolutions=(32,))
        job = start_training(
            db, owner_id=owner, dataset=dataset, config=config, queue="cpu", name=name
        )
        job_id = job.id
    execute(job_id)
    return job_id


def test_filter_page_and_compare_runs(page: Page, sqlite_env, server_factory) -> None:  # type: ignore[no-untyped-def]
    owner = make_user("rosa", "rosa-password-1", "researcher")
    source = write_folder(sqlite_env.home / "imports" / "cxr").root
    with session_scope() as db:
        dataset, job = start_import(
            db,
            owner_id=owner,
            name="CXR",
            source=source,
            options=parse_import_options("folder", resolutions="32"),
        )
        db.commit()
        dataset_id, import_id = dataset.id, job.id
    execute(import_id)
    first = _train(dataset_id, owner, "Wide DCGAN", "dcgan")
    second = _train(dataset_id, owner, "Spectral run", "sngan")
    with session_scope() as db:
        stats = JobSpec("image_stats", "cpu", {"collection": "paediatric-cxr"})
        for i in range(60):
            job = service.create_job(db, stats, owner_id=owner)
            if i % 3 == 0:
                job.status = JobStatus.failed

    server = server_factory(sqlite_env)
    page.goto(f"{server.url}/login")
    page.get_by_label("Username").fill("rosa")
    page.get_by_label("Password").fill("rosa-password-1")
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{server.url}/jobs")
    rows = page.locator("tr[data-job-row]")
    expect(rows).to_have_count(50)
    expect(page.locator(".pager")).to_contain_text("Page 1 of 2 (63 jobs)")
    page.locator(".pager").get_by_role("link", name=re.compile("Older")).click()
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(rows).to_have_count(13)

    filters = page.locator("#job-filters")
    filters.get_by_label("Type").select_option("image_stats")
    filters.get_by_label("Status").select_option("failed")
    filters.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(20)
    expect(page.locator("tr[data-job-row] .status-failed")).to_have_count(20)

    filters = page.locator("#job-filters")
    filters.get_by_label("Type").select_option("train_gan")
    filters.get_by_label("Status").select_option("")
    filters.get_by_label("Name contains").fill("spectral")
    filters.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".job-name")).to_have_text("Spectral run")
    expect(rows.first.locator(".duration")).not_to_have_text("—")
    screenshot(page, "runs-job-list-filtered")

    page.goto(f"{server.url}/gans/compare")
    page.get_by_label(re.compile(f"#{first} ")).check()
    page.get_by_label(re.compile(f"#{second} ")).check()
    page.get_by_role("button", name="Compare").click()
    overlay = page.locator("#overlay")
    expect(overlay.locator("[data-chart]").first).to_be_visible()
    # One chart per metric, both runs in each: the legend names them.
    legend = overlay.locator("[data-chart]").first
    expect(legend).to_contain_text(f"#{first} Wide DCGAN")
    expect(legend).to_contain_text(f"#{second} Spectral run")
    spec = legend.get_attribute("data-chart") or ""  # the chart's JSON (static/js/charts.js)
    assert f"#{first} Wide DCGAN" in spec and f"#{second} Spectral run" in spec
    grids = page.locator("#grids img")
    expect(grids).to_have_count(2)
    expect(page.locator("#grids figcaption").first).to_contain_text("Snapshot")
    expect(page.locator("#benchmarks tr[data-run]")).to_have_count(2)
    screenshot(page, "runs-compare")
