"""The job list's filters, name search, paging, duration and ETA, job names from the forms,
clone and retry, and the job page's parameter table, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from support import Env, make_user
from web_client import WebClient

from app.db import get_engine, session_scope
from app.jobs import service
from app.jobs.specs import JobSpec
from app.main import create_app
from app.models import Dataset, Job, JobStatus
from app.models.types import utcnow


@contextmanager
def _signed_in(username: str, password: str) -> Iterator[WebClient]:
    with TestClient(create_app(), base_url="http://testserver") as client:
        web = WebClient(client)
        assert web.login(username, password).status_code == 303
        yield web


def _gan_params(dataset_id: int, **config: object) -> dict[str, object]:
    base = {"arch": "dcgan", "resolution": 32, "kimg": 1.0, "batch_size": 16}
    return {"dataset_id": dataset_id, "config": {**base, **config}, "preset": "tiny-cpu"}


@pytest.fixture
def world(env: Env) -> dict[str, int]:
    """Two researchers, two datasets, and jobs of several types and states."""
    ids = {
        "rosa": make_user("rosa", "rosa-password-1", "researcher"),
        "tom": make_user("tom", "tom-password-1", "researcher"),
    }
    make_user("ada", "ada-password-1", "admin")
    with session_scope() as db:
        chest = Dataset(name="Chest X-rays", format="folder")
        knee = Dataset(name="Knee MRI", format="folder")
        db.add_all([chest, knee])
        db.flush()
        ids["chest"], ids["knee"] = chest.id, knee.id
        rosa = ids["rosa"]
        for i in range(12):
            spec = JobSpec("train_gan", "cpu", _gan_params(chest.id, seed=i))
            service.create_job(db, spec, owner_id=rosa)
        stats = JobSpec("image_stats", "cpu", {"collection": "paediatric-cxr"})
        for _ in range(3):
            service.create_job(db, stats, owner_id=rosa)
        knee_gan = JobSpec("train_gan", "cpu", _gan_params(knee.id), name="Knee 100% baseline")
        ids["knee_job"] = service.create_job(db, knee_gan, owner_id=rosa).id
        ids["toms"] = service.create_job(db, knee_gan, owner_id=ids["tom"]).id
        running = service.create_job(
            db, JobSpec("train_gan", "cpu", _gan_params(chest.id)), owner_id=rosa
        )
        running.status, running.progress = JobStatus.running, 0.5
        running.started_at = utcnow() - timedelta(minutes=10)
        done = service.create_job(db, stats, owner_id=rosa)
        done.status = JobStatus.succeeded
        done.started_at = utcnow() - timedelta(minutes=5)
        done.finished_at = done.started_at + timedelta(seconds=42)
        ids["running"], ids["done"] = running.id, done.id
    return ids


def _rows(html: str) -> int:
    return html.count("data-job-row=")


def test_names_default_from_type_and_dataset(world: dict[str, int]) -> None:
    with session_scope() as db:
        running = db.get(Job, world["running"])
        knee = db.get(Job, world["knee_job"])
        done = db.get(Job, world["done"])
        assert running is not None and knee is not None and done is not None
        assert running.name == "DCGAN 32px · Chest X-rays"
        assert running.dataset_id == world["chest"]
        assert knee.name == "Knee 100% baseline"  # a given name wins
        assert done.name == "Image statistics · paediatric-cxr" and done.dataset_id is None


def test_filters_search_and_pages_keep_each_other(world: dict[str, int]) -> None:
    with _signed_in("rosa", "rosa-password-1") as web:
        everything = web.get("/jobs").text
        assert _rows(everything) == 18  # Tom's job is not Rosa's to see
        assert f'data-job-row="{world["toms"]}"' not in everything
        assert "Train a GAN</td>" in everything and ">train_gan<" not in everything

        gans = web.get("/jobs", params={"type": "train_gan"}).text
        assert _rows(gans) == 14
        assert _rows(web.get("/jobs", params={"status": "running"}).text) == 1
        knee = web.get("/jobs", params={"dataset": str(world["knee"])}).text
        assert _rows(knee) == 1 and f'data-job-row="{world["knee_job"]}"' in knee
        # Case-insensitive substring; a % in the search is a literal percent sign.
        assert _rows(web.get("/jobs", params={"q": "knee 100%"}).text) == 1
        assert _rows(web.get("/jobs", params={"q": "100%%"}).text) == 0
        assert _rows(web.get("/jobs", params={"q": "dcgan", "status": "queued"}).text) == 12
        empty = web.get("/jobs", params={"q": "no such run"}).text
        assert "No job matches these filters." in empty
        # Unknown values filter nothing; a researcher's owner filter is ignored.
        assert (
            _rows(web.get("/jobs", params={"type": "nope", "owner": str(world["tom"])}).text) == 18
        )

    with session_scope() as db:
        for i in range(60):
            spec = JobSpec("train_gan", "cpu", _gan_params(world["chest"], seed=100 + i))
            service.create_job(db, spec, owner_id=world["rosa"])
    with _signed_in("rosa", "rosa-password-1") as web:
        first = web.get("/jobs", params={"type": "train_gan", "q": "dcgan"}).text
        assert _rows(first) == 50 and "Page 1 of 2 (73 jobs)" in first
        assert 'href="/jobs?type=train_gan&amp;q=dcgan&amp;page=2"' in first
        second = web.get("/jobs", params={"type": "train_gan", "q": "dcgan", "page": "2"}).text
        assert _rows(second) == 23 and "Page 2 of 2" in second
        # The live poll keeps the filters and the page.
        assert 'hx-get="/jobs?type=train_gan&amp;q=dcgan&amp;page=2"' in second


def test_admin_filters_by_owner(world: dict[str, int]) -> None:
    with _signed_in("ada", "ada-password-1") as web:
        assert _rows(web.get("/jobs").text) == 19
        toms = web.get("/jobs", params={"owner": str(world["tom"])}).text
        assert _rows(toms) == 1 and f'data-job-row="{world["toms"]}"' in toms
        assert f'<option value="{world["tom"]}"' in toms and ">tom</option>" in toms


def test_duration_and_eta_columns(world: dict[str, int]) -> None:
    with _signed_in("rosa", "rosa-password-1") as web:
        html = web.get("/jobs").text
        running_row = html.split(f'data-job-row="{world["running"]}"')[1].split("</tr>")[0]
        assert "about 10 min left" in running_row and "running for 10 min" in running_row
        done_row = html.split(f'data-job-row="{world["done"]}"')[1].split("</tr>")[0]
        assert "42 s" in done_row and "running for" not in done_row and "left" not in done_row
        page = web.get(f"/jobs/{world['running']}").text
        assert 'id="eta">about 10 min left' in page and "Running for" in page


def test_the_list_reads_no_job_params(world: dict[str, int]) -> None:
    """Params of training runs are large: the list's queries must not select them."""
    statements: list[str] = []

    def record(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    engine = get_engine()
    with _signed_in("ada", "ada-password-1") as web:
        event.listen(engine, "before_cursor_execute", record)
        try:
            assert web.get("/jobs", params={"q": "dcgan"}).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", record)
    job_selects = [s for s in statements if "FROM jobs" in s]
    assert job_selects and not any("jobs.params" in s for s in job_selects)


def test_named_launch_clone_and_retry(world: dict[str, int]) -> None:
    with _signed_in("rosa", "rosa-password-1") as web:
        form = {"collection": "paediatric-cxr", "queue": "cpu", "job_name": "  First  look "}
        launched = web.post_form("/jobs", form, token_from="/jobs", follow_redirects=False)
        assert launched.status_code == 303
        new_id = int(launched.headers["location"].rsplit("/", 1)[1])
        unnamed = web.post_form(
            "/jobs",
            {"collection": "paediatric-cxr", "queue": "cpu"},
            token_from="/jobs",
            follow_redirects=False,
        )
        unnamed_id = int(unnamed.headers["location"].rsplit("/", 1)[1])
        clone_page = web.get(f"/jobs/{world['knee_job']}/clone").text
        assert 'value="Knee 100% baseline (copy)"' in clone_page
    with session_scope() as db:
        assert db.get(Job, new_id).name == "First look"  # type: ignore[union-attr]
        assert db.get(Job, unnamed_id).name == "Image statistics · paediatric-cxr"  # type: ignore[union-attr]
        failed = db.get(Job, world["knee_job"])
        assert failed is not None
        failed.status = JobStatus.failed
    with _signed_in("rosa", "rosa-password-1") as web:
        retried = web.post_form(
            f"/jobs/{world['knee_job']}/retry", {}, token_from="/jobs", follow_redirects=False
        )
        retry_id = int(retried.headers["location"].rsplit("/", 1)[1])
    with session_scope() as db:
        retry = db.get(Job, retry_id)
        assert retry is not None and retry.name == "Knee 100% baseline"
        assert retry.dataset_id == world["knee"]


def test_job_page_shows_params_by_section_with_changes_from_the_preset(
    world: dict[str, int],
) -> None:
    with session_scope() as db:
        spec = JobSpec("train_gan", "cpu", _gan_params(world["chest"], kimg=5.0))
        job_id = service.create_job(db, spec, owner_id=world["rosa"]).id
    with _signed_in("rosa", "rosa-password-1") as web:
        html = web.get(f"/jobs/{job_id}").text
    assert 'data-section="training"' in html and 'data-section="data"' in html
    kimg = html.split('data-param="config.kimg"')[1].split("</tr>")[0]
    assert 'class="changed"' in kimg and "(preset: 1)" in kimg
    batch = html.split('data-param="config.batch_size"')[1].split("</tr>")[0]
    assert "changed" not in batch
    assert "<summary>Raw parameters (JSON)</summary>" in html
    assert "DCGAN 32px · Chest X-rays" in html and "Train a GAN" in html
