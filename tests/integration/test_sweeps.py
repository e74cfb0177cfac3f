"""Sweeps end to end: the form launches seed 000's grid, a real worker runs every stage (each
started by the previous one's success), the sweep page shows each point's AUCs; bad input
starts nothing; other researchers get 404; continuing twice creates no duplicates; the
in-process (command line) runner continues a sweep too (through a class subset), and a
cancelled stage stops its point."""

from __future__ import annotations

import re
import time
from collections import Counter

import httpx
import pytest
from dataset_fixtures import write_folder
from evaluation_fixtures import import_cxr
from sqlalchemy import func, select
from support import Env, make_user
from web_client import WebClient

from app.datasets.options import parse_import_options
from app.datasets.service import start_import
from app.db import session_scope
from app.jobs.service import request_cancel
from app.models import Dataset, Job, JobStatus, Sweep
from app.sweeps.service import continue_sweep
from workers.runner import execute

pytestmark = pytest.mark.worker

TINY = {
    "gan_preset": "tiny-cpu",
    "kimg": "0.064",
    "tick_kimg": "0.032",
    "snapshot_ticks": "1",
    "draw": "6",
    "classifier_preset": "tiny-cpu",
    "epochs": "2",
    "queue": "cpu",
}


def _sweep_jobs(sweep_id: int) -> list[Job]:
    with session_scope() as db:
        jobs = list(db.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.id)))
        for job in jobs:
            db.expunge(job)
        return jobs


def _counts() -> tuple[int, int, int]:
    with session_scope() as db:
        return (
            db.scalar(select(func.count()).select_from(Sweep)) or 0,
            db.scalar(select(func.count()).select_from(Job)) or 0,
            db.scalar(select(func.count()).select_from(Dataset)) or 0,
        )


def _wait_until_done(sweep_id: int, expected: int, timeout: float = 360) -> list[Job]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = _sweep_jobs(sweep_id)
        if len(jobs) >= expected and all(j.status.finished for j in jobs):
            return jobs
        states = [(j.id, j.sweep_step, j.status.value, j.message, j.error) for j in jobs]
        assert time.monotonic() < deadline, states
        time.sleep(0.5)


def _start(web: WebClient, form: dict[str, str]) -> int:
    response = web.post_form("/sweeps", form, token_from="/sweeps", follow_redirects=False)
    assert response.status_code == 303, response.text[-2000:]
    match = re.fullmatch(r"/sweeps/(\d+)", response.headers["location"])
    assert match is not None
    return int(match.group(1))


def _three_classes(env: Env, owner_id: int) -> int:
    """The X-rays with four pneumonia films relabelled, imported in-process: three classes."""
    folder = write_folder(env.home / "imports" / "three")
    for path in folder.classes["pneumonia"][:4]:
        (folder.root / "effusion").mkdir(exist_ok=True)
        path.rename(folder.root / "effusion" / path.name)
    with session_scope() as db:
        dataset, job = start_import(
            db,
            owner_id=owner_id,
            name="Three classes",
            source=folder.root,
            options=parse_import_options("folder", resolutions="32"),
        )
        db.commit()
        dataset_id, job_id = dataset.id, job.id
    execute(job_id)
    return dataset_id


def _row(page: str, point_key: str) -> str:
    match = re.search(rf'<tr data-point="{point_key}">(.*?)</tr>', page, re.S)
    assert match is not None, page[-3000:]
    return match.group(1)


