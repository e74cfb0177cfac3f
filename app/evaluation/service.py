"""Start evaluation jobs, and gather what one GAN's benchmark page shows.

`principal=None` is the command line, run by whoever owns the machine: it sees every set
and job. The web passes the signed-in researcher, who sees only their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.service import Principal, may_see
from app.datasets import service as datasets
from app.evaluation import options
from app.evaluation.job_types import EVALUATION_TYPES, evaluation_spec
from app.evaluation.requests import (
    AttributionRequest,
    ClassifierRequest,
    FidelityRequest,
    NeighboursRequest,
)
from app.jobs.service import create_job
from app.jobs.specs import SpecError
from app.models import Dataset, ImageSet, Job, JobStatus


def _ready(dataset: Dataset) -> None:
    datasets.require_ready(dataset)


def dataset_of(db: Session, job: Job) -> Dataset | None:
    """The dataset a job was launched on (None once it was deleted)."""
    dataset_id = (job.params or {}).get("dataset_id")
    return db.get(Dataset, dataset_id) if isinstance(dataset_id, int) else None


def _resolutions(dataset: Dataset) -> list[int]:
    return [int(r) for r in dataset.info.get("resolutions", [])]


def _visible_set(db: Session, image_set_id: int, principal: Principal | None) -> ImageSet:
    image_set = db.get(ImageSet, image_set_id)
    if image_set is None or not may_see(principal, image_set):
        raise SpecError("image_set_id", f"There is no image set {image_set_id} that you can see.")
    return image_set


def _classifier_job(
    db: Session,
    job_id: int,
    principal: Principal | None,
    dataset: Dataset | None = None,
    field: str = "classifier_job_id",
) -> Job:
    job = db.get(Job, job_id)
    if job is None or job.type != "train_classifier" or not may_see(principal, job):
        raise SpecError(field, f"There is no classifier job {job_id} that you can see.")
    if job.status is not JobStatus.succeeded:
        raise SpecError(field, f"Classifier job {job_id} has not succeeded (it is {job.status}).")
    if dataset is not None and job.result.get("dataset_hash") != dataset.content_hash:
        raise SpecError(field, f"Classifier job {job_id} was trained on other data.")
    return job


def _owner(principal: Principal | None) -> int | None:
    return principal.user.id if principal is not None else None


def _create(
    db: Session,
    job_type: str,
    params: dict[str, Any],
    queue: str | None,
    principal: Principal | None,
) -> Job:
    spec = evaluation_spec(job_type, params, queue)
    return create_job(db, spec, owner_id=_owner(principal))


def _base(dataset: Dataset) -> dict[str, Any]:
    return {
        "dataset_id": dataset.id,
        "dataset_path": dataset.path,
        "dataset_hash": dataset.content_hash,
    }


def start_classifier(
    db: Session,
    principal: Principal | None,
    dataset: Dataset,
    request: ClassifierRequest,
    queue: str | None = None,
) -> Job:
    _ready(dataset)
    request = request.checked()
    config = request.config(_resolutions(dataset))
    params: dict[str, Any] = {**_base(dataset), "train_on": request.train_on, "config": config}
    # Which preset the form started from: the job page marks the settings that differ.
    params["preset"] = request.preset
    if request.image_set_id is not None:
        params["image_set_id"] = _visible_set(db, request.image_set_id, principal).id
    params["test_set_ids"] = [_visible_set(db, i, principal).id for i in request.test_set_ids]
    # Keyed by id, with *_id / *_path / *_hash keys, so a clone cannot edit where it reads.
    external = {
        str(i): _external(db, principal, dataset, i, config["resolution"])
        for i in request.external_dataset_ids
    }
    if external:
        params["external_datasets"] = external
    return _create(db, "train_classifier", params, queue, principal)


def _external(
    db: Session, principal: Principal | None, trained_on: Dataset, dataset_id: int, resolution: int
) -> dict[str, Any]:
    """A second site's dataset to validate on, whole: ready, visible, not the training data,
    the same label names (any order) and stored at the classifier's resolution."""
    field = "external_dataset_id"
    try:
        found = datasets.get_dataset(db, dataset_id, principal)  # the datasets' one access rule
    except datasets.DatasetNotFound:
        raise SpecError(field, f"There is no dataset {dataset_id} that you can see.") from None
    _ready(found)
    if found.id == trained_on.id or found.content_hash == trained_on.content_hash:
        raise SpecError(field, f"{found.name} is the training dataset: external data is another.")
    options.external_label_order(
        trained_on.info.get("label_names", []), found.info.get("label_names", []), found.name
    )
    if resolution not in _resolutions(found):
        known = ", ".join(str(r) for r in sorted(_resolutions(found))) or "no resolution"
        raise SpecError(field, f"{found.name} is stored at {known} px, not {resolution}.")
    return {
        "dataset_id": found.id,
        "dataset_name": found.name,
        "dataset_path": found.path,
        "dataset_hash": found.content_hash,
    }


def _set_params(
    db: Session,
    principal: Principal | None,
    dataset: Dataset,
    request: FidelityRequest | NeighboursRequest,
) -> dict[str, Any]:
    _ready(dataset)
    asked = {"resolution": request.resolution}
    return {
        **_base(dataset),
        "image_set_id": _visible_set(db, request.image_set_id, principal).id,
        "resolution": options.resolution(asked, _resolutions(dataset)),
        "max_images": request.max_images,
    }


