"""Job specs: a job's type, queue and params, as the launch forms and the CLI build them.

Each feature's `job_types` module has the builders for its own job types; they call
`job_spec`, so a job means the same thing whichever door it came through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.domain.form_values import FieldError
from app.jobs.registry import kind_of

QUEUES = ("cpu", "gpu")


# Invalid job input; `field` names the form field for an inline error. The same class as the
# form parser's error, so a number refused by `app.domain.form_values` is a SpecError.
SpecError = FieldError


@dataclass(frozen=True)
class JobSpec:
    type: str
    queue: str
    params: dict[str, Any] = field(default_factory=dict)
    # None: `app.jobs.naming.default_name` names the job from its type and params.
    name: str | None = None


def checked_queue(queue: str | None, job_type: str) -> str:
    """The queue asked for, or the job type's default; SpecError for an unknown one."""
    kind = kind_of(job_type)
    if kind is None:
        raise SpecError("type", f"Unknown job type {job_type!r}.")
    chosen = (queue or kind.default_queue).strip().lower()
    if chosen not in QUEUES:
        raise SpecError("queue", f"Unknown queue {chosen!r}; choose one of {', '.join(QUEUES)}.")
    return chosen


def job_spec(job_type: str, params: dict[str, Any], queue: str | None = None) -> JobSpec:
    """A spec of a declared job type on the queue asked for (or the type's default)."""
    return JobSpec(job_type, checked_queue(queue, job_type), params)
