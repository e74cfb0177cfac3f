"""A job runs as one attempt at a time, whatever dies: `synthbench serve` SIGKILLed with its
embedded worker mid-training, a second worker started on the same host mid-job, and an attempt
whose job was taken over while it still ran (it must stop before its next write).

The job is a real training of the tiny DCGAN on the 16 paediatric X-rays: a tick every 48
images, a snapshot (grid, log line, checkpoint) at every tick. Its run folder is the witness:
two attempts at once would log a tick or a snapshot twice, or step back in kimg.
"""

from __future__ import annotations

import json
import signal
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import pytest
from evaluation_fixtures import import_cxr
from gan_fixtures import write_two_sided
from sqlalchemy import update
from support import Env, child_pids, load_job, make_user, wait_for_job, wait_until

from app.config import get_settings
from app.db import session_scope
from app.gans.job_types import train_gan_spec
from app.gans.options import gan_config
from app.gans.service import start_training
from app.jobs import service
from app.models import Dataset, Job, JobStatus
from app.models.types import utcnow
from ml.progress import Stopped
from ml.training import checkpoint as ckpt
from ml.training.gan import GanConfig, train_gan
from ml.training.run_log import stop_before_write
from workers.leases import Lease
from workers.recovery import requeue_orphans
from workers.reporting import JobReporter, LeaseLost
from workers.runner import _finish, _start

pytestmark = pytest.mark.worker

# Short enough that the restarted worker takes the orphan over within seconds; long enough
# that a loaded machine never misses it while the attempt runs.
HEARTBEAT_TIMEOUT_S = 10


def _configure(monkeypatch: pytest.MonkeyPatch, **settings: object) -> None:
    """SYNTHBENCH_* settings for this process and the workers and servers it starts next."""
    monkeypatch.setenv("SYNTHBENCH_ENERGY_TRACKING", "false")
    for key, value in settings.items():
        monkeypatch.setenv(f"SYNTHBENCH_{key.upper()}", str(value))
    get_settings.cache_clear()


def _submit_training(owner: int, dataset_id: int, kimg: float) -> int:
    with session_scope() as db:
        dataset = db.get(Dataset, dataset_id)
        assert dataset is not None
        config = gan_config(
            {"kimg": kimg, "tick_kimg": 0.048, "snapshot_ticks": 1, "fid_features": None},
            preset="tiny-cpu",
            resolutions=(32,),
        )
        job = start_training(db, owner_id=owner, dataset=dataset, config=config, queue="gpu")
        service.commit_and_enqueue(db, job)
        return job.id


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _snapshots(job: Job) -> list[dict]:
    return _lines(Path(job.artefact_dir or "") / "snapshots.jsonl")


def _assert_one_attempt_at_a_time(job: Job) -> None:
    """Each tick and snapshot logged once, in order, and kimg never steps back."""
    folder = Path(job.artefact_dir or "")
    ticks = _lines(folder / "metrics.jsonl")
    assert [t["tick"] for t in ticks] == list(range(1, len(ticks) + 1))
    kimgs = [t["kimg"] for t in ticks]
    assert kimgs == sorted(set(kimgs)), kimgs
    shots = _snapshots(job)
    assert [s["snapshot"] for s in shots] == list(range(1, len(shots) + 1))
    assert [s["kimg"] for s in shots] == sorted({s["kimg"] for s in shots})
    assert shots[-1]["kimg"] == pytest.approx(job.result["kimg"])
    # The checkpoint loads and is the run's last snapshot.
    state = ckpt.load(folder / "checkpoint.pt")
    assert state["counters"]["nimg"] / 1000 == pytest.approx(job.result["kimg"])
    assert state["counters"]["snapshot"] == len(shots) == job.result["snapshots"]
    assert state["counters"]["tick"] == len(ticks) == job.result["ticks"]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie runs nothing; init reaps it


