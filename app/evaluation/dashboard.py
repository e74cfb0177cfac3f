"""The benchmark dashboard of a real dataset: every benchmark point (the dataset itself and each
subset of it, seed 000's axes: resolution, number of classes, training samples per class)
with AUC of real- and synthetic-trained classifiers and their 95% CIs, FID beside its
real-vs-real floor, the memorisation share and release verdict, and reader accuracy of studies
built from the same samples: the one view that answers "is this synthetic set good enough?".

Points are read from finished jobs; nothing is recomputed here except AUC confidence
intervals (DeLong variance) from the classifiers' saved test predictions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.models import Dataset, Job, JobStatus, StudyImageSet
from ml.metrics.delong import delong_roc_variance

AXES = (
    ("resolution", "Resolution (px)"),
    ("n_classes", "Number of classes"),
    ("samples_per_class", "Training images per class"),
)
SOURCES = ("real", "synthetic", "mixed")


@dataclass
class AucEstimate:
    job_id: int
    macro: float | None
    # 95% DeLong CI of the AUC, where one label carries the comparison (a binary task, or two
    # one-vs-rest classes that mirror each other); None for several independent labels.
    low: float | None = None
    high: float | None = None


@dataclass
class BenchmarkPoint:
    dataset: Dataset
    resolution: int
    n_classes: int
    samples_per_class: int | None  # None: every training image
    # Plotted where samples_per_class is None: the mean training images per class.
    train_per_class: float = 0.0
    auc: dict[str, AucEstimate] = field(default_factory=dict)
    # {"job_id", "fid", "floor", "interval", "small_n", "n", "dim", "kid", "convention",
    #  "extractor"}
    fid: dict[str, Any] | None = None
    privacy: dict[str, Any] | None = None  # {"job_id", "share", "passes", "p_value", "alpha"}
    readers: list[dict[str, Any]] = field(default_factory=list)

    def axis(self, name: str) -> float:
        if name == "samples_per_class" and self.samples_per_class is None:
            return self.train_per_class
        return float(getattr(self, name))


def _descendants(db: Session, root: Dataset) -> list[Dataset]:
    found, frontier = [root], [root.id]
    while frontier:
        children = list(db.scalars(select(Dataset).where(Dataset.parent_id.in_(frontier))))
        found.extend(children)
        frontier = [c.id for c in children]
    return found


def _samples_per_class(dataset: Dataset, by_id: dict[int, Dataset]) -> int | None:
    """The tightest samples-per-class cut on the way from `dataset` up to its root."""
    node: Dataset | None = dataset
    while node is not None:
        if node.options.get("kind") == "samples_per_class":
            return int(node.options.get("value", 0)) or None
        node = by_id.get(node.parent_id) if node.parent_id else None
    return None


def _train_per_class(dataset: Dataset) -> float:
    n_train = dataset.info.get("splits", {}).get("train", 0)
    n_classes = max(1, len(dataset.info.get("label_names", [])))
    total = n_train if isinstance(n_train, int | float) else sum(n_train.values())
    return round(float(total) / n_classes, 1)


def auc_interval(folder: str | None) -> tuple[float, float] | None:
    """95% DeLong CI of the AUC from a classifier's saved test predictions, when one label
    carries it (see AucEstimate)."""
    path = Path(folder or "") / "predictions.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as saved:
        y_all, scores = saved["y_true"], saved["scores"]
    columns = y_all.shape[1]
    if columns > 2 or (columns == 2 and not np.array_equal(y_all[:, 0], 1 - y_all[:, 1])):
        return None
    known = ~np.isnan(y_all[:, 0])
    try:
        auc, variance = delong_roc_variance(y_all[known, 0].astype(int), scores[known, 0])
    except ValueError:
        return None
    if not math.isfinite(variance) or variance <= 0:
        return None
    half = 1.959963984540054 * math.sqrt(variance)
    return max(0.0, auc - half), min(1.0, auc + half)


def _jobs(db: Session, principal: Principal, dataset_ids: set[int]) -> list[Job]:
    types = ("train_classifier", "evaluate_fidelity", "nearest_neighbours", "train_gan", "sample")
    query = select(Job).where(Job.type.in_(types), Job.status == JobStatus.succeeded)
    if not principal.is_admin:
        query = query.where(Job.owner_id == principal.user.id)
    jobs = list(db.scalars(query.order_by(Job.id)))
    gan_ids = {
        j.id for j in jobs if j.type == "train_gan" and j.params.get("dataset_id") in dataset_ids
    }
    return [
        j
        for j in jobs
        if j.params.get("dataset_id") in dataset_ids or j.params.get("train_job_id") in gan_ids
    ]


def _reader_accuracy(db: Session, set_ids: set[int]) -> list[dict[str, Any]]:
    from app.models import Study
    from app.studies.results import statistics_for

    if not set_ids:
        return []
    study_ids = set(
        db.scalars(select(StudyImageSet.study_id).where(StudyImageSet.image_set_id.in_(set_ids)))
    )
    out = []
    for study_id in sorted(study_ids):
        study = db.get(Study, study_id)
        if study is None:
            continue
        ratings, stats = statistics_for(db, study)
        if ratings:
            pooled = stats["pooled"]
            out.append({"study": study, "n": len(ratings), **pooled})
    return out


def benchmark_points(db: Session, principal: Principal, root: Dataset) -> list[BenchmarkPoint]:
    datasets = _descendants(db, root)
    by_id = {d.id: d for d in datasets}
    jobs = _jobs(db, principal, set(by_id))
    sample_sets = {
        j.result["image_set_id"]: j.params["train_job_id"]
        for j in jobs
        if j.type == "sample" and j.result and j.result.get("image_set_id")
    }
    points: dict[tuple[int, int], BenchmarkPoint] = {}
    for job in jobs:
        dataset = by_id.get(job.params.get("dataset_id"))
        if dataset is None or job.type in ("train_gan", "sample"):
            continue
        resolution = int(job.result.get("resolution") or job.params.get("resolution") or 0)
        key = (dataset.id, resolution)
        point = points.get(key)
        if point is None:
            point = points[key] = BenchmarkPoint(
                dataset=dataset,
                resolution=resolution,
                n_classes=len(dataset.info.get("label_names", [])),
                samples_per_class=_samples_per_class(dataset, by_id),
                train_per_class=_train_per_class(dataset),
            )
        _add(point, job)
    for point in points.values():
        point_sets = {
            s
            for s, gan in sample_sets.items()
            if by_id.get(_gan_dataset(jobs, gan)) is point.dataset
        }
        point.readers = _reader_accuracy(db, point_sets)
    return sorted(
        points.values(),
        key=lambda p: (p.resolution, p.n_classes, p.samples_per_class or 10**9, p.dataset.id),
    )


def _gan_dataset(jobs: list[Job], gan_job_id: int) -> int | None:
    for job in jobs:
        if job.id == gan_job_id:
            return job.params.get("dataset_id")
    return None


def _add(point: BenchmarkPoint, job: Job) -> None:
    """Newer jobs replace older ones of the same kind at the same point."""
    result = job.result or {}
    if job.type == "train_classifier":
        source = result.get("train_on", "real")
        interval = auc_interval(job.artefact_dir)
        low, high = interval if interval else (None, None)
        point.auc[source] = AucEstimate(job.id, result.get("macro_auc"), low, high)
    elif job.type == "evaluate_fidelity" and result.get("features") == "inception":
        floor = (result.get("floor_test_vs_train") or {}).get("fid")
        scores = result["synthetic_vs_train"]
        point.fid = {
            "job_id": job.id,
            "fid": scores["fid"],
            "floor": floor,
            # Absent from results stored before intervals and conventions were recorded.
            "interval": scores.get("fid_interval"),
            "small_n": scores.get("fid_small_n", False),
            "n": min(scores.get("n_a", 0), scores.get("n_b", 0)),
            "dim": scores.get("dim"),
            "kid": scores.get("kid_mean"),  # shown beside a small-n FID: unbiased
            "convention": result.get("fid_convention"),
            "extractor": result.get("extractor"),
        }
    elif job.type == "nearest_neighbours":
        pixel = result.get("spaces", {}).get("pixel", {})
        share = pixel.get("share_flagged", {}).get(result.get("level", "p5"))
        verdict = result.get("verdicts", {}).get("pixel", {})
        point.privacy = {
            "job_id": job.id,
            "share": share,
            "passes": result["release"]["passes"],
            # Results from before the gate was an exact test have neither (shown as a dash).
            "p_value": verdict.get("p_value"),
            "alpha": verdict.get("alpha"),
        }


def axis_series(
    points: list[BenchmarkPoint], axis: str
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[tuple[float, float, float]]]]:
    """AUC against one axis per training source: points and their CI bars."""
    series: dict[str, list[tuple[float, float]]] = {}
    bars: dict[str, list[tuple[float, float, float]]] = {}
    for source in SOURCES:
        rows = []
        for point in points:
            estimate, x = point.auc.get(source), point.axis(axis)
            if estimate is None or estimate.macro is None:
                continue
            rows.append((x, estimate))
        rows.sort(key=lambda r: r[0])
        if rows:
            name = f"trained on {source}"
            series[name] = [(x, e.macro) for x, e in rows]
            bars[name] = [(x, e.low, e.high) for x, e in rows if e.low is not None]
    return series, bars
