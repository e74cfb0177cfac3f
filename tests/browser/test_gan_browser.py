"""A researcher trains a tiny GAN from the form, watches it finish live, reads the curves and
moves the snapshot slider, then samples an image set from the run."""

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
from workers.runner import execute

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_train_watch_slide_and_sample(page: Page, sqlite_env, server_factory) -> None:  # type: ignore[no-untyped-def]
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
        dataset_id, job_id = dataset.id, job.id
    execute(job_id)
    server = server_factory(sqlite_env, embedded_worker=True)
    page.goto(f"{server.url}/login")
    page.get_by_label("Username").fill("rosa")
    page.get_by_label("Password").fill("rosa-password-1")
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{server.url}/datasets/{dataset_id}")
    page.get_by_role("link", name="Train a GAN on this dataset").click()
    expect(page.get_by_role("heading", name="Train a GAN")).to_be_visible()
    page.get_by_label("Training length (kimg)").fill("0.3")
    page.get_by_label("Tick (kimg)").fill("0.05")
    page.get_by_label("Snapshot every N ticks").fill("1")
    page.get_by_label("Queue").select_option("cpu")
    page.get_by_role("button", name="Start training").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    # htmx polls the job until it ends; curves and the latest grid update in place.
    expect(page.locator("#status")).to_have_text("succeeded", timeout=120_000)
    # static/js/charts.js draws the curves over their SVG fallback.
    expect(page.locator("#training [data-chart-ready] canvas").first).to_be_visible()
    page.reload()  # the slider section is rendered once the run has its snapshots
    slider = page.locator("#snapshot-slider")
    expect(slider).to_be_visible()
    last = int(slider.get_attribute("max") or "0")
    assert last >= 5
    expect(page.locator("#slider-grid figcaption")).to_contain_text(f"Snapshot {last} ")
    slider.fill("1")
    expect(page.locator("#slider-grid figcaption")).to_contain_text("Snapshot 1 ")
    image = page.locator("#slider-grid img")
    expect(image).to_have_attribute("src", re.compile(r"grid-0001\.png$"))
    screenshot(page, "gan-job-page")

    sample = page.locator("#sample")
    sample.get_by_label("Image set name").fill("Tiny GAN samples")
    sample.get_by_label("Images per class").fill("4")
    sample.get_by_role("button", name="Sample").click()
    expect(page.locator("#status")).to_have_text("succeeded", timeout=60_000)
    page.get_by_role("link", name="Open the synthetic image set").click()
    expect(page.locator("h1")).to_contain_text("Tiny GAN samples")
    expect(page.locator(".image-tile")).to_have_count(8)