@pytest.mark.timeout(600)
def test_grid_sweep_from_the_form_runs_every_stage_on_a_worker(  # type: ignore[no-untyped-def]
    sqlite_env: Env, server_factory, worker_factory
) -> None:
    owner = make_user("sven", "sven-password-1", "researcher")
    make_user("olga", "olga-password-1", "researcher")
    dataset_id = import_cxr(sqlite_env, owner)
    server = server_factory(sqlite_env)
    worker_factory(sqlite_env, "worker-1")
    web = WebClient(httpx.Client(base_url=server.url, timeout=60))
    assert web.login("sven", "sven-password-1").status_code == 303
    listing = web.get("/sweeps")
    assert listing.status_code == 200 and 'href="/sweeps"' in listing.text
    assert "Start a sweep" in listing.text

    form = {
        "dataset": str(dataset_id),
        "name": "Seed 000 mini",
        "kind": "grid",
        "resolutions": "32",
        "classes": "2",
        "per_class": "2, 0",
        **TINY,
    }
    # Bad input: 422 with the message beside its field, and nothing created.
    before = _counts()
    bad = web.post_form("/sweeps", {**form, "resolutions": "64"}, token_from="/sweeps")
    assert bad.status_code == 422 and "stored at 32 px, not 64" in bad.text
    assert 'value="Seed 000 mini"' in bad.text  # the form keeps what was typed
    many = ", ".join(str(i) for i in range(1, 50))
    too_many = web.post_form("/sweeps", {**form, "per_class": many}, token_from="/sweeps")
    assert too_many.status_code == 422 and "49 points; at most 48" in too_many.text
    assert _counts() == before

    sweep_id = _start(web, form)
    page = web.get(f"/sweeps/{sweep_id}")
    assert page.status_code == 200 and 'hx-trigger="every 2s"' in page.text
    jobs = _wait_until_done(sweep_id, expected=9)

    assert all(j.status is JobStatus.succeeded for j in jobs), [
        (j.sweep_step, j.status, j.error) for j in jobs
    ]
    # Two classes are all the dataset has: no class subset. "All images per class": no
    # samples-per-class subset either, so that point trains on the root dataset itself.
    assert {j.sweep_step: j.type for j in jobs} == {
        "r32-kall-s2/per_class": "subset_dataset",
        "r32-kall-s2/gan": "train_gan",
        "r32-kall-s2/sample": "sample",
        "r32-kall-s2/per_class/real": "train_classifier",
        "r32-kall-s2/synthetic": "train_classifier",
        "r32-kall-sall/gan": "train_gan",
        "r32-kall-sall/sample": "sample",
        "root-r32/real": "train_classifier",
        "r32-kall-sall/synthetic": "train_classifier",
    }
    assert Counter(j.type for j in jobs) == Counter(
        subset_dataset=1, train_gan=2, sample=2, train_classifier=4
    )
    steps = {j.sweep_step: j for j in jobs}
    subset = steps["r32-kall-s2/per_class"]
    assert subset.params["kind"] == "samples_per_class" and subset.params["value"] == 2
    assert steps["r32-kall-s2/gan"].params["dataset_id"] == subset.params["dataset_id"]
    assert steps["r32-kall-sall/gan"].params["dataset_id"] == dataset_id
    sample = steps["r32-kall-s2/sample"]
    synthetic = steps["r32-kall-s2/synthetic"]
    assert synthetic.params["image_set_id"] == sample.result["image_set_id"]
    assert synthetic.params["config"]["epochs"] == 2
    assert synthetic.params["dataset_id"] == subset.params["dataset_id"]

    page = web.get(f"/sweeps/{sweep_id}").text
    assert 'hx-trigger="every 2s"' not in page  # nothing runs any more: polling stops
    for key in ("r32-kall-s2", "r32-kall-sall"):
        row = _row(page, key)
        assert "status-done" in row
        real = "r32-kall-s2/per_class/real" if key == "r32-kall-s2" else "root-r32/real"
        for stage, step in (("real", real), ("synthetic", f"{key}/synthetic")):
            auc = steps[step].result.get("macro_auc")
            shown = "—" if auc is None else f"{auc:.3f}"
            assert f"data-auc-{stage}>{shown}</td>" in row
        assert f'href="/jobs/{steps[f"{key}/gan"].id}"' in row
    assert "Seed 000 mini" in web.get("/sweeps").text

    # Another researcher sees neither the sweep nor that it exists.
    other = WebClient(httpx.Client(base_url=server.url, timeout=60))
    assert other.login("olga", "olga-password-1").status_code == 303
    assert other.get(f"/sweeps/{sweep_id}").status_code == 404
    assert other.get("/sweeps/999").status_code == 404
    assert "Seed 000 mini" not in other.get("/sweeps").text

    # A redelivered job (continued again, or run again by the runner) creates no children.
    before = _counts()
    for job in jobs:
        assert continue_sweep(job.id) == []
        execute(job.id)
    assert _counts() == before