def start_fidelity(
    db: Session,
    principal: Principal | None,
    dataset: Dataset,
    request: FidelityRequest,
    queue: str | None = None,
) -> Job:
    request = request.checked()
    params = _set_params(db, principal, dataset, request)
    job_id = request.classifier_job_id
    params.update(features=request.features, classifier_job_id=job_id)
    params.update(features_path=request.features_path)
    params.update(fid_resize=request.fid_resize, fid_resamples=request.fid_resamples)
    if job_id is not None:
        _classifier_job(db, job_id, principal, dataset)
    return _create(db, "evaluate_fidelity", params, queue, principal)


def start_neighbours(
    db: Session,
    principal: Principal | None,
    dataset: Dataset,
    request: NeighboursRequest,
    queue: str | None = None,
) -> Job:
    request = request.checked()
    params = _set_params(db, principal, dataset, request)
    params.update(k=request.k, alpha=request.alpha, level=request.level)
    if request.classifier_job_id is not None:
        _classifier_job(db, request.classifier_job_id, principal, dataset)
        params["classifier_job_id"] = request.classifier_job_id
    return _create(db, "nearest_neighbours", params, queue, principal)


def start_attribution(
    db: Session,
    principal: Principal | None,
    request: AttributionRequest,
    queue: str | None = None,
) -> Job:
    """Two classifiers on the same data (typically real-trained and synthetic-trained)."""
    request = request.checked()
    ids = {}
    for role, field in (("real", "real_job_id"), ("synthetic", "synthetic_job_id")):
        ids[role] = _classifier_job(db, getattr(request, field), principal, field=field)
    real, synthetic = ids["real"], ids["synthetic"]
    if real.result.get("dataset_hash") != synthetic.result.get("dataset_hash"):
        raise SpecError("synthetic_job_id", "The two classifiers were tested on different data.")
    if real.result.get("resolution") != synthetic.result.get("resolution"):
        raise SpecError("synthetic_job_id", "The two classifiers use different resolutions.")
    params = {
        "dataset_id": real.params["dataset_id"],
        "dataset_path": real.params["dataset_path"],
        "dataset_hash": real.params["dataset_hash"],
        "classifiers": {"real": real.id, "synthetic": synthetic.id},
        "methods": list(request.methods),
        "n_images": request.n_images,
        "n_steps": request.n_steps,
    }
    return _create(db, "attribution", params, queue, principal)


# --- what a GAN's benchmark page shows -------------------------------------------------------


def _jobs(db: Session, principal: Principal | None, types: tuple[str, ...]) -> list[Job]:
    query = select(Job).where(Job.type.in_(types)).order_by(Job.id)
    if principal is not None and not principal.is_admin:
        query = query.where(Job.owner_id == principal.user.id)
    return list(db.scalars(query))


def gan_runs(db: Session, principal: Principal | None) -> list[Job]:
    """GAN training jobs to pick from for a comparison, newest first."""
    return list(reversed(_jobs(db, principal, ("train_gan",))))


def synthetic_sets_of(db: Session, principal: Principal | None, gan_job: Job) -> list[ImageSet]:
    sampled = [
        j.result["image_set_id"]
        for j in _jobs(db, principal, ("sample",))
        if j.params.get("train_job_id") == gan_job.id and j.result and j.result.get("image_set_id")
    ]
    return [s for s in (db.get(ImageSet, i) for i in sampled) if s is not None]


def evaluation_jobs(
    db: Session, principal: Principal | None, dataset_id: int
) -> dict[str, list[Job]]:
    by_type: dict[str, list[Job]] = {t: [] for t in EVALUATION_TYPES}
    jobs = _jobs(db, principal, EVALUATION_TYPES)
    for job in jobs:
        if job.params.get("dataset_id") == dataset_id:
            by_type[job.type].append(job)
    return by_type


def start_suite(
    db: Session,
    principal: Principal | None,
    dataset: Dataset,
    values: Mapping[str, Any],
    queue: str | None = None,
) -> list[Job]:
    """The benchmark of one synthetic set: classifiers trained on real (unless one with the
    same settings exists), synthetic and mixed images; fidelity; nearest neighbours. All rows
    are created before any is enqueued, so a bad field starts nothing."""
    # Every classifier is also tested on the set (train on real, test on synthetic).
    values = {**values, "test_set_ids": str(values.get("image_set_id", ""))}
    # The form parsed once into each job's request.
    real = ClassifierRequest.from_form({**values, "train_on": "real"})
    trained = [
        ClassifierRequest.from_form({**values, "train_on": s}) for s in ("synthetic", "mixed")
    ]
    config = real.config(_resolutions(dataset))
    set_values = {**values, "resolution": config["resolution"], "classifier_job_id": ""}
    fidelity = FidelityRequest.from_form({**set_values, "features": "inception"})
    neighbours = NeighboursRequest.from_form(set_values)
    started: list[Job] = []
    if not _has_real_classifier(db, principal, dataset, config):
        started.append(start_classifier(db, principal, dataset, real))
    started += [start_classifier(db, principal, dataset, request) for request in trained]
    started.append(start_fidelity(db, principal, dataset, fidelity))
    started.append(start_neighbours(db, principal, dataset, neighbours))
    return started


def _has_real_classifier(
    db: Session, principal: Principal | None, dataset: Dataset, config: dict[str, Any]
) -> bool:
    for job in _jobs(db, principal, ("train_classifier",)):
        if (
            job.params.get("dataset_hash") == dataset.content_hash
            and job.params.get("train_on") == "real"
            and job.params.get("config") == config
            and job.status in (JobStatus.queued, JobStatus.running, JobStatus.succeeded)
        ):
            return True
    return False
