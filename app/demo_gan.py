"""Demo: a tiny conditional DCGAN trained on the 16 demo X-rays, and a set sampled from it.

Trained in-process at start-up (under a minute on an idle laptop CPU), so a newcomer finds a
finished run with loss and FID curves, a grid per snapshot and a synthetic image set. With 16
training images it memorises them; the run page and the set's description say so.
"""

from __future__ import annotations

from sqlalchemy import select

from app.db import session_scope
from app.gans.options import gan_config
from app.gans.service import parse_sample_options, start_sampling, start_training
from app.models import Dataset, ImageSet, Job, JobStatus
from ml.metrics.features import FeatureExtractorUnavailable, packaged_inception_path

DEMO_SAMPLES = "Demo synthetic: tiny DCGAN samples (trained on the 16 demo X-rays)"


def _fid_features() -> str | None:
    try:
        packaged_inception_path()
    except FeatureExtractorUnavailable:
        return None  # without the optional extra the demo trains without FID
    return "inception"


def demo_gan(researcher_id: int, dataset_id: int) -> int | None:
    """Train (once) and sample (once); returns the training job id."""
    from workers.runner import execute

    with session_scope() as db:
        done = db.scalar(
            select(Job.id)
            .where(Job.type == "train_gan", Job.status == JobStatus.succeeded)
            .order_by(Job.id)
        )
        if done is None:
            dataset = db.get(Dataset, dataset_id)
            if dataset is None or not dataset.content_hash:
                return None
            config = gan_config(
                {
                    # 12k images (750 steps): blurry but recognisable chest films on a CPU.
                    "kimg": 12.0,
                    "tick_kimg": 1.0,
                    "snapshot_ticks": 2,
                    # DiffAugment: made for GANs trained on a few images (Zhao et al. 2020).
                    "augment": "diffaugment",
                    "fid_features": _fid_features(),
                    "fid_images": 64,
                },
                preset="tiny-cpu",
                resolutions=tuple(dataset.info["resolutions"]),
            )
            job = start_training(
                db, owner_id=researcher_id, dataset=dataset, config=config, queue="cpu"
            )
            db.commit()
            done = job.id
            execute(job.id, worker="demo-loader")
    with session_scope() as db:
        train_job = db.get(Job, done)
        has_set = db.scalar(select(ImageSet.id).where(ImageSet.name == DEMO_SAMPLES))
        if train_job is None or train_job.status is not JobStatus.succeeded or has_set:
            return done
        sampling = start_sampling(
            db,
            owner_id=researcher_id,
            train_job=train_job,
            options=parse_sample_options(DEMO_SAMPLES, 8),
            queue="cpu",
        )
        db.commit()
        sampling_id = sampling.id
    execute(sampling_id, worker="demo-loader")
    return done