@pytest.mark.timeout(300)
def test_in_process_runner_continues_sweeps(  # type: ignore[no-untyped-def]
    sqlite_env: Env, server_factory
) -> None:
    owner = make_user("cleo", "cleo-password-1", "researcher")
    dataset_id = import_cxr(sqlite_env, owner)
    server = server_factory(sqlite_env)
    web = WebClient(httpx.Client(base_url=server.url, timeout=60))
    assert web.login("cleo", "cleo-password-1").status_code == 303
    form = {
        "dataset": str(dataset_id),
        "name": "Seeds",
        "kind": "gan_param",
        "resolutions": "32",
        "param": "seed",
        "values": "0, 1",
        **{**TINY, "epochs": "1"},
    }
    sweep_id = _start(web, form)
    first = {j.sweep_step: j for j in _sweep_jobs(sweep_id)}
    # Both values train on the same data: one real classifier serves them both.
    assert sorted(first) == ["p0/gan", "p1/gan", "root-r32/real"]
    assert [first[k].params["config"]["seed"] for k in ("p0/gan", "p1/gan")] == [0, 1]

    with session_scope() as db:
        cancelled = db.get(Job, first["p1/gan"].id)
        assert cancelled is not None
        request_cancel(db, cancelled)
    assert continue_sweep(first["p1/gan"].id) == []
    execute(first["p0/gan"].id)  # the command line's in-process path
    after = {j.sweep_step: j for j in _sweep_jobs(sweep_id)}
    assert after["p0/gan"].status is JobStatus.succeeded
    assert after["p0/sample"].status is JobStatus.queued  # created and enqueued by the runner
    assert "p1/sample" not in after

    page = web.get(f"/sweeps/{sweep_id}").text
    assert "status-cancelled" in _row(page, "p1") and "not started" in _row(page, "p1")
    assert f'href="/jobs/{after["p0/sample"].id}"' in _row(page, "p0")
    assert "seed = 0" in page and 'hx-trigger="every 2s"' in page

    # A class subset feeds the samples-per-class subset, which feeds the GAN and classifier.
    three = _three_classes(sqlite_env, owner)
    grid_form = {"dataset": str(three), "name": "Classes", "classes": "2", "per_class": "3"}
    grid_id = _start(web, {**form, **grid_form, "kind": "grid"})
    (classes,) = _sweep_jobs(grid_id)
    assert classes.sweep_step == "r32-k2/classes" and classes.type == "subset_dataset"
    assert (classes.params["kind"], classes.params["value"]) == ("classes", 2)
    assert classes.params["resolutions"] == [32]
    execute(classes.id)
    (_, per_class) = _sweep_jobs(grid_id)
    assert per_class.sweep_step == "r32-k2-s3/per_class"
    assert per_class.params["parent"] == classes.params["dest"]
    execute(per_class.id)
    steps = {j.sweep_step: j for j in _sweep_jobs(grid_id)}
    assert sorted(steps) == [
        "r32-k2-s3/gan",
        "r32-k2-s3/per_class",
        "r32-k2-s3/per_class/real",
        "r32-k2/classes",
    ]
    with session_scope() as db:
        subset = db.get(Dataset, per_class.params["dataset_id"])
        assert subset is not None and subset.parent_id == classes.params["dataset_id"]
        assert subset.name == f"Classes · sweep {grid_id} · 32 px, 2 classes, 3 per class"
    assert steps["r32-k2-s3/gan"].params["dataset_id"] == per_class.params["dataset_id"]
