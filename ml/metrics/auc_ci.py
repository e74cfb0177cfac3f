"""95% DeLong confidence interval of each label's AUC, for one model on one set of cases.

Used for the internal test split and for an external dataset alike. The two intervals are
each computed on their own images: AUC(internal) - AUC(external) is *not* a paired DeLong
comparison (different cases), so only the two intervals are reported side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ml.metrics.delong import delong_roc_variance

Z_95 = 1.959963984540054  # standard normal quantile at 0.975


def auc_interval(y: np.ndarray, scores: np.ndarray) -> tuple[float, float] | None:
    """Wald interval AUC +/- 1.96 sqrt(DeLong variance), clipped to [0, 1]; None where the
    cases hold one class only or the estimated variance is 0 (a degenerate sample)."""
    try:
        auc, variance = delong_roc_variance(y.astype(int), scores)
    except ValueError:
        return None
    if not math.isfinite(variance) or variance <= 0:
        return None
    half = Z_95 * math.sqrt(variance)
    return max(0.0, auc - half), min(1.0, auc + half)


def label_auc_intervals(
    y_true: np.ndarray, scores: np.ndarray, names: Sequence[str]
) -> dict[str, list[float] | None]:
    """Per label [low, high] over its known (non-NaN) cases, rounded to 6 places."""
    out: dict[str, list[float] | None] = {}
    for j, name in enumerate(names):
        known = ~np.isnan(y_true[:, j])
        interval = auc_interval(y_true[known, j], scores[known, j])
        out[name] = None if interval is None else [round(v, 6) for v in interval]
    return out
