import math

import pytest
from scipy.stats import binomtest
from statsmodels.stats.proportion import binom_tost

from app.domain.power import (
    ASSUMED_ICC_IMAGE,
    ASSUMED_ICC_READER,
    binomial_power,
    crossed_design_effect,
    plan_sample_size,
    plan_study,
    tost_power,
)


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
    # One-sided, where a study pre-registered it.
    expected = brute_force_power(
        n, p, lambda k: binomtest(k, n, 0.5, alternative="greater").pvalue <= 0.05
    )
    greater = binomial_power(n, p, alternative="greater")
    assert greater == pytest.approx(expected, rel=1e-9)
    # critical value: P(X >= 18 | 25, 0.5) = 0.0216 <= 0.05 < P(X >= 17) = 0.0539
    assert greater == pytest.approx(brute_force_power(n, p, lambda k: k >= 18))
    # Two-sided, the default: the analysis's scipy test at every k; rejects k <= 7 or k >= 18.
    two_sided = brute_force_power(n, p, lambda k: binomtest(k, n, 0.5).pvalue <= 0.05)
    assert binomial_power(n, p) == pytest.approx(two_sided, rel=1e-9)
    assert two_sided == pytest.approx(brute_force_power(n, p, lambda k: k <= 7 or k >= 18))
    # Small and even n, where binomtest's two-sided p is 1 at k = n/2.
    for n in (1, 2, 9, 10, 40):
        expected = brute_force_power(n, 0.6, lambda k: binomtest(k, n, 0.5).pvalue <= 0.05)
        assert binomial_power(n, 0.6) == pytest.approx(expected, rel=1e-9, abs=1e-15), n


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


def test_planner_plans_the_per_reader_tost_that_is_analysed():
    # The old planner: one pooled TOST needs 214 answers, and 4 readers x 53-54 answers had
    # "enough". But the page runs a TOST per reader, and each of those has no power at all.
    assert plan_sample_size(0.5, 0.1).n_independent == 214
    decisive = [("R1", 53), ("R2", 54), ("R3", 53), ("R4", 54)]
    assert sum(n for _, n in decisive) == 214
    plan = plan_study(0.10, decisive)
    assert [r.power for r in plan.readers] == [0.0, 0.0, 0.0, 0.0]
    assert all(tost_power(n, 0.5, 0.1) == 0.0 for _, n in decisive)
    assert brute_force_power(53, 0.5, lambda k: binom_tost(k, 53, 0.4, 0.6)[0] <= 0.05) == 0
    assert not plan.per_reader_enough and not plan.pooled_enough
    assert plan.per_reader_needed == 214
    enough = plan_study(0.10, [(f"R{i}", 214) for i in range(4)])
    assert enough.per_reader_enough
    assert all(r.power >= 0.8 for r in enough.readers)
    assert not plan_study(0.10, [("R1", 214), ("R2", 213)]).per_reader_enough


def test_planner_pooled_question_with_design_effect():
    # Stated assumptions without data.
    plan = plan_study(0.10, [("R1", 0)] * 1)
    assert not plan.icc_estimated
    assert (plan.icc_reader, plan.icc_image) == (ASSUMED_ICC_READER, ASSUMED_ICC_IMAGE)
    # Estimated ICCs: the smallest m with R m / DE(m) >= 214, by brute force.
    plan = plan_study(0.10, [(f"R{i}", 100) for i in range(6)], icc_reader=0.01, icc_image=0.02)
    assert plan.icc_estimated
    m = plan.images_per_reader_needed

    def effective(m: int) -> float:
        return 6 * m / crossed_design_effect(m, 6, 0.01, 0.02)

    assert effective(m) >= 214 > effective(m - 1)
    assert plan.design_effect == pytest.approx(1 + (m - 1) * 0.01 + 5 * 0.02)
    assert plan.pooled_enough == (m <= 100)
    # No correlation: the pooled TOST's 214 answers split over the readers.
    flat = plan_study(0.10, [(f"R{i}", 10) for i in range(4)], icc_reader=0.0, icc_image=0.0)
    assert flat.images_per_reader_needed == math.ceil(214 / 4) and flat.design_effect == 1.0
    # Readers who differ: 4 readers cannot reach it however many images (214 x 0.05 > 4).
    stuck = plan_study(0.10, [(f"R{i}", 500) for i in range(4)], icc_reader=0.05, icc_image=0.0)
    assert stuck.images_per_reader_needed is None and not stuck.pooled_enough
    assert "more than 10 readers" in stuck.pooled_problem
