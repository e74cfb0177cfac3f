"""Coverage of the pooled / per-source interval against the Wilson interval it replaced.

Simulates 50 images x 3 readers (and 100 x 5) of binary answers from a logit model with reader
and image random effects, and prints, for the crossed readers-and-images interval
(app/domain/crossed_interval.py) and for the Wilson interval on all answers as if independent
(the baseline, in the same run): the share of simulations whose 95% interval covers the true
mean accuracy, the mean width, and the ratio of the widths.

    .venv/bin/python bench/reader_intervals.py [--simulations 1000] [--seed 18]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.special import expit
from statsmodels.stats.proportion import proportion_confint

from app.domain.crossed_interval import crossed_interval

SCENARIOS = (  # (readers, images, reader SD, image SD) on the logit scale
    (3, 50, 0.0, 0.0),
    (3, 50, 0.0, 1.0),
    (3, 50, 0.5, 0.0),
    (3, 50, 0.5, 1.0),
    (5, 100, 0.5, 1.0),
)
INTERCEPT = 0.8  # logit of about 0.69


def _true_mean(reader_sd: float, image_sd: float, rng: np.random.Generator) -> float:
    z = rng.normal(size=(2, 2_000_000))
    return float(expit(INTERCEPT + reader_sd * z[0] + image_sd * z[1]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(
        f"{'design':>10} {'reader SD':>9} {'image SD':>8} | {'crossed cover':>13} "
        f"{'Wilson cover':>12} | {'crossed width':>13} {'Wilson width':>12} {'ratio':>6}"
    )
    for n_readers, n_images, reader_sd, image_sd in SCENARIOS:
        truth = _true_mean(reader_sd, image_sd, rng)
        readers = [str(r) for r in range(n_readers) for _ in range(n_images)]
        images = [str(i) for _ in range(n_readers) for i in range(n_images)]
        covered = np.zeros(2)
        widths = np.zeros(2)
        for _ in range(args.simulations):
            a = rng.normal(0, reader_sd, n_readers)[:, None]
            b = rng.normal(0, image_sd, n_images)[None, :]
            y = (rng.random((n_readers, n_images)) < expit(INTERCEPT + a + b)).ravel()
            crossed = crossed_interval(readers, images, y.astype(float))
            low, high = proportion_confint(int(y.sum()), y.size, method="wilson")
            for j, (lo, hi) in enumerate(((crossed.low, crossed.high), (low, high))):
                covered[j] += lo <= truth <= hi
                widths[j] += hi - lo
        cover, width = covered / args.simulations, widths / args.simulations
        print(
            f"{n_readers:>3} x {n_images:<4} {reader_sd:>9.1f} {image_sd:>8.1f} | "
            f"{cover[0]:>13.3f} {cover[1]:>12.3f} | {width[0]:>13.3f} {width[1]:>12.3f} "
            f"{width[0] / width[1]:>6.2f}"
        )


if __name__ == "__main__":
    main()
