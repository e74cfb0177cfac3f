import json
import math

import numpy as np
import pytest
from scipy.stats import binom, binomtest, chi2, norm
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa
from statsmodels.stats.proportion import binom_tost, proportion_confint

from app.domain.statistics import (
    Rating,
    accuracy_by_source,
    cochran_q,
    cohen_kappa_pairs,
    fake_score,
    fleiss_kappa,
    fooling_rates,
    holm,
    mcnemar_paired,
    pooled_accuracy,
    reader_summary,
    study_statistics,
)


def make_reader(reader, answers, truths=None, **extra):
    """Ratings for one reader; images are named img0, img1, ... in answer order."""
    truths = truths or ["fake" if i % 2 else "real" for i in range(len(answers))]
    return [
        Rating(reader=reader, image=f"img{i}", truth=t, answer=a, **extra)
        for i, (t, a) in enumerate(zip(truths, answers, strict=True))
    ]


def with_correct(reader, n, k):
    """n alternating real/fake images of which the first k are answered correctly."""
    truths = ["fake" if i % 2 else "real" for i in range(n)]
    flip = {"real": "fake", "fake": "real"}
    answers = [t if i < k else flip[t] for i, t in enumerate(truths)]
    return make_reader(reader, answers, truths)


def test_reader_15_of_20_binomial_and_wilson():
    s = reader_summary(with_correct("r1", 20, 15))
    assert (s.n, s.correct, s.accuracy) == (20, 15, 0.75)
    # P(X >= 15 | n=20, p=0.5) = (C(20,15)+...+C(20,20)) / 2^20
    tail = sum(math.comb(20, k) for k in range(15, 21)) / 2**20
    assert tail == pytest.approx(0.0206947, abs=1e-7)
    assert s.p_binomial == pytest.approx(tail, rel=1e-12)
    assert s.p_binomial == pytest.approx(binomtest(15, 20, 0.5, alternative="greater").pvalue)
    # Wilson score interval by its formula
    z = norm.ppf(0.975)
    centre = (15 + z**2 / 2) / (20 + z**2)
    half = z / (20 + z**2) * math.sqrt(15 * 5 / 20 + z**2 / 4)
    assert s.wilson_low == pytest.approx(centre - half, rel=1e-9)
    assert s.wilson_high == pytest.approx(centre + half, rel=1e-9)
    assert (s.wilson_low, s.wilson_high) == pytest.approx(
        proportion_confint(15, 20, method="wilson")
    )
    assert s.wilson_low == pytest.approx(0.5313, abs=1e-4)
    assert s.wilson_high == pytest.approx(0.8881, abs=1e-4)


def test_policy_wrong_versus_excluded():
    # 12 correct, 3 uncertain, 5 wrong
    truths = ["real", "fake"] * 10
    flip = {"real": "fake", "fake": "real"}
    answers = truths[:12] + ["uncertain"] * 3 + [flip[t] for t in truths[15:]]
    ratings = make_reader("r", answers, truths)
    wrong = reader_summary(ratings, policy="wrong")
    excluded = reader_summary(ratings, policy="excluded")
    assert (wrong.n, wrong.correct, wrong.n_uncertain) == (20, 12, 3)
    assert (excluded.n, excluded.correct, excluded.n_uncertain) == (17, 12, 3)
    assert wrong.accuracy == pytest.approx(0.6)
    assert excluded.accuracy == pytest.approx(12 / 17)
    assert excluded.p_binomial == pytest.approx(binomtest(12, 17, alternative="greater").pvalue)


def test_sensitivity_specificity_under_each_policy():
    truths = ["fake"] * 4 + ["real"] * 4
    answers = ["fake", "fake", "uncertain", "real", "real", "real", "real", "uncertain"]
    ratings = make_reader("r", answers, truths)
    wrong = reader_summary(ratings, policy="wrong")
    assert (wrong.sensitivity, wrong.specificity) == (2 / 4, 3 / 4)
    # hits 2/4, false alarms = reals not called real = 1/4, log-linear corrected
    expected = norm.ppf(2.5 / 5) - norm.ppf(1.5 / 5)
    assert wrong.d_prime == pytest.approx(expected)
    excluded = reader_summary(ratings, policy="excluded")
    assert (excluded.sensitivity, excluded.specificity) == (2 / 3, 3 / 3)
    assert excluded.d_prime == pytest.approx(norm.ppf(2.5 / 4) - norm.ppf(0.5 / 4))