def test_serve_killed_mid_job_takes_its_worker_along_and_the_job_resumes_once(  # type: ignore[no-untyped-def]
    sqlite_env, monkeypatch, server_factory
) -> None:
    _configure(monkeypatch, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
    owner = make_user("gina", "gina-password-1", "researcher")
    dataset_id = import_cxr(sqlite_env, owner)
    server = server_factory(sqlite_env, embedded_worker=True)
    job_id = _submit_training(owner, dataset_id, kimg=0.48)

    wait_for_job(job_id, lambda j: len(_snapshots(j)) >= 2, timeout=180)
    [worker] = child_pids(server.process.proc.pid)  # the embedded worker
    worker_tree = [worker, *child_pids(worker)]  # and its pool process
    assert len(worker_tree) == 2
    first = load_job(job_id)
    assert first.worker.startswith(f"synthbench-{worker}-")  # named after its own pid

    server.process.stop(signal.SIGKILL)  # serve's whole process group, no chance to clean up
    wait_until(lambda: not any(_alive(p) for p in worker_tree), 10, "the worker to die too")
    killed_at = _snapshots(load_job(job_id))[-1]["kimg"]
    assert load_job(job_id).status is JobStatus.running  # nobody knows yet

    restarted = server_factory(sqlite_env, embedded_worker=True)
    job = wait_for_job(job_id, lambda j: j.status.finished, timeout=240)
    assert job.status is JobStatus.succeeded, job.error
    assert job.attempts == 2 and job.worker != first.worker
    assert job.result["kimg"] == pytest.approx(0.48, abs=0.05)
    assert _snapshots(job)[-1]["kimg"] > killed_at
    _assert_one_attempt_at_a_time(job)
    log = restarted.process.output()
    assert f"job {job_id} was running on {first.worker} (attempt 1)" in log
    assert "whose heartbeat stopped; requeued" in log


def test_second_worker_on_the_same_host_leaves_a_running_job_alone(  # type: ignore[no-untyped-def]
    stack, monkeypatch, worker_factory
) -> None:
    _configure(monkeypatch, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
    owner = make_user("gina", "gina-password-1", "researcher")
    dataset_id = import_cxr(stack, owner)
    first = worker_factory(stack, "worker-1")
    job_id = _submit_training(owner, dataset_id, kimg=0.48)
    wait_for_job(job_id, lambda j: len(_snapshots(j)) >= 1, timeout=180)

    second = worker_factory(stack, "worker-2")  # returns once it is ready: mid-job still
    assert load_job(job_id).status is JobStatus.running
    job = wait_for_job(job_id, lambda j: j.status.finished, timeout=240)
    assert job.status is JobStatus.succeeded, job.error
    assert job.attempts == 1
    assert job.worker.startswith(f"synthbench-{first.proc.pid}-")  # the first worker's attempt
    _assert_one_attempt_at_a_time(job)
    # The newcomer looked for orphans (it logs none) and never received the job.
    assert "requeued" not in second.output() and "received" not in second.output()
    assert f"synthbench-{second.proc.pid}-" in second.output()


# ------------------------------------------------------------------ the lease, in-process


def _job_on(dataset: Path) -> int:
    config = GanConfig(
        arch="dcgan",
        resolution=16,
        batch_size=8,
        kimg=0.064,
        tick_kimg=0.016,
        snapshot_ticks=1,
        arch_options={"base_channels": 8},
    )
    spec = train_gan_spec(1, str(dataset), "hash", asdict(config), "cpu")
    with session_scope() as db:
        return service.create_job(db, spec, owner_id=None).id


def test_attempt_whose_job_is_taken_over_stops_before_its_next_write(
    env: Env, tmp_path: Path
) -> None:
    data = write_two_sided(tmp_path / "data")
    job_id = _job_on(data)
    started = _start(job_id, "worker-a")
    assert started is not None
    lease_a = Lease(job_id, "worker-a", started[3])
    # Throttled so that only the checks right before each write read the row after the first.
    reporter = JobReporter(lease_a, min_interval_s=3600)
    progress, should_stop = reporter.progress_callbacks()
    out = tmp_path / "run"
    taken_over: list[int] = []

    def take_over() -> None:
        """Attempt A is cut off (its heartbeat goes stale); a worker requeues the job and
        attempt B starts on it, while A is still in the middle of its loop."""
        with session_scope() as db:
            db.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(heartbeat_at=utcnow() - timedelta(seconds=600))
            )
        assert requeue_orphans(["cpu"], timeout_s=60) == [job_id]
        started_b = _start(job_id, "worker-b")
        assert started_b is not None and started_b[3] == 2
        taken_over.append(started_b[3])

    def progress_then_take_over(done: float, total: float, message: str = "") -> None:
        progress(done, total, message)
        if not taken_over:
            take_over()

    with pytest.raises(Stopped):
        train_gan(
            data,
            out,
            GanConfig(**load_job(job_id).params["config"]),
            progress=progress_then_take_over,
            should_stop=should_stop,
        )
    assert taken_over and reporter.lost
    # The first tick's line was written under the lease; the snapshot of that same tick comes
    # right after the takeover and is not: no grid, no snapshot line, no checkpoint.
    assert len(_lines(out / "metrics.jsonl")) == 1
    assert _lines(out / "snapshots.jsonl") == []
    assert not (out / "checkpoint.pt").exists() and not (out / "grids").exists()
    # Every other way to write is closed too, and its outcome is not recorded over B's.
    assert stop_before_write(should_stop) and should_stop()
    with pytest.raises(LeaseLost):
        progress(1, 1, "done")
    assert _finish(lease_a, JobStatus.succeeded, message="done") is False
    job = load_job(job_id)
    assert (job.status, job.worker, job.attempts) == (JobStatus.running, "worker-b", 2)
    assert job.message == "resumed (attempt 2)"
    # B holds the lease: its own outcome is recorded.
    assert _finish(Lease(job_id, "worker-b", 2), JobStatus.succeeded, message="done") is True
    assert load_job(job_id).status is JobStatus.succeeded


def test_a_job_whose_attempt_still_beats_is_neither_requeued_nor_started_again(
    env: Env, tmp_path: Path
) -> None:
    job_id = _job_on(write_two_sided(tmp_path / "data"))
    assert _start(job_id, "worker-a") is not None
    assert requeue_orphans(["cpu", "gpu"], timeout_s=60) == []  # it beats: not an orphan
    assert _start(job_id, "worker-b") is None  # a duplicate delivery is dropped
    # Even a row that says queued is not started while an attempt beats on it.
    with session_scope() as db:
        db.execute(update(Job).where(Job.id == job_id).values(status=JobStatus.queued))
    assert _start(job_id, "worker-b") is None
    job = load_job(job_id)
    assert (job.worker, job.attempts) == ("worker-a", 1)
