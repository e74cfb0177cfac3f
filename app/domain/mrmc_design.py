"""A reader study's ratings as an MRMC design, and the OR analysis of it as plain JSON.

Which design applies is read off the ratings:

- one treatment, real against synthetic: the reader-averaged AUC of telling real from
  synthetic images, with intervals that generalise over readers and images;
- synthetic sources as treatments: two or more sources (GANs, checkpoints) judged against the
  same real images; the real images are read under every source and each synthetic image only
  under its own, so cases are nested within treatments rather than fully crossed;
- modalities as treatments: imported iMRMC files with several modalities, every case read
  under every modality (images named ``case@modality`` with the modality as source, see
  app/studies/imports.py).

The positive case ("signal") is a synthetic image; the score is app.domain.ratings.fake_score,
so the analysis needs a confidence with every real/fake answer. "Uncertain" scores 0 under
either uncertain policy, so the MRMC figures do not depend on the policy. Images that not
every reader rated are left out (the OR jackknife needs every reader on every case) and the
methods line says how many.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.domain.checked_first import checked_first
from app.domain.mrmc import Interval, MrmcData, MrmcResult, or_analysis
from app.domain.mrmc_power import DegeneratePilotError, cases_for_power, pilot_from
from app.domain.ratings import Rating, fake_score

MODALITY_SEPARATOR = "@"
PLANNED_POWER = 0.8
# The difference between two treatments, or from chance (0.5) for one, a plan is sized for.
PLANNED_EFFECT = 0.05
PLANNED_READERS = (3, 5, 10, 20)


@dataclass(frozen=True)
class MrmcDesign:
    data: MrmcData
    design: str  # "real-vs-synthetic", "sources", "modalities"
    methods: str
    left_out_images: int


def _modality_case(r: Rating) -> str | None:
    suffix = f"{MODALITY_SEPARATOR}{r.source}"
    if r.source and r.image.endswith(suffix) and len(r.image) > len(suffix):
        return r.image[: -len(suffix)]
    return None


def mrmc_design(ratings: Sequence[Rating]) -> tuple[MrmcDesign | None, str | None]:
    """The design of ``ratings`` and None, or None and why no MRMC analysis is possible."""
    first = checked_first(ratings)
    if not first:
        return None, "No ratings yet."
    fake_scores = [fake_score(r) for r in first]
    if None in fake_scores:
        return None, "Needs a confidence with every real/fake answer (confidence ratings)."
    readers = sorted({r.reader for r in first})
    r_index = {reader: j for j, reader in enumerate(readers)}
    # case -> truth, treatment -> its cases, and (treatment, reader, case) -> score as parallel
    # lists of indices (10,000 ratings would take a noticeable time as nested loops over
    # treatments, readers and cases, or as keys looked up afterwards).
    truth: dict[str, bool] = {}
    membership: dict[str, set[str]] = defaultdict(set)
    t_at: list[int] = []
    r_at: list[int] = []
    c_at: list[int] = []
    values: list[float] = []
    # all() stops at the first rating that is not "case@modality": at once for reader studies.
    modality = all(_modality_case(r) is not None for r in first)
    if modality and len({r.source for r in first}) > 1:
        design = "modalities"
        modality_cases = [_modality_case(r) for r in first]
        treatments = sorted({r.source for r in first if r.source})
        cases = sorted({c for c in modality_cases if c is not None})
        t_index = {t: i for i, t in enumerate(treatments)}
        c_index = {c: k for k, c in enumerate(cases)}
        for r, case, score in zip(first, modality_cases, fake_scores, strict=True):
            assert case is not None and r.source is not None
            truth[case] = r.truth == "fake"
            membership[r.source].add(case)
            t_at.append(t_index[r.source])
            r_at.append(r_index[r.reader])
            c_at.append(c_index[case])
            values.append(score or 0.0)
    else:
        sources = sorted({r.source for r in first if r.truth == "fake" and r.source})
        design = "sources" if len(sources) > 1 else "real-vs-synthetic"
        # Every treatment gets a case: a source has its own synthetic images, and the one
        # treatment of real vs synthetic every image.
        treatments = sources if design == "sources" else ["real vs synthetic"]
        cases = sorted({r.image for r in first})
        t_index = {t: i for i, t in enumerate(treatments)}
        c_index = {c: k for k, c in enumerate(cases)}
        every = range(len(treatments))
        for r, score in zip(first, fake_scores, strict=True):
            truth[r.image] = r.truth == "fake"
            if r.truth == "real" or design == "real-vs-synthetic":
                owners: Sequence[int] = every
            else:
                owners = [t_index[r.source]] if r.source else []
            value = score or 0.0
            j, k = r_index[r.reader], c_index[r.image]
            for t in owners:
                membership[treatments[t]].add(r.image)
                t_at.append(t)
                r_at.append(j)
                c_at.append(k)
                values.append(value)
    # One array over every case, filled by index, then cut to the complete cases.
    all_scores = np.full((len(treatments), len(readers), len(cases)), np.nan)
    if values:
        all_scores[t_at, r_at, c_at] = values
    member = np.zeros((len(treatments), len(cases)), dtype=bool)
    for i, t in enumerate(treatments):
        member[i, [c_index[c] for c in membership[t]]] = True
    # Complete: every reader scored the case under every treatment it belongs to.
    rated = ~np.isnan(all_scores) | ~member[:, None, :]
    keep = rated.all(axis=(0, 1))
    complete = [c for c, k in zip(cases, keep, strict=True) if k]
    left_out = len(cases) - len(complete)
    in_t = member[:, keep]
    scores = all_scores[:, :, keep]
    labels = np.array([truth[c] for c in complete], dtype=bool)
    for i, t in enumerate(treatments):
        n_pos, n_neg = int(labels[in_t[i]].sum()), int((~labels[in_t[i]]).sum())
        if n_pos < 2 or n_neg < 2:
            return None, (
                f"Treatment {t!r} has {n_pos} synthetic and {n_neg} real image(s) rated by every "
                "reader; the analysis needs at least two of each."
            )
    data = MrmcData(tuple(treatments), tuple(readers), tuple(complete), labels, scores, in_t)
    return MrmcDesign(data, design, _methods(design, data, left_out), left_out), None


def _methods(design: str, data: MrmcData, left_out: int) -> str:
    readers, n_cases = len(data.readers), len(data.cases)
    lead = {
        "real-vs-synthetic": "One treatment (real vs synthetic): the reader-averaged AUC of "
        "telling synthetic from real images.",
        "sources": f"Synthetic sources as treatments ({len(data.treatments)}), each judged "
        "against the same real images. Not fully crossed: the real images are read under "
        "every source, each synthetic image only under its own (cases nested within "
        "treatments); the jackknife runs over all images.",
        "modalities": f"Modalities as treatments ({len(data.treatments)}), fully crossed: "
        "every reader rated every case under every modality.",
    }[design]
    crossing = (
        f" Fully crossed after leaving out {left_out} image(s) not rated by every reader."
        if left_out
        else " Every reader rated every image."
        if design == "real-vs-synthetic"
        else ""
    )
    return (
        f"{lead}{crossing} {readers} reader(s), {n_cases} image(s). Empirical (trapezoidal) "
        "AUC of the confidence score (+confidence for 'fake', -confidence for 'real', 0 for "
        "'uncertain'; synthetic = positive). Obuchowski-Rockette analysis with jackknife "
        "covariances and Hillis' denominator degrees of freedom (Hillis 2007, 2008), as in "
        "the Iowa OR-DBM MRMC software and RJafroc; random readers and random cases unless "
        "stated."
    )


# --- JSON -------------------------------------------------------------------------------------


def _num(value: float | None) -> float | None:
    """A finite float, or None: stats.json is written with allow_nan=False."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _interval_json(iv: Interval) -> dict[str, Any]:
    return {
        "label": iv.label,
        "estimate": _num(iv.estimate),
        "std_err": _num(iv.std_err),
        "df": _num(iv.df),
        "ci_low": _num(iv.ci_low),
        "ci_high": _num(iv.ci_high),
        "statistic": _num(iv.statistic),
        "p": _num(iv.p),
    }


