"""Reader-study statistics: pure functions over plain, frozen rating records.

The methods follow the reference in design/reader-statistics.md. Only first presentations
(``repeat=False``) enter accuracy, agreement and fooling-rate statistics; repeated presentations
feed intra-reader consistency alone, so a reader who sees an image twice is not counted twice.
Kappas and paired tests live in :mod:`app.domain.agreement` and are re-exported here.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import expit
from scipy.stats import binomtest, norm
from sklearn.metrics import roc_auc_score
from statsmodels.genmod.cov_struct import Exchangeable
from statsmodels.genmod.families import Binomial
from statsmodels.genmod.generalized_estimating_equations import GEE
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import binom_tost, proportion_confint
from statsmodels.tools.sm_exceptions import ConvergenceWarning, IterationLimitWarning

# Redundant aliases mark these as public re-exports, so callers keep importing from here.
from app.domain.agreement import PairedTest as PairedTest
from app.domain.agreement import cochran_q as cochran_q
from app.domain.agreement import cohen_kappa_pairs as cohen_kappa_pairs
from app.domain.agreement import fleiss_kappa as fleiss_kappa
from app.domain.agreement import mcnemar_paired as mcnemar_paired
from app.domain.ratings import CATEGORIES as CATEGORIES
from app.domain.ratings import Answer as Answer
from app.domain.ratings import Rating as Rating
from app.domain.ratings import Truth as Truth
from app.domain.ratings import fake_score as fake_score
from app.domain.ratings import first_presentations as first_presentations

UncertainPolicy = Literal["wrong", "excluded"]

UNKNOWN_SOURCE = "(unknown)"


@dataclass(frozen=True)
class ReaderSummary:
    reader: str
    n: int
    correct: int
    accuracy: float | None
    wilson_low: float | None
    wilson_high: float | None
    p_binomial: float | None
    p_tost: float | None
    n_uncertain: int
    sensitivity: float | None
    specificity: float | None
    d_prime: float | None
    auc: float | None
    intra_reader_agreement: float | None
    n_repeats: int


@dataclass(frozen=True)
class SourceSummary:
    """Detection of one synthetic source: ``correct`` counts its images that were called fake."""

    source: str
    n: int
    correct: int
    accuracy: float | None
    wilson_low: float | None
    wilson_high: float | None
    n_uncertain: int


@dataclass(frozen=True)
class Pooled:
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    method: str


def _check_options(policy: str, margin: float = 0.10) -> None:
    if policy not in ("wrong", "excluded"):
        raise ValueError(f"policy must be 'wrong' or 'excluded', got {policy!r}")
    if not 0 < margin < 0.5:
        raise ValueError(f"margin must lie in (0, 0.5), got {margin!r}")


def _scored(ratings: Iterable[Rating], policy: UncertainPolicy) -> list[Rating]:
    # Under "wrong" an uncertain answer stays in n and can never be correct.
    return [r for r in ratings if policy == "wrong" or r.answer != "uncertain"]


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


def _confidence_auc(scored: Sequence[Rating]) -> float | None:
    scores = [fake_score(r) for r in scored]
    labels = [r.truth == "fake" for r in scored]
    if not scored or any(s is None for s in scores) or len(set(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


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


def reader_summary(
    ratings: Iterable[Rating], *, policy: UncertainPolicy = "wrong", margin: float = 0.10
) -> ReaderSummary:
    """All per-reader statistics for the ratings of ONE reader."""
    _check_options(policy, margin)
    ratings = list(ratings)
    readers = {r.reader for r in ratings}
    if len(readers) > 1:
        raise ValueError(f"reader_summary takes one reader's ratings, got {sorted(readers)}")
    first = first_presentations(ratings)
    scored = _scored(first, policy)
    n = len(scored)
    k = sum(r.correct for r in scored)
    fakes = [r for r in scored if r.truth == "fake"]
    reals = [r for r in scored if r.truth == "real"]
    hits = sum(r.answer == "fake" for r in fakes)
    reals_called_real = sum(r.answer == "real" for r in reals)
    low, high = _wilson(k, n)
    agreement, n_repeats = _intra_reader_agreement(ratings, first)
    return ReaderSummary(
        reader=next(iter(readers), ""),
        n=n,
        correct=k,
        accuracy=_ratio(k, n),
        wilson_low=low,
        wilson_high=high,
        p_binomial=float(binomtest(k, n, 0.5, alternative="greater").pvalue) if n else None,
        p_tost=float(binom_tost(k, n, 0.5 - margin, 0.5 + margin)[0]) if n else None,
        n_uncertain=sum(r.answer == "uncertain" for r in first),
        sensitivity=_ratio(hits, len(fakes)),
        specificity=_ratio(reals_called_real, len(reals)),
        # A real not called real is a false alarm, so under "wrong" an uncertain real counts as one.
        d_prime=_d_prime(hits, len(fakes), len(reals) - reals_called_real, len(reals)),
        auc=_confidence_auc(scored),
        intra_reader_agreement=agreement,
        n_repeats=n_repeats,
    )


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order."""
    if len(pvalues) == 0:
        return []
    return [float(p) for p in multipletests(list(pvalues), method="holm")[1]]


