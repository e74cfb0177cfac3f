"""The launch forms' own checks, run again on a clone's edited parameters.

A clone edits a job's stored parameters as JSON; `app.jobs.clone` keeps paths, ids and hashes
as they were, and this module makes the values that remain pass the same validation as the form
that launched the job (`JobKind.clone_check`), so a clone cannot queue what that form refuses.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.orm import Session

from app.jobs.registry import kind_of, resolve
from app.jobs.specs import JobSpec, SpecError


def checked_clone(db: Session, spec: JobSpec) -> JobSpec:
    """`spec` with its params as the launch form would store them; raises SpecError on the
    clone form's params field, naming the setting at fault."""
    kind = kind_of(spec.type)
    if kind is None or not kind.clone_check:
        return spec
    try:
        params = resolve(kind.clone_check)(db, spec.params)
    except SpecError as exc:
        raise SpecError("params", f"{exc.field}: {exc.message}") from None
    return replace(spec, params=params)
