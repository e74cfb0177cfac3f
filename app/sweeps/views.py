"""What a sweep page shows per point, from its jobs' statuses and results (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.sweeps.grid import STAGE_TITLES, STAGES, Point, SweepSpec, plan, point_status, points

UNFINISHED = ("queued", "running")


@dataclass(frozen=True)
class JobFacts:
    """The little of a Job row the page needs (so these functions need no database)."""

    id: int
    status: str
    result: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class StepCell:
    stage: str
    title: str
    job_id: int | None = None
    status: str = "waiting"  # a job's status, "waiting" (not created yet) or "not started"
    problem: str | None = None  # why its job could not be created
    shared: bool = False  # the same job serves other points too


@dataclass
class PointRow:
    point: Point
    label: str
    status: str
    cells: list[StepCell | None] = field(default_factory=list)  # STAGES order; None: skipped
    auc_real: float | None = None
    auc_synthetic: float | None = None
    fid: float | None = None


def point_label(spec: SweepSpec, point: Point) -> str:
    if point.value is not None:
        return f"{spec.param} = {point.value}"
    classes = f"{point.classes} classes" if point.classes else f"all {spec.n_classes} classes"
    per_class = f"{point.per_class} per class" if point.per_class else "all images per class"
    return f"{point.resolution} px · {classes} · {per_class}"


def _metric(job: JobFacts | None, key: str) -> float | None:
    if job is None or job.status != "succeeded" or not job.result:
        return None
    value = job.result.get(key)
    return float(value) if isinstance(value, int | float) else None


def point_rows(
    spec: SweepSpec, jobs: Mapping[str, JobFacts], problems: Mapping[str, str]
) -> list[PointRow]:
    """One row per point: each stage's job (or why there is none) and the point's numbers."""
    statuses = {key: job.status for key, job in jobs.items()}
    plans = [plan(p) for p in points(spec)]
    uses: dict[str, int] = {}
    for p in plans:
        for step in p.steps:
            uses[step.key] = uses.get(step.key, 0) + 1
    rows = []
    for p in plans:
        by_stage = {step.stage: step for step in p.steps}
        cells: list[StepCell | None] = []
        for stage in STAGES:
            step = by_stage.get(stage)
            if step is None:
                cells.append(None)
                continue
            job = jobs.get(step.key)
            blocked = step.after is not None and statuses.get(step.after) in (
                "failed",
                "cancelled",
            )
            cells.append(
                StepCell(
                    stage,
                    STAGE_TITLES[stage],
                    job.id if job else None,
                    job.status if job else ("not started" if blocked else "waiting"),
                    None if job else problems.get(step.key),
                    uses[step.key] > 1,
                )
            )
        rows.append(
            PointRow(
                p.point,
                point_label(spec, p.point),
                point_status(p.steps, statuses, problems),
                cells,
                auc_real=_metric(jobs.get(by_stage["real"].key), "macro_auc"),
                auc_synthetic=_metric(jobs.get(by_stage["synthetic"].key), "macro_auc"),
                fid=_metric(jobs.get(by_stage["gan"].key), "best_fid"),
            )
        )
    return rows


def live(rows: Iterable[PointRow], jobs: Mapping[str, JobFacts]) -> bool:
    """Whether the page should keep polling: a job is unfinished or a point still advances."""
    return any(j.status in UNFINISHED for j in jobs.values()) or any(
        r.status in UNFINISHED for r in rows
    )


def summary(rows: Iterable[PointRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts
