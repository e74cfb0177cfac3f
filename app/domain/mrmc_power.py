"""Sample size of a future MRMC study from the OR variance components of a pilot.

Hillis, Obuchowski & Berbaum (2011) Acad Radiol 18:129-142, eqn. 10 (the method of RJafroc's
SsPowerGivenJK and SsSampleSizeKGivenJ): the pilot's error variance and covariances, estimated
with K* cases, scale as K*/K for a study with K cases; Var(T*R) does not depend on K. The power
of the two-treatment test is that of a non-central F (random readers and cases, Hillis' ddf),
non-central chi-square (fixed readers) or non-central F with J-1 ddf (fixed cases), with
non-centrality J * d^2 / 2 / denominator for an effect d between the two treatment AUCs.

A study with one treatment (real against synthetic) has no treatment difference to power; its
analogue tests the reader-averaged AUC against a fixed value (0.5: readers cannot tell) with
the single-treatment error term MS(R) + J * max(Cov2, 0): Var(R) then takes Var(T*R)'s place
and Var - Cov2 the place of Var - Cov1. That variant is not in the paper; tests/unit/test_mrmc.py
checks it against a simulation of the OR model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

PowerAnalysis = Literal["RRRC", "FRRC", "RRFC"]
MAX_CASES = 2000


@dataclass(frozen=True)
class PilotComponents:
    """What a sample-size calculation needs from a pilot study's OR analysis."""

    cases: int  # K*, the pilot's number of cases
    var: float
    cov1: float | None
    cov2: float | None
    cov3: float | None
    var_tr: float | None  # two treatments: Var(T*R); one treatment: None
    var_r: float | None = None  # one treatment: Var(R)


@dataclass(frozen=True)
class PowerResult:
    analysis: PowerAnalysis
    readers: int
    cases: int
    effect: float
    power: float
    ncp: float
    ddf: float | None  # None for the chi-square test of fixed readers


def _check(readers: int, cases: int, alpha: float) -> None:
    if readers < 2:
        raise ValueError("a future study needs at least two readers")
    if cases < 2:
        raise ValueError("a future study needs at least two cases")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def _f_power(ncp: float, ddf: float, alpha: float) -> float:
    from scipy.stats import f, ncf

    critical = f.isf(alpha, 1, ddf)
    return float(ncf.sf(critical, 1, ddf, ncp))


class DegeneratePilotError(ValueError):
    """The pilot's variance components leave no variability to size a study from (every
    reader gave every case the same score, say): no power or sample size is defined."""


def _positive(value: float, what: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise DegeneratePilotError(f"the pilot's {what} is {value!r}: no power can be computed")
    return value


def _terms(pilot: PilotComponents, readers: int, cases: int) -> tuple[float, float, float]:
    """(random effect, case-scaled error term, case-scaled MS term) of the design."""
    scale = pilot.cases / cases
    if pilot.var_tr is not None:
        spread = max(pilot.var_tr, 0.0)
        pair = max((pilot.cov2 or 0.0) - (pilot.cov3 or 0.0), 0.0)
        error = scale * (pilot.var - (pilot.cov1 or 0.0) + (readers - 1) * pair)
        ms = scale * (pilot.var - (pilot.cov1 or 0.0) - pair)
        return spread, error, ms
    if pilot.var_r is None:
        raise ValueError("a one-treatment pilot needs Var(R)")
    cov2 = max(pilot.cov2 or 0.0, 0.0)
    error = scale * (pilot.var + (readers - 1) * cov2)
    ms = scale * (pilot.var - cov2)
    return max(pilot.var_r, 0.0), error, ms


def mrmc_power(
    pilot: PilotComponents,
    *,
    readers: int,
    cases: int,
    effect: float,
    alpha: float = 0.05,
    analysis: PowerAnalysis = "RRRC",
) -> PowerResult:
    """Power to detect ``effect`` (difference of two treatment AUCs, or of one treatment's AUC
    from the tested value) with ``readers`` readers each reading ``cases`` cases."""
    from scipy.stats import chi2, ncx2

    _check(readers, cases, alpha)
    spread, error, ms = _terms(pilot, readers, cases)
    # Two treatments: sum of squared deviations from the mean is d^2 / 2; one treatment: d^2.
    half = 0.5 if pilot.var_tr is not None else 1.0
    if analysis == "RRRC":
        den = _positive(spread + error, "error variance")
        _positive(spread + ms, "mean-square term")
        ddf = den**2 / ((spread + ms) ** 2 / (readers - 1))
        ncp = half * readers * effect**2 / den
        return PowerResult(analysis, readers, cases, effect, _f_power(ncp, ddf, alpha), ncp, ddf)
    if analysis == "FRRC":
        ncp = half * readers * effect**2 / _positive(error, "error variance")
        power = float(ncx2.sf(chi2.isf(alpha, 1), 1, ncp))
        return PowerResult(analysis, readers, cases, effect, power, ncp, None)
    if analysis == "RRFC":
        den = _positive(spread + ms, "mean-square term")
        ncp = half * readers * effect**2 / den
        ddf = float(readers - 1)
        return PowerResult(analysis, readers, cases, effect, _f_power(ncp, ddf, alpha), ncp, ddf)
    raise ValueError(f"unknown analysis {analysis!r}")


def cases_for_power(
    pilot: PilotComponents,
    *,
    readers: int,
    effect: float,
    power: float = 0.8,
    alpha: float = 0.05,
    analysis: PowerAnalysis = "RRRC",
    max_cases: int = MAX_CASES,
) -> PowerResult | None:
    """The smallest number of cases whose power exceeds ``power`` with ``readers`` readers,
    or None when even ``max_cases`` cases do not reach it (too few readers for the reader
    variability, or too small an effect)."""
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    if effect == 0 or not math.isfinite(effect):
        raise ValueError("the effect must be a non-zero number")
    # Power grows with the number of cases, so bisect on it.
    if mrmc_power(pilot, readers=readers, cases=max_cases, effect=effect, alpha=alpha,
                  analysis=analysis).power <= power:  # fmt: skip
        return None
    low, high = 2, max_cases
    while low < high:
        mid = (low + high) // 2
        achieved = mrmc_power(pilot, readers=readers, cases=mid, effect=effect, alpha=alpha,
                              analysis=analysis).power  # fmt: skip
        if achieved > power:
            high = mid
        else:
            low = mid + 1
    return mrmc_power(pilot, readers=readers, cases=low, effect=effect, alpha=alpha,
                      analysis=analysis)  # fmt: skip


def pilot_from(result: object) -> PilotComponents:
    """PilotComponents of an app.domain.mrmc.MrmcResult (one or two treatments)."""
    from app.domain.mrmc import MrmcResult

    if not isinstance(result, MrmcResult):
        raise TypeError("expected an MrmcResult")
    c = result.covariances
    comp = result.components
    if len(result.treatments) == 1:
        # One treatment: E[MS(R)] = Var(R) + Var - Cov2.
        ms_r = result.anova.ms_r
        var_r = None if ms_r is None else ms_r - c.var + (c.cov2 or 0.0)
        return PilotComponents(result.n_cases, c.var, None, c.cov2, None, None, var_r)
    return PilotComponents(result.n_cases, c.var, c.cov1, c.cov2, c.cov3, comp.var_tr)
