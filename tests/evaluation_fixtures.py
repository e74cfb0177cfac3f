"""Shared set-up of the evaluation tests: the demo X-rays imported as a dataset, a tiny GAN
trained on them for a few steps and a synthetic set sampled from it, all run in-process."""

from __future__ import annotations

import time
from pathlib import Path

from dataset_fixtures import write_folder
from sqlalchemy import select
from support import Env

from app.datasets.options import parse_import_options
from app.datasets.service import start_import
from app.db import session_scope
from app.evaluation.job_types import EVALUATION_TYPES
from app.gans.options import gan_config
from app.gans.service import parse_sample_options, start_sampling, start_training
from app.models import Dataset, Job, JobStatus
from workers.runner import execute


def import_folder(owner_id: int, name: str, source: Path, resolution: int) -> int:
    """A folder of class subfolders imported in-process as `name`; returns the dataset id."""
    with session_scope() as db:
        dataset, job = start_import(
            db,
            owner_id=owner_id,
            name=name,
            source=source,
            options=parse_import_options("folder", resolutions=str(resolution)),
        )
        db.commit()
        dataset_id, job_id = dataset.id, job.id
    execute(job_id)
    return dataset_id


def import_cxr(env: Env, owner_id: int, name: str = "CXR") -> int:
    return import_folder(owner_id, name, write_folder(env.home / "imports" / name.lower()).root, 32)


def train_tiny_gan(owner_id: int, dataset_id: int, resolution: int = 32) -> int:
    """A few optimiser steps of the tiny DCGAN (the benchmark does not need a good one)."""
    with session_scope() as db:
        dataset = db.get(Dataset, dataset_id)
        assert dataset is not None
        config = gan_config(
            {
                "kimg": 0.064,
                "tick_kimg": 0.032,
                "snapshot_ticks": 1,
                "fid_features": None,
                "resolution": resolution,
            },
            preset="tiny-cpu",
            resolutions=(resolution,),
        )
        train = start_training(db, owner_id=owner_id, dataset=dataset, config=config, queue="cpu")
        db.commit()
        train_id = train.id
    execute(train_id)
    return train_id


def gan_samples(owner_id: int, dataset_id: int) -> tuple[int, int]:
    """The tiny GAN and a synthetic set sampled from it: (training job id, image set id)."""
    train_id = train_tiny_gan(owner_id, dataset_id)
    with session_scope() as db:
        train_job = db.get(Job, train_id)
        assert train_job is not None and train_job.status is JobStatus.succeeded, train_job.error
        sampling = start_sampling(
            db,
            owner_id=owner_id,
            train_job=train_job,
            options=parse_sample_options("Tiny GAN samples", 6),
            queue="cpu",
        )
        db.commit()
        sample_id = sampling.id
    execute(sample_id)
    with session_scope() as db:
        sample_job = db.get(Job, sample_id)
        assert sample_job is not None and sample_job.status is JobStatus.succeeded
        return train_id, sample_job.result["image_set_id"]


def dataset_with_gan_samples(env: Env, owner_id: int) -> tuple[int, int, int]:
    """(dataset id, GAN training job id, synthetic image set id)."""
    dataset_id = import_cxr(env, owner_id)
    return (dataset_id, *gan_samples(owner_id, dataset_id))


def evaluation_jobs() -> list[Job]:
    """Every evaluation job so far, oldest first, detached from its session."""
    with session_scope() as db:
        query = select(Job).where(Job.type.in_(EVALUATION_TYPES)).order_by(Job.id)
        jobs = list(db.scalars(query))
        for job in jobs:
            db.expunge(job)
        return jobs


def wait_for_evaluations(count: int, timeout: float = 420) -> list[Job]:
    """At least `count` evaluation jobs, all finished (a worker runs them meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = evaluation_jobs()
        if len(jobs) >= count and all(j.status.finished for j in jobs):
            return jobs
        states = [(j.id, j.type, j.status.value, j.message) for j in jobs]
        assert time.monotonic() < deadline, states
        time.sleep(0.5)
