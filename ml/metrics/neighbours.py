"""Exact nearest neighbours, and a memorisation check of synthetic images against training.

A generator that memorises reproduces (near-)copies of training images, which for medical data
can leak a patient. The check measures, for every synthetic image, its distance to the closest
real TRAINING image (DCR, "distance to closest record") and the ratio of its first to its
second neighbour distance (NNDR; a copy of one training image sits much closer to it than to
anything else, so NNDR is near 0).

Why the baseline is real test vs real train: a held-out real test image is a new patient the
generator never saw, so its DCR to the training set is "how close a new patient comes to a
training image by chance" under this acquisition protocol, anatomy and feature space. Raw DCRs
have no meaning across data sets (pixel distances depend on resolution, contrast, background);
against this baseline they do. The percentile rule: level "p5" takes the 5th percentile of the
baseline DCRs as threshold, and a synthetic image closer to a training image than that is
flagged as likely memorised: it is closer than 95% of genuinely new real images come. A
generator that only learned the distribution gets about 5% of its images flagged at "p5" (1% at
"p1") by chance; a markedly larger share is evidence of copying.

The release gate (`release_verdict`, on the stored `summary()`) therefore tests the flagged
count against that chance level instead of capping the share: a fixed cap below 5% fails every
honest generator (fresh real images imported as "synthetic" were flagged at 8%, 16 of 200, at
"p5"). The test is exact and distribution-free, one-sided and pre-registered at alpha = 0.05
(the gate fails only for MORE flagged images than chance, never for fewer). H0: the synthetic
images are no closer to the training images than new real patients are, i.e. given the training
set, synthetic and real-test DCRs are exchangeable. Then the ranking of all m + n DCRs is a
uniform permutation, and the count of synthetic DCRs below the r-th smallest of the m baseline
DCRs is negative hypergeometric = beta-binomial(n, r, m - r + 1): the threshold's quantile is
itself Beta(r, m - r + 1), not the nominal 5%. Why not a binomial test of the share against
0.05: it treats the threshold as the true 5th percentile, but it is a sample percentile of m
images, whose own error roughly doubles the variance of the count when m ~ n, so that test
fails honest generators well above alpha (bench/release_gate.py measures both). With ties (e.g.
integer pixels), or the interpolated percentile, the observed count can only be smaller than
the rank-based one, so the p-value is conservative. The test is conditional on the training
set, so it needs no model of how the training images were drawn; it does need the real test
images to be new patients (no split leak, counted in `baseline_zero_dcr`) and, like any
DCR rule, reads "closer than new patients" as copying, which images crowded into dense regions
of the data also are. With few real test images the gate has little power: each verdict states
the fewest flagged images that would fail it (`critical_count`).

The baseline needs test images: with fewer than ~20 of them the 1st and 5th percentiles are the
smallest one or two baseline distances (or interpolations between them), so thresholds are
coarse; `summary()` says so (`baseline_n`, `coarse_baseline`). If real test images are
themselves copies of training images (the same image in both splits), baseline DCRs of 0 drag
the thresholds to 0 and nothing can be flagged: `summary()` counts them (`baseline_zero_dcr`).

Distances are Euclidean, in pixel space (`pixel_features`) or in any feature space the caller
computed (e.g. `ml.metrics.features`), named by `space`.

`knn` (ml.metrics.exact_knn) is exact: it equals brute-force numpy in float64, ties going to
the smaller index, at faiss's IndexFlatL2 speed (bench/knn.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ml.metrics.exact_knn import as_matrix as _as_matrix
from ml.metrics.exact_knn import check_finite as _check_finite
from ml.metrics.exact_knn import knn

COARSE_BASELINE_BELOW = 20


# --------------------------------------------------------------------------------------------
# Features and input checks


def pixel_features(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, R, R) images in [-1, 1] -> (N, C*R*R) float32 vectors, one per image."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.ndim < 2:
        raise ValueError(f"expected a batch of images (N, C, R, R), got shape {arr.shape}")
    size = math.prod(arr.shape[1:])  # not -1: that cannot be inferred for N = 0
    return np.ascontiguousarray(arr.reshape(arr.shape[0], size), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Memorisation


def _level_name(percentile: float) -> str:
    return f"p{percentile:g}"


def _stat(values: np.ndarray, fn: Callable[[np.ndarray], Any]) -> float | None:
    """A JSON-safe statistic: None for an empty array."""
    return float(fn(values)) if values.size else None


def _nndr(distances: np.ndarray) -> np.ndarray:
    """d1 / d2 per row; 1.0 where both are 0 (a point among identical copies is not special)."""
    d1, d2 = distances[:, 0].astype(np.float64), distances[:, 1].astype(np.float64)
    ratio = np.ones_like(d1)
    np.divide(d1, d2, out=ratio, where=d2 > 0)
    return ratio


@dataclass(frozen=True)
class MemorisationReport:
    """Distances of synthetic images to real training images, judged against real test ones.

    `dcr` / `nndr`: per synthetic image; `baseline_dcr` / `baseline_nndr`: per real test image
    (the chance level); `thresholds[level]`: that percentile of `baseline_dcr`;
    `flagged[level]`: synthetic images closer to a training image than the threshold.
    """

    k: int
    space: str
    dcr: np.ndarray
    nndr: np.ndarray
    neighbour_indices: np.ndarray
    neighbour_distances: np.ndarray
    baseline_dcr: np.ndarray
    baseline_nndr: np.ndarray
    thresholds: dict[str, float]
    flagged: dict[str, np.ndarray]
    n_train: int = 0
    percentiles: dict[str, float] = field(default_factory=dict)

    def _level(self, level: str | None) -> str:
        if level is None:  # the most permissive threshold catches the most suspects
            return max(self.thresholds, key=lambda name: self.percentiles.get(name, 0.0))
        if level not in self.thresholds:
            raise ValueError(f"unknown level {level!r}; have {sorted(self.thresholds)}")
        return level

    def share_flagged(self, level: str = "p5") -> float:
        """Share of synthetic images flagged at `level` (0.0 for an empty synthetic set)."""
        flags = self.flagged[self._level(level)]
        return float(flags.mean()) if flags.size else 0.0

    def risk_order(self, level: str | None = None) -> np.ndarray:
        """Synthetic indices, most suspicious first: smallest dcr / threshold (at `level`,
        default the highest percentile), then smallest nndr, then index."""
        threshold = self.thresholds[self._level(level)]
        ratio = self.dcr.astype(np.float64)
        if threshold > 0:  # a zero threshold (split leak) leaves the order by dcr alone
            ratio /= threshold
        return np.lexsort((np.arange(self.dcr.size), self.nndr, ratio))

    def summary(self) -> dict:
        """JSON-safe numbers for storage and `release_verdict`: per level the flagged count,
        the baseline distances below the threshold, the share flagged by chance under H0 and
        the exact one-sided p-value of the count (`flagged_p_value`), with the test in words."""
        n_test = int(self.baseline_dcr.size)
        n_syn = int(self.dcr.size)
        below = {
            name: int(np.count_nonzero(self.baseline_dcr < value))
            for name, value in self.thresholds.items()
        }
        return {
            "k": self.k,
            "space": self.space,
            "n_synthetic": int(self.dcr.size),
            "n_train": self.n_train,
            "n_test": n_test,
            "baseline_n": n_test,
            "coarse_baseline": n_test < COARSE_BASELINE_BELOW,
            "baseline_zero_dcr": int(np.count_nonzero(self.baseline_dcr == 0)),
            "percentiles": dict(self.percentiles),
            "thresholds": {name: float(value) for name, value in self.thresholds.items()},
            "share_flagged": {name: self.share_flagged(name) for name in self.thresholds},
            "n_flagged": {name: int(flags.sum()) for name, flags in self.flagged.items()},
            "baseline_below": below,
            "expected_share": {name: (b + 1) / (n_test + 1) for name, b in below.items()},
            "p_value": {
                name: flagged_p_value(int(flags.sum()), n_syn, n_test, below[name])
                for name, flags in self.flagged.items()
            },
            "test": GATE_TEST,
            "dcr": {"median": _stat(self.dcr, np.median), "min": _stat(self.dcr, np.min)},
            "baseline_dcr": {
                "median": _stat(self.baseline_dcr, np.median),
                "min": _stat(self.baseline_dcr, np.min),
            },
            "nndr": {"median": _stat(self.nndr, np.median)},
            "baseline_nndr": {"median": _stat(self.baseline_nndr, np.median)},
        }


def _vectors(x: torch.Tensor | np.ndarray, what: str) -> np.ndarray:
    """Images (N, C, R, R) become pixel vectors; 2-D input is taken as features already."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    vectors = pixel_features(arr) if arr.ndim > 2 else _as_matrix(arr, what)
    _check_finite(vectors, what)
    return vectors


