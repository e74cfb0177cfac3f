"""FID, KID and precision / recall / density / coverage on image features.

One implementation for GAN early stopping and the dashboards, so the numbers agree. All
functions take (N, d) feature arrays from `ml.metrics.features` and compute in float64.

- FID: Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local
  Nash equilibrium" (reference code: bioinf-jku/TTUR, mirrored by pytorch-fid).
- KID: Binkowski et al. 2018, "Demystifying MMD GANs": unbiased MMD^2 with the cubic
  polynomial kernel, averaged over random subsets.
- Precision / recall: Kynkaanniemi et al. 2019, "Improved precision and recall metric for
  assessing generative models" (k-NN balls around each sample).
- Density / coverage: Naeem et al. 2020, "Reliable fidelity and diversity metrics for
  generative models" (k-NN balls around real samples only; robust to fake outliers).

FID is biased upwards at small sample sizes (Chong & Forsyth 2020): only compare FIDs computed
from equally sized sets, which is why `compare` reports the set sizes. With fewer images than
feature dimensions the covariances are rank-deficient and the bias dominates (issue 17: two
samples of one 2048-d distribution scored 1013 at n = 200 and 144 at n = 4000; see
bench/fid_small_n.py), so `compare` flags those FIDs (`fid_small_n`). Each FID also gets a
bootstrap interval over images (`fid_interval`), an interval of the biased estimator; KID is
unbiased and is the number to read at small n.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

# Pairwise-distance blocks are kept to about this many float64 entries (256 MiB).
_CHUNK_ELEMENTS = 2**25
FID_RESAMPLES = 200
FID_LEVEL = 0.95
IntervalMethod = Literal["basic", "percentile"]
# Below this matrix size a resample's linear algebra runs faster in one CPU thread: on a busy
# 2-core machine, 1,600 4-d resamples took 90 s with two threads and 3 s with one.
_ONE_THREAD_BELOW = 256


def _features(x: np.ndarray, what: str, min_rows: int = 2) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < min_rows:
        raise ValueError(f"{what}: expected (N >= {min_rows}, d) features, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: features contain NaN or infinity")
    return arr


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    The trace of the matrix square root is computed as the sum of the square roots of the
    eigenvalues of sigma1^(1/2) sigma2 sigma1^(1/2), which has the same eigenvalues as
    sigma1 sigma2 but is symmetric positive semi-definite: two symmetric eigen-decompositions
    instead of scipy's general `sqrtm` (Heusel et al.'s reference code), about 4x faster at
    2048 dimensions, always real, and with no eps retry needed for the singular covariances of
    small sets (tiny negative eigenvalues are round-off and clipped to 0).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError("the two distributions have different dimensions")
    if sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError("covariance and mean dimensions disagree")
    if not (np.isfinite(sigma1).all() and np.isfinite(sigma2).all()):
        raise ValueError("covariances must be finite")
    diff = mu1 - mu2
    # Symmetrised first: np.cov output is symmetric only up to round-off.
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2.0)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    middle = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    trace_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean
    # A squared distance: tiny negatives (identical sets) are round-off.
    return max(float(value), 0.0)


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of (N, d) features, float64."""
    x = _features(features, "feature_stats")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets.

    Sets smaller than the feature dimension go through their Gram matrices (`_fid_from_grams`,
    O(n^2 d) instead of two O(d^3) eigen-decompositions: 200 Inception features in well under
    a second instead of tens of seconds on a small CPU); larger ones through `frechet_distance`.
    """
    a, b = _features(features_a, "fid a"), _features(features_b, "fid b")
    if a.shape[1] != b.shape[1]:
        raise ValueError("the two feature sets have different dimensions")
    if min(len(a), len(b)) < a.shape[1]:
        x, y = torch.from_numpy(a), torch.from_numpy(b)
        offset = torch.cat([x, y]).mean(dim=0)  # see fid_interval: keeps the Gram sums small
        x, y = x - offset, y - offset
        return _fid_from_grams(x @ x.T, y @ y.T, x @ y.T)
    return frechet_distance(*feature_stats(a), *feature_stats(b))


def fid_small_n(n_a: int, n_b: int, dim: int) -> bool:
    """True when either set has fewer images than feature dimensions: its covariance is then
    rank-deficient and the FID mostly measures the small-sample bias, not the distributions."""
    return min(n_a, n_b) < dim


def _centre(gram: torch.Tensor) -> torch.Tensor:
    """H_n K H_m: the Gram matrix of the rows after each set's own mean is subtracted."""
    return gram - gram.mean(dim=0, keepdim=True) - gram.mean(dim=1, keepdim=True) + gram.mean()


