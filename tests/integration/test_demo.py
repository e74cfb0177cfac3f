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
from sqlalchemy import select
from support import Env, Process, activate, free_port, load_job
from web_client import WebClient

from app.db import session_scope
from app.models import Dataset, DatasetStatus, ImageSet, Job, JobStatus, Study, Sweep, User

TINY_GAN_KIMG = "0.5"


@pytest.fixture
def demo_env(tmp_path, monkeypatch) -> Env:  # type: ignore[no-untyped-def]
    env = Env(
        tmp_path,
        f"sqlite:///{tmp_path / 'synthbench.sqlite'}",
        f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
    )
    monkeypatch.setenv("SYNTHBENCH_DEMO_GAN_KIMG", TINY_GAN_KIMG)
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


def _drain(researcher_id: int, limit: int = 40) -> list[int]:
    """Run the demo's queued jobs one at a time through the real runner, as the embedded
    worker would; each success queues what it unblocked. The sweep's GANs are left queued."""
    from workers.runner import execute

    ran: list[int] = []
    for _ in range(limit):
        queued = [
            j for j in _jobs(status=JobStatus.queued, owner_id=researcher_id) if j.sweep_id is None
        ]
        if not queued:
            return ran
        execute(queued[0].id, worker="test-worker")
        ran.append(queued[0].id)
    pytest.fail(f"the demo pipeline did not settle after {limit} jobs")


def test_demo_pipeline_runs_every_step_once_through_the_queue(demo_env) -> None:  # type: ignore[no-untyped-def]
    from app.demo import DEMO_DATASET, DEMO_SUBSET, load_demo
    from app.demo_gan import DEMO_SAMPLES
    from app.demo_workspace import DEMO_SWEEP

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
    jobs = [j for j in _jobs() if j.sweep_id is None]
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

    # A second start adds nothing: every step is found done.
    before = len(_jobs())
    again = load_demo()
    assert again["gan_job_id"] == jobs[[j.type for j in jobs].index("train_gan")].id
    assert len(_jobs()) == before
