"""A researcher opens a GAN's benchmark page, runs the benchmark with one click, watches the
utility, fidelity and privacy results appear, explains both classifiers side by side and
opens the nearest-neighbour gallery."""

from __future__ import annotations

import re
import time

import pytest
from conftest import screenshot
from evaluation_fixtures import dataset_with_gan_samples
from playwright.sync_api import Page, expect
from support import make_user

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_run_the_benchmark_and_read_it(page: Page, sqlite_env, server_factory) -> None:  # type: ignore[no-untyped-def]
    owner = make_user("iris", "iris-password-1", "researcher")
    _, gan_id, _ = dataset_with_gan_samples(sqlite_env, owner)
    server = server_factory(sqlite_env, embedded_worker=True)
    page.goto(f"{server.url}/login")
    page.get_by_label("Username").fill("iris")
    page.get_by_label("Password").fill("iris-password-1")
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{server.url}/jobs/{gan_id}")
    page.get_by_role("link", name="Benchmark this GAN").click()
    expect(page.get_by_role("heading", name=re.compile("Benchmark: GAN job"))).to_be_visible()
    expect(page.locator("#sets")).to_contain_text("release gate: not checked")

    page.get_by_label("Release gate").fill("0.05")
    page.locator("#sets").get_by_label("Name (optional").fill("Browser run")
    page.get_by_role("button", name="Run the benchmark").click()
    expect(page.locator(".flash")).to_contain_text("queued")
    # htmx refreshes the results while jobs run; all five finish on the embedded worker.
    mixed = page.locator("#utility table.utility tbody tr.train-mixed")
    expect(mixed).to_be_visible(timeout=300_000)
    expect(page.locator("#fidelity tr.floor").first).to_be_visible(timeout=300_000)
    expect(page.locator("#privacy")).to_contain_text("release gate:", timeout=300_000)
    # static/js/charts.js draws the ROC curves over their SVG fallback.
    expect(page.locator("#utility [data-chart-ready] canvas")).to_be_visible()

    page.reload()  # the attribution form appears once two classifiers have finished
    form = page.locator("form[action$='/benchmark/attribution']")
    form.get_by_label("Images").fill("2")
    form.get_by_role("button", name="Explain").click()
    overlays = page.locator("#attribution table.attribution img")
    expect(overlays.first).to_be_visible(timeout=300_000)
    # two images x (test image + 2 methods x 2 models)
    expect(overlays).to_have_count(10)
    screenshot(page, "benchmark-page")

    page.get_by_role("link", name="Open the nearest-neighbour gallery").first.click()
    expect(page.locator("h1")).to_contain_text("Nearest real training images")
    rows = page.locator("#gallery-pixel .nn-row")
    expect(rows.first).to_be_visible()
    expect(rows.first.locator("img")).to_have_count(6)  # the synthetic image and k = 5 neighbours
    # Polled from Python: wait_for_function evaluates its predicate as a string, which the
    # page's CSP (no 'unsafe-eval') rightly refuses in some Chromium builds.
    images = page.locator("img")
    deadline = time.monotonic() + 30
    while not images.evaluate_all("imgs => imgs.every(i => i.complete && i.naturalWidth > 0)"):
        assert time.monotonic() < deadline, "gallery images did not load"
        page.wait_for_timeout(100)
    screenshot(page, "neighbour-gallery")
