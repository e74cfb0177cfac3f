"""Job specs: the one place that turns user input into a job's type, queue and params.

The web form and the CLI both call these builders, so a job means the same thing whichever
door it came through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ml.data.collections import available_collections

QUEUES = ("cpu", "gpu")


class SpecError(ValueError):
    """Invalid job input; ``field`` names the form field for an inline error."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class JobSpec:
    type: str
    queue: str
    params: dict[str, Any] = field(default_factory=dict)
    # None: `app.jobs.naming.default_name` names the job from its type and params.
    name: str | None = None


@dataclass(frozen=True)
class JobType:
    name: str
    title: str
    default_queue: str


JOB_TYPES: dict[str, JobType] = {
    "image_stats": JobType("image_stats", "Image statistics of a collection", "cpu"),
    "import_dataset": JobType("import_dataset", "Import a dataset", "cpu"),
    "subset_dataset": JobType("subset_dataset", "Benchmark subset of a dataset", "cpu"),
    "train_gan": JobType("train_gan", "Train a GAN", "gpu"),
    "sample": JobType("sample", "Sample a GAN checkpoint into an image set", "gpu"),
    "translate": JobType(
        "translate", "CycleGAN: translate one dataset into another's style", "gpu"
    ),
    "train_classifier": JobType(
        "train_classifier", "Train a classifier on real, synthetic or mixed images", "gpu"
    ),
    "evaluate_fidelity": JobType(
        "evaluate_fidelity", "Fidelity: FID, KID, precision/recall against real", "gpu"
    ),
    "nearest_neighbours": JobType(
        "nearest_neighbours", "Privacy: nearest real neighbours of synthetic images", "gpu"
    ),
    "attribution": JobType(
        "attribution", "Attribution maps of two classifiers side by side", "gpu"
    ),
}

EVALUATION_TYPES = ("train_classifier", "evaluate_fidelity", "nearest_neighbours", "attribution")


def _queue(queue: str | None, job_type: str) -> str:
    chosen = (queue or JOB_TYPES[job_type].default_queue).strip().lower()
    if chosen not in QUEUES:
        raise SpecError("queue", f"Unknown queue {chosen!r}; choose one of {', '.join(QUEUES)}.")
    return chosen


def image_stats_spec(collection: str, queue: str | None = None) -> JobSpec:
    collections = available_collections()
    if collection not in collections:
        known = ", ".join(sorted(collections)) or "none installed"
        raise SpecError("collection", f"Unknown image collection {collection!r} (known: {known}).")
    return JobSpec("image_stats", _queue(queue, "image_stats"), {"collection": collection})


def import_dataset_spec(
    dataset_id: int, source: str, dest: str, options: dict[str, Any], queue: str | None = None
) -> JobSpec:
    """`options` come from `app.datasets.options.ImportOptions.as_params` (already checked)."""
    params = {"dataset_id": dataset_id, "source": source, "dest": dest, **options}
    return JobSpec("import_dataset", _queue(queue, "import_dataset"), params)


def subset_dataset_spec(
    dataset_id: int, parent: str, dest: str, options: dict[str, Any], queue: str | None = None
) -> JobSpec:
    params = {"dataset_id": dataset_id, "parent": parent, "dest": dest, **options}
    return JobSpec("subset_dataset", _queue(queue, "subset_dataset"), params)


def train_gan_spec(
    dataset_id: int, dataset_path: str, dataset_hash: str, config: dict[str, Any], queue: str | None
) -> JobSpec:
    """`config` is `GanConfig` as a dict (checked by `app.gans.options.gan_config`)."""
    params = {
        "dataset_id": dataset_id,
        "dataset_path": dataset_path,
        "dataset_hash": dataset_hash,
        "config": config,
    }
    return JobSpec("train_gan", _queue(queue, "train_gan"), params)


def sample_spec(
    train_job_id: int, checkpoint: str, options: dict[str, Any], queue: str | None
) -> JobSpec:
    params = {"train_job_id": train_job_id, "checkpoint": checkpoint, **options}
    return JobSpec("sample", _queue(queue, "sample"), params)


def translate_spec(params: dict[str, Any], queue: str | None) -> JobSpec:
    """`params`: dataset_a/b ids, paths and hashes, a CycleGanConfig dict, name, split."""
    return JobSpec("translate", _queue(queue, "translate"), params)


def evaluation_spec(job_type: str, params: dict[str, Any], queue: str | None) -> JobSpec:
    """`params` come from `app.evaluation.options` (already checked)."""
    if job_type not in EVALUATION_TYPES:
        raise SpecError("type", f"Unknown evaluation job type {job_type!r}.")
    return JobSpec(job_type, _queue(queue, job_type), params)
