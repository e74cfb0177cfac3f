"""AUC per label and ROC curves, with unknown labels (NaN) left out label by label.

One implementation for the classifier's validation and test scores and for testing a
classifier on a synthetic set. Multi-class models are scored one-vs-rest per class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

ROC_POINTS = 200


def label_aucs(
    y_true: np.ndarray, scores: np.ndarray, names: Sequence[str], min_per_class: int = 1
) -> dict[str, float | None]:
    """AUC per label; None where the known labels hold fewer than ``min_per_class`` of either
    class (with the default 1: where they hold only one class)."""
    out: dict[str, float | None] = {}
    for j, name in enumerate(names):
        known = ~np.isnan(y_true[:, j])
        y = y_true[known, j]
        _, counts = np.unique(y, return_counts=True)
        if counts.size < 2 or int(counts.min()) < min_per_class:
            out[name] = None
        else:
            out[name] = float(roc_auc_score(y, scores[known, j]))
    return out


def macro_auc(aucs: dict[str, float | None]) -> float | None:
    values = [v for v in aucs.values() if v is not None]
    return float(np.mean(values)) if values else None


def roc_curves(y_true: np.ndarray, scores: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Per label {'fpr', 'tpr'}, at most ROC_POINTS points, labels without an AUC left out."""
    out: dict[str, dict[str, list[float]]] = {}
    for j, name in enumerate(names):
        known = ~np.isnan(y_true[:, j])
        y = y_true[known, j]
        if y.size == 0 or np.unique(y).size < 2:
            continue
        fpr, tpr, _ = roc_curve(y, scores[known, j])
        if fpr.size > ROC_POINTS:
            # Evenly spaced points along the curve, the two ends included.
            keep = np.unique(np.linspace(0, fpr.size - 1, ROC_POINTS).round().astype(int))
            fpr, tpr = fpr[keep], tpr[keep]
        out[name] = {"fpr": np.round(fpr, 6).tolist(), "tpr": np.round(tpr, 6).tolist()}
    return out
