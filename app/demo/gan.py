"""Demo: a tiny conditional DCGAN trained on the demo X-rays' train split, and a set from it.

Queued at start-up once the demo dataset is imported and trained by the embedded worker (about
a minute on an idle laptop CPU) while the newcomer watches its loss and FID curves, a grid per
snapshot and, once it is sampled, a synthetic image set. With a dozen training images it
memorises them; the run page and the set's description say so.
"""

from __future__ import annotations

from sqlalchemy import select

from app.config import get_settings
from app.db import session_scope
from app.demo.state import active_or_done
from app.gans.options import gan_config
from app.gans.service import parse_sample_options, start_sampling, start_training
from app.jobs.service import commit_and_enqueue
from app.models import Dataset, DatasetStatus, ImageSet, JobStatus
from ml.metrics.features import FeatureExtractorUnavailable, packaged_inception_path

# The set's name starts with this; the rest says how many X-rays the GAN was trained on.
DEMO_SAMPLES = "Demo synthetic: tiny DCGAN samples"


def demo_samples_name(n_train: int) -> str:
    """The sampled set's name, with the size of the train split the GAN actually saw (the
    dataset's other images are held out for testing)."""
    return f"{DEMO_SAMPLES} (trained on {n_train} demo X-rays)"


def _fid_features() -> str | None:
    try:
        packaged_inception_path()
    except FeatureExtractorUnavailable:
        return None  # without the optional extra the demo trains without FID
    return "inception"


def demo_gan(researcher_id: int, dataset_id: int) -> int | None:
    """Queue the training once the dataset is ready, and the sampling once it succeeded;
    returns the training job id (None while the dataset is still importing)."""
    with session_scope() as db:
        # The digits benchmark trains a GAN too: this is the X-ray dataset's own.
        train = active_or_done(
            db, researcher_id, "train_gan", lambda p: p.get("dataset_id") == dataset_id
        )
        if train is None:
            dataset = db.get(Dataset, dataset_id)
            if dataset is None or dataset.status is not DatasetStatus.ready:
                return None
            kimg = get_settings().demo_gan_kimg
            config = gan_config(
                {
                    # 12k images (750 steps): blurry but recognisable chest films on a CPU.
                    "kimg": kimg,
                    "tick_kimg": min(1.0, kimg / 2),
                    "snapshot_ticks": 2,
                    # DiffAugment: made for GANs trained on a few images (Zhao et al. 2020).
                    "augment": "diffaugment",
                    # A chest is not symmetric (heart on the left): mirrored films are wrong.
                    "mirror": False,
                    "fid_features": _fid_features(),
                    "fid_images": 64,
                },
                preset="tiny-cpu",
                resolutions=tuple(dataset.info["resolutions"]),
            )
            train = start_training(
                db, owner_id=researcher_id, dataset=dataset, config=config, queue="cpu"
            )
            commit_and_enqueue(db, train)
            return train.id
        train_id = train.id
        if train.status is not JobStatus.succeeded:
            return train_id
        has_set = db.scalar(select(ImageSet.id).where(ImageSet.name.startswith(DEMO_SAMPLES)))
        sampling = active_or_done(
            db, researcher_id, "sample", lambda p: p.get("train_job_id") == train_id
        )
        if has_set or sampling is not None:
            return train_id
        dataset = db.get(Dataset, dataset_id)
        n_train = int((dataset.info.get("splits") or {}).get("train", 0)) if dataset else 0
        sampling = start_sampling(
            db,
            owner_id=researcher_id,
            train_job=train,
            options=parse_sample_options(demo_samples_name(n_train), 8),
            queue="cpu",
        )
        commit_and_enqueue(db, sampling)
    return train_id
