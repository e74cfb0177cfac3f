"""Demo: the benchmark of the tiny GAN's samples, queued as soon as its inputs exist.

The dataset's benchmark dashboard gets a second point from a real-trained classifier on the
"2 training images per class" subset.

Tiny classifiers (seconds on a CPU) trained on the real demo X-rays, on the GAN's samples and
on both; FID/KID/precision/recall with the real-vs-real floor; nearest neighbours in pixel and
classifier-feature space with the release verdict; attribution maps of the real- and
synthetic-trained classifiers side by side. With 16 real images every figure has a huge
uncertainty and the GAN memorises: the benchmark page shows both, which is the point.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.service import acting_for
from app.db import session_scope
from app.demo.gan import DEMO_SAMPLES, _fid_features
from app.demo.state import active_or_done, demo_jobs
from app.evaluation import service
from app.evaluation.requests import (
    AttributionRequest,
    ClassifierRequest,
    FidelityRequest,
    NeighboursRequest,
)
from app.jobs.service import commit_and_enqueue
from app.models import Dataset, ImageSet, Job, JobStatus


def _launch(db: Session, jobs: list[Job]) -> None:
    for job in jobs:
        commit_and_enqueue(db, job)


def demo_evaluation(researcher_id: int, gan_job_id: int | None) -> None:
    """Queue the benchmark of the demo GAN's sample set: the classifiers once the samples
    exist, then fidelity, neighbours and attribution once the classifiers have finished."""
    if gan_job_id is None:
        return
    with session_scope() as db:
        gan_job = db.get(Job, gan_job_id)
        samples = db.scalar(select(ImageSet).where(ImageSet.name.startswith(DEMO_SAMPLES)))
        if gan_job is None or samples is None:
            return
        dataset = db.get(Dataset, gan_job.params["dataset_id"])
        assert dataset is not None
        principal = acting_for(db, researcher_id)
        resolution = int(gan_job.params["config"]["resolution"])
        set_id = samples.id
        # Only this dataset's (and its subset's): the digits benchmark has classifiers too.
        subset_ids = set(db.scalars(select(Dataset.id).where(Dataset.parent_id == dataset.id)))
        classifiers = demo_jobs(
            db,
            researcher_id,
            "train_classifier",
            lambda p: p.get("dataset_id") in {dataset.id, *subset_ids},
        )
        if not classifiers:
            started = [
                service.start_classifier(
                    db,
                    principal,
                    dataset,
                    ClassifierRequest(
                        train_on=source,
                        image_set_id=None if source == "real" else set_id,
                        resolution=resolution,
                        test_set_ids=(set_id,),  # every classifier is also tested on the set
                    ),
                )
                for source in ("real", "synthetic", "mixed")
            ]
            # The 2-per-class subset gives the dashboard a second point on the samples axis.
            subset = db.scalar(select(Dataset).where(Dataset.parent_id == dataset.id))
            if subset is not None and subset.content_hash:
                real_only = ClassifierRequest(resolution=resolution)
                started.append(service.start_classifier(db, principal, subset, real_only))
            _launch(db, started)
            return
        if any(job.status is not JobStatus.succeeded for job in classifiers):
            return  # the later steps read the finished classifiers
        if active_or_done(
            db, researcher_id, "nearest_neighbours", lambda p: p.get("dataset_id") == dataset.id
        ):
            return
        by_source = {
            job.params["train_on"]: job
            for job in classifiers
            if job.params.get("dataset_id") == dataset.id
        }
        real = by_source.get("real")
        later = []
        if _fid_features() is not None:
            later.append(
                service.start_fidelity(db, principal, dataset, FidelityRequest(set_id, resolution))
            )
        if real is not None:
            later.append(
                service.start_fidelity(
                    db,
                    principal,
                    dataset,
                    FidelityRequest(
                        set_id, resolution, features="domain", classifier_job_id=real.id
                    ),
                )
            )
        later.append(
            service.start_neighbours(
                db,
                principal,
                dataset,
                NeighboursRequest(set_id, resolution, classifier_job_id=real.id if real else None),
            )
        )
        if real is not None and "synthetic" in by_source:
            later.append(
                service.start_attribution(
                    db,
                    principal,
                    AttributionRequest(
                        real.id,
                        by_source["synthetic"].id,
                        methods=("integrated_gradients", "grad_cam"),
                        n_images=4,
                    ),
                )
            )
        _launch(db, later)
