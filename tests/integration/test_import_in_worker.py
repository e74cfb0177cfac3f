"""A dataset import on the production worker (Celery prefork, `synthbench worker`) decodes in
a pool of processes although its pool process is daemonic; killing that process mid-import
leaves none of the decoding processes behind, and the retry finishes the import."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from dataset_fixtures import CXR
from support import Env, Process, child_pids, wait_for_job, wait_until

from app.config import get_settings
from app.datasets.options import parse_import_options
from app.datasets.service import launch, start_import
from app.db import session_scope
from app.models import JobStatus
from ml.data.pools import usable_cores

COPIES = 8  # 128 images: a pool decodes, and outlasts its start-up
pytestmark = pytest.mark.skipif(usable_cores() < 2, reason="a pool needs two usable cores")


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for child in child_pids(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def _pool_of(pid: int) -> list[int]:
    """Every process under `pid` once its fork server has forked two, else []."""
    found = _descendants(pid)
    forked = [p for p in found if len(child_pids(p)) >= 2]
    return found if forked else []


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def _xrays(env: Env, copies: int) -> Path:
    """`copies` x the 16 X-rays as a folder-per-class dataset, as hard links."""
    originals = env.home / "originals"
    originals.mkdir(parents=True)
    for file in CXR.files:
        shutil.copy(file, originals / file.name)
    root = env.home / "xrays"
    for i in range(copies):
        for file, label in zip(CXR.files, CXR.labels, strict=True):
            dest = root / label / f"{i:04d}-{file.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(originals / file.name, dest)
    return root


def test_import_job_decodes_on_every_core_and_its_processes_die_with_it(  # type: ignore[no-untyped-def]
    sqlite_env, monkeypatch, worker_factory
) -> None:
    monkeypatch.setenv("SYNTHBENCH_ENERGY_TRACKING", "false")
    get_settings.cache_clear()
    worker: Process = worker_factory(sqlite_env)
    with session_scope() as db:
        _, job = start_import(
            db,
            owner_id=None,
            name="xrays",
            source=_xrays(sqlite_env, COPIES),
            options=parse_import_options("folder", resolutions="32"),
        )
        launch(db, job)
        job_id = job.id
    wait_for_job(job_id, lambda j: j.status is JobStatus.running)
    [pool] = child_pids(worker.proc.pid)  # the prefork pool process running the job
    # Its decoding pool: processes forked by the fork server it started (with its resource
    # tracker); the old code had none, a daemonic process may not start children.
    decoders = wait_until(lambda: _pool_of(pool), what="a decoding pool")

    os.kill(pool, signal.SIGKILL)  # the OOM killer, say
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in decoders) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in decoders if _alive(p)], "decoding processes outlived their import"

    # Celery retries it on a fresh pool process, which imports what the journal does not list,
    # on every core again.
    job = wait_for_job(job_id, lambda j: j.status.finished, timeout=120)
    assert job.status is JobStatus.succeeded, job.error
    assert job.attempts == 2
    assert job.result["n_images"] == COPIES * len(CXR.files)
    # The pool's processes, and the job's own while they started.
    assert 1 < job.result["decode_processes"] <= usable_cores() + 1
