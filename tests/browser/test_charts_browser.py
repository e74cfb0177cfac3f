"""Interactive charts in Debian chromium: on a finished GAN run's page the loss curves show
values under the cursor, zoom on a drag and reset on a double-click, switch to a log scale and
smooth; the ADA p and epsilon axes stay within their ranges; the dataset benchmark
dashboard's AUC axis stays within [0, 1] and its legend shows the DeLong interval."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import screenshot
from PIL import Image as PILImage
from playwright.sync_api import Locator, Page, expect
from support import make_user

from app.db import session_scope
from app.jobs.service import artefact_dir_for
from app.models import Dataset, DatasetStatus, Job, JobStatus

pytestmark = pytest.mark.browser
TICKS = 40
NUMBER = re.compile(r"^-?\d+(\.\d+)?(e-?\d+)?$")


def _poll(what: str, check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """Poll from Python (the CSP refuses wait_for_function's string evaluation)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _finished_gan_run(owner_id: int) -> int:
    """A succeeded DP training job with the files workers/gans.py leaves: ticks with both
    losses, ADA's p and epsilon; snapshots with FID."""
    with session_scope() as db:
        job = Job(
            type="train_gan",
            queue="cpu",
            owner_id=owner_id,
            status=JobStatus.succeeded,
            progress=1.0,
            params={"dataset_id": 1, "dataset_path": "", "config": {"kimg": TICKS * 2.0}},
            result={"stopped_early": False, "best_fid": 41.5, "best_kimg": 80.0, "device": "cpu"},
        )
        db.add(job)
        db.flush()
        job.artefact_dir = str(artefact_dir_for(job.id))
        job_id = job.id
    folder = artefact_dir_for(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    # Noisy, decaying losses: smoothing visibly changes them, and all are positive (log).
    ticks = [
        {
            "tick": t,
            "kimg": t * 2.0,
            "loss_d": round(1.2 * math.exp(-t / 15) + 0.3 + 0.25 * (-1) ** t, 4),
            "loss_g": round(2.0 * math.exp(-t / 20) + 0.5 + 0.2 * (-1) ** (t // 2), 4),
            "augment_p": round(min(0.6, t * 0.02), 4),
            "epsilon": round(0.4 * math.sqrt(t), 4),
            "images_per_second": 400.0,
            "seconds": 5.0,
        }
        for t in range(1, TICKS + 1)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(t) + "\n" for t in ticks))
    shots = [
        {"snapshot": s, "kimg": s * 20.0, "fid": 120.0 / s + 10, "grid": f"grid-{s:04d}.png"}
        for s in range(1, 5)
    ]
    (folder / "snapshots.jsonl").write_text("".join(json.dumps(s) + "\n" for s in shots))
    (folder / "grids").mkdir()
    for shot in shots:
        PILImage.new("L", (48, 32), 40 * shot["snapshot"]).save(folder / "grids" / shot["grid"])
    return job_id


def _predictions(folder: Path, auc_shift: float, seed: int) -> None:
    """Saved test predictions as ml/training/classifier.py writes them (one binary label)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60).astype(float)
    scores = y * auc_shift + rng.normal(0, 1, 60)
    folder.mkdir(parents=True, exist_ok=True)
    keys = np.asarray([f"k{i}" for i in range(60)])
    np.savez(folder / "predictions.npz", y_true=y[:, None], scores=scores[:, None], keys=keys)


def _benchmarked_dataset(owner_id: int) -> int:
    """A dataset and a samples-per-class subset, each with a real- and a synthetic-trained
    classifier: two points on the images-per-class axis."""
    labels = ["normal", "pneumonia"]
    with session_scope() as db:
        root = Dataset(
            name="CXR charts",
            owner_id=owner_id,
            status=DatasetStatus.ready,
            format="folder",
            info={"label_names": labels, "splits": {"train": 80}},
        )
        db.add(root)
        db.flush()
        cut = Dataset(
            name="CXR charts / 4 per class",
            owner_id=owner_id,
            status=DatasetStatus.ready,
            format="folder",
            parent_id=root.id,
            options={"kind": "samples_per_class", "value": 4},
            info={"label_names": labels, "splits": {"train": 8}},
        )
        db.add(cut)
        db.flush()
        runs = [(root, "real", 0.93, 3.0), (root, "synthetic", 0.81, 1.6)]
        runs += [(cut, "real", 0.74, 1.0), (cut, "synthetic", 0.58, 0.4)]
        for seed, (dataset, source, auc, shift) in enumerate(runs):
            job = Job(
                type="train_classifier",
                queue="cpu",
                owner_id=owner_id,
                status=JobStatus.succeeded,
                progress=1.0,
                params={"dataset_id": dataset.id, "train_on": source, "resolution": 32},
                result={"macro_auc": auc, "train_on": source, "resolution": 32},
            )
            db.add(job)
            db.flush()
            job.artefact_dir = str(artefact_dir_for(job.id))
            _predictions(Path(job.artefact_dir), shift, seed)
        return root.id


def _sign_in(page: Page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("header .who")).to_be_visible()


def _ready(chart: Locator) -> None:
    expect(chart).to_have_attribute("data-chart-ready", "1")
    expect(chart.locator("canvas")).to_have_count(1)
    expect(chart.locator("svg.line-chart")).to_be_hidden()  # the no-script fallback gives way


def _range(chart: Locator, axis: str) -> tuple[float, float]:
    low = chart.get_attribute(f"data-{axis}-min")
    high = chart.get_attribute(f"data-{axis}-max")
    assert low is not None and high is not None
    return float(low), float(high)


def _hover_values(page: Page, chart: Locator, at: float) -> list[str]:
    over = chart.locator(".u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    assert box is not None
    # From outside the plot in, so the cursor moves even where it was already at `at`.
    page.mouse.move(box["x"] + box["width"] * at, box["y"] - 20)
    page.mouse.move(box["x"] + box["width"] * at, box["y"] + box["height"] / 2)
    values = chart.locator(".u-legend .u-series .u-value")

    def numbers() -> list[str] | None:
        texts = values.all_inner_texts()
        return texts if all(NUMBER.match(t.strip()) for t in texts) else None

    return _poll("legend values under the cursor", numbers)


def test_training_curves_hover_zoom_log_and_smoothing(
    page: Page, sqlite_env, server_factory
) -> None:  # type: ignore[no-untyped-def]
    owner = make_user("cleo", "cleo-password-1", "researcher")
    job_id = _finished_gan_run(owner)
    server = server_factory(sqlite_env)
    _sign_in(page, server.url, "cleo", "cleo-password-1")
    page.goto(f"{server.url}/jobs/{job_id}")
    loss = page.locator("#loss-chart")
    for chart in ("#loss-chart", "#fid-chart", "#augment-chart", "#epsilon-chart"):
        _ready(page.locator(chart))

    # Hover: the legend shows the kimg and both losses at the cursor.
    kimg, loss_d, loss_g = _hover_values(page, loss, 0.5)
    assert 2 <= float(kimg) <= TICKS * 2 and float(loss_d) > 0 and float(loss_g) > 0

    # Drag to zoom on x, double-click to reset.
    full = _range(loss, "x")
    assert full[0] <= 2 and full[1] >= TICKS * 2
    loss.locator(".u-over").scroll_into_view_if_needed()
    box = loss.locator(".u-over").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=8)
    page.mouse.up()
    zoomed = _poll("the zoomed x range", lambda: (r := _range(loss, "x")) != full and r)
    assert full[0] < zoomed[0] < zoomed[1] < full[1]
    assert zoomed[1] - zoomed[0] < (full[1] - full[0]) / 2
    screenshot(page, "charts-gan-zoomed")
    loss.locator(".u-over").dblclick()
    _poll("the reset x range", lambda: _range(loss, "x") == full)

    # Log scale: losses are all positive, so a true log axis; its range stays positive.
    linear = _range(loss, "y")
    loss.get_by_label("Log scale").check()
    expect(loss).to_have_attribute("data-log", "log")
    logged = _range(loss, "y")
    assert logged != linear and logged[0] > 0
    loss.get_by_label("Log scale").uncheck()
    expect(loss).to_have_attribute("data-log", "off")

    # Smoothing: the alternating noise averages out, so the hovered values change.
    raw = _hover_values(page, loss, 0.5)
    loss.get_by_label(re.compile("Smoothing")).fill("0.9")
    expect(loss).to_have_attribute("data-smoothing", "0.9")
    smoothed = _hover_values(page, loss, 0.5)
    assert smoothed[0] == raw[0] and smoothed[1:] != raw[1:]

    # Natural ranges: ADA's p in [0, 1], epsilon and FID at least 0.
    p_low, p_high = _range(page.locator("#augment-chart"), "y")
    assert 0 <= p_low < p_high <= 1
    assert _range(page.locator("#epsilon-chart"), "y")[0] >= 0
    assert _range(page.locator("#fid-chart"), "y")[0] >= 0
    screenshot(page, "charts-gan-run")


def test_dashboard_auc_axis_stays_within_0_and_1(page: Page, sqlite_env, server_factory) -> None:  # type: ignore[no-untyped-def]
    owner = make_user("dana", "dana-password-1", "researcher")
    dataset_id = _benchmarked_dataset(owner)
    server = server_factory(sqlite_env)
    _sign_in(page, server.url, "dana", "dana-password-1")
    page.goto(f"{server.url}/datasets/{dataset_id}/benchmark")
    chart = page.locator("#auc-samples_per_class")
    _ready(chart)
    low, high = _range(chart, "y")
    assert 0 <= low < high <= 1
    # Hovering a benchmark point shows its AUC with the DeLong interval in brackets.
    chart.locator(".u-over").scroll_into_view_if_needed()
    box = chart.locator(".u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)  # snaps to 4 images per class
    real = chart.locator(".u-legend .u-series").nth(1).locator(".u-value")
    expect(real).to_have_text(re.compile(r"^0\.74 \[0\.\d+, 0\.\d+\]$"))
    screenshot(page, "charts-benchmark-dashboard")


def test_a_running_jobs_charts_survive_the_live_refresh(
    page: Page, sqlite_env, server_factory
) -> None:  # type: ignore[no-untyped-def]
    owner = make_user("emil", "emil-password-1", "researcher")
    job_id = _finished_gan_run(owner)
    with session_scope() as db:
        job = db.get(Job, job_id)
        job.status, job.progress, job.result = JobStatus.running, 0.5, None
    server = server_factory(sqlite_env)
    _sign_in(page, server.url, "emil", "emil-password-1")
    page.goto(f"{server.url}/jobs/{job_id}")
    loss = page.locator("#loss-chart")
    _ready(loss)
    expect(page.locator("#job-status")).to_have_attribute("hx-trigger", "every 1s")
    loss.locator(".u-over").scroll_into_view_if_needed()
    box = loss.locator(".u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 20, steps=8)
    page.mouse.up()
    zoomed = _poll(
        "the zoomed x range", lambda: loss.get_attribute("data-x-max") != "80" and _range(loss, "x")
    )
    first = loss.element_handle()
    # htmx replaces the whole status block every second: a new chart, the same zoom.
    _poll("a refreshed chart", lambda: not first.evaluate("el => el.isConnected"), timeout=5)
    _ready(page.locator("#loss-chart"))
    assert _range(page.locator("#loss-chart"), "x") == zoomed
    page.goto("about:blank")  # stop polling before the server stops
