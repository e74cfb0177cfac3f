"""The utility matrix: classifiers trained on real, synthetic or mixed images, all tested on
the same real test split, each compared with the real-trained one by a paired DeLong test.

Comparisons are made from the jobs' saved test predictions, so a new synthetic-trained model
is compared with today's reference without retraining anything. Two models are paired only
when they were tested on the same images: same dataset content hash and the same test keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml.metrics.delong import delong_test

PREDICTIONS = "predictions.npz"


@dataclass
class UtilityRow:
    job_id: int
    train_on: str
    image_set_id: int | None
    arch: str
    resolution: int
    macro_auc: float | None
    auc: dict[str, float | None]
    n_train_real: int
    n_train_synthetic: int
    n_test: int
    # Scores on synthetic sets, by set id (as a string): {"macro_auc", "auc", "n", ...}.
    on_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per label (and "macro" as the mean of per-label differences): DeLong of real - this.
    delong: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference_job_id: int | None = None
    note: str = ""
    # 95% DeLong CI per label on the internal test split ([low, high] or None).
    auc_ci: dict[str, Any] = field(default_factory=dict)
    # External validation on other sites' datasets, by dataset id (as a string).
    external: dict[str, dict[str, Any]] = field(default_factory=dict)


def _predictions(folder: str | None) -> dict[str, np.ndarray] | None:
    path = Path(folder or "") / PREDICTIONS
    if not folder or not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as saved:
        return {key: saved[key] for key in saved.files}


def paired_delong(
    reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], label_names: list[str]
) -> dict[str, dict[str, Any]]:
    """DeLong of AUC(reference) - AUC(candidate) per label, on the test images both saw.

    Unknown labels (NaN in y_true) are left out of that label's comparison; a label whose test
    images are all one class has no AUC and gets a note instead of numbers.
    """
    if not np.array_equal(reference["keys"], candidate["keys"]):
        raise ValueError("the two models were not tested on the same images")
    out: dict[str, dict[str, Any]] = {}
    y_all = reference["y_true"]
    for j, name in enumerate(label_names):
        y = y_all[:, j]
        known = ~np.isnan(y)
        try:
            cmp = delong_test(
                y[known].astype(int),
                reference["scores"][known, j],
                candidate["scores"][known, j],
            )
        except ValueError as exc:
            out[name] = {"note": str(exc)}
            continue
        out[name] = cmp.to_dict()
    return out


def _row(job: Any) -> UtilityRow:
    result = job.result or {}
    return UtilityRow(
        job_id=job.id,
        train_on=result.get("train_on", job.params.get("train_on", "real")),
        image_set_id=result.get("image_set_id"),
        arch=result.get("arch", ""),
        resolution=int(result.get("resolution", 0)),
        macro_auc=result.get("macro_auc"),
        auc=result.get("auc", {}),
        n_train_real=int(result.get("n_train_real", 0)),
        n_train_synthetic=int(result.get("n_train_synthetic", 0)),
        n_test=int(result.get("n_test", 0)),
        on_sets=result.get("synthetic_tests", {}),
        auc_ci=result.get("auc_ci") or {},
        external=result.get("external_tests") or {},
    )


def _reference_for(row: UtilityRow, job: Any, real_jobs: list[Any]) -> Any | None:
    """The newest real-trained job on the same data and resolution, same architecture first."""
    same = [
        r
        for r in real_jobs
        if r.result.get("dataset_hash") == job.result.get("dataset_hash")
        and int(r.result.get("resolution", 0)) == row.resolution
    ]
    same.sort(key=lambda r: (r.result.get("arch") == row.arch, r.id), reverse=True)
    return same[0] if same else None


def utility_matrix(jobs: list[Any]) -> list[UtilityRow]:
    """Rows for succeeded train_classifier jobs (any order in, real-trained first out)."""
    done = [j for j in jobs if j.type == "train_classifier" and j.result]
    real_jobs = [j for j in done if j.result.get("train_on") == "real"]
    rows = []
    for job in sorted(done, key=lambda j: (j.result.get("train_on") != "real", j.id)):
        row = _row(job)
        if row.train_on != "real":
            reference = _reference_for(row, job, real_jobs)
            if reference is None:
                row.note = "No real-trained classifier on the same data and resolution yet."
            else:
                row.reference_job_id = reference.id
                ref, cand = _predictions(reference.artefact_dir), _predictions(job.artefact_dir)
                if ref is None or cand is None:
                    row.note = "Test predictions are missing from a job's folder."
                else:
                    try:
                        labels = list(job.result.get("label_names", []))
                        row.delong = paired_delong(ref, cand, labels)
                    except ValueError as exc:
                        row.note = str(exc)
        rows.append(row)
    return rows
