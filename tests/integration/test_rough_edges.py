"""Issue 18's rough edges, through the web app on a real database: invitation reuse, a flash
that outlives its job, empty intervals, reasons paging, results caching, repeated verdicts,
form defaults and the design page's repeat count."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from study_fixtures import TOTAL, answer_as, build_read_study
from support import ROOT, make_user
from web_client import WebClient, csrf_from

from app.auth.passwords import hash_password
from app.db import session_scope
from app.main import create_app
from app.models import Dataset, DatasetStatus, ImageSet, Job, JobStatus, Study, User
from app.studies import results_cache
from app.studies.design_form import parse_design_form


@pytest.fixture
def web(sqlite_env) -> WebClient:  # type: ignore[no-untyped-def]
    make_user("alice", "alice-password", "researcher")
    with TestClient(create_app(), base_url="http://testserver") as client:
        web = WebClient(client)
        web.login("alice", "alice-password")
        yield web


def _import(web: WebClient, name: str, csv_text: str) -> int:
    token = csrf_from(web.get("/studies/import").text)
    response = web.client.post(
        "/studies/import",
        data={"name": name, "csrf_token": token},
        files={"file": ("ratings.csv", csv_text.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return int(re.search(r"/studies/(\d+)/results", response.headers["location"]).group(1))


DASH = "\u2013"  # the pages' en dash between two numbers


def _visible_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- invitations ------------------------------------------------------------------------------


def test_the_reader_who_accepted_an_invitation_continues_from_the_link(env) -> None:  # type: ignore[no-untyped-def]
    from app.auth.service import create_invite

    make_user("olga", "olga-password", "researcher")
    with session_scope() as db:
        owner = db.scalars(select(User).where(User.username == "olga")).one()
        study = Study(name="Invited", owner_id=owner.id, design={})
        db.add(study)
        db.flush()
        token, _ = create_invite(db, study=study, created_by=owner, hours=24, label="Dr A")
        study_id = study.id
    link = f"/invite/{token}"
    with TestClient(create_app(), base_url="http://testserver") as client:
        reader = WebClient(client)
        assert reader.get(link).status_code == 200  # shows the invitation, consumes nothing
        accepted = reader.post_form(link, {}, token_from=link, follow_redirects=False)
        assert accepted.status_code == 303
        assert accepted.headers["location"] == f"/read/{study_id}"
        again = reader.get(link, follow_redirects=False)
        assert again.status_code == 303, again.text
        assert again.headers["location"] == f"/read/{study_id}"
    # Anyone else (another browser, a forwarded mail) still finds the link used.
    with TestClient(create_app(), base_url="http://testserver") as other:
        assert other.get(link).status_code == 410
        WebClient(other).login("olga", "olga-password")
        assert other.get(link, follow_redirects=False).status_code == 410


# --- flash ------------------------------------------------------------------------------------


def test_a_queued_flash_is_cleared_by_the_poll_that_sees_the_job_finish(web: WebClient) -> None:
    with session_scope() as db:
        owner = db.scalars(select(User).where(User.username == "alice")).one()
        job = Job(type="image_stats", queue="cpu", params={}, owner_id=owner.id)
        db.add(job)
        db.flush()
        job_id = job.id
    poll = {"HX-Request": "true"}
    running = web.get(f"/jobs/{job_id}", headers=poll).text
    assert 'id="flashes"' not in running  # still queued: the flash keeps its news
    with session_scope() as db:
        db.get(Job, job_id).status = JobStatus.succeeded
    finished = web.get(f"/jobs/{job_id}", headers=poll).text
    assert '<div id="flashes" hx-swap-oob="true"></div>' in finished
    # A full page load never carries the out-of-band swap: base.html holds the real one.
    page = web.get(f"/jobs/{job_id}").text
    assert page.count('id="flashes"') == 1


# --- results ----------------------------------------------------------------------------------


def test_an_interval_that_cannot_be_estimated_says_so(web: WebClient) -> None:
    rows = ["reader,image,truth,answer", "R1,a,real,uncertain", "R1,b,fake,uncertain"]
    study_id = _import(web, "All uncertain", "\n".join(rows) + "\n")
    text = _visible_text(web.get(f"/studies/{study_id}/results?uncertain=excluded").text)
    assert "95% CI not estimable" in text
    assert "\u2014\u2013\u2014" not in text


def test_reasons_are_paged_by_50(web: WebClient) -> None:
    rows = ["reader,image,truth,answer,reason"]
    rows += [
        f"R{1 + i % 3},img{i:03d},fake,fake,{'glowing ' * (i % 24 == 0)}reason number {i:03d}"
        for i in range(120)
    ]
    study_id = _import(web, "Many reasons", "\n".join(rows) + "\n")
    first = web.get(f"/studies/{study_id}/results").text
    assert f"1{DASH}50 shown" in first and 'id="reasons-next"' in first
    assert 'id="reasons-prev"' not in first
    fragment = f"/studies/{study_id}/results/reasons"
    third = web.get(fragment, params={"reasons_page": 3}).text
    shown = re.findall(r"reason number (\d{3})", third)
    assert len(shown) == 20 and f"101{DASH}120 shown" in third
    assert 'id="reasons-prev"' in third and 'id="reasons-next"' not in third
    second = re.findall(
        r"reason number (\d{3})", web.get(fragment, params={"reasons_page": 2}).text
    )
    page_one = re.findall(r"reason number (\d{3})", first)
    assert len(page_one) == 50 and len(second) == 50
    assert not set(page_one) & set(second) and len(set(page_one) | set(second) | set(shown)) == 120
    # Paging keeps the search; a page past the end shows the last one.
    found = web.get(fragment, params={"q": "glowing", "reasons_page": 9}).text
    assert "5 of 120 reason(s) matching “glowing”" in _visible_text(found)
    assert re.search(r'data-page="(\d+)"', found).group(1) == "1"  # 5 matches: one page
    assert 'id="reasons-next"' not in found
    last = web.get(fragment, params={"q": "reason", "reasons_page": 9}).text
    assert re.search(r'data-page="(\d+)"', last).group(1) == "3"
    # The full page takes the same page parameter (links work without script).
    assert f"51{DASH}100 shown" in web.get(f"/studies/{study_id}/results?reasons_page=2").text


def test_results_are_cached_until_a_new_answer_arrives(sqlite_env) -> None:  # type: ignore[no-untyped-def]
    from app.studies.results import statistics_for

    built = build_read_study()
    results_cache.CACHE.clear()
    with session_scope() as db:
        study = db.get(Study, built.study_id)
        before_key = results_cache.study_state(db, study)
        ratings, stats = statistics_for(db, study, "wrong")
        n_entries = len(results_cache.CACHE)
        again_ratings, again = statistics_for(db, study, "wrong")
        assert len(results_cache.CACHE) == n_entries  # served from the cache
        assert again == stats and again_ratings == ratings
        again["readers"].clear()  # a caller's copy: the cached statistics stay whole
        assert statistics_for(db, study, "wrong")[1] == stats
    # r4 reads the 2 practice images and 1 scored one: the state, and so the statistics, change
    # without any invalidation.
    assert answer_as("r4", built.study_id, 3) == 3
    with session_scope() as db:
        study = db.get(Study, built.study_id)
        assert results_cache.study_state(db, study) != before_key
        fresh_ratings, fresh = statistics_for(db, study, "wrong")
    assert len(fresh_ratings) == len(ratings) + 1
    new_readers = {r["reader"] for r in fresh["readers"]} - {r["reader"] for r in stats["readers"]}
    assert len(new_readers) == 1  # r4's first scored answer


TINY = ("--readers", "3", "--images", "12", "--repeat", "2")


def test_the_results_page_bench_runs_at_a_tiny_size() -> None:
    """bench/results_page.py at CI size: the same code as the full 20 x 500 run."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "results_page.py"), *TINY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout + done.stderr
    assert "target 300 ms server time (warm pages): met" in out, out[-3000:]
    assert re.search(r"results, warm \(nothing new\)\s+[\d.]+\s+[\d.]+\s+[\d.]+", out), out
    assert done.returncode == 0


