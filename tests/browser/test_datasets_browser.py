"""A researcher imports the demo X-rays from the form, watches the import finish live, reads
the dataset page (counts, charts, images per label, report) and writes a benchmark subset."""

from __future__ import annotations

import re

import pytest
from conftest import screenshot
from playwright.sync_api import Page, expect
from support import make_user

from app.demo.datasets import write_folder_dataset
from ml.data.collections import available_collections

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_import_a_dataset_and_write_a_subset(page: Page, sqlite_env, server_factory) -> None:  # type: ignore[no-untyped-def]
    make_user("rosa", "rosa-password-1", "researcher")
    write_folder_dataset(
        available_collections()["paediatric-cxr"], sqlite_env.home / "imports" / "cxr"
    )
    (sqlite_env.home / "imports" / "cxr" / "normal" / "broken.png").write_bytes(b"not a png at all")
    server = server_factory(sqlite_env, embedded_worker=True)
    page.goto(f"{server.url}/login")
    page.get_by_label("Username").fill("rosa")
    page.get_by_label("Password").fill("rosa-password-1")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Datasets", exact=True).click()
    expect(page).to_have_url(re.compile(r"/datasets$"))

    page.get_by_label("Name", exact=True).fill("Kermany val")
    page.get_by_label("Folder or file on the server").fill("../../etc")
    page.get_by_label("Format").select_option("folder")
    page.get_by_role("button", name="Import").click()
    expect(page.locator(".field-error").last).to_contain_text("limited to")
    expect(page.get_by_label("Name", exact=True)).to_have_value("Kermany val")

    page.get_by_label("Folder or file on the server").fill("cxr")
    page.get_by_label("Resolutions (pixels, comma-separated)").fill("32, 64")
    page.get_by_role("button", name="Import").click()
    expect(page).to_have_url(re.compile(r"/datasets/\d+$"))
    # No reload by hand: htmx polls until the import job ends, then the summary appears.
    expect(page.locator("#dataset-status")).to_have_text("ready", timeout=90_000)
    expect(page.locator("#n-images")).to_have_text("16")
    table = page.locator("#split-label-table")
    expect(table).to_contain_text("normal")
    expect(table).to_contain_text("pneumonia")
    expect(page.locator("svg.bar-chart .bar")).to_have_count(2)
    expect(page.locator("svg.heatmap")).to_be_visible()
    images = page.locator(".dataset-grid img")
    expect(images).to_have_count(16)
    for i in range(images.count()):
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth") == 64
    report = page.locator("#report")
    expect(report).to_contain_text("broken.png")
    expect(page.locator(".warning")).to_contain_text("memorises")
    screenshot(page, "dataset-page")

    subsets = page.locator("#subsets")
    subsets.get_by_label("Name").fill("2 per class")
    subsets.get_by_label("Axis").select_option("samples_per_class")
    subsets.get_by_label("How many").fill("2")
    subsets.get_by_role("button", name="Create subset").click()
    expect(page.locator("h1")).to_contain_text("2 per class")
    expect(page.locator("#dataset-status")).to_have_text("ready", timeout=60_000)
    expect(page.locator("h1")).to_contain_text("subset of Kermany val")
