"""The dataset job types: importing a dataset and deriving a benchmark subset of one. Both write
one dataset row's folder and report back onto that row when they end."""

from __future__ import annotations

from typing import Any

from app.jobs.registry import JobKind
from app.jobs.specs import JobSpec, job_spec

# The dataset row takes its counts and hash (or the error) in the transaction ending the job.
_ON_FINISHED = "app.datasets.service:record_outcome"


def import_dataset_spec(
    dataset_id: int, source: str, dest: str, options: dict[str, Any], queue: str | None = None
) -> JobSpec:
    """`options` come from `app.datasets.options.ImportOptions.as_params` (already checked)."""
    params = {"dataset_id": dataset_id, "source": source, "dest": dest, **options}
    return job_spec("import_dataset", params, queue)


def subset_dataset_spec(
    dataset_id: int, parent: str, dest: str, options: dict[str, Any], queue: str | None = None
) -> JobSpec:
    params = {"dataset_id": dataset_id, "parent": parent, "dest": dest, **options}
    return job_spec("subset_dataset", params, queue)


# Neither may be retried or cloned: rerunning one outside the dataset's own flow would rewrite a
# dataset others may already use (or one since forgotten); its pages re-import instead.
KINDS = (
    JobKind(
        "import_dataset",
        "Import a dataset",
        "cpu",
        handler="workers.handlers:import_dataset",
        request="app.datasets.options:ImportOptions",
        on_finished=_ON_FINISHED,
        describe=lambda params: "Import",
        rerun_refusal="Re-import the dataset from the Datasets page instead.",
    ),
    JobKind(
        "subset_dataset",
        "Benchmark subset of a dataset",
        "cpu",
        handler="workers.handlers:subset_dataset",
        request="app.datasets.options:SubsetOptions",
        on_finished=_ON_FINISHED,
        describe=lambda params: "Benchmark subset",
        rerun_refusal="Make the subset again from its parent dataset's page instead.",
    ),
)