def _gee_pooled(scored: Sequence[Rating]) -> Pooled | None:
    y = np.array([r.correct for r in scored], dtype=float)
    groups = np.unique([r.reader for r in scored], return_inverse=True)[1]
    model = GEE(
        y, np.ones((len(y), 1)), groups=groups, family=Binomial(), cov_struct=Exchangeable()
    )
    # statsmodels reports a fit that stopped at its iteration limit only as a warning (and not
    # a ConvergenceWarning); such estimates are not trustworthy, so both mean "fall back".
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        warnings.simplefilter("error", IterationLimitWarning)
        try:
            result = model.fit()
        except (ConvergenceWarning, IterationLimitWarning, np.linalg.LinAlgError, ValueError):
            return None
    estimate = float(result.params[0])
    # The sandwich (robust) variance is exactly zero when every reader's accuracy equals the
    # pooled one, and too small with few readers. Clustering by reader can only widen the
    # interval in a reader study (readers do not anti-correlate), so the floor is the standard
    # error of the same proportion over independent answers.
    p_hat = float(expit(estimate))
    robust_se = float(np.sqrt(result.cov_robust[0, 0]))
    independent_se = 1.0 / math.sqrt(len(y) * p_hat * (1.0 - p_hat))
    se = max(robust_se, independent_se)
    z = float(norm.ppf(0.975))
    low, high = estimate - z * se, estimate + z * se
    if not all(math.isfinite(v) for v in (estimate, low, high)):
        return None
    which = (
        "robust (sandwich)"
        if robust_se >= independent_se
        else "independent-answers binomial (the robust one was smaller)"
    )
    return Pooled(
        accuracy=float(expit(estimate)),
        ci_low=float(expit(low)),
        ci_high=float(expit(high)),
        method=(
            "GEE logistic (correct ~ 1), exchangeable correlation within reader, "
            f"95% CI from the {which} standard error"
        ),
    )


def pooled_accuracy(ratings: Iterable[Rating], *, policy: UncertainPolicy = "wrong") -> Pooled:
    """Accuracy over all readers, with a CI that allows for correlation within each reader."""
    _check_options(policy)
    scored = _scored(first_presentations(ratings), policy)
    n = len(scored)
    k = sum(r.correct for r in scored)
    if n == 0:
        return Pooled(None, None, None, "no answers")
    n_readers = len({r.reader for r in scored})
    if n_readers < 2:
        reason = "single reader, so no clustering to model"
    elif k in (0, n):
        reason = "all answers " + ("correct" if k == n else "wrong") + ", so the logit is infinite"
    else:
        pooled = _gee_pooled(scored)
        if pooled is not None:
            return pooled
        reason = "GEE did not converge"
    low, high = _wilson(k, n)
    return Pooled(k / n, low, high, f"Wilson 95% interval on all answers ({reason})")


def fooling_rates(ratings: Iterable[Rating]) -> dict[str, float]:
    """For each synthetic image, the share of its readers who answered "real".

    "uncertain" is not being fooled, whatever the scoring policy.
    """
    fooled: dict[str, list[bool]] = defaultdict(list)
    for r in first_presentations(ratings):
        if r.truth == "fake":
            fooled[r.image].append(r.answer == "real")
    return {image: sum(v) / len(v) for image, v in sorted(fooled.items())}