def memorisation_report(
    synthetic: torch.Tensor | np.ndarray,
    train: torch.Tensor | np.ndarray,
    test: torch.Tensor | np.ndarray,
    *,
    k: int = 5,
    percentiles: tuple[float, ...] = (1.0, 5.0),
    space: str = "pixel",
    device: str | torch.device = "cpu",
) -> MemorisationReport:
    """DCR / NNDR of synthetic images to the real training set, against the real test set.

    Inputs are images (N, C, R, R) in [-1, 1], compared as pixel vectors, or (N, d) features
    of one feature space (name it in `space`). `k` >= 2 neighbours are kept (NNDR needs two).
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ValueError(f"k must be an integer >= 2 (NNDR needs two neighbours), got {k!r}")
    levels = {_level_name(float(p)): float(p) for p in percentiles}
    if not levels or any(not 0.0 < p < 100.0 for p in levels.values()):
        raise ValueError(f"percentiles must lie strictly between 0 and 100, got {percentiles}")
    syn, tr, te = _vectors(synthetic, "synthetic"), _vectors(train, "train"), _vectors(test, "test")
    if te.shape[0] == 0:
        raise ValueError("the baseline needs at least one real test image")
    if tr.shape[0] < k:
        raise ValueError(f"k = {k} neighbours need at least {k} training images, got {tr.shape[0]}")
    if not syn.shape[1] == tr.shape[1] == te.shape[1]:
        raise ValueError(
            f"synthetic, train and test differ in size: {syn.shape[1]}, {tr.shape[1]}, "
            f"{te.shape[1]} values per image"
        )
    dist, idx = knn(syn, tr, k, device=device)
    base_dist, _ = knn(te, tr, k, device=device)
    return report_from_neighbours(
        dist, idx, base_dist, n_train=int(tr.shape[0]), percentiles=percentiles, space=space
    )


def report_from_neighbours(
    distances: np.ndarray,
    indices: np.ndarray,
    baseline_distances: np.ndarray,
    *,
    n_train: int,
    percentiles: tuple[float, ...] = (1.0, 5.0),
    space: str = "pixel",
) -> MemorisationReport:
    """The report from k-NN results already computed: (n, k) ascending distances and training
    indices of the synthetic images, (m, k) distances of the real test images (k >= 2, m >= 1).
    `memorisation_report` runs `knn` and then this; simulations that reuse one distance matrix
    over many splits call it directly."""
    levels = {_level_name(float(p)): float(p) for p in percentiles}
    if not levels or any(not 0.0 < p < 100.0 for p in levels.values()):
        raise ValueError(f"percentiles must lie strictly between 0 and 100, got {percentiles}")
    dist, base_dist = np.asarray(distances), np.asarray(baseline_distances)
    if dist.ndim != 2 or base_dist.ndim != 2 or dist.shape[1] < 2 or base_dist.shape[1] < 2:
        raise ValueError("distances and baseline_distances must be (rows, k >= 2) arrays")
    if base_dist.shape[0] == 0:
        raise ValueError("the baseline needs at least one real test image")
    dcr, baseline = dist[:, 0].copy(), base_dist[:, 0].copy()
    thresholds = {name: float(np.percentile(baseline, p)) for name, p in levels.items()}
    return MemorisationReport(
        k=int(dist.shape[1]),
        space=space,
        dcr=dcr,
        nndr=_nndr(dist),
        neighbour_indices=np.asarray(indices),
        neighbour_distances=dist,
        baseline_dcr=baseline,
        baseline_nndr=_nndr(base_dist),
        thresholds=thresholds,
        flagged={name: dcr < value for name, value in thresholds.items()},
        n_train=int(n_train),
        percentiles=levels,
    )


# --------------------------------------------------------------------------------------------
# Release gate: an exact test of the flagged count against its exchangeability null

# Pre-registered, one-sided: the gate fails a set only for MORE flagged images than chance.
DEFAULT_ALPHA = 0.05

GATE_TEST = (
    "One-sided exact test of the flagged count (pre-registered; the gate fails a set only for "
    "more flagged images than chance). H0: the synthetic images are no closer to the training "
    "images than new real patients are, i.e. given the training set, synthetic and real-test "
    "distances to the closest training image are exchangeable. Under H0 the number of the n "
    "synthetic images below the r-th smallest of the m real-test distances is beta-binomial(n, "
    "r, m - r + 1) (negative hypergeometric), which accounts for the threshold being estimated "
    "from m images; ties and the interpolated percentile only make the test conservative. "
    "Assumes real test images are new patients, not copies of training images. An excess means "
    "synthetic images sit closer to training images than new patients do: copies, or images "
    "crowded into dense regions of the data; the gallery shows which."
)


def _null_tail(n: int, n_baseline: int, baseline_below: int) -> np.ndarray:
    """P(X >= x) for x = 0..n under H0, X ~ beta-binomial(n, r, m - r + 1), r = below + 1."""
    from scipy.stats import betabinom

    r = baseline_below + 1
    logpmf = betabinom.logpmf(np.arange(n + 1), n, r, n_baseline - r + 1)
    # Summed from the top in log space, so tiny p-values of blatant copying keep their digits.
    log_tail = np.logaddexp.accumulate(logpmf[::-1])[::-1]
    return np.minimum(np.exp(log_tail), 1.0)


def _check_counts(n: int, n_baseline: int, baseline_below: int) -> None:
    if n < 0 or n_baseline < 1:
        raise ValueError(f"need n >= 0 synthetic and m >= 1 baseline images, got {n}, {n_baseline}")
    if not 0 <= baseline_below < n_baseline:
        raise ValueError(
            f"baseline_below must lie in [0, {n_baseline - 1}] (the threshold cannot exceed "
            f"the largest baseline distance), got {baseline_below}"
        )


def flagged_p_value(n_flagged: int, n: int, n_baseline: int, baseline_below: int) -> float:
    """One-sided exact p-value of `n_flagged` of `n` synthetic images below a threshold that
    `baseline_below` of `n_baseline` real-test distances fall strictly below: P(X >= n_flagged)
    under X ~ beta-binomial(n, r, m - r + 1), r = baseline_below + 1.

    Why this law: under H0 the m + n distances are exchangeable, so their joint ranking is a
    uniform permutation; the count of synthetic values ranked below the r-th baseline value is
    then negative hypergeometric, P(X = x) = C(x + r - 1, x) C(n - x + m - r, n - x) / C(n + m, n),
    which equals the beta-binomial (the r-th baseline value sits at quantile U ~ Beta(r, m - r
    + 1) and X | U ~ Binomial(n, U)). A synthetic value below the threshold is below the r-th
    baseline value, whatever ties, so the true count can only be smaller: conservative.
    """
    _check_counts(n, n_baseline, baseline_below)
    if not 0 <= n_flagged <= n:
        raise ValueError(f"n_flagged must lie in [0, {n}], got {n_flagged}")
    return float(_null_tail(n, n_baseline, baseline_below)[n_flagged])


def critical_count(n: int, n_baseline: int, baseline_below: int, alpha: float) -> int | None:
    """The fewest flagged images of `n` that fail the gate at `alpha`; None when even all `n`
    do not (too few real test images for the gate to fail anything)."""
    _check_counts(n, n_baseline, baseline_below)
    failing = np.flatnonzero(_null_tail(n, n_baseline, baseline_below) <= alpha)
    return int(failing[0]) if failing.size else None


def _baseline_below(report_summary: dict, level: str, n_baseline: int) -> int:
    """Baseline distances strictly below the level's threshold. Summaries stored before the
    count was kept get its largest possible value, ceil((m - 1) p / 100) (np.percentile's
    linear interpolation never puts the threshold above that order statistic): the p-value
    then errs on the side of passing, as for any conservative test."""
    stored = report_summary.get("baseline_below", {}).get(level)
    if stored is not None:
        return int(stored)
    percentile = float(report_summary.get("percentiles", {}).get(level, level.lstrip("p")))
    return min(math.ceil((n_baseline - 1) * percentile / 100.0), n_baseline - 1)


def methods_line(alpha: float = DEFAULT_ALPHA, comparisons: int = 1) -> str:
    """The gate's test, its significance level and assumptions, in one paragraph."""
    level = f"alpha = {alpha:g}"
    if comparisons > 1:
        level = (
            f"alpha = {alpha * comparisons:g} over {comparisons} feature spaces, "
            f"{alpha:g} each (Bonferroni)"
        )
    return f"Release gate at {level}. {GATE_TEST}"


