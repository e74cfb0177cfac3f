"""The job-type registry: every job type is declared once, by the feature that owns it.

A feature lists its `JobKind`s in its own `job_types` module (`app/gans/job_types.py`, ...) and
`app/job_catalog.py` gathers them. The jobs package (routes, clone, naming, outcomes) and the
worker iterate the registry and know no job type by name.

Code is referenced by "module:attribute" strings, resolved on first use, never imported by a
declaration: a handler imports torch, and a hook imports its feature's service, which in turn
imports its own `job_types` for the spec builders. Declaring a job type therefore imports nothing
heavy (the web tier stays torch-free, tests/integration/test_lean_web.py) and makes no cycle.
`tests/unit/test_job_registry.py` resolves every reference, so a typo fails there, not in a job.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import Any

# The composition root that lists every feature's job types. Named, not imported, because it
# imports the features and they import this package: the jobs package depends on no feature.
CATALOG_MODULE = "app.job_catalog"


@dataclass(frozen=True)
class JobPage:
    """What a job's page shows beyond what every job page shows.

    `views`: "module:function" references taking the Job and returning template context to add.
    `partials`: templates included in the live status block, in order; `footer`: included
    once after it (not re-rendered by the poll). `charts`: the page draws interactive charts.
    """

    views: tuple[str, ...] = ()
    partials: tuple[str, ...] = ()
    footer: tuple[str, ...] = ()
    charts: bool = False


@dataclass(frozen=True)
class JobKind:
    """One job type. References are "module:attribute" strings (see the module docstring).

    handler        the worker function `(params, out, progress, should_stop) -> result`
    request        the typed request the launch form or CLI parses its input into
    on_finished    `(db, job)`, in the transaction that ends the job, whatever its status
    before_success `(job_id, result) -> extra result fields`, before the job may succeed; it
                   raises `app.jobs.outcomes.JobOutputError` to fail the job instead
    after_success  `(job_id)`, once the success has committed
    clone_check    `(db, params) -> params`: the launch form's checks on a clone's edits
    preset_values  `(preset name) -> settings | None`: what a recorded preset stands for
    describe       pure `(params) -> str`: the first half of the default job name
    subject        pure `(params, dataset_name) -> str | None`: its second half
    rerun_refusal  why the job cannot be retried or cloned, or None when it can
    """

    name: str
    title: str
    default_queue: str
    handler: str
    request: str | None = None
    on_finished: str | None = None
    before_success: str | None = None
    after_success: str | None = None
    clone_check: str | None = None
    preset_values: str | None = None
    describe: Callable[[Mapping[str, Any]], str] | None = None
    subject: Callable[[Mapping[str, Any], str | None], str | None] | None = None
    rerun_refusal: str | None = None
    page: JobPage = field(default_factory=JobPage)


@dataclass(frozen=True)
class Catalog:
    """Every job type, in the order forms list them, and what follows any job's success (a
    sweep's next stage, the demo's next step): `after_any_success` references `(job_id)`."""

    kinds: tuple[JobKind, ...]
    after_any_success: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [k.name for k in self.kinds]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"job types declared twice: {', '.join(duplicates)}")


@cache
def catalog() -> Catalog:
    found = importlib.import_module(CATALOG_MODULE).CATALOG
    if not isinstance(found, Catalog):
        raise TypeError(f"{CATALOG_MODULE}.CATALOG is not a Catalog")
    return found


@cache
def job_types() -> Mapping[str, JobKind]:
    """Every declared job type by name (read-only), in declaration order."""
    return MappingProxyType({kind.name: kind for kind in catalog().kinds})


def kind_of(job_type: str) -> JobKind | None:
    """The declaration of `job_type`, or None for a type no longer supported."""
    return job_types().get(job_type)


def title_of(job_type: str) -> str:
    kind = kind_of(job_type)
    return kind.title if kind else job_type


@cache
def resolve(reference: str) -> Callable[..., Any]:
    """The attribute a "module:attribute" reference names (imported on first use)."""
    module, _, attribute = reference.partition(":")
    if not module or not attribute:
        raise ValueError(f"{reference!r} is not a 'module:attribute' reference")
    return getattr(importlib.import_module(module), attribute)
