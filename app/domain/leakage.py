"""How well a non-content channel separates real from synthetic, against a random feature.

A reader who records anything about a served image except its pixels (its byte length, its
size, a black band at the edge, a header, how long it took, its opaque id, where in the
sequence it came) holds a feature. The feature leaks if it sorts real from synthetic better
than a feature unrelated to the truth would at the study's size: the AUC (Mann-Whitney U
divided by n_real * n_synthetic) is compared with the 95th percentile of the AUC of a random
feature. Direction does not matter to a reader who can flip a rule, so every AUC is folded to
``max(AUC, 1 - AUC)``.

Channels redrawn for every presentation (position, opaque id, response time) are measured over
several independent walks and their AUCs averaged before folding: a random channel still
averages 0.5, a systematic one keeps its direction, and the comparison with the single-walk
null asks whether the channel, as a reader meets it, typically beats a random feature.

numpy only: the web tier imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

NULL_QUANTILE = 0.95
NULL_DRAWS = 20_000
NULL_SEED = 20_240_615
# Above this many images the normal approximation of U is within 0.002 AUC of the simulation.
_SIMULATE_UP_TO = 400
_CHUNK = 1_000


@dataclass(frozen=True)
class ChannelResult:
    channel: str
    auc: float  # folded, mean over walks
    null_p95: float
    n_real: int
    n_synthetic: int
    walks: int = 1

    @property
    def passed(self) -> bool:
        # A channel with a single class has nothing to separate; NaN never passes silently.
        return bool(self.auc <= self.null_p95)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def auc(scores: ArrayLike, positive: ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` for the ``positive`` class, ties counted half
    (average ranks), i.e. U / (n_pos * n_neg). 0.5 when either class is empty."""
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D of one length, got {x.shape}, {y.shape}")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = average_ranks(x)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks (scipy's 'average')."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Start index of each run of equal values, and the mean rank of that run.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    run_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def folded(value: float) -> float:
    return max(value, 1.0 - value)


@lru_cache(maxsize=256)
def null_p95(n_real: int, n_synthetic: int, quantile: float = NULL_QUANTILE) -> float:
    """The ``quantile`` of the folded AUC of a continuous feature unrelated to the truth, for
    ``n_real`` real and ``n_synthetic`` synthetic observations. Simulated with a fixed seed up
    to 400 observations (exact enough and reproducible), normal approximation of U above."""
    if n_real < 1 or n_synthetic < 1:
        return 1.0
    n = n_real + n_synthetic
    if n > _SIMULATE_UP_TO:
        # Var(U) = m n (N + 1) / 12 under H0; the folded AUC exceeds 0.5 + z * sd two-sidedly.
        sd = float(np.sqrt((n + 1) / (12.0 * n_real * n_synthetic)))
        z = _normal_quantile(0.5 + quantile / 2)
        return min(1.0, 0.5 + z * sd)
    rng = np.random.default_rng(NULL_SEED)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    values: list[np.ndarray] = []
    for start in range(0, NULL_DRAWS, _CHUNK):
        draws = min(_CHUNK, NULL_DRAWS - start)
        # Sorting random keys is a uniform permutation; the first n_real ids are "real".
        order = rng.random((draws, n)).argsort(axis=1)
        rank_sum = ((order < n_real) * ranks).sum(axis=1)
        u = rank_sum - n_real * (n_real + 1) / 2
        a = u / (n_real * n_synthetic)
        values.append(np.maximum(a, 1 - a))
    return float(np.quantile(np.concatenate(values), quantile))


def _normal_quantile(p: float) -> float:
    # Acklam's rational approximation (|error| < 1.2e-9): avoids scipy on the web tier.
    a = (-39.6968302866538, 220.946098424521, -275.928510446969, 138.357751867269,
         -30.6647980661472, 2.50662827745924)  # fmt: skip
    b = (-54.4760987982241, 161.585836858041, -155.698979859887, 66.8013118877197,
         -13.2806815528857)  # fmt: skip
    c = (-0.00778489400243029, -0.322396458041136, -2.40075827716184, -2.54973253934373,
         4.37466414146497, 2.93816398269878)  # fmt: skip
    d = (0.00778469570904146, 0.32246712907004, 2.445134137143, 3.75440866190742)
    if p < 0.02425:
        q = np.sqrt(-2 * np.log(p))
        num = ((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]
        return float(num / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1))
    if p > 1 - 0.02425:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    num = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
    return float(num / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1))


Walk = tuple[Sequence[float], Sequence[bool]]  # (feature per presentation, is it synthetic)


def channel_result(channel: str, walks: Sequence[Walk]) -> ChannelResult:
    """One channel measured over one or more walks of the same study (same class sizes):
    mean raw AUC over the walks, folded, against the single-walk null at that size."""
    if not walks:
        raise ValueError(f"channel {channel!r}: no observations")
    sizes = {
        (int(np.sum(~np.asarray(t, bool))), int(np.sum(np.asarray(t, bool)))) for _, t in walks
    }
    n_real = min(s[0] for s in sizes)
    n_synthetic = min(s[1] for s in sizes)
    mean_auc = float(np.mean([auc(values, truth) for values, truth in walks]))
    return ChannelResult(
        channel=channel,
        auc=round(folded(mean_auc), 4),
        null_p95=round(null_p95(n_real, n_synthetic), 4),
        n_real=n_real,
        n_synthetic=n_synthetic,
        walks=len(walks),
    )


def leaking(results: Sequence[ChannelResult]) -> list[ChannelResult]:
    return [r for r in results if not r.passed]


def describe(result: ChannelResult) -> str:
    """One line for findings, the study page and the methods line."""
    verdict = "separates the sources" if not result.passed else "within the null"
    return (
        f"{result.channel.replace('_', ' ')}: AUC {result.auc:.3f} vs random-feature 95th "
        f"percentile {result.null_p95:.3f} ({result.n_real} real, {result.n_synthetic} "
        f"synthetic, {result.walks} walk{'s' if result.walks != 1 else ''}): {verdict}"
    )