def _analysis_json(result: MrmcResult, key: str) -> dict[str, Any]:
    analysis = getattr(result, key)
    test = analysis.test
    return {
        "test": None
        if test is None
        else {
            "statistic": _num(test.statistic),
            "df1": test.df1,
            "df2": _num(test.df2),
            "p": _num(test.p),
            "error_term": _num(test.denominator),
        },
        "differences": [_interval_json(iv) for iv in analysis.differences],
        "treatments": [_interval_json(iv) for iv in analysis.treatments],
        "reader_differences": [_interval_json(iv) for iv in analysis.reader_differences],
    }


def _plans(result: MrmcResult) -> list[dict[str, Any]]:
    if len(result.treatments) > 2 or len(result.readers) < 2:
        return []  # Hillis' formulas size a comparison of two treatments, or one against 0.5
    pilot = pilot_from(result)
    plans = []
    for readers in PLANNED_READERS:
        try:
            plan = cases_for_power(
                pilot, readers=readers, effect=PLANNED_EFFECT, power=PLANNED_POWER
            )
        except DegeneratePilotError:
            return []  # no variability in the pilot: nothing to size a study from
        plans.append(
            {
                "readers": readers,
                "cases": None if plan is None else plan.cases,
                "power": None if plan is None else _num(plan.power),
                "ddf": None if plan is None else _num(plan.ddf),
            }
        )
    return plans


