"""Reader-study statistics: pure functions over plain, frozen rating records.

The methods follow the reference in design/reader-statistics.md. Only first presentations
(``repeat=False``) enter accuracy, agreement and fooling-rate statistics; repeated presentations
feed intra-reader consistency alone, so a reader who sees an image twice is not counted twice.
Kappas and paired tests live in :mod:`app.domain.agreement` and are re-exported here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from scipy.special import gammaln
from scipy.stats import binom, norm
from statsmodels.stats.proportion import binom_tost, proportion_confint

# Redundant aliases mark these as public re-exports, so callers keep importing from here.
from app.domain.agreement import PairedTest as PairedTest
from app.domain.agreement import cochran_q as cochran_q
from app.domain.agreement import cohen_kappa_pairs as cohen_kappa_pairs
from app.domain.agreement import fleiss_kappa as fleiss_kappa
from app.domain.agreement import mcnemar_paired as mcnemar_paired
from app.domain.checked_first import FirstPresentations, checked_first
from app.domain.crossed_interval import METHOD as CROSSED_METHOD
from app.domain.crossed_interval import crossed_interval
from app.domain.ratings import CATEGORIES as CATEGORIES
from app.domain.ratings import Answer as Answer
from app.domain.ratings import Rating as Rating
from app.domain.ratings import Truth as Truth
from app.domain.ratings import fake_score as fake_score
from app.domain.ratings import first_presentations as first_presentations

UncertainPolicy = Literal["wrong", "excluded"]
BinomialAlternative = Literal["two-sided", "greater"]

# The default a reviewer can defend: an "uncertain" answer is no answer, so it neither helps nor
# hurts accuracy, and it cannot make a reader look like chance ("cannot tell").
DEFAULT_POLICY: UncertainPolicy = "excluded"
DEFAULT_ALTERNATIVE: BinomialAlternative = "two-sided"
ALPHA = 0.05

UNKNOWN_SOURCE = "(unknown)"


@dataclass(frozen=True)
class ReaderSummary:
    """One reader. ``n``, ``correct``, ``accuracy``, Wilson and the binomial tests follow the
    scoring policy; TOST, d' and the below-chance flag always use decisive answers only."""

    reader: str
    n: int
    correct: int
    accuracy: float | None
    wilson_low: float | None
    wilson_high: float | None
    p_binomial: float | None  # exact two-sided vs 0.5
    p_binomial_greater: float | None  # exact one-sided "better than chance", if pre-registered
    below_chance: bool  # two-sided p < alpha with decisive accuracy under 0.5
    p_tost: float | None  # on decisive answers, whatever the policy
    n_answers: int  # first presentations, uncertain included
    n_decisive: int
    correct_decisive: int
    n_uncertain: int
    uncertain_share: float | None
    answers_by_truth: dict[str, dict[str, int]]
    p_answer_depends_on_truth: float | None  # exact Fisher-Freeman-Halton on the 2 x 3 table
    sensitivity: float | None
    specificity: float | None
    d_prime: float | None  # on decisive answers
    auc: float | None
    intra_reader_agreement: float | None
    n_repeats: int


@dataclass(frozen=True)
class SourceSummary:
    """Detection of one synthetic source: ``correct`` counts its images that were called fake.

    ``ci_low``/``ci_high`` allow for readers and images (see ``ci_method``); the Wilson
    interval treats every answer as independent and is kept only for comparison.
    """

    source: str
    n: int
    correct: int
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    ci_method: str
    wilson_low: float | None
    wilson_high: float | None
    n_uncertain: int
    n_readers: int
    n_images: int


@dataclass(frozen=True)
class Pooled:
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    method: str
    n: int = 0
    df: float | None = None
    icc_reader: float | None = None
    icc_image: float | None = None
    design_effect: float | None = None


def _check_options(
    policy: str, margin: float = 0.10, alternative: str = DEFAULT_ALTERNATIVE
) -> None:
    if policy not in ("wrong", "excluded"):
        raise ValueError(f"policy must be 'wrong' or 'excluded', got {policy!r}")
    if not 0 < margin < 0.5:
        raise ValueError(f"margin must lie in (0, 0.5), got {margin!r}")
    if alternative not in ("two-sided", "greater"):
        raise ValueError(f"alternative must be 'two-sided' or 'greater', got {alternative!r}")


