"""Datasets: start imports and subsets as jobs, record their outcome, decide who sees what.

A dataset row is created together with its job, in one transaction; the job writes the
prepared store into the dataset's own folder, and `record_outcome` (called by the worker in
the transaction that ends the job) copies the counts, hash and import report onto the row.
Datasets imported from the command line without an owner are visible to every researcher;
others only to their owner and admins.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.config import get_settings
from app.datasets.job_types import import_dataset_spec, subset_dataset_spec
from app.datasets.options import ImportOptions, SubsetOptions
from app.domain.form_values import whole_number
from app.domain.not_found import NotFound
from app.jobs.service import commit_and_enqueue, create_job
from app.jobs.specs import SpecError
from app.models import Dataset, DatasetStatus, Job, JobStatus
from app.models.types import utcnow

IMPORT_JOB_TYPES = frozenset({"import_dataset", "subset_dataset"})


class DatasetNotFound(NotFound):
    noun = "dataset"
    template = "There is no {noun} #{ident} you can see."


def patient_salt() -> str:
    """The installation's key for hashing patient ids, derived from its secret key so that one
    patient gets the same key in every dataset of this installation (and no other)."""
    secret = get_settings().resolved_secret_key().encode()
    return hmac.new(secret, b"synthbench patient key", hashlib.sha256).hexdigest()


def dataset_dir(dataset_id: int) -> Path:
    return get_settings().datasets_dir / str(dataset_id)


def check_import_root(source: str) -> Path:
    """The resolved `source` if it lies inside one of the configured import roots."""
    roots = get_settings().resolved_import_roots()
    raw = (source or "").strip()
    if not raw:
        raise SpecError("source", "Give the folder (or .npz file) to import.")
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = roots[0] / path
    # resolve() follows symlinks, so a link inside a root cannot point outside it.
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        shown = ", ".join(str(r) for r in roots)
        raise SpecError("source", f"Imports from the web are limited to {shown}.")
    if not resolved.exists():
        raise SpecError("source", f"{resolved} does not exist.")
    return resolved


def visible(principal: Principal) -> Any:
    if principal.is_admin:
        return True
    return or_(Dataset.owner_id == principal.user.id, Dataset.owner_id.is_(None))


def list_datasets(db: Session, principal: Principal) -> list[Dataset]:
    return list(db.scalars(select(Dataset).where(visible(principal)).order_by(Dataset.id.desc())))


def get_dataset(db: Session, dataset_id: int, principal: Principal | None) -> Dataset:
    dataset = db.get(Dataset, dataset_id)
    if dataset is None:
        raise DatasetNotFound(dataset_id)
    hidden = principal is not None and not principal.is_admin
    if hidden and dataset.owner_id not in (None, principal.user.id):
        raise DatasetNotFound(dataset_id)
    return dataset


def ready_datasets(db: Session, principal: Principal) -> list[Dataset]:
    """Datasets the launch forms offer, newest first (a launch then checks `is_ready`)."""
    query = select(Dataset).where(Dataset.status == DatasetStatus.ready, visible(principal))
    return list(db.scalars(query.order_by(Dataset.id.desc())))


def chosen_dataset(
    db: Session, principal: Principal | None, raw: object, field: str = "dataset"
) -> Dataset:
    """The dataset a launch form's select names, if the principal may see it."""
    message = "Choose one of your ready datasets."
    try:
        return get_dataset(db, whole_number(field, raw, 1, 2**63 - 1, message), principal)
    except DatasetNotFound:
        raise SpecError(field, message) from None


def require_ready(dataset: Dataset, field: str = "dataset") -> None:
    if not dataset.is_ready:
        raise SpecError(field, f"{dataset.name} is not ready yet; wait for its import.")


def import_job_of(db: Session, dataset: Dataset) -> Job | None:
    return db.get(Job, dataset.job_id) if dataset.job_id else None


def parent_of(db: Session, dataset: Dataset) -> Dataset | None:
    return db.get(Dataset, dataset.parent_id) if dataset.parent_id else None


def versions_of(db: Session, dataset: Dataset, principal: Principal) -> list[Dataset]:
    """Subsets written from `dataset` that `principal` may see."""
    query = select(Dataset).where(Dataset.parent_id == dataset.id, visible(principal))
    return list(db.scalars(query.order_by(Dataset.id)))


def find_by_name(db: Session, name: str) -> Dataset | None:
    return db.scalar(select(Dataset).where(Dataset.name == name))


def _new_dataset(db: Session, name: str, **values: Any) -> Dataset:
    existing = find_by_name(db, name)
    if existing is not None and existing.status is DatasetStatus.failed:
        # A failed import holds no data: let the researcher retry under the same name.
        _forget_failed(db, existing)
        existing = None
    if existing is not None:
        raise SpecError("name", f"A dataset called {name!r} already exists; choose another name.")
    dataset = Dataset(name=name, **values)
    db.add(dataset)
    try:
        db.flush()
    except IntegrityError:  # a concurrent request took the name between check and insert
        db.rollback()
        raise SpecError("name", f"A dataset called {name!r} already exists.") from None
    dataset.path = str(dataset_dir(dataset.id))
    return dataset