def test_all_uncertain_reader():
    ratings = make_reader("r", ["uncertain"] * 6)
    excluded = reader_summary(ratings, policy="excluded")
    assert (excluded.n, excluded.correct, excluded.n_uncertain) == (0, 0, 6)
    assert excluded.accuracy is None
    assert excluded.wilson_low is None and excluded.wilson_high is None
    assert excluded.p_binomial is None and excluded.p_tost is None
    assert excluded.d_prime is None and excluded.auc is None
    wrong = reader_summary(ratings, policy="wrong")
    assert (wrong.n, wrong.correct, wrong.accuracy) == (6, 0, 0.0)
    assert wrong.p_binomial == pytest.approx(1.0)
    assert wrong.wilson_low == pytest.approx(0.0, abs=1e-12)


def test_reader_summary_rejects_mixed_readers_and_duplicates():
    with pytest.raises(ValueError, match="one reader"):
        reader_summary(with_correct("a", 2, 2) + with_correct("b", 2, 2))
    duplicate = with_correct("a", 2, 2) + with_correct("a", 1, 1)
    with pytest.raises(ValueError, match="twice"):
        reader_summary(duplicate)
    with pytest.raises(ValueError):
        Rating("a", "img", truth="real", answer="Fake")


def test_d_prime_with_perfect_rates_is_finite():
    s = reader_summary(with_correct("r", 20, 20))
    # 10 fakes all hit, 10 reals no false alarm: rates 10.5/11 and 0.5/11
    expected = norm.ppf(10.5 / 11) - norm.ppf(0.5 / 11)
    assert math.isfinite(s.d_prime)
    assert s.d_prime == pytest.approx(expected)
    assert s.d_prime == pytest.approx(2 * 1.6906, abs=1e-3)


def test_auc_from_confidence_matches_sklearn():
    truths = ["fake", "fake", "fake", "real", "real", "real", "fake", "real"]
    answers = ["fake", "real", "uncertain", "real", "fake", "real", "fake", "uncertain"]
    confidence = [0.9, 0.3, None, 0.8, 0.4, 0.2, 0.6, 0.5]
    ratings = [
        Rating("r", f"img{i}", t, a, confidence=c)
        for i, (t, a, c) in enumerate(zip(truths, answers, confidence, strict=True))
    ]
    scores = [0.9, -0.3, 0.0, -0.8, 0.4, -0.2, 0.6, 0.0]
    assert [fake_score(r) for r in ratings] == scores
    expected = roc_auc_score([t == "fake" for t in truths], scores)
    assert reader_summary(ratings).auc == pytest.approx(expected)
    # fake-over-real pairs: 0.9 beats 4 reals, -0.3 beats 1, 0.0 beats 2 and ties 1, 0.6 beats 4
    assert expected == pytest.approx(11.5 / 16)
    excluded = [r for r, a in zip(ratings, answers, strict=True) if a != "uncertain"]
    kept_scores = [s for s, a in zip(scores, answers, strict=True) if a != "uncertain"]
    kept_truth = [r.truth == "fake" for r in excluded]
    assert reader_summary(ratings, policy="excluded").auc == pytest.approx(
        roc_auc_score(kept_truth, kept_scores)
    )
    missing = [*ratings[:-1], Rating("r", "img9", "real", "real")]
    assert reader_summary(missing).auc is None


def test_repeats_excluded_from_accuracy_but_used_for_consistency():
    first = with_correct("r", 4, 4)
    repeats = [
        Rating("r", "img0", "real", "real", repeat=True),  # same as first time
        Rating("r", "img1", "fake", "real", repeat=True),  # changed, and wrong
        Rating("r", "img1", "fake", "fake", repeat=True),  # same again
        Rating("r", "img9", "fake", "real", repeat=True),  # no first presentation: ignored
    ]
    s = reader_summary(first + repeats)
    assert (s.n, s.correct, s.accuracy) == (4, 4, 1.0)
    assert s.n_repeats == 3
    assert s.intra_reader_agreement == pytest.approx(2 / 3)
    assert reader_summary(first).intra_reader_agreement is None


def test_tost_50_of_100_against_binom_tost():
    s = reader_summary(with_correct("r", 100, 50), margin=0.10)
    direct = binom_tost(50, 100, 0.4, 0.6)[0]
    by_hand = max(binom.sf(49, 100, 0.4), binom.cdf(50, 100, 0.6))
    assert s.p_tost == pytest.approx(direct)
    assert s.p_tost == pytest.approx(by_hand)
    assert s.p_tost == pytest.approx(0.0271, abs=1e-3)
    assert s.p_tost < 0.05
    # a reader at 50% out of only 20 answers cannot show equivalence
    assert reader_summary(with_correct("r", 20, 10)).p_tost > 0.05