def _fid_from_grams(k_aa: torch.Tensor, k_bb: torch.Tensor, k_ab: torch.Tensor) -> float:
    """FID from the Gram matrices of two sets, for sets smaller than the feature dimension.

    With A, B the centred (n, d), (m, d) features, Sa = A'A / (n-1) and Sb = B'B / (m-1): the
    non-zero eigenvalues of Sa Sb are those of (A B')(A B')' / ((n-1)(m-1)), so
    Tr (Sa Sb)^(1/2) is the sum of the singular values of the n x m matrix A B' over
    sqrt((n-1)(m-1)). Equal to `fid` up to round-off, at O(n^2 m) instead of O(d^3).
    """
    n, m = k_ab.shape
    mean_term = k_aa.mean() + k_bb.mean() - 2.0 * k_ab.mean()  # ||mu_a - mu_b||^2
    trace_a = torch.diagonal(_centre(k_aa)).sum() / (n - 1)
    trace_b = torch.diagonal(_centre(k_bb)).sum() / (m - 1)
    root = torch.linalg.svdvals(_centre(k_ab)).sum() / math.sqrt((n - 1) * (m - 1))
    return max(float(mean_term + trace_a + trace_b - 2.0 * root), 0.0)


def _trace_sqrt_product(sigma_a: torch.Tensor, sigma_b: torch.Tensor) -> torch.Tensor:
    """Tr (Sa Sb)^(1/2) as the eigenvalues of L' Sb L with Sa = L L' (similar to Sa Sb): one
    Cholesky instead of an eigen-decomposition; eigh of Sa when Sa is singular."""
    factor, info = torch.linalg.cholesky_ex(sigma_a)
    if int(info) != 0:
        w, v = torch.linalg.eigh(sigma_a)
        factor = v * w.clamp(min=0.0).sqrt()
    middle = factor.T @ sigma_b @ factor
    return torch.linalg.eigvalsh((middle + middle.T) / 2.0).clamp(min=0.0).sqrt().sum()


def _fid_from_rows(a: torch.Tensor, b: torch.Tensor) -> float:
    mu_a, mu_b = a.mean(dim=0), b.mean(dim=0)
    ca, cb = a - mu_a, b - mu_b
    sigma_a, sigma_b = ca.T @ ca / (len(a) - 1), cb.T @ cb / (len(b) - 1)
    diff = mu_a - mu_b
    value = diff @ diff + sigma_a.trace() + sigma_b.trace()
    return max(float(value - 2.0 * _trace_sqrt_product(sigma_a, sigma_b)), 0.0)


