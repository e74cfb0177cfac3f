"""The epsilon a private GAN run reports, per accountant, for a few DP-SGD settings.

For each (sigma, q, steps, delta): Opacus' RDP accountant with its default orders (up to 63,
what synthbench reported before), RDP with orders up to 1024 (the cross-check it logs now as
`epsilon_rdp`), the PRV upper bound (`ml.training.privacy.privacy_spent`, the headline) and,
when Google's dp_accounting is installed (a test dependency), its PLD accountant as an
independent reference. Also the wall time of `privacy_spent`, which a run pays once per tick.

    .venv/bin/python bench/dp_epsilon.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opacus.accountants import RDPAccountant  # noqa: E402

from ml.training.privacy import privacy_spent  # noqa: E402

# (sigma, q, steps, delta): the tiny test dataset; common DP-SGD settings (MNIST-like
# q = 256 / 60000 for 60 epochs); small sampling rates with large noise, where RDP's slack
# is largest; a long run (100k steps), where PRV's FFT mesh is largest.
CASES = [
    (1.0, 0.4, 6, 1e-5),
    (1.0, 0.01, 1000, 1e-5),
    (1.1, 256 / 60000, 60 * 60000 // 256, 1e-5),
    (2.0, 0.001, 1000, 1e-5),
    (4.0, 0.001, 1000, 1e-5),
    (0.8, 0.02, 100_000, 1e-6),
]


def _pld(sigma: float, q: float, steps: int, delta: float) -> float | None:
    try:
        import dp_accounting
        from dp_accounting.pld import pld_privacy_accountant
    except ImportError:
        return None
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )
    return pld_privacy_accountant.PLDAccountant().compose(event).get_epsilon(delta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=None, help="skip longer histories")
    args = parser.parse_args()
    print(
        f"{'sigma':>5} {'q':>8} {'steps':>7} {'delta':>6} | {'RDP<=63':>8} {'RDP<=1024':>9} "
        f"{'PRV':>8} {'PLD ref':>8} | {'RDP63/PRV':>9} {'PRV-PLD':>8} {'time s':>7}"
    )
    for sigma, q, steps, delta in CASES:
        if args.max_steps is not None and steps > args.max_steps:
            continue
        default = RDPAccountant()
        default.history = [(sigma, q, steps)]
        rdp63 = default.get_epsilon(delta)
        start = time.perf_counter()
        spent = privacy_spent([(sigma, q, steps)], delta)
        seconds = time.perf_counter() - start
        pld = _pld(sigma, q, steps, delta)
        gap = f"{spent.epsilon - pld:8.4f}" if pld is not None else f"{'-':>8}"
        ref = f"{pld:8.4f}" if pld is not None else f"{'-':>8}"
        print(
            f"{sigma:5.2f} {q:8.5f} {steps:7d} {delta:6.0e} | {rdp63:8.4f} "
            f"{spent.epsilon_rdp:9.4f} {spent.epsilon:8.4f} {ref} | "
            f"{rdp63 / spent.epsilon:9.2f} {gap} {seconds:7.2f}  ({spent.accountant})"
        )


if __name__ == "__main__":
    main()
