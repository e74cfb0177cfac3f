import math

import pytest
from scipy.stats import binomtest
from statsmodels.stats.proportion import binom_tost

from app.domain.power import binomial_power, plan_sample_size, tost_power


def brute_force_power(n, p, rejects):
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1) if rejects(k))


def test_tost_power_equals_enumeration_with_binom_tost():
    n, p, margin = 40, 0.5, 0.2
    expected = brute_force_power(n, p, lambda k: binom_tost(k, n, 0.3, 0.7)[0] <= 0.05)
    assert expected > 0.3  # the design can actually reject
    assert tost_power(n, p, margin) == pytest.approx(expected, rel=1e-9)
    # P(X >= 18 | 40, 0.3) = 0.032 <= 0.05 < P(X >= 17 | 40, 0.3) = 0.063, and symmetrically
    # at 0.7, so equivalence is declared for 18 <= k <= 22
    by_hand = sum(math.comb(40, k) for k in range(18, 23)) / 2**40
    assert tost_power(n, p, margin) == pytest.approx(by_hand, rel=1e-9)


def test_binomial_power_equals_enumeration_with_binomtest():
    n, p = 25, 0.7
    expected = brute_force_power(
        n, p, lambda k: binomtest(k, n, 0.5, alternative="greater").pvalue <= 0.05
    )
    assert binomial_power(n, p) == pytest.approx(expected, rel=1e-9)
    # critical value: P(X >= 18 | 25, 0.5) = 0.0216 <= 0.05 < P(X >= 17) = 0.0539
    assert binomial_power(n, p) == pytest.approx(brute_force_power(n, p, lambda k: k >= 18))


def test_power_grows_with_n_and_respects_alpha():
    tost = [tost_power(n, 0.5, 0.1) for n in (50, 100, 200, 400, 800)]
    assert tost == sorted(tost) and tost[0] < 0.05 and tost[-1] > 0.99
    sup = [binomial_power(n, 0.65) for n in (10, 20, 40, 80, 160)]
    assert sup == sorted(sup) and sup[-1] > 0.9
    # at the equivalence bound the exact test keeps its level
    assert tost_power(300, 0.4, 0.1) <= 0.05
    assert binomial_power(300, 0.5) <= 0.05
    assert tost_power(0, 0.5, 0.1) == 0.0


def test_plan_sample_size_is_smallest_n_reaching_power():
    plan = plan_sample_size(0.5, 0.1, power=0.8, readers=5)
    assert plan.power >= 0.8
    assert tost_power(plan.n_independent, 0.5, 0.1) == pytest.approx(plan.power)
    assert all(tost_power(n, 0.5, 0.1) < 0.8 for n in range(1, plan.n_independent))
    # normal approximation (z_0.95 + z_0.9)^2 * 0.25 / 0.1^2 ~ 214
    assert 190 <= plan.n_independent <= 240
    assert plan.n_answers == plan.n_independent
    assert plan.images_per_reader == math.ceil(plan.n_independent / 5)


def test_plan_sample_size_design_effect_and_superiority():
    base = plan_sample_size(0.5, 0.1)
    inflated = plan_sample_size(0.5, 0.1, readers=4, design_effect=1.5)
    assert inflated.n_independent == base.n_independent
    assert inflated.n_answers == math.ceil(1.5 * base.n_independent)
    assert inflated.images_per_reader == math.ceil(inflated.n_answers / 4)
    sup = plan_sample_size(0.7, 0.0, test="superiority", power=0.9)
    assert binomial_power(sup.n_independent, 0.7) >= 0.9
    assert binomial_power(sup.n_independent - 1, 0.7) < 0.9


def test_plan_sample_size_rejects_impossible_designs():
    with pytest.raises(ValueError):
        plan_sample_size(0.65, 0.1)  # true accuracy outside the equivalence region
    with pytest.raises(ValueError):
        plan_sample_size(0.5, 0.1, test="superiority")
    with pytest.raises(ValueError):
        plan_sample_size(0.5, 0.1, design_effect=0.5)