def accuracy_by_source(
    ratings: Iterable[Rating], *, policy: UncertainPolicy = "wrong"
) -> dict[str, SourceSummary]:
    """Share of each synthetic source's images called fake, with a Wilson 95% interval."""
    _check_options(policy)
    by_source: dict[str, list[Rating]] = defaultdict(list)
    for r in first_presentations(ratings):
        if r.truth == "fake":
            by_source[r.source or UNKNOWN_SOURCE].append(r)
    summaries: dict[str, SourceSummary] = {}
    for source, rs in sorted(by_source.items()):
        scored = _scored(rs, policy)
        n, k = len(scored), sum(r.correct for r in scored)
        low, high = _wilson(k, n)
        n_uncertain = sum(r.answer == "uncertain" for r in rs)
        summaries[source] = SourceSummary(source, n, k, _ratio(k, n), low, high, n_uncertain)
    return summaries


def methods(policy: UncertainPolicy, margin: float) -> dict[str, str]:
    """One plain-English line per method, with its main assumption, for the results page."""
    uncertain = (
        "'Uncertain' answers count as wrong; they stay in every n."
        if policy == "wrong"
        else "'Uncertain' answers are left out; n counts real/fake answers only."
    )
    low, high = 0.5 - margin, 0.5 + margin
    return {
        "uncertain_policy": uncertain,
        "binomial": "Exact one-sided binomial test: is this reader right more often than a coin "
        "flip (50%)? Assumes the reader's answers are independent.",
        "wilson": "Wilson 95% interval for a reader's accuracy; reliable even for small n or "
        "accuracies near 0 or 1. Assumes independent answers.",
        "holm": "Holm adjustment of the per-reader binomial p-values, so testing many readers "
        "does not inflate false positives. No assumption about how the tests are related.",
        "tost": f"Equivalence test (two one-sided exact binomial tests): p < 0.05 is evidence "
        f"that accuracy lies within {low:.2f}-{high:.2f}, i.e. readers cannot tell. A "
        "non-significant binomial test alone is not such evidence.",
        "pooled": "Accuracy over all readers from a GEE logistic model clustered by reader, so "
        "the interval allows for readers differing in skill. Needs several readers.",
        "sensitivity_specificity": "Sensitivity: share of synthetic images called fake. "
        "Specificity: share of real images called real.",
        "d_prime": "d' = z(hit rate) - z(false-alarm rate): ability to detect fakes regardless "
        "of bias towards either answer; rates corrected by (count + 0.5) / (n + 1).",
        "auc": "Area under the ROC curve from answers plus confidence (0.5 = chance, 1 = "
        "perfect). Computed only when every answer has a confidence.",
        "fleiss_kappa": "Fleiss' kappa: agreement among all readers beyond chance over "
        "real/fake/uncertain, on images rated by every reader.",
        "cohen_kappa": "Cohen's kappa: agreement beyond chance for each pair of readers on the "
        "images both rated.",
        "intra_reader_agreement": "Share of repeated images a reader answered the same way as "
        "the first time; measures self-consistency, not accuracy.",
        "fooling_rate": "For each synthetic image, the share of readers who called it real.",
        "by_source": "For each synthetic source, share of its images called fake, with a "
        "Wilson 95% interval. Assumes independent answers.",
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


def study_statistics(
    ratings: Iterable[Rating], *, policy: UncertainPolicy = "wrong", margin: float = 0.10
) -> dict[str, Any]:
    """Everything the results page shows, as JSON-ready plain data (no NaN: None instead)."""
    _check_options(policy, margin)
    ratings = list(ratings)
    by_reader: dict[str, list[Rating]] = defaultdict(list)
    for r in ratings:
        by_reader[r.reader].append(r)
    summaries = [
        reader_summary(rs, policy=policy, margin=margin) for _, rs in sorted(by_reader.items())
    ]
    # Readers with no answers have no p-value and stay out of the Holm family.
    tested = [s for s in summaries if s.p_binomial is not None]
    adjusted = holm([s.p_binomial for s in tested if s.p_binomial is not None])
    p_holm = dict(zip((s.reader for s in tested), adjusted, strict=True))
    kappas = cohen_kappa_pairs(ratings)
    return _json_safe(
        {
            "policy": policy,
            "margin": margin,
            "readers": [{**asdict(s), "p_holm": p_holm.get(s.reader)} for s in summaries],
            "pooled": asdict(pooled_accuracy(ratings, policy=policy)),
            "fleiss_kappa": fleiss_kappa(ratings),
            "cohen_kappa": [{"a": a, "b": b, "kappa": k} for (a, b), k in kappas.items()],
            "fooling_rates": fooling_rates(ratings),
            "by_source": {
                s: asdict(v) for s, v in accuracy_by_source(ratings, policy=policy).items()
            },
            "methods": methods(policy, margin),
        }
    )
