"""The image statistics job type: per-label pixel statistics of an installed image collection,
launched from the jobs page itself (its only form)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.jobs.registry import JobKind, JobPage
from app.jobs.specs import JobSpec, SpecError, job_spec
from ml.data.collections import available_collections


def image_stats_spec(collection: str, queue: str | None = None) -> JobSpec:
    collections = available_collections()
    if collection not in collections:
        known = ", ".join(sorted(collections)) or "none installed"
        raise SpecError("collection", f"Unknown image collection {collection!r} (known: {known}).")
    return job_spec("image_stats", {"collection": collection}, queue)


def _subject(params: Mapping[str, Any], dataset_name: str | None) -> str | None:
    return str(params.get("collection") or "") or None


KINDS = (
    JobKind(
        "image_stats",
        "Image statistics of a collection",
        "cpu",
        handler="workers.handlers:image_stats",
        describe=lambda params: "Image statistics",
        subject=_subject,
        page=JobPage(partials=("jobs/image_stats_page.html",)),
    ),
)
