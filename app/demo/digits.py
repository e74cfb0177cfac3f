"""Demo: a benchmark whose AUCs are estimates, on scikit-learn's handwritten digits (NON-MEDICAL).

The 16 demo X-rays show the workflow but leave 3 test images, so every AUC there is an
anecdote. This second benchmark uses a labelled set that ships with scikit-learn: the 3s and
8s of its 8x8 handwritten digits (about 360 images), imported at 16 px, so the test split holds
about 70 images and the DeLong intervals of real- and synthetic-trained AUC are estimates.
Two classes, because a DeLong interval of a single AUC needs one label to carry the comparison
(see app/evaluation/dashboard.py); 3 against 8 because they share most strokes.

Every step is an ordinary job of the demo researcher, queued by `advance_demo` once its inputs
exist: the import, a tiny conditional DCGAN, its samples, classifiers trained on real,
synthetic and both, FID with its real-vs-real floor, and nearest neighbours with the release
gate. Everything is labelled non-medical wherever it appears.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select

from app.auth.service import acting_for
from app.config import get_settings
from app.datasets.options import parse_import_options
from app.datasets.service import find_by_name, start_import
from app.db import session_scope
from app.demo.gan import _fid_features
from app.demo.state import active_or_done, demo_jobs
from app.evaluation import service as evaluation
from app.evaluation.requests import ClassifierRequest, FidelityRequest, NeighboursRequest
from app.gans.options import gan_config
from app.gans.service import parse_sample_options, start_sampling, start_training
from app.jobs.service import commit_and_enqueue
from app.models import Dataset, DatasetStatus, ImageSet, JobStatus

DIGITS_DATASET = "Demo digits (NON-MEDICAL): scikit-learn handwritten 3 vs 8"
DIGITS_SAMPLES = "Demo digits (NON-MEDICAL): tiny DCGAN samples of 3 vs 8"
DIGITS_CLASSES: dict[int, str] = {3: "three", 8: "eight"}
DIGITS_RESOLUTION = 16
# About as many synthetic images per class as the real train split holds (~125 per class).
DIGITS_PER_CLASS = 125
# Fewer epochs and larger batches than the tiny preset's (30 x 8): with ~250 training images
# that is ~100 steps, seconds on a CPU, and plenty for 16 px digits.
DIGITS_BATCH = 32
ATTRIBUTION = (
    "NON-MEDICAL demonstration data: the digits 3 and 8 of scikit-learn's copy of the UCI "
    "'Optical Recognition of Handwritten Digits' test set (E. Alpaydin, C. Kaynak, 1998; "
    "CC BY 4.0), 8x8 px with 17 grey levels. Each image is its own 'patient'."
)


def write_digits_dataset(
    dest: Path, classes: dict[int, str] = DIGITS_CLASSES
) -> tuple[Path, dict[str, int]]:
    """`dest/<label>/<file>.png` (8x8 grey, 0-16 scaled to 0-255), patients.csv with every image
    its own patient (the digits carry no writer id), and the licence note; returns `dest` and
    the images written per label."""
    # Lazy: scikit-learn is a worker/CLI dependency, never the web tier's.
    from sklearn.datasets import load_digits

    digits = load_digits()
    dest.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []
    counts = dict.fromkeys(classes.values(), 0)
    for index, (image, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        label = classes.get(int(target))
        if label is None:
            continue
        name = f"digit-{index:04d}.png"
        target_path = dest / label / name
        target_path.parent.mkdir(exist_ok=True)
        if not target_path.exists():
            pixels = np.round(np.asarray(image) * (255.0 / 16.0)).astype(np.uint8)
            PILImage.fromarray(pixels, mode="L").save(target_path, "PNG")
        rows.append((f"{label}/{name}", Path(name).stem))
        counts[label] += 1
    with (dest / "patients.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "patient_id"])
        writer.writerows(rows)
    (dest / "ATTRIBUTION.txt").write_text(ATTRIBUTION + "\n", encoding="utf-8")
    return dest, counts


def _of_digits(dataset_id: int):  # type: ignore[no-untyped-def]
    return lambda params: params.get("dataset_id") == dataset_id


def _import(researcher_id: int) -> tuple[int, bool]:
    """The import job (queued once); returns the dataset id and whether it is ready."""
    with session_scope() as db:
        dataset = find_by_name(db, DIGITS_DATASET)
        if dataset is not None and dataset.status is not DatasetStatus.failed:
            return dataset.id, dataset.status is DatasetStatus.ready
    source, _ = write_digits_dataset(get_settings().resolved_import_roots()[0] / "digits-3-vs-8")
    with session_scope() as db:
        dataset, job = start_import(
            db,
            owner_id=researcher_id,
            name=DIGITS_DATASET,
            source=source,
            options=parse_import_options("folder", resolutions=str(DIGITS_RESOLUTION)),
            description=ATTRIBUTION,
        )
        commit_and_enqueue(db, job)
        return dataset.id, False


def _gan(researcher_id: int, dataset_id: int) -> int | None:
    """Train once, then sample once; returns the training job id."""
    with session_scope() as db:
        train = active_or_done(db, researcher_id, "train_gan", _of_digits(dataset_id))
        if train is None:
            dataset = db.get(Dataset, dataset_id)
            assert dataset is not None
            kimg = get_settings().demo_gan_kimg
            config = gan_config(
                {
                    "kimg": kimg,
                    "tick_kimg": min(1.0, kimg / 2),
                    "snapshot_ticks": 2,
                    "resolution": DIGITS_RESOLUTION,
                    # A mirrored 3 is not a 3.
                    "mirror": False,
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
        has_set = db.scalar(select(ImageSet.id).where(ImageSet.name == DIGITS_SAMPLES))
        sampled = active_or_done(
            db, researcher_id, "sample", lambda p: p.get("train_job_id") == train_id
        )
        if has_set is None and sampled is None:
            sampling = start_sampling(
                db,
                owner_id=researcher_id,
                train_job=train,
                options=parse_sample_options(DIGITS_SAMPLES, DIGITS_PER_CLASS),
                queue="cpu",
            )
            commit_and_enqueue(db, sampling)
        return train_id


def _evaluation(researcher_id: int, dataset_id: int) -> None:
    """Classifiers once the samples exist; FID and neighbours once the classifiers finished."""
    with session_scope() as db:
        samples = db.scalar(select(ImageSet).where(ImageSet.name == DIGITS_SAMPLES))
        dataset = db.get(Dataset, dataset_id)
        if samples is None or dataset is None:
            return
        set_id = samples.id
        principal = acting_for(db, researcher_id)
        classifiers = demo_jobs(db, researcher_id, "train_classifier", _of_digits(dataset_id))
        if not classifiers:
            for source in ("real", "synthetic", "mixed"):
                request = ClassifierRequest(
                    train_on=source,
                    image_set_id=None if source == "real" else set_id,
                    resolution=DIGITS_RESOLUTION,
                    epochs=get_settings().demo_classifier_epochs,
                    batch_size=DIGITS_BATCH,
                    test_set_ids=(set_id,),
                )
                job = evaluation.start_classifier(db, principal, dataset, request)
                commit_and_enqueue(db, job)
            return
        if any(job.status is not JobStatus.succeeded for job in classifiers):
            return
        if active_or_done(db, researcher_id, "nearest_neighbours", _of_digits(dataset_id)):
            return
        real = next(job for job in classifiers if job.params["train_on"] == "real")
        later = []
        if _fid_features() is not None:
            later.append(
                evaluation.start_fidelity(
                    db, principal, dataset, FidelityRequest(set_id, DIGITS_RESOLUTION)
                )
            )
        later.append(
            evaluation.start_neighbours(
                db,
                principal,
                dataset,
                NeighboursRequest(set_id, DIGITS_RESOLUTION, classifier_job_id=real.id),
            )
        )
        for job in later:
            commit_and_enqueue(db, job)


def demo_digits(researcher_id: int) -> dict[str, int | None]:
    """Queue every digits step whose inputs exist; returns the dataset and GAN job ids."""
    dataset_id, ready = _import(researcher_id)
    if not ready:
        return {"digits_dataset_id": dataset_id, "digits_gan_job_id": None}
    gan_job_id = _gan(researcher_id, dataset_id)
    _evaluation(researcher_id, dataset_id)
    return {"digits_dataset_id": dataset_id, "digits_gan_job_id": gan_job_id}
