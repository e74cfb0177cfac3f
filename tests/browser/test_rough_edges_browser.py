"""Issue 18's fixed pages in Debian chromium: the GAN snapshot slider after quick moves, paging
through readers' reasons, an invited reader reopening their link, and the reading page's full
screen and grey-scale inversion."""

from __future__ import annotations

import io
import json
import time

import pytest
from PIL import Image as PILImage
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select
from study_fixtures import build_read_study

from app.auth.passwords import hash_password
from app.auth.service import create_invite
from app.db import session_scope
from app.jobs.service import artefact_dir_for
from app.models import Job, JobStatus, Study, User
from app.studies.imports import import_ratings

pytestmark = pytest.mark.browser
SNAPSHOTS = 13


def _poll(what: str, check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """Poll from Python (the CSP refuses wait_for_function's string evaluation)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _png(shade: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("L", (48, 32), shade).save(buffer, format="PNG")
    return buffer.getvalue()


def _finished_gan_run(owner_id: int) -> int:
    """A succeeded training job with the files a run leaves: one grid per snapshot."""
    with session_scope() as db:
        job = Job(
            type="train_gan",
            queue="cpu",
            owner_id=owner_id,
            status=JobStatus.succeeded,
            progress=1.0,
            params={"dataset_id": 1, "dataset_path": "", "dataset_hash": "0" * 64, "config": {}},
        )
        db.add(job)
        db.flush()
        job.artefact_dir = str(artefact_dir_for(job.id))
        # Shaped as workers/gans.py stores it (bench/page_render.py fills the same).
        job.result = {
            "kimg": 52.0,
            "ticks": 26,
            "snapshots": SNAPSHOTS,
            "best_fid": None,
            "best_kimg": None,
            "stopped_early": False,
            "images_per_second": 400.0,
            "class_names": ["normal", "other"],
            "checkpoint": str(artefact_dir_for(job.id) / "checkpoint.pt"),
            "out": str(artefact_dir_for(job.id)),
            "dataset_hash": "0" * 64,
            "device": "cpu",
        }
        job_id = job.id
    folder = artefact_dir_for(job_id)
    (folder / "grids").mkdir(parents=True)
    shots = [{"snapshot": s, "kimg": s * 4.0, "grid": f"grid-{s:04d}.png"} for s in range(1, 14)]
    (folder / "snapshots.jsonl").write_text("".join(json.dumps(s) + "\n" for s in shots))
    for shot in shots:
        (folder / "grids" / shot["grid"]).write_bytes(_png(10 * shot["snapshot"]))
    ticks = [
        {"tick": t, "kimg": t * 2.0, "loss_d": 1.0, "loss_g": 1.5}
        | {"images_per_second": 400.0, "seconds": 5.0}
        for t in range(1, 27)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(t) + "\n" for t in ticks))
    return job_id


def _sign_in(page: Page, url: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-password-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("header .who")).to_be_visible()


def test_rough_edges_in_the_browser(
    browser: Browser, page: Page, sqlite_env, server_factory
) -> None:  # type: ignore[no-untyped-def]
    built = build_read_study()
    with session_scope() as db:
        owner = db.get(User, built.owner_id)
        owner.password_hash = hash_password("alice-password-1")
        rows = ["reader,image,truth,answer,reason"]
        rows += [f"R{1 + i % 3},img{i:03d},fake,fake,reason number {i:03d}" for i in range(120)]
        imported = import_ratings(
            db, owner_id=owner.id, name="Many reasons", csv_text="\n".join(rows) + "\n"
        ).id
        token, _ = create_invite(
            db, study=db.get(Study, built.study_id), created_by=owner, hours=24, label="Dr B"
        )
    gan_job = _finished_gan_run(built.owner_id)
    server = server_factory(sqlite_env)
    _sign_in(page, server.url)

    # The slider: eight quick moves; the grid must end on the snapshot the slider shows.
    page.goto(f"{server.url}/jobs/{gan_job}")
    slider = page.locator("#snapshot-slider")
    expect(slider).to_have_value(str(SNAPSHOTS))
    slider.focus()
    for _ in range(8):
        page.keyboard.press("ArrowLeft")
    expect(slider).to_have_value("5")
    caption = page.locator("#snapshot-grid figcaption")
    expect(caption).to_have_text("Snapshot 5 at 20.0 kimg", timeout=5_000)
    time.sleep(0.5)  # a late, older reply must not overwrite it
    expect(caption).to_have_text("Snapshot 5 at 20.0 kimg")
    expect(page.locator("#snapshot-grid img")).to_have_attribute(
        "src", f"/jobs/{gan_job}/files/grids/grid-0005.png"
    )

    # Reasons: 120 of them, 50 a page, next and previous without leaving the page.
    page.goto(f"{server.url}/studies/{imported}/results")
    reasons = page.locator("#reasons-list td.reason")
    expect(reasons).to_have_count(50)
    first_page = reasons.all_inner_texts()
    page.locator("#reasons-next").click()
    expect(page.locator("#reasons-list [data-page]")).to_have_attribute("data-page", "2")
    expect(reasons).to_have_count(50)
    assert not set(reasons.all_inner_texts()) & set(first_page)
    page.locator("#reasons-next").click()
    expect(page.locator("#reasons-list [data-page]")).to_have_attribute("data-page", "3")
    expect(reasons).to_have_count(20)
    expect(page.locator("#reasons-next")).to_have_count(0)
    page.locator("#reasons-prev").click()
    expect(page.locator("#reasons-list [data-page]")).to_have_attribute("data-page", "2")
    assert page.url.endswith(f"/studies/{imported}/results")  # htmx: the page stayed

    # An invited reader accepts, and later opens the same link again: they go on reading.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    reader = context.new_page()
    errors: list[str] = []
    reader.on("pageerror", lambda exc: errors.append(str(exc)))
    reader.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    link = f"{server.url}/invite/{token}"
    reader.goto(link)
    reader.get_by_role("button", name="Start reading").click()
    panel = reader.locator("#reading-panel")
    expect(panel).to_have_attribute("data-bound", "true")
    reader.goto(link)
    assert reader.url == f"{server.url}/read/{built.study_id}"
    expect(panel).to_have_attribute("data-state", "reading")
    expect(panel).to_have_attribute("data-bound", "true")

    # Grey-scale inversion: I toggles a filter on the shown image; the served bytes stay.
    image = reader.locator("#reading-image")
    src = image.get_attribute("src")
    assert image.evaluate("img => getComputedStyle(img).filter") == "none"
    reader.keyboard.press("i")
    expect(reader.locator("#invert-toggle")).to_have_attribute("aria-pressed", "true")
    assert image.evaluate("img => getComputedStyle(img).filter") == "invert(1)"
    assert image.get_attribute("src") == src
    # It is the reader's setting: the next image is shown inverted too.
    position = panel.get_attribute("data-position")
    reader.keyboard.press("r")
    reader.keyboard.press("3")
    reader.locator('#second-question [data-second="no"]').click()
    reader.keyboard.press("Enter")
    expect(panel).not_to_have_attribute("data-position", position, timeout=10_000)
    expect(panel).to_have_attribute("data-bound", "true")
    expect(reader.locator("#invert-toggle")).to_have_attribute("aria-pressed", "true")
    assert image.evaluate("img => getComputedStyle(img).filter") == "invert(1)"
    reader.get_by_role("button", name="Invert grey").click()
    assert image.evaluate("img => getComputedStyle(img).filter") == "none"

    # Full screen: G puts the reading page (not just one image) in full screen; the button
    # and G leave it again.
    def fullscreen() -> str | None:
        return reader.evaluate(
            "() => document.fullscreenElement && document.fullscreenElement.tagName"
        )

    reader.keyboard.press("g")
    assert _poll("full screen", lambda: fullscreen() == "MAIN")
    expect(reader.locator("#fullscreen-toggle")).to_have_attribute("aria-pressed", "true")
    # Answering goes on inside full screen: the panel is replaced, full screen stays.
    position = panel.get_attribute("data-position")
    reader.keyboard.press("f")
    reader.keyboard.press("4")
    expect(reader.locator("#reason")).to_be_focused()
    reader.keyboard.type("too smooth")
    reader.locator('#second-question [data-second="yes"]').click()
    reader.keyboard.press("Enter")
    expect(panel).not_to_have_attribute("data-position", position, timeout=10_000)
    assert fullscreen() == "MAIN"
    reader.get_by_role("button", name="Full screen").click()
    assert _poll("leaving full screen", lambda: fullscreen() is None)
    expect(reader.locator("#fullscreen-toggle")).to_have_attribute("aria-pressed", "false")
    help_text = reader.locator("#key-help").inner_text()
    assert "I invert grey scale" in help_text and "G full screen" in help_text
    context.close()
    assert errors == []
    with session_scope() as db:
        invited = db.scalars(select(User).where(User.display_name == "Dr B")).one()
        assert invited.username.startswith("reader-")