# --- verdicts ---------------------------------------------------------------------------------


def _privacy_job(owner_id: int, set_id: int, dataset_id: int) -> int:
    """A finished nearest-neighbours job as workers/evaluation.py stores it: two feature
    spaces whose verdicts read alike."""
    sentence = (
        "3 of 16 synthetic images (18.8%) are closer to a training image than 95% of real "
        "test images are; the gate allows 1.0%."
    )
    space = {
        "dcr": {"median": 0.1},
        "baseline_dcr": {"median": 0.2},
        "share_flagged": {"p1": 0.05, "p5": 0.188},
        "coarse_baseline": False,
    }
    verdict = {"passes": False, "share_flagged": 0.188, "max_share": 0.01, "level": "p5"}
    with session_scope() as db:
        job = Job(
            type="nearest_neighbours",
            queue="cpu",
            params={"dataset_id": dataset_id, "image_set_id": set_id},
            owner_id=owner_id,
            status=JobStatus.succeeded,
            progress=1.0,
            result={
                "image_set_id": set_id,
                "resolution": 32,
                "k": 5,
                "level": "p5",
                "max_share": 0.01,
                "spaces": {"pixel": space, "domain": space},
                "verdicts": {s: {**verdict, "reason": sentence} for s in ("pixel", "domain")},
                "release": {"passes": False, "reasons": [sentence, sentence]},
                "n_gallery": 0,
            },
        )
        db.add(job)
        db.flush()
        return job.id


