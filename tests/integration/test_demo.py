"""`synthbench demo` serves at once and fills the demo through the ordinary job queue.

The first test runs the real command (migrate, load, serve with its embedded worker) and
checks that the server answers before any of the demo's long jobs has finished, that those
jobs then run on the embedded worker with progress a page shows, and that the log gets its
lines as they happen when stdout is a file. The second drives the whole pipeline through the
real job runner, step by step as the queue would, and checks that every step ran once.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from support import Env, Process, activate, free_port, load_job
from web_client import WebClient

from app.db import session_scope
from app.models import (
    Dataset,
    DatasetStatus,
    Image,
    ImageSet,
    Job,
    JobStatus,
    Study,
    Sweep,
    User,
)

TINY_GAN_KIMG = "0.5"


@pytest.fixture
def demo_env(tmp_path, monkeypatch) -> Env:  # type: ignore[no-untyped-def]
    env = Env(
        tmp_path,
        f"sqlite:///{tmp_path / 'synthbench.sqlite'}",
        f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
    )
    monkeypatch.setenv("SYNTHBENCH_DEMO_GAN_KIMG", TINY_GAN_KIMG)
    # The digits classifiers are most of the digits test's time; 4 epochs still separate.
    monkeypatch.setenv("SYNTHBENCH_DEMO_CLASSIFIER_EPOCHS", "4")
    monkeypatch.setenv("SYNTHBENCH_ENERGY_TRACKING", "false")
    activate(env, monkeypatch)
    return env


def _jobs(**where: Any) -> list[Job]:
    with session_scope() as db:
        query = select(Job).order_by(Job.id)
        for key, value in where.items():
            query = query.where(getattr(Job, key) == value)
        jobs = list(db.scalars(query))
        for job in jobs:
            db.expunge(job)
        return jobs


def _wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_demo_serves_before_its_jobs_and_runs_them_on_the_embedded_worker(demo_env) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    environ = {**demo_env.environ(), "SYNTHBENCH_DEMO_GAN_KIMG": TINY_GAN_KIMG}
    environ["SYNTHBENCH_ENERGY_TRACKING"] = "false"
    argv = [sys.executable, "-m", "app.cli", "demo", "--port", str(port)]
    demo = Process(argv, environ, demo_env.home / "demo.log")
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return demo.proc.poll() is not None and pytest.fail(demo.output()[-3000:])

        _wait(healthy, 120, "the demo to serve")
        # Serving did not wait for the pipeline: no training has finished, nothing ran in the
        # loading process, and the log already says where to look.
        assert not [j for j in _jobs(type="train_gan") if j.status is JobStatus.succeeded]
        assert all(j.worker != "demo-loader" for j in _jobs())
        log = demo.output()
        assert f"Open {url}" in log and f"{url}/jobs" in log
        assert re.search(r"demo: \[5/5\]", log), log[-2000:]
        # The import, then the GAN, run on the embedded worker; the GAN's page shows progress.
        imported = _wait(
            lambda: [j for j in _jobs(type="import_dataset") if j.status is JobStatus.succeeded],
            180,
            "the demo dataset's import",
        )
        assert imported[0].worker and imported[0].worker != "demo-loader"
        train = _wait(lambda: _jobs(type="train_gan"), 60, "the demo GAN to be queued")[0]
        _wait(lambda: load_job(train.id).progress > 0, 240, "the GAN to report progress")
        with httpx.Client(base_url=url, timeout=30) as http:
            web = WebClient(http)
            assert web.login("researcher", "demo-researcher-pw").status_code == 303
            page = web.get(f"/jobs/{train.id}")
            assert page.status_code == 200
            assert re.search(r"running|succeeded|kimg|tick", page.text)
            assert web.get("/jobs").status_code == 200
    finally:
        demo.stop()


def _digits_dataset_id() -> int | None:
    from app.demo.digits import DIGITS_DATASET

    with session_scope() as db:
        return db.scalar(select(Dataset.id).where(Dataset.name == DIGITS_DATASET))


def _digits_jobs(jobs: list[Job], digits_id: int | None) -> list[Job]:
    """The jobs of the digits benchmark: on its dataset, or sampling its GAN."""
    if digits_id is None:
        return []
    gans = {j.id for j in jobs if j.type == "train_gan" and j.params.get("dataset_id") == digits_id}
    return [
        j
        for j in jobs
        if j.params.get("dataset_id") == digits_id or j.params.get("train_job_id") in gans
    ]


def _drain(researcher_id: int, limit: int = 40, *, digits: bool = False) -> list[int]:
    """Run the demo's queued jobs one at a time through the real runner, as the embedded
    worker would; each success queues what it unblocked. The sweep's GANs are left queued, and
    so is one of the demo's two benchmarks (each takes a few CPU minutes): the digits' unless
    `digits`, then only the digits'."""
    from workers.runner import execute

    ran: list[int] = []
    for _ in range(limit):
        mine = [j for j in _jobs(owner_id=researcher_id) if j.sweep_id is None]
        of_digits = {j.id for j in _digits_jobs(mine, _digits_dataset_id())}
        queued = [j for j in mine if j.status is JobStatus.queued and (j.id in of_digits) == digits]
        if not queued:
            return ran
        execute(queued[0].id, worker="test-worker")
        ran.append(queued[0].id)
    pytest.fail(f"the demo pipeline did not settle after {limit} jobs")


