"""Demo: the benchmark of the tiny GAN's samples, computed once at start-up.

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

from app.db import session_scope
from app.demo_gan import DEMO_SAMPLES, _fid_features
from app.evaluation import service
from app.models import Dataset, ImageSet, Job, JobStatus


def _run(job_ids: list[int]) -> None:
    from workers.runner import execute

    for job_id in job_ids:
        execute(job_id, worker="demo-loader")


def _classifiers(db, dataset: Dataset) -> dict[str, Job]:  # type: ignore[no-untyped-def]
    jobs = db.scalars(
        select(Job).where(Job.type == "train_classifier", Job.status == JobStatus.succeeded)
    )
    found: dict[str, Job] = {}
    for job in jobs:
        if job.params.get("dataset_id") == dataset.id:
            found[job.params["train_on"]] = job
    return found


def demo_evaluation(researcher_id: int, gan_job_id: int | None) -> None:
    """Run (once) the benchmark of the demo GAN's sample set."""
    if gan_job_id is None:
        return
    with session_scope() as db:
        gan_job = db.get(Job, gan_job_id)
        samples = db.scalar(select(ImageSet).where(ImageSet.name == DEMO_SAMPLES))
        if gan_job is None or samples is None:
            return
        if db.scalar(select(Job.id).where(Job.type == "nearest_neighbours")) is not None:
            return  # already benchmarked on an earlier start
        dataset = db.get(Dataset, gan_job.params["dataset_id"])
        assert dataset is not None
        principal = None  # the loader acts for the demo researcher through owner_id
        resolution = str(gan_job.params["config"]["resolution"])
        values = {
            "image_set_id": str(samples.id),
            "test_set_ids": str(samples.id),
            "preset": "tiny-cpu",
            "resolution": resolution,
        }
        started = [
            service.start_classifier(
                db, principal, dataset, {**values, "train_on": source}, owner_id=researcher_id
            )
            for source in ("real", "synthetic", "mixed")
        ]
        # The 2-per-class subset gives the dashboard a second point on the samples axis.
        subset = db.scalar(select(Dataset).where(Dataset.parent_id == dataset.id))
        if subset is not None and subset.content_hash:
            real_only = {"preset": "tiny-cpu", "resolution": resolution, "train_on": "real"}
            started.append(
                service.start_classifier(db, principal, subset, real_only, owner_id=researcher_id)
            )
        db.commit()
        first = [j.id for j in started]
        dataset_id = dataset.id
    _run(first)
    with session_scope() as db:
        dataset = db.get(Dataset, dataset_id)
        assert dataset is not None
        classifiers = _classifiers(db, dataset)
        real = classifiers.get("real")
        later = []
        if _fid_features() is not None:
            later.append(
                service.start_fidelity(
                    db,
                    principal,
                    dataset,
                    {**values, "features": "inception"},
                    owner_id=researcher_id,
                )
            )
        if real is not None:
            later.append(
                service.start_fidelity(
                    db,
                    principal,
                    dataset,
                    {**values, "features": "domain", "classifier_job_id": str(real.id)},
                    owner_id=researcher_id,
                )
            )
        later.append(
            service.start_neighbours(
                db,
                principal,
                dataset,
                {**values, "classifier_job_id": str(real.id) if real else ""},
                owner_id=researcher_id,
            )
        )
        if real is not None and "synthetic" in classifiers:
            later.append(
                service.start_attribution(
                    db,
                    principal,
                    {
                        "real_job_id": str(real.id),
                        "synthetic_job_id": str(classifiers["synthetic"].id),
                        "methods": "integrated_gradients,grad_cam",
                        "n_images": "4",
                    },
                    owner_id=researcher_id,
                )
            )
        db.commit()
        ids = [j.id for j in later]
    _run(ids)