def test_holm_hand_example():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1 -> max(0.06, 0.04)=0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_pooled_single_reader_falls_back_to_wilson():
    pooled = pooled_accuracy(with_correct("solo", 20, 15))
    assert pooled.accuracy == pytest.approx(0.75)
    assert (pooled.ci_low, pooled.ci_high) == pytest.approx(
        proportion_confint(15, 20, method="wilson")
    )
    assert "Wilson" in pooled.method and "single reader" in pooled.method


def test_pooled_all_correct_and_empty():
    pooled = pooled_accuracy(with_correct("a", 10, 10) + with_correct("b", 10, 10))
    assert pooled.accuracy == 1.0
    assert "all answers correct" in pooled.method
    assert pooled.ci_low == pytest.approx(proportion_confint(20, 20, method="wilson")[0])
    empty = pooled_accuracy(make_reader("a", ["uncertain"] * 3), policy="excluded")
    assert (empty.accuracy, empty.ci_low, empty.ci_high) == (None, None, None)


def test_pooled_gee_balanced_three_readers():
    ratings = with_correct("a", 20, 14) + with_correct("b", 20, 12) + with_correct("c", 20, 10)
    pooled = pooled_accuracy(ratings)
    assert "GEE" in pooled.method
    # intercept-only GEE with equal cluster sizes solves to the raw proportion 36/60
    assert pooled.accuracy == pytest.approx(0.6, abs=1e-6)
    assert 0 <= pooled.ci_low < 0.6 < pooled.ci_high <= 1
    assert pooled.ci_high - pooled.ci_low < 0.5


def test_fleiss_perfect_agreement_three_readers():
    answers = ["real", "fake", "uncertain", "fake", "real"]
    ratings = [r for reader in "abc" for r in make_reader(reader, answers)]
    assert fleiss_kappa(ratings) == pytest.approx(1.0)
    # everyone answers "fake" to everything: statsmodels gives 0/0, we define it as 1.0
    same = [r for reader in "abc" for r in make_reader(reader, ["fake"] * 4)]
    assert fleiss_kappa(same) == 1.0
    assert all(k == 1.0 for k in cohen_kappa_pairs(same).values())
    assert fleiss_kappa(make_reader("a", answers)) is None


def test_fleiss_and_cohen_against_library_calls():
    a = ["real", "fake", "fake", "uncertain", "real", "fake"]
    b = ["real", "fake", "real", "uncertain", "fake", "fake"]
    c = ["fake", "fake", "real", "real", "real", "uncertain"]
    ratings = make_reader("a", a) + make_reader("b", b) + make_reader("c", c)
    # an image only two readers rated must not enter Fleiss' kappa
    ratings.append(Rating("a", "extra", "real", "real"))
    ratings.append(Rating("b", "extra", "real", "fake"))
    # rows = images, columns = counts of (real, fake, uncertain)
    table = np.array([[2, 1, 0], [0, 3, 0], [2, 1, 0], [1, 0, 2], [2, 1, 0], [0, 2, 1]])
    assert fleiss_kappa(ratings) == pytest.approx(sm_fleiss_kappa(table, method="fleiss"))
    # by hand: P_bar = mean agreement, P_e from column totals 7, 8, 3 of 18
    p_bar = np.mean([(row @ row - 3) / 6 for row in table])
    p_e = (7 / 18) ** 2 + (8 / 18) ** 2 + (3 / 18) ** 2
    assert fleiss_kappa(ratings) == pytest.approx((p_bar - p_e) / (1 - p_e))

    kappas = cohen_kappa_pairs(ratings)
    assert set(kappas) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert kappas[("a", "b")] == pytest.approx(cohen_kappa_score([*a, "real"], [*b, "fake"]))
    assert kappas[("b", "c")] == pytest.approx(cohen_kappa_score(b, c))


def test_fooling_rates_and_by_source():
    ratings = [
        Rating("a", "g1", "fake", "real", source="ckpt1"),
        Rating("b", "g1", "fake", "fake", source="ckpt1"),
        Rating("c", "g1", "fake", "uncertain", source="ckpt1"),
        Rating("a", "g2", "fake", "real", source="ckpt2"),
        Rating("b", "g2", "fake", "real", source="ckpt2"),
        Rating("a", "g2", "fake", "fake", source="ckpt2", repeat=True),
        Rating("a", "r1", "real", "fake"),
    ]
    assert fooling_rates(ratings) == pytest.approx({"g1": 1 / 3, "g2": 1.0})
    wrong = accuracy_by_source(ratings, policy="wrong")
    assert set(wrong) == {"ckpt1", "ckpt2"}
    assert (wrong["ckpt1"].n, wrong["ckpt1"].correct, wrong["ckpt1"].n_uncertain) == (3, 1, 1)
    assert (wrong["ckpt2"].n, wrong["ckpt2"].correct) == (2, 0)
    assert (wrong["ckpt1"].wilson_low, wrong["ckpt1"].wilson_high) == pytest.approx(
        proportion_confint(1, 3, method="wilson")
    )
    excluded = accuracy_by_source(ratings, policy="excluded")
    assert (excluded["ckpt1"].n, excluded["ckpt1"].accuracy) == (2, 0.5)


