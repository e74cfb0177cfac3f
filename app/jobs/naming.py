"""Readable job names: a default built from the job's type and key parameters (each job type
declares its own words, `JobKind.describe` and `subject`), and the name a clone gets. The
caller looks up the dataset's name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.jobs.registry import kind_of

MAX_NAME = 200
SEPARATOR = " · "


def dataset_of(params: Mapping[str, Any]) -> int | None:
    """The dataset a job works on, from its params (a translation: its source dataset)."""
    for key in ("dataset_id", "dataset_a_id"):
        value = params.get(key)
        # bool is an int to Python; a stray true must not become dataset 1.
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def clean_name(raw: str | None) -> str | None:
    """What a form's Name field means: blank is "no name given", anything else is trimmed."""
    text = " ".join((raw or "").split())
    return text[:MAX_NAME] or None


def copy_name(name: str | None, fallback: str) -> str:
    return f"{name or fallback} (copy)"[:MAX_NAME]


def _what(job_type: str, params: Mapping[str, Any]) -> str:
    kind = kind_of(job_type)
    if kind is None:
        return job_type
    return kind.describe(params) if kind.describe else kind.title


def _of_what(job_type: str, params: Mapping[str, Any], dataset_name: str | None) -> str | None:
    kind = kind_of(job_type)
    return kind.subject(params, dataset_name) if kind and kind.subject else dataset_name


def default_name(job_type: str, params: Mapping[str, Any], dataset_name: str | None) -> str:
    """E.g. "DCGAN 32px · Demo: paediatric chest X-rays"."""
    parts = [_what(job_type, params), _of_what(job_type, params, dataset_name)]
    return SEPARATOR.join(p for p in parts if p)[:MAX_NAME]