def mrmc_json(design: MrmcDesign, result: MrmcResult) -> dict[str, Any]:
    """Every figure of the OR analysis, JSON-ready."""
    c = result.covariances
    comp = result.components
    dbm = result.dbm
    return {
        "design": design.design,
        "methods": design.methods,
        "fully_crossed": result.factorial and not design.left_out_images,
        "left_out_images": design.left_out_images,
        "covariance_method": result.covariance_method,
        "alpha": result.alpha,
        "treatments": list(result.treatments),
        "readers": list(result.readers),
        "n_cases": result.n_cases,
        "n_synthetic": result.n_positive,
        "n_real": result.n_negative,
        "auc": {
            t: {r: _num(result.auc[i, j]) for j, r in enumerate(result.readers)}
            for i, t in enumerate(result.treatments)
        },
        "treatment_means": {
            t: _num(m) for t, m in zip(result.treatments, result.treatment_means, strict=True)
        },
        "anova": {
            "ms_t": _num(result.anova.ms_t),
            "ms_r": _num(result.anova.ms_r),
            "ms_tr": _num(result.anova.ms_tr),
            "df_t": result.anova.df_t,
            "df_r": result.anova.df_r,
            "df_tr": result.anova.df_tr,
        },
        "or_components": {
            "var_r": _num(comp.var_r),
            "var_tr": _num(comp.var_tr),
            "var_error": _num(c.var),
            "cov1": _num(c.cov1),
            "cov2": _num(c.cov2),
            "cov3": _num(c.cov3),
            "corr1": _num(c.correlation(c.cov1)),
            "corr2": _num(c.correlation(c.cov2)),
            "corr3": _num(c.correlation(c.cov3)),
        },
        "dbm_components": None
        if dbm is None
        else {
            k: _num(getattr(dbm, k))
            for k in ("var_r", "var_c", "var_tr", "var_tc", "var_rc", "var_error")
        },
        "random_readers_random_cases": _analysis_json(result, "rrrc"),
        "fixed_readers_random_cases": _analysis_json(result, "frrc"),
        "random_readers_fixed_cases": _analysis_json(result, "rrfc"),
        "sample_size": {
            "effect": PLANNED_EFFECT,
            "power": PLANNED_POWER,
            "against": "0.5 (chance)" if len(result.treatments) == 1 else "between treatments",
            "plans": _plans(result),
        },
    }


def mrmc_section(ratings: Sequence[Rating]) -> dict[str, Any]:
    """{"available": False, "reason": ...} or {"available": True, **mrmc_json(...)}."""
    design, reason = mrmc_design(ratings)
    if design is None:
        return {"available": False, "reason": reason}
    try:
        result = or_analysis(design.data)
    except ValueError as exc:
        return {"available": False, "reason": str(exc)}
    return {"available": True, **mrmc_json(design, result)}