def test_mcnemar_and_cochran_q_by_hand():
    a = [True, True, True, True, False, False]
    b = [False, False, False, True, False, True]
    # discordant 3 vs 1: exact two-sided p = 2 * P(X <= 1 | 4, 0.5) = 2 * 5/16
    result = mcnemar_paired(a, b)
    assert result.pvalue == pytest.approx(0.625)
    assert result.statistic == 1.0 and result.n == 6
    x = [[1, 0, 1], [0, 0, 0], [1, 1, 0], [1, 0, 0]]
    # Q = (k-1)(k * sum C_j^2 - N^2) / (k N - sum R_i^2) = 2 * (33 - 25) / (15 - 9)
    q = cochran_q(x)
    assert q.statistic == pytest.approx(16 / 6)
    assert q.pvalue == pytest.approx(chi2.sf(16 / 6, 2))
    assert cochran_q([[1, 1, 1], [0, 0, 0]]).pvalue == 1.0
    with pytest.raises(ValueError):
        mcnemar_paired([True], [True, False])


def test_study_statistics_is_strict_json():
    ratings = (
        with_correct("a", 20, 15)
        + with_correct("b", 20, 12)
        + make_reader("c", ["uncertain"] * 20)
        + [Rating("a", "img0", "real", "real", repeat=True)]
    )
    ratings = [
        Rating(r.reader, r.image, r.truth, r.answer, source="gan" if r.truth == "fake" else None)
        if not r.repeat
        else r
        for r in ratings
    ]
    stats = study_statistics(ratings, policy="excluded", margin=0.1)
    text = json.dumps(stats, allow_nan=False)
    assert json.loads(text) == stats
    top = {"readers", "pooled", "fleiss_kappa", "cohen_kappa", "fooling_rates", "by_source"}
    assert top | {"policy", "margin", "methods"} <= set(stats)
    assert stats["policy"] == "excluded" and stats["margin"] == 0.1
    readers = {r["reader"]: r for r in stats["readers"]}
    row_keys = {"reader", "n", "correct", "accuracy", "wilson_low", "wilson_high"}
    row_keys |= {"p_binomial", "p_holm", "p_tost", "n_uncertain", "d_prime", "auc"}
    assert all(row_keys <= set(row) for row in readers.values())
    assert set(stats["pooled"]) == {"accuracy", "ci_low", "ci_high", "method"}
    assert readers["c"]["n"] == 0 and readers["c"]["p_holm"] is None
    expected = holm([readers["a"]["p_binomial"], readers["b"]["p_binomial"]])
    assert [readers["a"]["p_holm"], readers["b"]["p_holm"]] == pytest.approx(expected)
    assert readers["a"]["intra_reader_agreement"] == 1.0
    assert {(k["a"], k["b"]) for k in stats["cohen_kappa"]} == {("a", "b"), ("a", "c"), ("b", "c")}
    assert stats["by_source"]["gan"]["n"] == 20
    assert all(isinstance(v, str) and v for v in stats["methods"].values())


def test_gee_interval_is_not_degenerate_when_readers_agree_in_accuracy() -> None:
    # Both readers 3/5: the sandwich variance is exactly zero, which would print [0.6, 0.6].
    # The interval must be at least the one for independent answers: for 6/10 that is
    # logit(0.6) +/- 1.96 * sqrt(1 / (10 * 0.6 * 0.4)).
    ratings = [
        Rating(reader=reader, image=f"i{i}", truth="fake", answer="fake" if i in hits else "real")
        for reader, hits in (("a", {0, 1, 2}), ("b", {2, 3, 4}))
        for i in range(5)
    ]
    pooled = pooled_accuracy(ratings)
    half = 1.959964 * math.sqrt(1 / (10 * 0.6 * 0.4))
    logit = math.log(0.6 / 0.4)
    assert pooled.accuracy == pytest.approx(0.6)
    assert pooled.ci_low == pytest.approx(1 / (1 + math.exp(-(logit - half))), abs=1e-3)
    assert pooled.ci_high == pytest.approx(1 / (1 + math.exp(-(logit + half))), abs=1e-3)
    assert "independent-answers" in pooled.method