@pytest.mark.timeout(900)
def test_demo_pipeline_runs_every_step_once_through_the_queue(demo_env) -> None:  # type: ignore[no-untyped-def]
    from app.demo.gan import DEMO_SAMPLES
    from app.demo.loader import DEMO_DATASET, DEMO_SUBSET, load_demo
    from app.demo.workspace import DEMO_SWEEP

    info = load_demo()
    # Loading ran no job: the first steps are queued for a worker.
    first = _jobs()
    assert first and all(j.status is JobStatus.queued for j in first)
    assert {j.type for j in first} == {"image_stats", "import_dataset"}
    with session_scope() as db:
        researcher_id = db.scalar(select(User.id).where(User.username == "researcher"))
        dataset = db.scalar(select(Dataset).where(Dataset.name == DEMO_DATASET))
        assert dataset.status is DatasetStatus.importing
    assert info["gan_job_id"] is None  # the GAN waits for its dataset

    _drain(researcher_id)
    everything = [j for j in _jobs() if j.sweep_id is None]
    digit_jobs = _digits_jobs(everything, info["digits_dataset_id"])
    # The digits benchmark (its own test) waits in the queue; the X-rays' ran through.
    assert digit_jobs and all(j.status is JobStatus.queued for j in digit_jobs)
    jobs = [j for j in everything if j not in digit_jobs]
    failed = [(j.type, j.error) for j in jobs if j.status is not JobStatus.succeeded]
    assert not failed, failed
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.type] = counts.get(job.type, 0) + 1
    assert counts.get("train_gan") == 1 and counts.get("sample") == 1
    assert counts.get("import_dataset") == 1 and counts.get("subset_dataset") == 1
    assert counts.get("train_classifier") == 4  # real, synthetic, mixed, and real on the subset
    assert counts.get("nearest_neighbours") == 1 and counts.get("attribution") == 1
    assert counts.get("evaluate_fidelity", 0) >= 1
    with session_scope() as db:
        samples = db.scalar(select(ImageSet).where(ImageSet.name.startswith(DEMO_SAMPLES)))
        # The name counts the train split the GAN saw, not every demo X-ray.
        n_train = db.scalar(select(Dataset).where(Dataset.name == DEMO_DATASET)).info["splits"]
        assert samples.name == f"{DEMO_SAMPLES} (trained on {n_train['train']} demo X-rays)"
        gan = next(j for j in jobs if j.type == "train_gan")
        assert gan.params["config"]["mirror"] is False  # a chest is not symmetric
        assert db.scalar(select(Dataset).where(Dataset.name == DEMO_SUBSET)).content_hash
        assert db.scalar(select(Sweep).where(Sweep.name == DEMO_SWEEP)) is not None
        assert db.scalar(select(Study.id).where(Study.name.startswith("Reader study: Demo")))

        study = db.scalar(select(Study).where(Study.name.startswith("Reader study: Demo")))
        # The 32 px samples are shown at the smallest display size, not enlarged to 512 px,
        # and the readers are told why nobody can be fooled at that size.
        assert study.design["display"]["size"] == 64
        assert "32 px" in study.instructions and "not whether" in study.instructions

    # A second start adds nothing: every step is found done.
    before = len(_jobs())
    again = load_demo()
    assert again["gan_job_id"] == jobs[[j.type for j in jobs].index("train_gan")].id
    assert len(_jobs()) == before


