"""Running a job again: a retry (same recipe) or a clone whose parameters were edited.

Both build a new JobSpec from an existing job; the caller submits it. What a clone may change
is deliberately narrow, see `protected_change`.
"""

from __future__ import annotations

import json
from typing import Any

from app.jobs.registry import kind_of
from app.jobs.specs import QUEUES, JobSpec, SpecError
from app.models import Job, JobStatus

# Set by the server, never by the edited JSON: where a job came from. Handlers index params by
# key and ignore keys they do not know, so these change nothing about what the job computes.
RETRY_OF = "retry_of"
CLONED_FROM = "cloned_from"
LINK_KEYS = (RETRY_OF, CLONED_FROM)

RETRYABLE = frozenset({JobStatus.failed, JobStatus.cancelled})
MAX_PARAMS_BYTES = 64 * 1024
# Real params nest three or four levels (config.arch_options...); far deeper ones only break the
# recursive code that compares, encodes and renders them.
MAX_PARAMS_DEPTH = 32
_TOO_DEEP = f"The parameters are nested more than {MAX_PARAMS_DEPTH} levels deep."

# Keys a clone must leave exactly as they were. Paths: the params hold server paths that the
# launching form derived from rows the researcher may see; an edit could point a job at any
# file the worker can read (or write: `dest`). Ids, hashes and `classifiers` (job ids): the
# launching code checked the researcher's access to those rows, an edit would skip the check.
# The rule holds for administrators too: a clone is not a way to launch arbitrary jobs.
_PROTECTED_SUFFIXES = ("path", "checkpoint", "source", "dest", "_dir", "_id", "_ids", "_hash")
_PROTECTED_NAMES = frozenset({"id", "parent", "classifiers"})


def without_links(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in LINK_KEYS}


def rerun_refusal(job_type: str) -> str | None:
    """Why jobs of this type cannot be retried or cloned (`JobKind.rerun_refusal`: an import
    job rewrites its dataset's folder, so its dataset's page re-imports instead), or None."""
    kind = kind_of(job_type)
    return kind.rerun_refusal if kind is not None else None


def _refuse_type(job: Job) -> None:
    refusal = rerun_refusal(job.type)
    if refusal:
        raise SpecError("job", f"A {job.type} job cannot be rerun here. {refusal}")
    if kind_of(job.type) is None:
        raise SpecError("job", f"Job type {job.type!r} is no longer supported.")


def retry_spec(job: Job) -> JobSpec:
    """The same type, queue and params, linked back to `job`."""
    _refuse_type(job)
    if job.status not in RETRYABLE:
        raise SpecError(
            "job", f"Only failed or cancelled jobs can be retried; job {job.id} is {job.status}."
        )
    return JobSpec(
        job.type, job.queue, {**without_links(job.params), RETRY_OF: job.id}, name=job.name
    )


def editable_json(job: Job) -> str:
    return json.dumps(without_links(job.params), indent=2, sort_keys=True)


def clone_spec(job: Job, job_type: str, queue: str, text: str) -> JobSpec:
    """Check the edited form of `job`; raises SpecError naming the form field at fault."""
    _refuse_type(job)
    if job_type != job.type:
        raise SpecError("type", f"A clone keeps the job's type ({job.type}).")
    if queue not in QUEUES:
        raise SpecError("queue", f"Unknown queue {queue!r}; choose one of {', '.join(QUEUES)}.")
    edited = without_links(parse_params(text))
    changed = protected_change(without_links(job.params), edited)
    if changed is not None:
        raise SpecError(
            "params",
            f"{changed!r} cannot be changed in a clone: it names a file, folder or record the "
            "original job was checked against. Launch a new job from its own page instead.",
        )
    return JobSpec(job.type, queue, {**edited, CLONED_FROM: job.id})


def parse_params(text: str) -> dict[str, Any]:
    if len(text.encode("utf-8")) > MAX_PARAMS_BYTES:
        raise SpecError("params", f"The parameters are over {MAX_PARAMS_BYTES // 1024} KB.")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SpecError("params", f"The parameters are not valid JSON: {exc}.") from None
    except RecursionError:
        # 64 KB of "[[[[..." is deeper than the decoder's recursion limit: a 500 before this.
        raise SpecError("params", _TOO_DEEP) from None
    if _deeper_than(value, MAX_PARAMS_DEPTH):
        raise SpecError("params", _TOO_DEEP)
    if not isinstance(value, dict):
        raise SpecError("params", "The parameters must be a JSON object ({...}).")
    return value


def _deeper_than(value: object, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` deep; iterative, because a value the
    decoder just managed would still overflow the recursive checks and encoders after it."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def protected_change(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> str | None:
    """The dotted name of the first protected key whose value differs (added and removed keys
    count as changes), or None when only free values were edited."""
    missing = object()
    for key in sorted(set(before) | set(after), key=str):
        old, new = before.get(key, missing), after.get(key, missing)
        if old == new:
            continue
        name = f"{prefix}{key}"
        if _protected_key(key):
            return name
        old_map, new_map = _as_mapping(old, missing), _as_mapping(new, missing)
        if old_map is not None and new_map is not None:
            found = protected_change(old_map, new_map, f"{name}.")
            if found is not None:
                return found
        elif _sensitive(old) or _sensitive(new):
            # A path can hide under an innocent name (GanConfig.fid_features takes one).
            return name
    return None


def _as_mapping(value: object, missing: object) -> dict[str, Any] | None:
    """A dict as itself, an absent key as an empty dict (to name the key inside an added or
    removed dict), anything else as None."""
    if isinstance(value, dict):
        return value
    return {} if value is missing else None


def _protected_key(key: str) -> bool:
    lowered = str(key).lower()
    return lowered in _PROTECTED_NAMES or lowered.endswith(_PROTECTED_SUFFIXES)


def _sensitive(value: object) -> bool:
    if isinstance(value, str):
        return "/" in value or "\\" in value or value.startswith(("~", "."))
    if isinstance(value, dict):
        return any(_protected_key(k) or _sensitive(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_sensitive(v) for v in value)
    return False