def _forget_failed(db: Session, dataset: Dataset) -> None:
    if dataset.path:
        shutil.rmtree(dataset.path, ignore_errors=True)
    db.delete(dataset)
    db.flush()


def start_import(
    db: Session,
    *,
    owner_id: int | None,
    name: str,
    source: Path,
    options: ImportOptions,
    description: str = "",
    queue: str | None = None,
) -> tuple[Dataset, Job]:
    """Create the dataset row and its import job (flushed; the caller commits, then enqueues
    with `launch` or runs the job in-process)."""
    dataset = _new_dataset(
        db,
        name,
        owner_id=owner_id,
        format=options.format,
        source=str(source),
        options=options.as_params(),
        description=description,
    )
    spec = import_dataset_spec(dataset.id, str(source), dataset.path, options.as_params(), queue)
    job = create_job(db, spec, owner_id=owner_id)
    dataset.job_id = job.id
    return dataset, job


def start_subset(
    db: Session,
    *,
    owner_id: int | None,
    parent: Dataset,
    name: str,
    options: SubsetOptions,
    queue: str | None = None,
) -> tuple[Dataset, Job]:
    if parent.status is not DatasetStatus.ready:
        raise SpecError("kind", "The dataset is not ready yet; wait for its import to finish.")
    dataset = _new_dataset(
        db,
        name,
        owner_id=owner_id,
        format="subset",
        source=parent.name,
        parent_id=parent.id,
        options=options.as_params(),
        description=f"Benchmark subset of {parent.name}",
    )
    spec = subset_dataset_spec(dataset.id, parent.path, dataset.path, options.as_params(), queue)
    job = create_job(db, spec, owner_id=owner_id)
    dataset.job_id = job.id
    return dataset, job


def launch(db: Session, job: Job) -> None:
    commit_and_enqueue(db, job)


def record_outcome(db: Session, job: Job) -> None:
    """Copy a finished import / subset job's outcome onto its dataset (same transaction)."""
    if job.type not in IMPORT_JOB_TYPES:
        return
    dataset = db.get(Dataset, job.params.get("dataset_id"))
    if dataset is None:
        return
    dataset.finished_at = utcnow()
    if job.status is JobStatus.succeeded and job.result:
        result = job.result
        dataset.status = DatasetStatus.ready
        dataset.content_hash = result["content_hash"]
        dataset.n_images = result["n_images"]
        dataset.n_patients = result["n_patients"]
        dataset.n_failed = result.get("n_failed", 0)
        dataset.errors = list(result.get("errors", []))
        dataset.info = {
            "label_names": result["label_names"],
            "resolutions": result["resolutions"],
            "splits": result["splits"],
            "n_read": result.get("n_read", result["n_images"]),
            # The import's last progress line and the report lines that are not problems.
            "summary": result.get("summary", ""),
            "notes": list(result.get("notes", [])),
            "n_own_patients": result.get("n_own_patients", 0),
        }
        if result.get("description"):
            dataset.description = result["description"]
    else:
        dataset.status = DatasetStatus.failed
        word = "cancelled" if job.status is JobStatus.cancelled else "failed"
        # The job keeps the traceback for developers; the dataset shows the message alone.
        message = (job.error or "").split("\n\n", 1)[0].strip().removeprefix("ValueError: ")
        dataset.error = message or job.message or f"The import {word}."


def effective_status(dataset: Dataset, job: Job | None) -> str:
    """What to show: an import whose worker vanished (the reaper failed its job) is failed."""
    if dataset.status is DatasetStatus.importing and job is not None and job.status.finished:
        return "failed" if job.status is not JobStatus.succeeded else "ready"
    return dataset.status.value


def info_dict(dataset: Dataset) -> dict[str, Any]:
    """The `synthbench dataset info --json` document (no patient identifiers: only counts)."""
    info = dataset.info or {}
    return {
        "id": dataset.id,
        "name": dataset.name,
        "status": dataset.status.value,
        "format": dataset.format,
        "parent": dataset.parent_id,
        "description": dataset.description,
        "n_images": dataset.n_images,
        "n_patients": dataset.n_patients,
        "n_failed": dataset.n_failed,
        "n_own_patients": info.get("n_own_patients", 0),
        "labels": info.get("label_names", []),
        "splits": info.get("splits", {}),
        "resolutions": info.get("resolutions", []),
        "content_hash": dataset.content_hash,
        "options": dataset.options,
        "summary": info.get("summary", ""),
        "notes": info.get("notes", []),
        "errors": dataset.errors or [],
        "error": dataset.error,
        "path": dataset.path,
    }