# Six jobs on ~360 images (GAN, samples, three classifiers, Inception FID, neighbours): about two
# CPU minutes on an idle machine, more on a shared one.
@pytest.mark.timeout(900)
def test_demo_digits_benchmark_gives_auc_intervals_on_its_dashboard(demo_env) -> None:  # type: ignore[no-untyped-def]
    """The non-medical digits benchmark runs every step once through the queue, its
    classifiers' AUCs carry DeLong intervals from a test split large enough for them, and its
    dashboard shows them with links to the glossary."""
    from fastapi.testclient import TestClient

    from app.demo.digits import DIGITS_SAMPLES
    from app.demo.loader import load_demo
    from app.evaluation.dashboard import auc_interval
    from app.main import create_app

    info = load_demo()
    digits_id = info["digits_dataset_id"]
    with session_scope() as db:
        researcher_id = db.scalar(select(User.id).where(User.username == "researcher"))
    _drain(researcher_id, digits=True)
    jobs = _digits_jobs([j for j in _jobs() if j.sweep_id is None], digits_id)
    failed = [(j.type, j.error) for j in jobs if j.status is not JobStatus.succeeded]
    assert not failed, failed
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.type] = counts.get(job.type, 0) + 1
    assert counts.get("import_dataset") == 1 and counts.get("train_gan") == 1
    assert counts.get("sample") == 1 and counts.get("nearest_neighbours") == 1
    assert counts.get("evaluate_fidelity", 0) <= 1
    classifiers = {j.params["train_on"]: j for j in jobs if j.type == "train_classifier"}
    assert sorted(classifiers) == ["mixed", "real", "synthetic"]
    with session_scope() as db:
        digits = db.get(Dataset, digits_id)
        assert "NON-MEDICAL" in digits.name and digits.info["splits"]["test"] >= 60
        samples = db.scalar(select(ImageSet).where(ImageSet.name == DIGITS_SAMPLES))
        assert samples is not None
        n_samples = db.scalar(select(func.count(Image.id)).where(Image.image_set_id == samples.id))
        assert n_samples >= 200
    intervals = {}
    for source, job in classifiers.items():
        auc = job.result["macro_auc"]
        interval = auc_interval(job.artefact_dir)
        if auc == 1.0:
            # Perfect separation: DeLong's variance is 0, and no interval is drawn.
            assert interval is None, source
            continue
        assert interval is not None, source
        low, high = interval
        assert 0.0 <= low <= auc <= high <= 1.0
        # An estimate, not an anecdote: ~70 test images bound the interval's width.
        assert high - low < 0.5, (source, interval)
        intervals[source] = interval
    # The tiny test GAN's samples do not separate the classes perfectly.
    assert "synthetic" in intervals, intervals
    # Real 3s and 8s at 16 px are easy to tell apart: the interval excludes chance.
    assert classifiers["real"].result["macro_auc"] == 1.0 or intervals["real"][0] > 0.5
    with TestClient(create_app(), base_url="http://testserver") as client:
        web = WebClient(client)
        assert web.login("researcher", "demo-researcher-pw").status_code == 303
        page = web.get(f"/datasets/{digits_id}/benchmark")
        assert page.status_code == 200
        assert "NON-MEDICAL" in page.text
        for low, high in intervals.values():
            assert f"[{low:.2f}, {high:.2f}]" in page.text
        for term in ("auc", "delong", "fid", "fid-floor", "release-gate"):
            assert f'href="/glossary#{term}"' in page.text, term

    # A second start adds nothing to the digits benchmark either.
    before = len(_jobs())
    again = load_demo()
    assert again["digits_gan_job_id"] in {j.id for j in jobs if j.type == "train_gan"}
    assert len(_jobs()) == before