def _scored(ratings: Iterable[Rating], policy: UncertainPolicy) -> list[Rating]:
    # Under "wrong" an uncertain answer stays in n and can never be correct.
    return [r for r in ratings if policy == "wrong" or r.answer != "uncertain"]


def _decisive(ratings: Iterable[Rating]) -> list[Rating]:
    return [r for r in ratings if r.answer != "uncertain"]


def _ratio(k: int, n: int) -> float | None:
    return k / n if n else None


def _wilson(k: int, n: int) -> tuple[float | None, float | None]:
    if n == 0:
        return None, None
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    return float(low), float(high)


def _d_prime(hits: int, signal: int, false_alarms: int, noise: int) -> float | None:
    if signal == 0 or noise == 0:
        return None
    # Log-linear correction (Hautus 1995): keeps z finite for rates of 0 or 1 with little bias.
    hit_rate = (hits + 0.5) / (signal + 1)
    false_alarm_rate = (false_alarms + 0.5) / (noise + 1)
    return float(norm.ppf(hit_rate) - norm.ppf(false_alarm_rate))


def rank_auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """Area under the empirical ROC curve (ties count half): the Mann-Whitney statistic from
    midranks, equal to the trapezoidal area sklearn's roc_auc_score computes, in O(n log n)."""
    positive = np.asarray(labels, dtype=bool)
    values = np.asarray(scores, dtype=float)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    midranks = ends - (counts - 1) / 2.0  # half-integers: their sums are exact in float64
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    rank_sum = float(midranks[inverse[positive]].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _confidence_auc(scored: Sequence[Rating]) -> float | None:
    scores = [fake_score(r) for r in scored]
    labels = [r.truth == "fake" for r in scored]
    if not scored or any(s is None for s in scores) or len(set(labels)) < 2:
        return None
    return rank_auc(labels, scores)  # type: ignore[arg-type]  # no None left


def _intra_reader_agreement(
    ratings: Sequence[Rating], first: Sequence[Rating]
) -> tuple[float | None, int]:
    first_answer = {r.image: r.answer for r in first}
    # A repeat without a first presentation has nothing to be consistent with.
    repeats = [r for r in ratings if r.repeat and r.image in first_answer]
    if not repeats:
        return None, 0
    same = sum(r.answer == first_answer[r.image] for r in repeats)
    return same / len(repeats), len(repeats)


def answers_by_truth(ratings: Iterable[Rating]) -> dict[str, dict[str, int]]:
    """The 2 x 3 table: for real and for synthetic images, how often each answer was given."""
    table = {truth: dict.fromkeys(CATEGORIES, 0) for truth in ("real", "fake")}
    for r in ratings:
        table[r.truth][r.answer] += 1
    return table


def exact_independence_2xc(table: Sequence[Sequence[int]]) -> float | None:
    """Fisher-Freeman-Halton exact test that the column (answer) does not depend on the row
    (truth) in a 2 x c table: the probability, given both margins, of a table no more likely
    than the observed one. Columns with no answers are dropped; None without two rows and two
    columns left. Exact by enumerating the first row, which is cheap for two rows."""
    counts = np.asarray(table, dtype=np.int64)
    counts = counts[:, counts.sum(axis=0) > 0]
    if counts.shape[0] != 2 or counts.shape[1] < 2 or (counts.sum(axis=1) == 0).any():
        return None
    cols = counts.sum(axis=0)
    row0 = int(counts[0].sum())

    def log_terms(total: int) -> np.ndarray:
        # log C(total, x) for x = 0..total; the hypergeometric's 1 / C(N, row0) cancels below.
        x = np.arange(total + 1)
        return gammaln(total + 1) - gammaln(x + 1) - gammaln(total - x + 1)

    # Every first row with the observed row sum and 0 <= x_j <= column total: a grid over the
    # first c - 1 cells (the last one follows), built by broadcasting one axis per cell.
    free = len(cols) - 1
    logs = np.zeros((1,) * free)
    taken = np.zeros((1,) * free, dtype=np.int64)
    for j, total in enumerate(cols[:-1]):
        shape = [1] * free
        shape[j] = int(total) + 1
        logs = logs + log_terms(int(total)).reshape(shape)
        taken = taken + np.arange(int(total) + 1).reshape(shape)
    last = row0 - taken
    ok = (last >= 0) & (last <= cols[-1])
    logs = (logs + log_terms(int(cols[-1]))[np.clip(last, 0, cols[-1])])[ok]
    observed = float(sum(log_terms(int(c))[x] for c, x in zip(cols, counts[0], strict=True)))
    top = logs.max()
    weights = np.exp(logs - top)
    # Relative tolerance as in scipy.stats.fisher_exact, so ties in exact arithmetic count.
    extreme = logs <= observed + 1e-7
    return float(min(1.0, weights[extreme].sum() / weights.sum()))


def binomial_p_half(k: int, n: int, alternative: BinomialAlternative) -> float:
    """scipy.stats.binomtest(k, n, 0.5, alternative).pvalue without its binary search.

    At p = 0.5 the outcomes no more likely than k are the two tails cut at k and n - k, so the
    two-sided p is binomtest's own sum of those tails (same cdf and sf calls) in closed form.
    """
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if alternative == "greater":
        return float(binom.sf(k - 1, n, 0.5))
    if 2 * k == n:
        return 1.0
    low = min(k, n - k)
    return float(min(1.0, binom.cdf(low, n, 0.5) + binom.sf(n - low - 1, n, 0.5)))


def _binomial_p(k: int, n: int, alternative: BinomialAlternative) -> float | None:
    return binomial_p_half(k, n, alternative) if n else None


def reader_summary(
    ratings: Iterable[Rating],
    *,
    policy: UncertainPolicy = DEFAULT_POLICY,
    margin: float = 0.10,
    alternative: BinomialAlternative = DEFAULT_ALTERNATIVE,
    alpha: float = ALPHA,
) -> ReaderSummary:
    """All per-reader statistics for the ratings of ONE reader.

    ``alternative="greater"`` adds the one-sided test a study pre-registered; the two-sided
    test is reported either way.
    """
    _check_options(policy, margin, alternative)
    ratings = list(ratings)
    readers = {r.reader for r in ratings}
    if len(readers) > 1:
        raise ValueError(f"reader_summary takes one reader's ratings, got {sorted(readers)}")
    first = first_presentations(ratings)
    scored = _scored(first, policy)
    decisive = _decisive(first)
    n, k = len(scored), sum(r.correct for r in scored)
    n_decisive, k_decisive = len(decisive), sum(r.correct for r in decisive)
    fakes = [r for r in scored if r.truth == "fake"]
    reals = [r for r in scored if r.truth == "real"]
    decisive_fakes = [r for r in decisive if r.truth == "fake"]
    decisive_reals = [r for r in decisive if r.truth == "real"]
    low, high = _wilson(k, n)
    agreement, n_repeats = _intra_reader_agreement(ratings, first)
    p_decisive = _binomial_p(k_decisive, n_decisive, "two-sided")
    table = answers_by_truth(first)
    n_uncertain = sum(r.answer == "uncertain" for r in first)
    return ReaderSummary(
        reader=next(iter(readers), ""),
        n=n,
        correct=k,
        accuracy=_ratio(k, n),
        wilson_low=low,
        wilson_high=high,
        p_binomial=_binomial_p(k, n, "two-sided"),
        p_binomial_greater=_binomial_p(k, n, "greater") if alternative == "greater" else None,
        # Decisive answers only: under "wrong" an all-uncertain reader would otherwise be
        # "significantly below chance" for saying "I don't know".
        below_chance=p_decisive is not None and p_decisive < alpha and 2 * k_decisive < n_decisive,
        p_tost=float(binom_tost(k_decisive, n_decisive, 0.5 - margin, 0.5 + margin)[0])
        if n_decisive
        else None,
        n_answers=len(first),
        n_decisive=n_decisive,
        correct_decisive=k_decisive,
        n_uncertain=n_uncertain,
        uncertain_share=_ratio(n_uncertain, len(first)),
        answers_by_truth=table,
        p_answer_depends_on_truth=exact_independence_2xc(
            [list(table["real"].values()), list(table["fake"].values())]
        ),
        sensitivity=_ratio(sum(r.answer == "fake" for r in fakes), len(fakes)),
        specificity=_ratio(sum(r.answer == "real" for r in reals), len(reals)),
        # An "uncertain" is neither a hit nor a false alarm: signal detection on decisive answers.
        d_prime=_d_prime(
            sum(r.answer == "fake" for r in decisive_fakes),
            len(decisive_fakes),
            sum(r.answer == "fake" for r in decisive_reals),
            len(decisive_reals),
        ),
        auc=_confidence_auc(scored),
        intra_reader_agreement=agreement,
        n_repeats=n_repeats,
    )


# A new answer changes one reader's ratings: the other readers' rows come from here. Keyed by
# the ratings themselves (frozen, compared by value), so a changed reader is never served a
# stale row; about two policies x 30 readers of the studies in view. The dicts inside a
# summary are copied by asdict() before they leave study_statistics.
@lru_cache(maxsize=64)
def _reader_summary_memo(
    ratings: tuple[Rating, ...],
    policy: UncertainPolicy,
    margin: float,
    alternative: BinomialAlternative,
) -> ReaderSummary:
    return reader_summary(ratings, policy=policy, margin=margin, alternative=alternative)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order."""
    if len(pvalues) == 0:
        return []
    # statsmodels' multipletests(method="holm") step for step, without the gc.collect() it
    # runs on every call (a tenth of a second in a web process with a large heap).
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    stepped = np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(stepped, 1.0)
    return [float(x) for x in adjusted]


def _crossed_or_wilson(scored: Sequence[Rating], success: Sequence[bool]) -> Pooled:
    """Share of successes with an interval for readers and images both random, or Wilson with
    the reason when the variance components cannot be estimated."""
    n, k = len(scored), sum(success)
    if n == 0:
        return Pooled(None, None, None, "no answers")
    n_readers = len({r.reader for r in scored})
    interval = None
    if n_readers < 2:
        reason = "single reader, so no reader variation to allow for"
    elif k in (0, n):
        reason = "all answers " + ("correct" if k == n else "wrong") + ", so no variation"
    else:
        interval = crossed_interval(
            [r.reader for r in scored], [r.image for r in scored], [float(s) for s in success]
        )
        reason = "no image answered by two readers, so images and readers cannot be separated"
    if interval is None:
        low, high = _wilson(k, n)
        return Pooled(k / n, low, high, f"Wilson 95% interval on all answers ({reason})", n=n)
    return Pooled(
        accuracy=interval.estimate,
        ci_low=interval.low,
        ci_high=interval.high,
        method=f"{CROSSED_METHOD} ({interval.df:.1f} df)",
        n=n,
        df=interval.df,
        icc_reader=interval.icc_reader,
        icc_image=interval.icc_image,
        design_effect=interval.design_effect,
    )


def pooled_accuracy(
    ratings: Iterable[Rating], *, policy: UncertainPolicy = DEFAULT_POLICY
) -> Pooled:
    """Accuracy over all readers, with a 95% CI that allows for readers and images."""
    _check_options(policy)
    scored = _scored(checked_first(ratings), policy)
    return _crossed_or_wilson(scored, [r.correct for r in scored])


def fooling_rates(ratings: Iterable[Rating]) -> dict[str, float]:
    """For each synthetic image, the share of its readers who answered "real".

    "uncertain" is not being fooled, whatever the scoring policy.
    """
    fooled: dict[str, list[bool]] = defaultdict(list)
    for r in checked_first(ratings):
        if r.truth == "fake":
            fooled[r.image].append(r.answer == "real")
    return {image: sum(v) / len(v) for image, v in sorted(fooled.items())}


def accuracy_by_source(
    ratings: Iterable[Rating], *, policy: UncertainPolicy = DEFAULT_POLICY
) -> dict[str, SourceSummary]:
    """Share of each synthetic source's images called fake, with a 95% interval that allows
    for readers and images (and the Wilson interval that does not, for comparison)."""
    _check_options(policy)
    by_source: dict[str, list[Rating]] = defaultdict(list)
    for r in checked_first(ratings):
        if r.truth == "fake":
            by_source[r.source or UNKNOWN_SOURCE].append(r)
    summaries: dict[str, SourceSummary] = {}
    for source, rs in sorted(by_source.items()):
        scored = _scored(rs, policy)
        n, k = len(scored), sum(r.correct for r in scored)
        low, high = _wilson(k, n)
        interval = _crossed_or_wilson(scored, [r.correct for r in scored])
        summaries[source] = SourceSummary(
            source=source,
            n=n,
            correct=k,
            accuracy=_ratio(k, n),
            ci_low=interval.ci_low,
            ci_high=interval.ci_high,
            ci_method=interval.method,
            wilson_low=low,
            wilson_high=high,
            n_uncertain=sum(r.answer == "uncertain" for r in rs),
            n_readers=len({r.reader for r in scored}),
            n_images=len({r.image for r in scored}),
        )
    return summaries


def uncertain_summary(ratings: Iterable[Rating]) -> dict[str, Any]:
    """The uncertain share overall and by truth, and the pooled 2 x 3 answer-by-truth table.

    The table is descriptive: answers from one reader are correlated, so its test is per
    reader (``p_answer_depends_on_truth`` in each reader's row), not on these pooled counts.
    """
    first = checked_first(ratings)
    table = answers_by_truth(first)
    n_uncertain = sum(r.answer == "uncertain" for r in first)
    return {
        "n_answers": len(first),
        "n_uncertain": n_uncertain,
        "share": _ratio(n_uncertain, len(first)),
        "share_by_truth": {
            truth: _ratio(row["uncertain"], sum(row.values())) for truth, row in table.items()
        },
        "answers_by_truth": table,
    }


def methods(
    policy: UncertainPolicy,
    margin: float,
    alternative: BinomialAlternative = DEFAULT_ALTERNATIVE,
) -> dict[str, str]:
    """One plain-English line per method, with its main assumption, for the results page."""
    uncertain = (
        "Pre-registered: 'uncertain' answers count as wrong in accuracy, its Wilson interval "
        "and the binomial tests. They never count towards equivalence: TOST, d' and the "
        "below-chance flag use decisive (real/fake) answers only."
        if policy == "wrong"
        else "'Uncertain' answers are left out: accuracy, TOST, the binomial tests and d' use "
        "decisive (real/fake) answers only; how often each reader said 'uncertain' is reported "
        "beside them."
    )
    low, high = 0.5 - margin, 0.5 + margin
    binomial = (
        "Exact two-sided binomial test against 50% (a coin flip): a small p means the reader "
        "differs from chance, in either direction. Assumes the reader's answers are independent."
    )
    if alternative == "greater":
        binomial += (
            " The study pre-registered the one-sided test (better than chance), shown beside it."
        )
    return {
        "uncertain_policy": uncertain,
        "uncertain_share": "Share of a reader's first presentations answered 'uncertain', "
        "reported separately so that not answering neither raises nor lowers accuracy.",
        "three_category": "Answers real/fake/uncertain by truth (2 x 3 table) with the "
        "Fisher-Freeman-Halton exact test of whether the answer depends on the truth: a reader "
        "who says 'uncertain' more often for synthetic images can tell something. Per reader; "
        "the pooled table is descriptive.",
        "binomial": binomial,
        "below_chance": "Flagged below chance: two-sided binomial p < 0.05 with decisive "
        "accuracy under 50%, i.e. the reader systematically calls real images fake and fakes "
        "real (inverted answers); not adjusted for the number of readers.",
        "wilson": "Wilson 95% interval for a reader's accuracy; reliable even for small n or "
        "accuracies near 0 or 1. Assumes independent answers.",
        "holm": "Holm adjustment of the two-sided binomial p-values over readers, so testing "
        "many readers does not inflate false positives. No assumption about how the tests are "
        "related.",
        "tost": f"Equivalence test (two one-sided exact binomial tests) on decisive answers: "
        f"p < 0.05 is evidence that accuracy lies within {low:.2f}-{high:.2f}, i.e. the reader "
        "cannot tell. 'Uncertain' answers never enter it, whatever the policy. A "
        "non-significant binomial test alone is not such evidence.",
        "pooled": "Accuracy over all readers with a 95% interval from a two-way crossed "
        "random-effects model (readers and images both random): variance components by "
        "moments (U-statistics, equal to the ANOVA estimates for complete data), t interval on "
        "Satterthwaite degrees of freedom as the small-sample correction. With one reader, or "
        "no variation, the Wilson interval instead (the method line says why).",
        "sensitivity_specificity": "Sensitivity: share of synthetic images called fake. "
        "Specificity: share of real images called real (both under the scoring policy).",
        "d_prime": "d' = z(hit rate) - z(false-alarm rate) on decisive answers: ability to "
        "detect fakes regardless of bias towards either answer; rates corrected by "
        "(count + 0.5) / (n + 1). An 'uncertain' is neither a hit nor a false alarm.",
        "auc": "Area under the ROC curve from answers plus confidence (0.5 = chance, 1 = "
        "perfect). Computed only when every answer has a confidence.",
        "fleiss_kappa": "Fleiss' kappa: agreement among all readers beyond chance over "
        "real/fake/uncertain, on images rated by every reader.",
        "cohen_kappa": "Cohen's kappa: agreement beyond chance for each pair of readers on the "
        "images both rated.",
        "intra_reader_agreement": "Share of repeated images a reader answered the same way as "
        "the first time; measures self-consistency, not accuracy.",
        "fooling_rate": "For each synthetic image, the share of readers who called it real.",
        "by_source": "For each synthetic source, share of its images called fake, with a 95% "
        "interval from the same crossed readers-and-images model as the pooled accuracy "
        "(Wilson on independent answers beside it, for comparison only).",
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _holm_by_reader(pvalues: dict[str, float | None]) -> dict[str, float]:
    # Readers with no answers have no p-value and stay out of the Holm family.
    tested = {reader: p for reader, p in pvalues.items() if p is not None}
    return dict(zip(tested, holm(list(tested.values())), strict=True))


def study_statistics(
    ratings: Iterable[Rating],
    *,
    policy: UncertainPolicy = DEFAULT_POLICY,
    margin: float = 0.10,
    alternative: BinomialAlternative = DEFAULT_ALTERNATIVE,
    first: FirstPresentations | None = None,
) -> dict[str, Any]:
    """Everything the results page shows, as JSON-ready plain data (no NaN: None instead).

    ``first``: ``checked_first(ratings)`` where the caller holds it already (a study's
    reading keeps it), so that 10,000 ratings are not walked again."""
    _check_options(policy, margin, alternative)
    ratings = list(ratings)
    by_reader: dict[str, list[Rating]] = defaultdict(list)
    for r in ratings:
        by_reader[r.reader].append(r)
    summaries = [
        _reader_summary_memo(tuple(rs), policy, margin, alternative)
        for _, rs in sorted(by_reader.items())
    ]
    p_holm = _holm_by_reader({s.reader: s.p_binomial for s in summaries})
    p_holm_greater = _holm_by_reader({s.reader: s.p_binomial_greater for s in summaries})
    # Checked once here (the readers' own checks above cover the same pairs), then shared.
    first = checked_first(ratings) if first is None else first
    kappas = cohen_kappa_pairs(first)
    return _json_safe(
        {
            "policy": policy,
            "margin": margin,
            "alternative": alternative,
            "readers": [
                {
                    **asdict(s),
                    "p_holm": p_holm.get(s.reader),
                    "p_holm_greater": p_holm_greater.get(s.reader),
                }
                for s in summaries
            ],
            "uncertain": uncertain_summary(first),
            "pooled": asdict(pooled_accuracy(first, policy=policy)),
            "fleiss_kappa": fleiss_kappa(first),
            "cohen_kappa": [{"a": a, "b": b, "kappa": k} for (a, b), k in kappas.items()],
            "fooling_rates": fooling_rates(first),
            "by_source": {
                s: asdict(v) for s, v in accuracy_by_source(first, policy=policy).items()
            },
            "methods": methods(policy, margin, alternative),
        }
    )
