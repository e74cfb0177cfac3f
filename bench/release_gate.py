"""The privacy release gate against its null, on scikit-learn's 8x8 digits (real images).

Each of `--splits` random splits of the 1,797 digits gives a training set, a real test set (the
baseline) and a "synthetic" set of further real images nobody trained on: a generator that
learned the distribution perfectly and copied nothing. Every gate should pass such a set;
the share of splits it fails is its false-fail rate. Then `--copies` of the synthetic set is
replaced by training images, exactly or with Gaussian pixel noise of sd `--noise` (on the
0..16 scale): a memorising generator, which the gate should fail (its power).

Gates compared, at the 5th-percentile flag level:
- exact: `release_verdict`, the one-sided exact beta-binomial test at alpha (the project's);
- binomial: scipy.stats.binomtest of the count against the nominal 5%, one-sided, at alpha,
  which ignores that the threshold is a sample percentile of the m test images;
- cap: the old gate, at most 1% of the set flagged.

The digits' exact pairwise distances are computed once (integer pixels: float64 is exact) and
each split's two nearest training images taken from them, which is what `knn` returns (it
equals brute force, tests/unit/test_neighbours.py); `report_from_neighbours` and
`release_verdict` then run as in the web app's worker.

    .venv/bin/python bench/release_gate.py
    .venv/bin/python bench/release_gate.py --splits 1000 --n-test 100
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binomtest
from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.metrics.neighbours import release_verdict, report_from_neighbours  # noqa: E402

GATES = ("exact", "binomial", "cap")


def pairwise(images: np.ndarray) -> np.ndarray:
    """Exact Euclidean distances between all rows (integer data: float64 sums are exact)."""
    sq = np.einsum("ij,ij->i", images, images)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * images @ images.T, 0.0))


def nearest_two(dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, 2) ascending distances and column indices of each row's two nearest columns."""
    idx = np.argpartition(dist, 1, axis=1)[:, :2]
    near = np.take_along_axis(dist, idx, axis=1)
    order = np.argsort(near, axis=1, kind="stable")
    return np.take_along_axis(near, order, axis=1), np.take_along_axis(idx, order, axis=1)


def gate_outcomes(
    syn_to_train: np.ndarray, test_to_train: np.ndarray, alpha: float
) -> dict[str, bool]:
    """Whether each gate FAILS the synthetic set, from its and the test set's distances to
    every training image."""
    dist, idx = nearest_two(syn_to_train)
    base, _ = nearest_two(test_to_train)
    report = report_from_neighbours(dist, idx, base, n_train=dist.shape[1], percentiles=(5.0,))
    summary = report.summary()
    n, flagged = summary["n_synthetic"], summary["n_flagged"]["p5"]
    naive = binomtest(flagged, n, 0.05, alternative="greater").pvalue
    return {
        "exact": not release_verdict(summary, alpha=alpha).passes,
        "binomial": naive <= alpha,
        "cap": flagged > 0.01 * n,
    }


def split(
    rng: np.random.Generator, n_images: int, n_train: int, n_test: int, n_syn: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random disjoint index sets: train, real test, synthetic (real images never trained on)."""
    order = rng.permutation(n_images)
    ends = np.cumsum([n_train, n_test, n_syn])
    return order[: ends[0]], order[ends[0] : ends[1]], order[ends[1] : ends[2]]


def plant(
    rng: np.random.Generator,
    syn_to_train: np.ndarray,
    images: np.ndarray,
    train: np.ndarray,
    share: float,
    noise: float,
) -> np.ndarray:
    """Distances to the training images after `share` of the synthetic set is replaced by
    training images plus N(0, noise^2) per pixel."""
    out = syn_to_train.copy()
    n_copies = round(share * len(out))
    at = rng.choice(len(out), n_copies, replace=False)
    copies = images[train[rng.choice(len(train), n_copies, replace=False)]]
    copies = copies + rng.normal(0.0, noise, copies.shape) if noise > 0 else copies
    out[at] = np.sqrt(((copies[:, None, :] - images[train][None, :, :]) ** 2).sum(axis=-1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, default=2000)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--n-synthetic", type=int, default=200)
    parser.add_argument("--copies", type=float, default=0.10)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images = load_digits().data.astype(np.float64)
    distances = pairwise(images)
    rng = np.random.default_rng(args.seed)
    scenarios = ("fresh real", "exact copies", "noised copies")
    fails = {s: dict.fromkeys(GATES, 0) for s in scenarios}
    for _ in range(args.splits):
        train, test, syn = split(rng, len(images), args.n_train, args.n_test, args.n_synthetic)
        fresh = distances[np.ix_(syn, train)]
        sets = {
            "fresh real": fresh,
            "exact copies": plant(rng, fresh, images, train, args.copies, 0.0),
            "noised copies": plant(rng, fresh, images, train, args.copies, args.noise),
        }
        test_to_train = distances[np.ix_(test, train)]
        for name, data in sets.items():
            for gate, failed in gate_outcomes(data, test_to_train, args.alpha).items():
                fails[name][gate] += failed
    print(
        f"digits: {args.splits} splits, train {args.n_train}, real test {args.n_test}, "
        f"synthetic {args.n_synthetic}; copies {args.copies:.0%} (noise sd {args.noise:g}); "
        f"alpha {args.alpha:g}; level p5"
    )
    se = math.sqrt(args.alpha * (1 - args.alpha) / args.splits)
    print(f"share of splits each gate FAILS (Monte Carlo se at rate alpha: {se:.3f})")
    print(f"{'set':<16}" + "".join(f"{g:>10}" for g in GATES))
    for name in scenarios:
        rates = "".join(f"{fails[name][g] / args.splits:>10.3f}" for g in GATES)
        print(f"{name:<16}{rates}")
    ci = binomtest(fails["fresh real"]["exact"], args.splits).proportion_ci(0.95)
    print(f"exact gate false-fail rate 95% CI: [{ci.low:.3f}, {ci.high:.3f}]")


if __name__ == "__main__":
    main()
