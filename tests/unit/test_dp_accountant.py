"""The epsilon a private run reports: the PRV accountant's upper bound, checked against an
independent implementation (Google's dp_accounting, privacy loss distributions), and never
above the RDP bound it falls back to."""

from __future__ import annotations

import math

import dp_accounting
import pytest
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from ml.training.privacy import RDP_ORDERS, privacy_spent, prv_error

# (sigma, q, steps, delta): a tiny-dataset run (q = 0.4, as in test_gan_privacy), a common
# DP-SGD setting, and a small sampling rate, where RDP's slack is largest.
CASES = [
    (1.0, 0.4, 6, 1e-5),
    (1.0, 0.01, 1000, 1e-5),
    (2.0, 0.001, 1000, 1e-5),
]


def _pld_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )
    # Pessimistic discretisation at 1e-4: an upper bound within ~1e-4 of the exact epsilon.
    return pld_privacy_accountant.PLDAccountant().compose(event).get_epsilon(delta)


def _rdp_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )
    accountant = rdp_privacy_accountant.RdpAccountant(orders=RDP_ORDERS)
    return accountant.compose(event).get_epsilon(delta)


@pytest.mark.parametrize(("sigma", "q", "steps", "delta"), CASES)
def test_prv_matches_the_pld_accountant_within_its_stated_error(
    sigma: float, q: float, steps: int, delta: float
) -> None:
    spent = privacy_spent([(sigma, q, steps)], delta)
    assert spent.accountant == "prv" and spent.epsilon == spent.epsilon_prv
    reference = _pld_epsilon(sigma, q, steps, delta)
    error = prv_error([(sigma, q, steps)], delta, spent.epsilon_rdp)
    assert error is not None and error <= 0.01
    # PRV's upper bound is its estimate + eps_error; the estimate is within 2e-3 of the
    # PLD bound (the two discretisations differ by less than that).
    assert reference - 2e-3 <= spent.epsilon <= reference + error + 2e-3, (spent, reference)
    assert spent.epsilon < spent.epsilon_rdp


@pytest.mark.parametrize(("sigma", "q", "steps", "delta"), CASES)
def test_the_rdp_cross_check_is_an_upper_bound_close_to_an_independent_rdp(
    sigma: float, q: float, steps: int, delta: float
) -> None:
    spent = privacy_spent([(sigma, q, steps)], delta)
    independent = _rdp_epsilon(sigma, q, steps, delta)
    # Same orders and conversion; dp_accounting drops the orders whose series does not
    # converge (small alphas at q = 0.4), which moves its minimum by < 0.01%.
    assert spent.epsilon_rdp == pytest.approx(independent, rel=1e-3)


def test_small_sampling_rates_are_where_prv_gains_most() -> None:
    # sigma 2, q 0.001, 1000 steps: RDP (even with orders up to 1024) gives 0.131, the PLD
    # bound 0.050; the reported epsilon is within 0.002 of the latter.
    spent = privacy_spent([(2.0, 0.001, 1000)], 1e-5)
    assert spent.epsilon_rdp == pytest.approx(0.1311, abs=1e-3)
    assert spent.epsilon == pytest.approx(0.0513, abs=1e-3)


def test_no_steps_no_noise_and_tiny_delta() -> None:
    assert privacy_spent([], 1e-5).epsilon == 0.0
    # No noise: no privacy, and PRV cannot be computed; RDP says infinity.
    none = privacy_spent([(0.0, 0.4, 1)], 1e-5)
    assert none.epsilon == math.inf and none.accountant == "rdp" and none.epsilon_prv is None
    # Heterogeneous histories (a changed sampling rate) compose too.
    mixed = privacy_spent([(1.0, 0.4, 3), (1.0, 0.2, 3)], 1e-5)
    assert mixed.epsilon < privacy_spent([(1.0, 0.4, 6)], 1e-5).epsilon
