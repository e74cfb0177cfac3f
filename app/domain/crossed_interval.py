"""Interval for a share of correct answers when readers and images are both random.

Every reader answers many images and every image is answered by several readers, so answers
are correlated twice over: a skilled reader is right more often (reader effect) and an obvious
fake is caught by everyone (image effect). Counting 50 images x 3 readers as 150 independent
answers understates the uncertainty. The model is the two-way crossed random-effects model

    y = mu + a_reader + b_image + e,   Var a = s_r^2,  Var b = s_i^2,  Var e = s_e^2,

whose mean has Var = s_r^2 * sum(n_reader^2) / N^2 + s_i^2 * sum(n_image^2) / N^2 + s_e^2 / N.
The components are moment (U-statistic) estimates from pairs of answers (Gao & Owen 2017):
half the mean squared difference of two answers by one reader estimates s_i^2 + s_e^2, by one
image s_r^2 + s_e^2, and by neither s_r^2 + s_i^2 + s_e^2. They handle unbalanced data (readers
skipping images, uncertain answers left out) and equal the two-way ANOVA estimates when every
reader answered every image. The small-sample correction is a t reference on Satterthwaite
degrees of freedom, as in the Hillis (2007) correction of Obuchowski-Rockette: with 3 readers
and a real reader effect the t quantile is far above 1.96. No statistics library is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METHOD = (
    "two-way crossed random effects (readers and images), moment estimates of the variance "
    "components, t interval on Satterthwaite degrees of freedom"
)


@dataclass(frozen=True)
class CrossedInterval:
    estimate: float
    low: float
    high: float
    se: float
    df: float
    var_reader: float
    var_image: float
    var_residual: float
    n: int
    n_readers: int
    n_images: int

    @property
    def icc_reader(self) -> float | None:
        total = self.var_reader + self.var_image + self.var_residual
        return self.var_reader / total if total > 0 else None

    @property
    def icc_image(self) -> float | None:
        total = self.var_reader + self.var_image + self.var_residual
        return self.var_image / total if total > 0 else None

    @property
    def design_effect(self) -> float:
        """Variance of the mean relative to N independent answers of the same total variance."""
        total = self.var_reader + self.var_image + self.var_residual
        return self.se**2 * self.n / total if total > 0 else 1.0


def _pair_sum(groups: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Sum of squared differences over pairs sharing a group, and the number of such pairs."""
    n = np.bincount(groups).astype(float)
    s = np.bincount(groups, weights=y)
    q = np.bincount(groups, weights=y * y)
    # Within one group of size m: sum over pairs (y_a - y_b)^2 = m * sum y^2 - (sum y)^2.
    return float(np.sum(n * q - s * s)), float(np.sum(n * (n - 1) / 2))


def _groups(labels: Sequence[str]) -> np.ndarray:
    """Each label's group, groups numbered in sorted order: np.unique's inverse, without the
    numpy string array, whose building and sorting took most of this function's time."""
    index = {label: k for k, label in enumerate(sorted(set(labels)))}
    return np.fromiter((index[x] for x in labels), dtype=np.intp, count=len(labels))


def crossed_interval(
    readers: Sequence[str], images: Sequence[str], values: Sequence[float], *, level: float = 0.95
) -> CrossedInterval | None:
    """Mean of ``values`` with a ``level`` interval; None when the components are not estimable
    (one reader, no image answered by two readers, or every answer the same)."""
    from scipy.stats import t  # the web tier imports this module; scipy loads on first use

    y = np.asarray(values, dtype=float)
    r = _groups(readers)
    i = _groups(images)
    n = len(y)
    n_readers, n_images = int(r.max()) + 1 if n else 0, int(i.max()) + 1 if n else 0
    if n < 3 or n_readers < 2 or n_images < 2:
        return None
    same_reader, pairs_reader = _pair_sum(r, y)
    same_image, pairs_image = _pair_sum(i, y)
    all_pairs = n * float(np.sum(y * y)) - float(np.sum(y)) ** 2
    pairs_neither = n * (n - 1) / 2 - pairs_reader - pairs_image
    if min(pairs_reader, pairs_image, pairs_neither) <= 0:
        return None
    u_reader = same_reader / (2 * pairs_reader)  # s_i^2 + s_e^2
    u_image = same_image / (2 * pairs_image)  # s_r^2 + s_e^2
    u_neither = (all_pairs - same_reader - same_image) / (2 * pairs_neither)
    # Negative moment estimates mean "no detectable component": truncate at zero, which can
    # only widen the interval.
    var_reader = max(0.0, u_neither - u_reader)
    var_image = max(0.0, u_neither - u_image)
    var_residual = max(0.0, u_reader + u_image - u_neither)
    c_reader = float(np.sum(np.bincount(r) ** 2)) / n**2
    c_image = float(np.sum(np.bincount(i) ** 2)) / n**2
    # Satterthwaite needs the variance as a sum of mean squares with known df. These are the
    # mean squares a balanced design would give; a component truncated to zero drops its mean
    # square, so a reader effect that is not there does not cost the interval n_readers - 1 df.
    residual_weight = 1.0
    terms: list[tuple[float, float]] = []  # (coefficient x mean square, its df)
    if var_reader > 0:
        terms.append((var_residual + n * c_reader * var_reader, n_readers - 1))
        residual_weight -= 1
    if var_image > 0:
        terms.append((var_residual + n * c_image * var_image, n_images - 1))
        residual_weight -= 1
    terms.append((residual_weight * var_residual, max(1, n - n_readers - n_images + 1)))
    variance = sum(term for term, _ in terms) / n
    if not variance > 0:
        return None
    df = (n * variance) ** 2 / sum(term**2 / dof for term, dof in terms if term)
    se = math.sqrt(variance)
    half = float(t.ppf(0.5 + level / 2, df)) * se
    mean = float(np.mean(y))
    return CrossedInterval(
        estimate=mean,
        low=max(0.0, mean - half),
        high=min(1.0, mean + half),
        se=se,
        df=float(df),
        var_reader=var_reader,
        var_image=var_image,
        var_residual=var_residual,
        n=n,
        n_readers=n_readers,
        n_images=n_images,
    )