@dataclass(frozen=True)
class ReleaseVerdict:
    """Whether a synthetic set may be released under the memorisation gate, and why.

    `alpha` is this test's own level (after any Bonferroni split); `expected_share` the share
    flagged by chance under H0, (r / (m + 1)); `critical_count` the fewest flagged images that
    fail (None: no count can).
    """

    passes: bool
    share_flagged: float
    level: str
    reason: str
    n_flagged: int = 0
    n_synthetic: int = 0
    p_value: float | None = None
    alpha: float = DEFAULT_ALPHA
    expected_share: float | None = None
    critical_count: int | None = None
    methods: str = ""


def release_verdict(
    report_summary: dict,
    *,
    alpha: float = DEFAULT_ALPHA,
    level: str = "p5",
    comparisons: int = 1,
) -> ReleaseVerdict:
    """Gate on `MemorisationReport.summary()` (e.g. stored JSON): the set fails when its
    flagged count at `level` is significantly above chance (`flagged_p_value` <= the level
    alpha / comparisons; e.g. 2 feature spaces gated together). An empty set does not pass."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if isinstance(comparisons, bool) or not isinstance(comparisons, int) or comparisons < 1:
        raise ValueError(f"comparisons must be a positive integer, got {comparisons!r}")
    shares = report_summary["share_flagged"]
    if level not in shares:
        raise ValueError(f"level {level!r} not in the report; have {sorted(shares)}")
    each = alpha / comparisons
    methods = methods_line(each, comparisons)
    n = int(report_summary["n_synthetic"])
    if n == 0:
        reason = "No synthetic images were checked."
        return ReleaseVerdict(False, 0.0, level, reason, alpha=each, methods=methods)
    m = int(report_summary.get("baseline_n", report_summary.get("n_test", 0)))
    below = _baseline_below(report_summary, level, m)
    n_flagged = int(report_summary["n_flagged"][level])
    share = n_flagged / n
    p_value = flagged_p_value(n_flagged, n, m, below)
    expected = (below + 1) / (m + 1)
    critical = critical_count(n, m, below, each)
    passes = p_value > each
    percentile = float(report_summary.get("percentiles", {}).get(level, level.lstrip("p")))
    reason = (
        f"{n_flagged} of {n} synthetic images ({share:.1%}) are closer to a training image "
        f"than {100 - percentile:g}% of real test images are; about {expected:.1%} would be by "
        f"chance (exact one-sided test: p = {p_value:.2g}"
        + (f" > alpha = {each:g}), so the set passes." if passes else f" <= alpha = {each:g}).")
    )
    if critical is None:
        reason += (
            f" With {m} real test images no count of {n} could fail the gate: it certifies "
            "nothing here."
        )
    else:
        reason += f" The gate fails this set at {critical} or more flagged."
    if report_summary.get("coarse_baseline"):
        reason += f" Only {m} real test images set the threshold, so it is coarse."
    if report_summary.get("baseline_zero_dcr"):
        reason += (
            f" {report_summary['baseline_zero_dcr']} real test images are identical to "
            "training images (a split leak), which makes the threshold too strict to flag."
        )
    return ReleaseVerdict(
        passes, share, level, reason, n_flagged, n, p_value, each, expected, critical, methods
    )
