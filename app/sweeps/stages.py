"""Create the job of one sweep step through the ordinary start_* services.

Each step is the job a researcher could have started by hand, created only once its inputs
exist (the subset's dataset is ready, the GAN has its checkpoint, the samples are an image set),
so every check those services make still runs. A refused step raises `SpecError` before
anything is added to the session.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy.orm import Session

from app.auth.service import Principal, acting_for
from app.datasets.options import parse_subset_options
from app.datasets.service import start_subset
from app.evaluation.service import start_classifier
from app.gans.service import parse_sample_options, start_sampling, start_training
from app.jobs.specs import SpecError
from app.models import Dataset, Job, Sweep
from app.sweeps.grid import Step, SweepSpec, classifier_request, gan_settings
from app.sweeps.views import point_label

Creator = Callable[[Session, Sweep, SweepSpec, Step, Mapping[str, Job], Dataset], Job]


def _dataset(db: Session, key: str | None, jobs: Mapping[str, Job], root: Dataset) -> Dataset:
    """The dataset written by step `key` (None: the sweep's root dataset)."""
    if key is None:
        return root
    dataset = db.get(Dataset, jobs[key].params["dataset_id"])
    if dataset is None:
        raise SpecError("dataset", f"The dataset of step {key} no longer exists.")
    return dataset


def _subset_name(sweep: Sweep, spec: SweepSpec, step: Step) -> str:
    # The sweep id keeps names unique across sweeps of the same name (dataset names are).
    point = step.point
    parts = [f"{point.resolution} px", f"{point.classes or 'all'} classes"]
    if step.stage == "per_class":
        parts.append(f"{point.per_class} per class")
    return f"{spec.name} · sweep {sweep.id} · {', '.join(parts)}"


def _classes(
    db: Session, sweep: Sweep, spec: SweepSpec, step: Step, jobs: Mapping[str, Job], root: Dataset
) -> Job:
    options = parse_subset_options(
        "classes",
        step.point.classes,
        resolutions=[step.point.resolution],
        available=tuple(root.info.get("resolutions", [])),
    )
    name = _subset_name(sweep, spec, step)
    _, job = start_subset(db, owner_id=sweep.owner_id, parent=root, name=name, options=options)
    return job


def _per_class(
    db: Session, sweep: Sweep, spec: SweepSpec, step: Step, jobs: Mapping[str, Job], root: Dataset
) -> Job:
    parent = _dataset(db, step.data, jobs, root)
    # A class subset already holds only this resolution; the root may hold several.
    resolutions = [step.point.resolution] if parent is root else None
    options = parse_subset_options(
        "samples_per_class", step.point.per_class, resolutions=resolutions
    )
    name = _subset_name(sweep, spec, step)
    _, job = start_subset(db, owner_id=sweep.owner_id, parent=parent, name=name, options=options)
    return job


def _gan(
    db: Session, sweep: Sweep, spec: SweepSpec, step: Step, jobs: Mapping[str, Job], root: Dataset
) -> Job:
    dataset = _dataset(db, step.data, jobs, root)
    config = gan_settings(spec, step.point, tuple(dataset.info.get("resolutions", [])))
    return start_training(
        db, owner_id=sweep.owner_id, dataset=dataset, config=config, queue=spec.queue
    )


def _sample(
    db: Session, sweep: Sweep, spec: SweepSpec, step: Step, jobs: Mapping[str, Job], root: Dataset
) -> Job:
    assert step.after is not None
    options = parse_sample_options(f"{spec.name} · {point_label(spec, step.point)}", spec.draw)
    return start_sampling(
        db, owner_id=sweep.owner_id, train_job=jobs[step.after], options=options, queue=spec.queue
    )


def _owner(db: Session, sweep: Sweep) -> Principal | None:
    """The sweep's owner: its classifiers see what the owner may see (None: made without one,
    from the command line, so nothing to limit)."""
    return acting_for(db, sweep.owner_id) if sweep.owner_id is not None else None


def _real(
    db: Session, sweep: Sweep, spec: SweepSpec, step: Step, jobs: Mapping[str, Job], root: Dataset
) -> Job:
    dataset = _dataset(db, step.data, jobs, root)
    request = classifier_request(spec, step.point.resolution)
    return start_classifier(db, _owner(db, sweep), dataset, request, queue=spec.queue)


def _synthetic(
    db: Session, sweep: Sweep, spec: SweepSpec, step: Step, jobs: Mapping[str, Job], root: Dataset
) -> Job:
    assert step.after is not None
    set_id = (jobs[step.after].result or {}).get("image_set_id")
    if not set_id:
        raise SpecError("image_set_id", "The sampling job stored no image set.")
    dataset = _dataset(db, step.data, jobs, root)
    # Also scored on its own synthetic set, as the benchmark suite does (train-real/test-syn).
    request = classifier_request(spec, step.point.resolution, image_set_id=int(set_id))
    return start_classifier(db, _owner(db, sweep), dataset, request, queue=spec.queue)


CREATORS: dict[str, Creator] = {
    "classes": _classes,
    "per_class": _per_class,
    "gan": _gan,
    "sample": _sample,
    "real": _real,
    "synthetic": _synthetic,
}


def create_step(
    db: Session, sweep: Sweep, spec: SweepSpec, step: Step, jobs: Mapping[str, Job], root: Dataset
) -> Job:
    """The step's job (flushed, not committed), tagged with its sweep and step."""
    job = CREATORS[step.stage](db, sweep, spec, step, jobs, root)
    job.sweep_id, job.sweep_step = sweep.id, step.key
    return job
