"""The reader study end to end in Debian chromium: a researcher uploads a real and a synthetic
set and builds a study, invites two readers; each reads every image with the keyboard only,
closes the browser midway and resumes; the researcher sees the statistics and downloads the
CSV, whose rows match what was pressed."""

from __future__ import annotations

import csv
import io
import random
import re
from pathlib import Path

import pytest
from conftest import screenshot
from playwright.sync_api import Browser, Page, expect
from support import make_user

from app.demo.content import real_zip, synthetic_zip
from ml.data.collections import available_collections

pytestmark = pytest.mark.browser
N_IMAGES = 6  # scored; 34% repeats round to 2, so each reader sees 8


def _upload(page: Page, name: str, origin: str, path: Path) -> None:
    page.goto(page.url.split("/", 3)[0] + "//" + page.url.split("/", 3)[2] + "/imagesets")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Origin of the images").select_option(origin)
    page.get_by_label("Zip file").set_input_files(str(path))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".flash")).to_be_visible()


def _read(page: Page, answers: list[dict], stop_after: int | None) -> None:
    """Answer with keys only; record what was pressed per position."""
    rng = random.Random(len(answers) + (stop_after or 0))
    while True:
        panel = page.locator("#reading-panel")
        expect(panel).to_have_attribute("data-state", re.compile("reading|done"))
        if panel.get_attribute("data-state") == "done":
            return
        if stop_after is not None and len(answers) == stop_after:
            return
        position = int(panel.get_attribute("data-position"))
        expect(page.locator("#reading-image")).to_be_visible()
        # Keys pressed before reader.js has bound its handlers are lost, as for a person
        # typing before a page has loaded; wait for the panel's own signal.
        expect(panel).to_have_attribute("data-bound", "true")
        answer = rng.choice(["real", "fake", "uncertain"])
        confidence = rng.randint(1, 5)
        page.keyboard.press({"real": "r", "fake": "f", "uncertain": "u"}[answer])
        page.keyboard.press(str(confidence))
        reason = ""
        if answer != "real":
            reason = f"reason {position} {answer}"
            expect(page.locator("#reason")).to_be_focused()
            page.keyboard.type(reason)
            page.keyboard.press("Control+Enter")
        else:
            page.keyboard.press("Enter")
        expect(panel).not_to_have_attribute("data-position", str(position), timeout=10_000)
        answers.append(
            {"position": position, "answer": answer, "confidence": confidence, "reason": reason}
        )


def test_reader_study_end_to_end(
    browser: Browser, page: Page, sqlite_env, server_factory, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    make_user("rosa", "rosa-password-1", "researcher")
    server = server_factory(sqlite_env)
    collection = available_collections()["paediatric-cxr"]
    real_path, fake_path = tmp_path / "real.zip", tmp_path / "synthetic.zip"
    real_path.write_bytes(real_zip(collection).getvalue())
    fake_path.write_bytes(synthetic_zip(collection, 4, seed=3).getvalue())

    # Researcher: two uploads, a study, two invitations.
    page.goto(f"{server.url}/login")
    page.get_by_label("Username").fill("rosa")
    page.get_by_label("Password").fill("rosa-password-1")
    page.get_by_role("button", name="Sign in").click()
    _upload(page, "Real CXR", "real", real_path)
    _upload(page, "PCA samples", "synthetic", fake_path)
    page.goto(f"{server.url}/studies/new")
    page.get_by_label("Name", exact=True).fill("Browser study")
    page.get_by_label("Real CXR").check()
    page.get_by_label("PCA samples").check()
    page.get_by_label("Scored images per reader").fill(str(N_IMAGES))
    page.get_by_label("Repeated images for consistency (%)").fill("34")
    page.get_by_label("Confidence scale").select_option("1-5")
    page.get_by_role("button", name="Create study").click()
    expect(page.locator("#counts")).to_have_text("3 real + 3 synthetic")
    study_url = page.url
    links = []
    for label in ("Reader A", "Reader B"):
        page.get_by_label('Label (for you, e.g. "Reader A")').fill(label)
        page.get_by_role("button", name="Create invitation link").click()
        links.append(page.locator("#invite-link").input_value())

    # Two readers, each in their own browser; each leaves midway and comes back.
    recorded: dict[str, list[dict]] = {}
    for pseudonym, link in zip(("R01", "R02"), links, strict=True):
        context = browser.new_context()
        reader = context.new_page()
        reader.goto(link)
        reader.get_by_role("button", name="Start reading").click()
        answers: list[dict] = []
        _read(reader, answers, stop_after=3)
        state = context.storage_state()
        context.close()  # the browser is closed midway
        context = browser.new_context(storage_state=state)
        reader = context.new_page()
        reader.goto(study_url.replace("/studies/", "/read/"))
        panel = reader.locator("#reading-panel")
        expect(panel).to_have_attribute("data-position", "4")
        total = int(panel.get_attribute("data-total"))
        if pseudonym == "R01":
            screenshot(reader, "reading-page")
        _read(reader, answers, stop_after=None)
        expect(reader.locator("#reading-panel")).to_have_attribute("data-state", "done")
        assert total == N_IMAGES + 2 and len(answers) == total
        recorded[pseudonym] = answers
        context.close()

    # Researcher: statistics and the CSV.
    page.goto(f"{study_url}/results")
    for pseudonym in ("R01", "R02"):
        row = page.locator(f'#readers tr[data-reader="{pseudonym}"]')
        # Repeats are scored for consistency, not accuracy; accuracy counts decisive answers
        # (the default), and the uncertain ones are counted beside them.
        expect(row.locator('td[data-col="n"]')).to_have_attribute("data-value", re.compile(r"\d"))
        decisive = int(row.locator('td[data-col="n_decisive"]').get_attribute("data-value"))
        uncertain = int(row.locator('td[data-col="n_uncertain"]').get_attribute("data-value"))
        assert decisive + uncertain == N_IMAGES
        assert row.locator('td[data-col="n"]').get_attribute("data-value") == str(decisive)
    screenshot(page, "results-page")
    with page.expect_download() as download_info:
        page.get_by_role("link", name=re.compile(r"Answers \(CSV")).click()
    rows = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
    got = {
        (r["reader"], int(r["position"]) + 1, r["answer"], int(float(r["confidence"])), r["reason"])
        for r in rows
    }
    want = {
        (p, a["position"], a["answer"], a["confidence"], a["reason"])
        for p, answers in recorded.items()
        for a in answers
    }
    assert got == want
