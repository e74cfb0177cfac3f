"""FID at small n (issue 17): two samples of ONE 2048-d distribution, so the population FID is 0.

For each n: the FID of two independent draws of n feature vectors, its 95% basic-bootstrap
interval (the default of `ml.metrics.fid.fid_interval`) and the percentile one, the small-n
flag (n < d), KID (unbiased) and the seconds the interval took. The distribution is a Gaussian
in 2048 dimensions with a power-law spectrum (eigenvalue k proportional to k^-1, total variance
`--total-variance`), a stand-in for Inception pool features, whose spectrum also decays; the
exact values depend on the spectrum, the pattern does not: FID far from 0 below n = d, an
interval of the biased estimator that does not reach 0 there, KID near 0 throughout.

    .venv/bin/python bench/fid_small_n.py
    .venv/bin/python bench/fid_small_n.py --sizes 200 4000 --resamples 200

On a loaded 2-core machine n = 1000 takes a few minutes with 50 resamples; n > 2048 switches
to the covariance route (a 2048 x 2048 Cholesky and eigvalsh per resample): use a GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.metrics.fid import fid, fid_interval, fid_small_n, kid  # noqa: E402

DIM = 2048


def draw(n: int, scales: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # A diagonal covariance is no loss: FID is invariant under rotations of feature space.
    return rng.normal(size=(n, len(scales))) * scales


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 500, 1000])
    parser.add_argument("--resamples", type=int, default=50)
    parser.add_argument("--total-variance", type=float, default=200.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    spectrum = 1.0 / np.arange(1, DIM + 1)
    scales = np.sqrt(spectrum * args.total_variance / spectrum.sum())
    print(f"d = {DIM}, total variance {args.total_variance}, population FID 0, "
          f"{args.resamples} bootstrap resamples")  # fmt: skip
    print("n\tFID\tbasic 95%\tpercentile 95%\tn<d\tKID\tinterval s")
    for n in args.sizes:
        rng = np.random.default_rng(args.seed + n)
        a, b = draw(n, scales, rng), draw(n, scales, rng)
        value = fid(a, b)
        start = time.perf_counter()
        basic = fid_interval(a, b, resamples=args.resamples, seed=args.seed, estimate=value)
        seconds = time.perf_counter() - start
        pct = fid_interval(a, b, resamples=args.resamples, seed=args.seed, method="percentile")
        kid_mean, _ = kid(a, b, subsets=20, subset_size=min(1000, n), seed=args.seed)
        print(
            f"{n}\t{value:.1f}\t[{basic[0]:.1f}, {basic[1]:.1f}]\t[{pct[0]:.1f}, {pct[1]:.1f}]"
            f"\t{fid_small_n(n, n, DIM)}\t{kid_mean:.2e}\t{seconds:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