def test_a_verdict_sentence_is_printed_once(web: WebClient) -> None:
    with session_scope() as db:
        owner = db.scalars(select(User).where(User.username == "alice")).one()
        dataset = Dataset(
            name="CXR", owner_id=owner.id, status=DatasetStatus.ready, info={}, format="folder"
        )
        image_set = ImageSet(name="Samples", owner_id=owner.id, kind="upload")
        db.add_all([dataset, image_set])
        db.flush()
        owner_id, set_id, dataset_id = owner.id, image_set.id, dataset.id
    job_id = _privacy_job(owner_id, set_id, dataset_id)
    for url in (f"/imagesets/{set_id}", f"/jobs/{job_id}"):
        page = web.get(url)
        assert page.status_code == 200, url
        assert _visible_text(page.text).count("3 of 16 synthetic images") == 1, url
        assert page.text.count("3 of 16 synthetic images") == 1, url  # no tooltip copy either


# --- defaults and the design page -------------------------------------------------------------


def test_launch_forms_preselect_the_main_dataset_not_its_subset(web: WebClient) -> None:
    with session_scope() as db:
        owner = db.scalars(select(User).where(User.username == "alice")).one()
        info = {"resolutions": [32], "label_names": ["a", "b"], "splits": {"train": 4}}
        main = Dataset(
            name="Main CXR",
            owner_id=owner.id,
            status=DatasetStatus.ready,
            info=info,
            format="folder",
        )
        db.add(main)
        db.flush()
        subset = Dataset(
            name="Main CXR: 2 per class",
            owner_id=owner.id,
            status=DatasetStatus.ready,
            info=info,
            format="folder",
            parent_id=main.id,
        )
        db.add(subset)
        db.flush()
        main_id, subset_id = main.id, subset.id
    for url in ("/gans/new", "/sweeps"):
        html = web.get(url).text
        selected = re.findall(r'<option value="(\d+)" selected>', html)
        assert str(main_id) in selected and str(subset_id) not in selected, url
    # An explicit choice still wins.
    chosen = web.get(f"/gans/new?dataset={subset_id}").text
    assert f'<option value="{subset_id}" selected>' in chosen


def test_new_studies_default_to_a_1_to_5_confidence_scale(web: WebClient) -> None:
    parsed = parse_design_form({"name": "Defaults", "n_images": "4"}, ["1"])
    assert parsed.ok and parsed.reading.confidence == "1-5"
    assert (
        parse_design_form({"name": "x", "confidence": "none"}, ["1"]).reading.confidence == "none"
    )
    form = web.get("/studies/new").text
    assert re.search(r'<option value="1-5"\s+selected>', form), form


def test_the_design_page_states_the_repeats_each_reader_is_shown(sqlite_env) -> None:  # type: ignore[no-untyped-def]
    built = build_read_study()  # 8 scored images, 25% repeats
    with TestClient(create_app(), base_url="http://testserver") as client:
        web = WebClient(client)
        with session_scope() as db:
            owner = db.scalars(select(User).where(User.username == "alice")).one()
            owner.password_hash = hash_password("alice-password")
        web.login("alice", "alice-password")
        text = _visible_text(web.get(f"/studies/{built.study_id}").text)
    assert "25% of scored images shown twice: 2 of 8 per reader" in text
    assert TOTAL == 2 + 8 + 2  # what r1 was actually shown: the same count
