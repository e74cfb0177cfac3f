import json
import math

import numpy as np
import pytest
from scipy.stats import binom, binomtest, chi2, norm
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa
from statsmodels.stats.proportion import binom_tost, proportion_confint

from app.domain.crossed_interval import crossed_interval
from app.domain.statistics import (
    Rating,
    accuracy_by_source,
    cochran_q,
    cohen_kappa_pairs,
    exact_independence_2xc,
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
    # Two-sided by default: by symmetry at 0.5, twice the upper tail.
    assert s.p_binomial == pytest.approx(2 * tail, rel=1e-12)
    assert s.p_binomial == pytest.approx(binomtest(15, 20, 0.5).pvalue)
    assert s.p_binomial_greater is None  # the one-sided test only where pre-registered
    one_sided = reader_summary(with_correct("r1", 20, 15), alternative="greater")
    assert one_sided.p_binomial_greater == pytest.approx(tail, rel=1e-12)
    assert one_sided.p_binomial == s.p_binomial
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
    assert excluded.p_binomial == pytest.approx(binomtest(12, 17).pvalue)
    # Equivalence is on decisive answers whatever the policy.
    assert wrong.p_tost == excluded.p_tost == pytest.approx(binom_tost(12, 17, 0.4, 0.6)[0])
    assert (wrong.n_decisive, wrong.correct_decisive) == (17, 12)
    # The default is "excluded".
    assert reader_summary(ratings) == excluded


def test_sensitivity_specificity_under_each_policy():
    truths = ["fake"] * 4 + ["real"] * 4
    answers = ["fake", "fake", "uncertain", "real", "real", "real", "real", "uncertain"]
    ratings = make_reader("r", answers, truths)
    wrong = reader_summary(ratings, policy="wrong")
    assert (wrong.sensitivity, wrong.specificity) == (2 / 4, 3 / 4)
    excluded = reader_summary(ratings, policy="excluded")
    assert (excluded.sensitivity, excluded.specificity) == (2 / 3, 3 / 3)
    # d' on decisive answers under either policy: hits 2 of 3 decisive fakes, false alarms 0 of
    # 3 decisive reals, log-linear corrected. (It used to count the uncertain real as a false
    # alarm under "wrong": norm.ppf(2.5 / 5) - norm.ppf(1.5 / 5).)
    expected = norm.ppf(2.5 / 4) - norm.ppf(0.5 / 4)
    assert excluded.d_prime == pytest.approx(expected)
    assert wrong.d_prime == pytest.approx(expected)


def test_all_uncertain_reader():
    ratings = make_reader("r", ["uncertain"] * 6)
    excluded = reader_summary(ratings, policy="excluded")
    assert (excluded.n, excluded.correct, excluded.n_uncertain) == (0, 0, 6)
    assert excluded.accuracy is None
    assert excluded.wilson_low is None and excluded.wilson_high is None
    assert excluded.p_binomial is None and excluded.p_tost is None
    assert excluded.d_prime is None and excluded.auc is None
    assert excluded.uncertain_share == 1.0 and not excluded.below_chance
    wrong = reader_summary(ratings, policy="wrong")
    assert (wrong.n, wrong.correct, wrong.accuracy) == (6, 0, 0.0)
    # Two-sided: 0 of 6 is P = 2 / 2^6, but saying "uncertain" is not being below chance.
    assert wrong.p_binomial == pytest.approx(binomtest(0, 6).pvalue) == pytest.approx(1 / 32)
    assert not wrong.below_chance
    assert wrong.p_tost is None and wrong.d_prime is None
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
    assert reader_summary(ratings, policy="wrong").auc == pytest.approx(expected)
    # fake-over-real pairs: 0.9 beats 4 reals, -0.3 beats 1, 0.0 beats 2 and ties 1, 0.6 beats 4
    assert expected == pytest.approx(11.5 / 16)
    excluded = [r for r, a in zip(ratings, answers, strict=True) if a != "uncertain"]
    kept_scores = [s for s, a in zip(scores, answers, strict=True) if a != "uncertain"]
    kept_truth = [r.truth == "fake" for r in excluded]
    assert reader_summary(ratings, policy="excluded").auc == pytest.approx(
        roc_auc_score(kept_truth, kept_scores)
    )
    missing = [*ratings[:-1], Rating("r", "img9", "real", "real")]
    assert reader_summary(missing, policy="wrong").auc is None


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


def test_pooled_balanced_three_readers_matches_two_way_anova():
    ratings = with_correct("a", 20, 14) + with_correct("b", 20, 12) + with_correct("c", 20, 10)
    pooled = pooled_accuracy(ratings)
    assert "crossed random effects" in pooled.method
    assert pooled.accuracy == pytest.approx(0.6)
    # Reference: two-way ANOVA without replication, readers x images, written out by hand.
    y = np.array([[r.correct for r in ratings if r.reader == x] for x in "abc"], dtype=float)
    var = _anova_variance_of_mean(y)
    ms_reader = 20 * np.var(y.mean(axis=1), ddof=1)
    assert ms_reader > 0
    half = pooled.ci_high - pooled.accuracy
    from scipy.stats import t

    assert half == pytest.approx(t.ppf(0.975, pooled.df) * math.sqrt(var), rel=1e-9)
    assert 0 <= pooled.ci_low < 0.6 < pooled.ci_high <= 1


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
    assert {"accuracy", "ci_low", "ci_high", "method", "icc_reader", "icc_image"} == set(
        stats["pooled"]
    ) - {"n", "df", "design_effect"}
    assert stats["uncertain"]["n_uncertain"] == 20 and stats["alternative"] == "two-sided"
    assert readers["c"]["n"] == 0 and readers["c"]["p_holm"] is None
    expected = holm([readers["a"]["p_binomial"], readers["b"]["p_binomial"]])
    assert [readers["a"]["p_holm"], readers["b"]["p_holm"]] == pytest.approx(expected)
    assert readers["a"]["intra_reader_agreement"] == 1.0
    assert {(k["a"], k["b"]) for k in stats["cohen_kappa"]} == {("a", "b"), ("a", "c"), ("b", "c")}
    assert stats["by_source"]["gan"]["n"] == 20
    assert all(isinstance(v, str) and v for v in stats["methods"].values())


def test_pooled_interval_is_not_degenerate_when_readers_agree_in_accuracy() -> None:
    # Both readers 3/5 on the same images: no reader variation, but the images differ, so the
    # interval must not collapse to [0.6, 0.6].
    ratings = [
        Rating(reader=reader, image=f"i{i}", truth="fake", answer="fake" if i in hits else "real")
        for reader, hits in (("a", {0, 1, 2}), ("b", {2, 3, 4}))
        for i in range(5)
    ]
    pooled = pooled_accuracy(ratings)
    assert pooled.accuracy == pytest.approx(0.6)
    assert pooled.ci_low < 0.6 < pooled.ci_high
    assert pooled.icc_reader == 0.0


# --- defaults a biostatistician would object to (issue 18) ----------------------------------


def _anova_variance_of_mean(y: np.ndarray) -> float:
    """Var of the grand mean of a complete readers x images table under the two-way random
    model, from the ANOVA mean squares: (MS_R + MS_I - MS_E) / (R I), components >= 0."""
    r, i = y.shape
    grand = y.mean()
    ms_r = i * np.sum((y.mean(axis=1) - grand) ** 2) / (r - 1)
    ms_i = r * np.sum((y.mean(axis=0) - grand) ** 2) / (i - 1)
    resid = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + grand
    ms_e = np.sum(resid**2) / ((r - 1) * (i - 1))
    var_r, var_i = max(0.0, (ms_r - ms_e) / i), max(0.0, (ms_i - ms_e) / r)
    return float(var_r / r + var_i / i + ms_e / (r * i))


def _reader_with(reader, n_correct, n_wrong, n_uncertain):
    """Alternating real/fake images answered correct, then wrong, then uncertain."""
    answers = ["correct"] * n_correct + ["wrong"] * n_wrong + ["uncertain"] * n_uncertain
    flip = {"real": "fake", "fake": "real"}
    ratings = []
    for i, what in enumerate(answers):
        truth = "fake" if i % 2 else "real"
        answer = {"correct": truth, "wrong": flip[truth], "uncertain": "uncertain"}[what]
        ratings.append(Rating(reader, f"img{i}", truth, answer))
    return ratings


def test_uncertain_answers_cannot_manufacture_equivalence():
    # 80% correct on decisive answers, "uncertain" 40% of the time, n = 200.
    ratings = _reader_with("r", 96, 24, 80)
    # What the old default (uncertain = wrong, TOST on all answers) concluded: "cannot tell".
    assert binom_tost(96, 200, 0.4, 0.6)[0] == pytest.approx(0.013, abs=5e-4)
    s = reader_summary(ratings)
    assert (s.n, s.correct, s.accuracy) == (120, 96, 0.8)
    assert (s.n_answers, s.n_uncertain, s.uncertain_share) == (200, 80, 0.4)
    assert s.p_binomial == pytest.approx(binomtest(96, 120).pvalue) and s.p_binomial < 1e-10
    assert s.p_tost == pytest.approx(binom_tost(96, 120, 0.4, 0.6)[0]) and s.p_tost > 0.5
    # Pre-registered "wrong" still scores accuracy 0.48, but equivalence stays on decisive answers.
    wrong = reader_summary(ratings, policy="wrong")
    assert wrong.accuracy == pytest.approx(0.48)
    assert wrong.p_tost == s.p_tost
    # Three categories: the uncertain answers fell equally on real and synthetic images, and
    # the answer depends on the truth.
    assert s.answers_by_truth == {
        "real": {"real": 48, "fake": 12, "uncertain": 40},
        "fake": {"real": 12, "fake": 48, "uncertain": 40},
    }
    assert s.p_answer_depends_on_truth < 1e-9
    assert (
        "never count towards equivalence"
        in study_statistics(ratings, policy="wrong")["methods"]["uncertain_policy"]
    )


def test_all_uncertain_reader_has_no_d_prime():
    ratings = _reader_with("r", 0, 0, 120)
    # The old d' counted each uncertain fake as a miss and each uncertain real as a false alarm.
    old = norm.ppf(0.5 / 61) - norm.ppf(60.5 / 61)
    assert old == pytest.approx(-4.80, abs=0.005)
    for policy in ("excluded", "wrong"):
        s = reader_summary(ratings, policy=policy)
        assert s.d_prime is None and s.p_tost is None and not s.below_chance
    assert reader_summary(ratings).p_answer_depends_on_truth is None


def test_inverted_reader_two_sided_and_flagged_below_chance():
    s = reader_summary(_reader_with("r", 35, 85, 0))
    assert s.p_binomial == pytest.approx(binomtest(35, 120, 0.5).pvalue)
    assert s.p_binomial == pytest.approx(5.7e-6, rel=0.02)
    assert s.below_chance
    one_sided = reader_summary(_reader_with("r", 35, 85, 0), alternative="greater")
    assert one_sided.p_binomial_greater == pytest.approx(1.0, abs=1e-5)  # the old p = 1.0
    assert not reader_summary(_reader_with("r", 85, 35, 0)).below_chance
    stats = study_statistics(_reader_with("r", 35, 85, 0))
    assert stats["readers"][0]["below_chance"] is True


def test_published_single_reader_779_of_1500():
    s = reader_summary(_reader_with("r", 779, 721, 0), alternative="greater")
    two_sided = binomtest(779, 1500, 0.5).pvalue
    assert s.p_binomial == pytest.approx(two_sided)
    # The one-sided p the study used to report is half of it (symmetric at 0.5).
    assert s.p_binomial_greater == pytest.approx(two_sided / 2, rel=1e-9)
    assert s.p_binomial == pytest.approx(0.14, abs=0.01) and not s.below_chance


def test_holm_over_two_sided_and_one_sided_when_preregistered():
    ratings = _reader_with("a", 70, 30, 0) + _reader_with("b", 35, 65, 0)
    ratings += _reader_with("c", 50, 50, 0)
    stats = study_statistics(ratings, alternative="greater")
    rows = {r["reader"]: r for r in stats["readers"]}
    two = [binomtest(k, 100).pvalue for k in (70, 35, 50)]
    assert [rows[x]["p_holm"] for x in "abc"] == pytest.approx(holm(two))
    one = [binomtest(k, 100, alternative="greater").pvalue for k in (70, 35, 50)]
    assert [rows[x]["p_holm_greater"] for x in "abc"] == pytest.approx(holm(one))
    assert rows["b"]["below_chance"] and not rows["a"]["below_chance"]
    assert "pre-registered the one-sided" in stats["methods"]["binomial"]
    default = study_statistics(ratings)
    assert default["readers"][0]["p_binomial_greater"] is None
    assert "two-sided" in default["methods"]["binomial"]


def test_three_category_exact_test_against_scipy():
    from scipy.stats import fisher_exact, random_table

    table = [[6, 2, 3], [1, 7, 4]]
    rows, cols = [11, 12], [7, 9, 7]
    dist = random_table(rows, cols)
    observed = dist.pmf(np.array(table))
    expected = 0.0
    for a in range(8):
        for b in range(10):
            c = 11 - a - b
            if 0 <= c <= 7:
                other = np.array([[a, b, c], [7 - a, 9 - b, 7 - c]])
                p = dist.pmf(other)
                expected += p if p <= observed * (1 + 1e-7) else 0
    assert exact_independence_2xc(table) == pytest.approx(expected, rel=1e-9)
    # With no "uncertain" column it is Fisher's exact test on the 2 x 2 table.
    assert exact_independence_2xc([[9, 3, 0], [2, 8, 0]]) == pytest.approx(
        fisher_exact([[9, 3], [2, 8]]).pvalue, rel=1e-9
    )
    assert exact_independence_2xc([[0, 0, 5], [0, 0, 4]]) is None


def _crossed(matrix: np.ndarray, source: str = "gan") -> list[Rating]:
    """Ratings of synthetic images: matrix[reader, image] True = called fake."""
    return [
        Rating(f"R{r}", f"g{i}", "fake", "fake" if hit else "real", source=source)
        for r, row in enumerate(matrix)
        for i, hit in enumerate(row)
    ]


def test_per_source_interval_allows_for_readers_and_images():
    # 50 images x 3 readers where each image is either caught by every reader or by none:
    # the 150 answers carry the information of 50, and the interval must say so.
    caught = np.arange(50) < 35
    summary = accuracy_by_source(_crossed(np.tile(caught, (3, 1))))["gan"]
    assert (summary.n, summary.correct, summary.n_readers, summary.n_images) == (150, 105, 3, 50)
    naive = proportion_confint(105, 150, method="wilson")
    assert (summary.wilson_low, summary.wilson_high) == pytest.approx(naive)
    width, naive_width = summary.ci_high - summary.ci_low, naive[1] - naive[0]
    assert width > 1.5 * naive_width
    # It is the interval for 50 independent images (t on 49 df), as it should be.
    from scipy.stats import t

    assert width / 2 == pytest.approx(t.ppf(0.975, 49) * math.sqrt(0.7 * 0.3 / 49), rel=1e-6)
    assert "crossed random effects" in summary.ci_method
    # Readers differing in skill widen it too.
    rng = np.random.default_rng(7)
    uneven = rng.random((3, 50)) < np.array([0.3, 0.6, 0.9])[:, None]
    s = accuracy_by_source(_crossed(uneven))["gan"]
    assert s.ci_high - s.ci_low > 2 * (s.wilson_high - s.wilson_low)


def test_crossed_interval_near_nominal_coverage_without_reader_or_image_effect():
    # Calibration against the null: independent answers, 50 images x 3 readers, p = 0.7.
    rng = np.random.default_rng(20261207)
    readers = [f"R{r}" for r in range(3) for _ in range(50)]
    images = [f"g{i}" for _ in range(3) for i in range(50)]
    covered, widths, naive_widths = 0, [], []
    for _ in range(400):
        y = (rng.random(150) < 0.7).astype(float)
        interval = crossed_interval(readers, images, y)
        covered += interval.low <= 0.7 <= interval.high
        low, high = proportion_confint(int(y.sum()), 150, method="wilson")
        widths.append(interval.high - interval.low)
        naive_widths.append(high - low)
    assert 0.93 <= covered / 400 <= 0.985
    # Typically it costs little against the binomial interval that assumes no correlation;
    # when chance makes a reader component positive, 3 readers give few df and a wide interval.
    assert 1.0 <= np.median(np.array(widths) / np.array(naive_widths)) < 1.2


def test_crossed_interval_equals_anova_on_complete_tables():
    rng = np.random.default_rng(3)
    y = (rng.random((4, 30)) < np.linspace(0.4, 0.9, 4)[:, None]).astype(float)
    readers = [f"R{r}" for r in range(4) for _ in range(30)]
    images = [f"i{i}" for _ in range(4) for i in range(30)]
    interval = crossed_interval(readers, images, y.ravel())
    assert interval.se**2 == pytest.approx(_anova_variance_of_mean(y), rel=1e-9)
    assert interval.estimate == pytest.approx(y.mean())
    # One reader, or no image read twice: not estimable (the caller falls back to Wilson).
    assert crossed_interval(["a"] * 4, list("wxyz"), [1, 0, 1, 1]) is None
    assert crossed_interval(list("aabb"), list("wxyz"), [1, 0, 1, 1]) is None