def fid_interval(
    features_a: np.ndarray,
    features_b: np.ndarray,
    *,
    resamples: int = FID_RESAMPLES,
    level: float = FID_LEVEL,
    seed: int = 0,
    method: IntervalMethod = "basic",
    estimate: float | None = None,
    device: torch.device | str = "cpu",
) -> tuple[float, float]:
    """Bootstrap interval of the FID over images: both sets resampled with replacement, the
    FID recomputed `resamples` times; q_lo, q_hi are the central `level` quantiles of those.

    `method="percentile"` returns [q_lo, q_hi]. FID is biased upwards and a resample (about
    63% distinct images) is biased further, so that interval lies above the estimate itself
    and misses the population FID even at n = 25 d (tests/unit/test_fid.py). The default
    `"basic"` (reverse-percentile) interval [2 FID - q_hi, 2 FID - q_lo], clipped at 0, uses
    the same resamples to remove the bias once, to first order. Either is an interval of the
    biased estimator at these sample sizes: at n < dim the bias is not small and both sit far
    above the population value (see `fid_small_n`; read KID there). `estimate`: the FID of
    the two sets if already computed. Seeded, deterministic.
    Sets no larger than the feature dimension are resampled in Gram space (O(n^3) per
    resample), larger ones through covariances (O(n d^2 + d^3)); `device` may be a GPU.
    """
    a, b = _features(features_a, "fid_interval a"), _features(features_b, "fid_interval b")
    if a.shape[1] != b.shape[1]:
        raise ValueError("the two feature sets have different dimensions")
    if resamples < 2:
        raise ValueError("resamples must be >= 2")
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie strictly between 0 and 1")
    if method not in ("basic", "percentile"):
        raise ValueError(f"method must be 'basic' or 'percentile', not {method!r}")
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(a).to(device)
    y = torch.from_numpy(b).to(device)
    # Resampled sets are re-centred anyway; a common offset keeps the Gram sums well scaled.
    offset = torch.cat([x, y]).mean(dim=0)
    x, y = x - offset, y - offset
    n, m, dim = len(x), len(y), x.shape[1]
    use_grams = min(n, m) <= dim
    if use_grams:
        k_aa, k_bb, k_ab = x @ x.T, y @ y.T, x @ y.T
    values = np.empty(resamples)
    threads = torch.get_num_threads()
    if x.device.type == "cpu" and (min(n, m) if use_grams else dim) < _ONE_THREAD_BELOW:
        torch.set_num_threads(1)
    try:
        for r in range(resamples):
            i = torch.from_numpy(rng.integers(0, n, size=n)).to(x.device)
            j = torch.from_numpy(rng.integers(0, m, size=m)).to(x.device)
            if use_grams:
                values[r] = _fid_from_grams(k_aa[i][:, i], k_bb[j][:, j], k_ab[i][:, j])
            else:
                values[r] = _fid_from_rows(x[i], y[j])
    finally:
        torch.set_num_threads(threads)
    tail = (1.0 - level) / 2.0
    low, high = (float(q) for q in np.quantile(values, [tail, 1.0 - tail]))
    if method == "percentile":
        return low, high
    if estimate is None:
        estimate = _fid_from_grams(k_aa, k_bb, k_ab) if use_grams else _fid_from_rows(x, y)
    return max(2.0 * estimate - high, 0.0), max(2.0 * estimate - low, 0.0)


