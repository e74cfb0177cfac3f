"""The launch forms' own checks, run again on a clone's edited parameters.

A clone edits a job's stored parameters as JSON; `app.jobs.clone` keeps paths, ids and hashes
as they were, and this module makes the values that remain pass the same validation as the form
that launched the job, so a clone cannot queue what that form refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.orm import Session

from app.jobs.specs import JobSpec, SpecError
from app.models import Dataset


def _train_gan(db: Session, params: dict[str, Any]) -> dict[str, Any]:
    from app.gans.options import config_params, stored_gan_config

    # dataset_id is one of the keys a clone cannot change: the resolutions are the dataset's.
    dataset_id = params.get("dataset_id")
    dataset = db.get(Dataset, dataset_id) if isinstance(dataset_id, int) else None
    resolutions = tuple(dataset.info.get("resolutions", [])) if dataset is not None else ()
    config = stored_gan_config(params.get("config"), resolutions=resolutions)
    # Stored as the launch stores it: converted values and every field.
    return {**params, "config": config_params(config)}


_CHECKS: dict[str, Callable[[Session, dict[str, Any]], dict[str, Any]]] = {
    "train_gan": _train_gan,
}


def checked_clone(db: Session, spec: JobSpec) -> JobSpec:
    """`spec` with its params as the launch form would store them; raises SpecError on the
    clone form's params field, naming the setting at fault."""
    check = _CHECKS.get(spec.type)
    if check is None:
        return spec
    try:
        params = check(db, spec.params)
    except SpecError as exc:
        raise SpecError("params", f"{exc.field}: {exc.message}") from None
    return replace(spec, params=params)
