"""What the benchmark page of a GAN shows: utility, fidelity, privacy and attribution of the
synthetic sets sampled from it, each beside its real-data reference."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.evaluation import service
from app.evaluation.options import ATTRIBUTION_METHODS, CLASSIFIER_PRESETS, FID_RESIZE_LABELS
from app.evaluation.utility import UtilityRow, utility_matrix
from app.imagesets.release import latest_release_verdict
from app.jobs.specs import QUEUES
from app.models import Dataset, Job, JobStatus
from app.web.line_chart import UNIT_INTERVAL, interactive_line_chart

FIDELITY_METRICS = (
    ("fid", "FID", "lower is better; [95% bootstrap interval of the biased estimator]"),
    ("kid_mean", "KID", "lower is better"),
    ("precision", "Precision", "share of synthetic images that look like some real one"),
    ("recall", "Recall", "share of real images that some synthetic one resembles"),
    ("density", "Density", "about 1 for matching distributions"),
    ("coverage", "Coverage", "share of real neighbourhoods that hold a synthetic image"),
)


def roc_chart(rows: list[UtilityRow], jobs: dict[int, Job]) -> Markup | None:
    """ROC curve of the first label for each model (macro curves are not defined)."""
    series: dict[str, list[tuple[float, float]]] = {}
    label = None
    for row in rows:
        roc = (jobs[row.job_id].result or {}).get("roc") or {}
        if not roc:
            continue
        label = label or next(iter(roc))
        curve = roc.get(label)
        if curve:
            name = f"#{row.job_id} {row.train_on}"
            series[name] = list(zip(curve["fpr"], curve["tpr"], strict=True))
    if not series:
        return None
    return interactive_line_chart(
        "roc-chart",
        series,
        title=f"ROC on the real test split: {label}",
        x_label="1 - specificity",
        y_label="sensitivity",
        y_bounds=UNIT_INTERVAL,
    )


def benchmark_context(
    db: Session, principal: Principal | None, gan_job: Job, dataset: Dataset
) -> dict[str, Any]:
    sets = service.synthetic_sets_of(db, principal, gan_job)
    set_ids = {s.id for s in sets}
    by_type = service.evaluation_jobs(db, principal, dataset.id)
    classifiers = by_type["train_classifier"]
    relevant = [
        j
        for j in classifiers
        if j.params.get("train_on") == "real" or j.params.get("image_set_id") in set_ids
    ]
    jobs_by_id = {j.id: j for j in relevant}
    finished = [j for j in relevant if j.status is JobStatus.succeeded]
    rows = utility_matrix(finished)
    return {
        "gan_job": gan_job,
        "dataset": dataset,
        "sets": sets,
        "verdicts": {s.id: latest_release_verdict(db, principal, s.id) for s in sets},
        "set_names": {s.id: s.name for s in sets},
        "utility_rows": rows,
        "label_names": jobs_by_id[rows[0].job_id].result.get("label_names", []) if rows else [],
        "roc_chart": roc_chart(rows, jobs_by_id),
        "classifier_jobs": relevant,
        "real_classifiers": [j for j in finished if j.params.get("train_on") == "real"],
        # Newest first in the forms; synthetic-only before mixed, the comparison seed 000 made.
        "synthetic_classifiers": sorted(
            (j for j in finished if j.params.get("train_on") != "real"),
            key=lambda j: (j.params.get("train_on") == "synthetic", j.id),
        ),
        "fidelity_jobs": [
            j for j in by_type["evaluate_fidelity"] if j.params.get("image_set_id") in set_ids
        ],
        "neighbour_jobs": [
            j for j in by_type["nearest_neighbours"] if j.params.get("image_set_id") in set_ids
        ],
        "attribution_jobs": [
            j
            for j in by_type["attribution"]
            if set(j.params.get("classifiers", {}).values()) & set(jobs_by_id)
        ],
        "fidelity_metrics": FIDELITY_METRICS,
        "fid_resizes": FID_RESIZE_LABELS,
        "presets": CLASSIFIER_PRESETS,
        "methods": ATTRIBUTION_METHODS,
        "resolutions": dataset.info.get("resolutions", []),
        "gan_resolution": gan_job.params.get("config", {}).get("resolution"),
        "queues": QUEUES,
        "pending": any(not j.status.finished for group in by_type.values() for j in group),
    }


def dashboard_context(db: Session, principal: Principal, dataset: Dataset) -> dict[str, Any]:
    from app.evaluation.dashboard import AXES, axis_series, benchmark_points

    points = benchmark_points(db, principal, dataset)
    charts = []
    for axis, label in AXES:
        if len({p.axis(axis) for p in points}) < 2:
            continue  # an axis with one value is a column of the table, not a plot
        series, bars = axis_series(points, axis)
        charts.append(
            interactive_line_chart(
                f"auc-{axis}",
                series,
                title=f"Test AUC (macro) against {label.lower()}",
                x_label=label,
                y_label="AUC",
                intervals=bars,
                y_bounds=UNIT_INTERVAL,
            )
        )
    return {"dataset": dataset, "points": points, "charts": charts}


def job_page_context(job: Job) -> dict[str, Any]:
    """What an evaluation job's page adds (declared in `app.evaluation.job_types`)."""
    return {"fidelity_metrics": FIDELITY_METRICS}