def kid(
    features_a: np.ndarray,
    features_b: np.ndarray,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, std) over `subsets` of the unbiased MMD^2 with
    k(x, y) = (x.y / d + 1)^3; `subset_size` is capped by the smaller set. Unbiased, so it
    can be slightly negative when the sets come from one distribution.
    """
    a, b = _features(features_a, "kid a"), _features(features_b, "kid b")
    if a.shape[1] != b.shape[1]:
        raise ValueError("the two feature sets have different dimensions")
    if subsets < 1:
        raise ValueError("subsets must be >= 1")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError("KID needs subsets of at least 2 samples")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    estimates = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        k_xx = (x @ x.T / d + 1.0) ** 3
        k_yy = (y @ y.T / d + 1.0) ** 3
        k_xy = (x @ y.T / d + 1.0) ** 3
        # Unbiased MMD^2_u: within-set sums drop the diagonal (Binkowski et al. eq. 2).
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        estimates[i] = within - 2.0 * k_xy.sum() / (m * m)
    return float(estimates.mean()), float(estimates.std())


def _chunk_rows(n_cols: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(n_cols, 1))


def _kth_neighbour_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (the row itself is 0th)."""
    radii = []
    for chunk in x.split(_chunk_rows(x.shape[0])):
        dist = torch.cdist(chunk, x)
        radii.append(dist.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def precision_recall_density_coverage(
    real: np.ndarray, fake: np.ndarray, *, k: int = 5
) -> dict[str, float]:
    """Precision, recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020).

    Exact Euclidean distances in float64, in row blocks so memory stays bounded; strict `<`
    against the k-NN radius as in the authors' code. Precision: share of fakes inside some
    real k-NN ball; recall: share of reals inside some fake k-NN ball; density: mean number
    of real balls holding a fake, over k; coverage: share of real balls holding any fake.
    """
    r = torch.from_numpy(_features(real, "real", k + 1))
    f = torch.from_numpy(_features(fake, "fake", k + 1))
    if r.shape[1] != f.shape[1]:
        raise ValueError("real and fake features have different dimensions")
    if k < 1:
        raise ValueError("k must be >= 1")
    real_radii = _kth_neighbour_radii(r, k)
    fake_radii = _kth_neighbour_radii(f, k)

    balls_per_fake = torch.zeros(f.shape[0], dtype=torch.float64)
    real_recalled, real_covered = [], []
    for start in range(0, r.shape[0], _chunk_rows(f.shape[0])):
        chunk = r[start : start + _chunk_rows(f.shape[0])]
        radii = real_radii[start : start + chunk.shape[0], None]
        dist = torch.cdist(chunk, f)  # (chunk, n_fake)
        balls_per_fake += (dist < radii).sum(dim=0)
        real_recalled.append((dist < fake_radii[None, :]).any(dim=1))
        real_covered.append(dist.min(dim=1).values < radii[:, 0])
    return {
        "precision": float((balls_per_fake > 0).double().mean()),
        "recall": float(torch.cat(real_recalled).double().mean()),
        "density": float(balls_per_fake.mean() / k),
        "coverage": float(torch.cat(real_covered).double().mean()),
    }


@dataclass(frozen=True)
class FidelityScores:
    """All metrics for one pair of feature sets (a = real reference, b = compared set)."""

    fid: float
    kid_mean: float
    kid_std: float
    precision: float
    recall: float
    density: float
    coverage: float
    n_a: int
    n_b: int
    dim: int = 0
    # Fewer images than feature dimensions in either set: read KID, not FID.
    fid_small_n: bool = False
    # Percentile bootstrap over images of the (biased) FID; None when not resampled.
    fid_interval: tuple[float, float] | None = None
    fid_level: float = FID_LEVEL


@dataclass(frozen=True)
class FidelityReport:
    """Fake vs real-train scores, and the real-vs-real floor (train vs held-out test): the
    best a generator can hope for with these sample sizes."""

    fake_vs_train: FidelityScores
    floor: FidelityScores | None = None

    def to_dict(self) -> dict[str, dict[str, object] | None]:
        return asdict(self)


def _scores(
    a: np.ndarray,
    b: np.ndarray,
    *,
    k: int,
    kid_subsets: int,
    kid_subset_size: int,
    seed: int,
    fid_resamples: int,
    fid_level: float,
    device: torch.device | str,
) -> FidelityScores:
    kid_mean, kid_std = kid(a, b, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    prdc = precision_recall_density_coverage(a, b, k=k)
    value = fid(a, b)
    interval = None
    if fid_resamples:
        interval = fid_interval(
            a, b, resamples=fid_resamples, level=fid_level, seed=seed, estimate=value, device=device
        )
    dim = int(np.shape(a)[1])
    return FidelityScores(
        fid=value,
        kid_mean=kid_mean,
        kid_std=kid_std,
        n_a=len(a),
        n_b=len(b),
        dim=dim,
        fid_small_n=fid_small_n(len(a), len(b), dim),
        fid_interval=interval,
        fid_level=fid_level,
        **prdc,
    )


def compare(
    real_train_feats: np.ndarray,
    fake_feats: np.ndarray,
    real_test_feats: np.ndarray | None = None,
    *,
    k: int = 5,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    fid_resamples: int = FID_RESAMPLES,
    fid_level: float = FID_LEVEL,
    device: torch.device | str = "cpu",
) -> FidelityReport:
    """FID / KID / PRDC of fakes against the real training set, plus the train-vs-test floor.

    For a fair floor, pass as many fakes as test images: FID falls with sample size, so a
    floor from 200 test images against a score from 10,000 fakes compares unlike numbers.
    Each FID comes with its bootstrap interval (`fid_resamples=0`: none) and small-n flag.
    """
    options = {
        "k": k,
        "kid_subsets": kid_subsets,
        "kid_subset_size": kid_subset_size,
        "fid_resamples": fid_resamples,
        "fid_level": fid_level,
        "device": device,
    }
    fake = _scores(real_train_feats, fake_feats, seed=seed, **options)
    floor = None
    if real_test_feats is not None:
        floor = _scores(real_train_feats, real_test_feats, seed=seed, **options)
    return FidelityReport(fake_vs_train=fake, floor=floor)
