"""Multi-reader multi-case ROC analysis: Obuchowski-Rockette with Hillis' degrees of freedom.

The method of the Iowa OR-DBM MRMC software, RJafroc and MRMCaov, for studies in which readers
give a rating (a confidence score) to cases whose truth is known:

- per treatment and reader the empirical (trapezoidal, Wilcoxon) AUC, ties counting one half;
- the treatment-by-reader ANOVA of those AUCs;
- the OR error variance and covariances Cov1 (same reader, other treatment), Cov2 (same
  treatment, other reader) and Cov3 (other treatment and reader), from the jackknife over cases
  or from DeLong's structural components;
- the test of equal treatment AUCs and confidence intervals for random readers and random cases
  (F with Hillis' ddf_H), fixed readers (chi-square, z) and fixed cases (conventional ANOVA);
- the DBM variance components from the ANOVA of jackknife pseudovalues.

References: Obuchowski & Rockette (1995) Commun Stat Simul Comput 24:285-308; Hillis,
Obuchowski, Schartz & Berbaum (2005) Stat Med 24:1579-1607; Hillis (2007) Stat Med
26:596-619; Hillis, Berbaum & Metz (2008) Acad Radiol 15:647-661; DeLong, DeLong &
Clarke-Pearson (1988) Biometrics 44:837-845. Checked against the published outputs for the
Van Dyke et al. (1993) data in tests/unit/test_mrmc.py.

Cases may be nested within treatments (a study with one treatment per synthetic source shares
the real images between treatments and shows each synthetic image under its own source only):
``MrmcData.in_treatment`` marks which cases belong to which treatment, and the jackknife then
runs over every case, a case outside a treatment leaving that treatment's AUCs unchanged.
DeLong and the DBM pseudovalue ANOVA need a fully crossed (factorial) design.

numpy only here; scipy's distributions are imported inside the functions that need them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

CovarianceMethod = Literal["jackknife", "DeLong"]


@dataclass(frozen=True)
class MrmcData:
    """Ratings on one axis (higher = more likely positive) for treatments x readers x cases.

    ``scores[i, j, k]`` is reader j's rating of case k under treatment i (NaN where case k is
    not part of treatment i); ``truth[k]`` is True for a positive case (the "signal").
    """

    treatments: tuple[str, ...]
    readers: tuple[str, ...]
    cases: tuple[str, ...]
    truth: np.ndarray
    scores: np.ndarray
    in_treatment: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        shape = (len(self.treatments), len(self.readers), len(self.cases))
        if self.scores.shape != shape:
            raise ValueError(f"scores must have shape {shape}, got {self.scores.shape}")
        if self.truth.shape != (len(self.cases),):
            raise ValueError("truth needs one entry per case")
        if self.in_treatment is None:
            object.__setattr__(self, "in_treatment", ~np.isnan(self.scores).all(axis=1))
        for i, name in enumerate(self.treatments):
            member = self.in_treatment[i]
            if np.isnan(self.scores[i][:, member]).any():
                raise ValueError(f"every reader must rate every case of treatment {name!r}")
            if not (self.truth[member].any() and (~self.truth[member]).any()):
                raise ValueError(f"treatment {name!r} needs positive and negative cases")
        if len(self.readers) < 1:
            raise ValueError("at least one reader is needed")

    @property
    def factorial(self) -> bool:
        """True when every reader rated every case under every treatment."""
        return bool(self.in_treatment.all())


def _kernel(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """psi(x, y) of the Wilcoxon statistic: 1 if the positive ranks above, 1/2 for a tie."""
    diff = pos[:, None] - neg[None, :]
    return (diff > 0) + 0.5 * (diff == 0)


@dataclass(frozen=True)
class _AucParts:
    auc: np.ndarray  # (I, J)
    jackknife: np.ndarray  # (I, J, K): AUC with case k left out (the AUC itself if k not in i)
    v10: list[np.ndarray]  # per treatment: (J, n_pos) DeLong components of positive cases
    v01: list[np.ndarray]  # per treatment: (J, n_neg)


def _auc_parts(data: MrmcData) -> _AucParts:
    n_t, n_r, n_c = data.scores.shape
    auc = np.empty((n_t, n_r))
    jack = np.empty((n_t, n_r, n_c))
    v10: list[np.ndarray] = []
    v01: list[np.ndarray] = []
    for i in range(n_t):
        pos_idx = np.flatnonzero(data.in_treatment[i] & data.truth)
        neg_idx = np.flatnonzero(data.in_treatment[i] & ~data.truth)
        n1, n0 = len(pos_idx), len(neg_idx)
        rows = np.empty((n_r, n1))
        cols = np.empty((n_r, n0))
        for j in range(n_r):
            psi = _kernel(data.scores[i, j, pos_idx], data.scores[i, j, neg_idx])
            total = psi.sum()
            auc[i, j] = total / (n1 * n0)
            rows[j] = psi.sum(axis=1)
            cols[j] = psi.sum(axis=0)
            jack[i, j, :] = auc[i, j]
            # Leaving one case out removes its row or column of the kernel matrix.
            jack[i, j, pos_idx] = (total - rows[j]) / ((n1 - 1) * n0) if n1 > 1 else np.nan
            jack[i, j, neg_idx] = (total - cols[j]) / (n1 * (n0 - 1)) if n0 > 1 else np.nan
        v10.append(rows / n0)
        v01.append(cols / n1)
    return _AucParts(auc, jack, v10, v01)


def empirical_auc(data: MrmcData) -> np.ndarray:
    """Trapezoidal (Wilcoxon) AUC per treatment and reader, shape (I, J)."""
    return _auc_parts(data).auc


def jackknife_covariance(jack: np.ndarray) -> np.ndarray:
    """Covariance matrix of the (I*J) AUCs from leave-one-case-out AUCs of shape (I, J, K)."""
    n_c = jack.shape[2]
    flat = jack.reshape(-1, n_c)
    centred = flat - flat.mean(axis=1, keepdims=True)
    return (n_c - 1) / n_c * centred @ centred.T


def delong_covariance(parts: _AucParts) -> np.ndarray:
    """DeLong's covariance matrix of the (I*J) AUCs; needs a fully crossed design."""
    v10 = np.concatenate(parts.v10, axis=0)  # (I*J, n_pos), treatments in order
    v01 = np.concatenate(parts.v01, axis=0)
    n1, n0 = v10.shape[1], v01.shape[1]
    return np.atleast_2d(np.cov(v10)) / n1 + np.atleast_2d(np.cov(v01)) / n0


@dataclass(frozen=True)
class ErrorCovariances:
    var: float
    cov1: float | None  # same reader, different treatments (None with one treatment)
    cov2: float | None  # same treatment, different readers (None with one reader)
    cov3: float | None  # different treatments and readers

    def correlation(self, cov: float | None) -> float | None:
        return None if cov is None or self.var == 0 else cov / self.var


def average_covariances(cov: np.ndarray, n_t: int, n_r: int) -> ErrorCovariances:
    """Var, Cov1, Cov2, Cov3 as averages over the matching entries of the AUC covariance
    matrix (index i * n_r + j for treatment i and reader j)."""
    sums = {"var": [], "cov1": [], "cov2": [], "cov3": []}
    for (i, j), (i2, j2) in itertools.product(itertools.product(range(n_t), range(n_r)), repeat=2):
        value = cov[i * n_r + j, i2 * n_r + j2]
        key = (
            "var" if (i, j) == (i2, j2)
            else "cov1" if j == j2
            else "cov2" if i == i2
            else "cov3"
        )  # fmt: skip
        sums[key].append(value)

    def mean(key: str) -> float | None:
        return float(np.mean(sums[key])) if sums[key] else None

    return ErrorCovariances(float(np.mean(sums["var"])), mean("cov1"), mean("cov2"), mean("cov3"))


@dataclass(frozen=True)
class Anova:
    """Treatment x reader ANOVA of the AUCs (no replication)."""

    ss_t: float
    ss_r: float
    ss_tr: float
    df_t: int
    df_r: int
    df_tr: int

    @staticmethod
    def of(theta: np.ndarray) -> Anova:
        n_t, n_r = theta.shape
        grand = theta.mean()
        t_means, r_means = theta.mean(axis=1), theta.mean(axis=0)
        resid = theta - t_means[:, None] - r_means[None, :] + grand
        return Anova(
            ss_t=float(n_r * ((t_means - grand) ** 2).sum()),
            ss_r=float(n_t * ((r_means - grand) ** 2).sum()),
            ss_tr=float((resid**2).sum()),
            df_t=n_t - 1,
            df_r=n_r - 1,
            df_tr=(n_t - 1) * (n_r - 1),
        )

    @staticmethod
    def _ms(ss: float, df: int) -> float | None:
        return ss / df if df > 0 else None

    @property
    def ms_t(self) -> float | None:
        return self._ms(self.ss_t, self.df_t)

    @property
    def ms_r(self) -> float | None:
        return self._ms(self.ss_r, self.df_r)

    @property
    def ms_tr(self) -> float | None:
        return self._ms(self.ss_tr, self.df_tr)


@dataclass(frozen=True)
class GlobalTest:
    """Test of H0: all treatments have the same AUC."""

    statistic: float  # F, or the chi-square statistic for fixed readers
    df1: int
    df2: float | None  # None for the chi-square test
    p: float
    denominator: float  # the error term


@dataclass(frozen=True)
class Interval:
    label: str
    estimate: float
    std_err: float
    df: float | None  # None: normal distribution
    ci_low: float
    ci_high: float
    statistic: float | None = None  # t or z for differences
    p: float | None = None


@dataclass(frozen=True)
class Analysis:
    """One of the three analyses: random readers and cases, fixed readers, or fixed cases."""

    test: GlobalTest | None  # None with one treatment
    differences: list[Interval]
    treatments: list[Interval]
    reader_differences: list[Interval] = field(default_factory=list)  # fixed readers only


@dataclass(frozen=True)
class TreatmentParts:
    ms_r: float | None
    var: float
    cov2: float | None


@dataclass(frozen=True)
class ReaderParts:
    var: float
    cov1: float | None


@dataclass(frozen=True)
class ORVarianceComponents:
    var_r: float | None
    var_tr: float | None
    covariances: ErrorCovariances


@dataclass(frozen=True)
class DBMVarianceComponents:
    var_r: float
    var_c: float
    var_tr: float | None
    var_tc: float | None
    var_rc: float
    var_error: float  # Var(T*R*C) + Var(error)


@dataclass(frozen=True)
class MrmcResult:
    treatments: tuple[str, ...]
    readers: tuple[str, ...]
    n_cases: int
    n_positive: int
    n_negative: int
    factorial: bool
    covariance_method: CovarianceMethod
    alpha: float
    auc: np.ndarray  # (I, J)
    anova: Anova
    covariances: ErrorCovariances
    by_treatment: list[TreatmentParts]
    by_reader: list[ReaderParts]
    components: ORVarianceComponents
    dbm: DBMVarianceComponents | None
    rrrc: Analysis
    frrc: Analysis
    rrfc: Analysis

    @property
    def treatment_means(self) -> np.ndarray:
        return self.auc.mean(axis=1)


def _two_sided_t(stat: float, df: float) -> float:
    from scipy.stats import norm, t

    return float(2 * (norm.sf(abs(stat)) if math.isinf(df) else t.sf(abs(stat), df)))


def _quantile(alpha: float, df: float | None) -> float:
    from scipy.stats import norm, t

    if df is None or math.isinf(df):
        return float(norm.ppf(1 - alpha / 2))
    return float(t.ppf(1 - alpha / 2, df))


def _interval(
    label: str, estimate: float, var: float, df: float | None, alpha: float, test: bool
) -> Interval:
    se = math.sqrt(max(var, 0.0))
    half = _quantile(alpha, df) * se
    stat = p = None
    if test and se > 0:
        stat = estimate / se
        p = _two_sided_t(stat, math.inf if df is None else df)
    return Interval(label, estimate, se, df, estimate - half, estimate + half, stat, p)


def _satterthwaite(den: float, ms: float | None, df: int) -> float:
    """Hillis' ddf: den^2 / (ms^2 / df); infinite when the mean square is zero."""
    if ms is None or df == 0:
        return math.nan
    return math.inf if ms == 0 else den**2 / (ms**2 / df)


def _pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(len(names)), 2))


def _per_treatment(cov: np.ndarray, theta: np.ndarray) -> list[TreatmentParts]:
    n_t, n_r = theta.shape
    out = []
    for i in range(n_t):
        block = cov[i * n_r : (i + 1) * n_r, i * n_r : (i + 1) * n_r]
        off = block[~np.eye(n_r, dtype=bool)]
        ms_r = float(theta[i].var(ddof=1)) if n_r > 1 else None
        out.append(
            TreatmentParts(
                ms_r, float(np.diag(block).mean()), float(off.mean()) if n_r > 1 else None
            )
        )
    return out


def _per_reader(cov: np.ndarray, n_t: int, n_r: int) -> list[ReaderParts]:
    out = []
    for j in range(n_r):
        idx = [i * n_r + j for i in range(n_t)]
        block = cov[np.ix_(idx, idx)]
        off = block[~np.eye(n_t, dtype=bool)]
        out.append(
            ReaderParts(float(np.diag(block).mean()), float(off.mean()) if n_t > 1 else None)
        )
    return out


def _rrrc(
    data: MrmcData, theta: np.ndarray, anova: Anova, c: ErrorCovariances,
    per_t: list[TreatmentParts], alpha: float,
) -> Analysis:  # fmt: skip
    from scipy.stats import f

    n_t, n_r = theta.shape
    means = theta.mean(axis=1)
    test = None
    differences: list[Interval] = []
    if n_t > 1 and n_r > 1:
        den = anova.ms_tr + n_r * max((c.cov2 or 0.0) - (c.cov3 or 0.0), 0.0)
        ddf = _satterthwaite(den, anova.ms_tr, anova.df_tr)
        stat = anova.ms_t / den
        test = GlobalTest(stat, anova.df_t, ddf, float(f.sf(stat, anova.df_t, ddf)), den)
        differences = [
            _interval(f"{data.treatments[a]} - {data.treatments[b]}", means[a] - means[b],
                      2 / n_r * den, ddf, alpha, test=True)
            for a, b in _pairs(data.treatments)
        ]  # fmt: skip
    singles = []
    for i, part in enumerate(per_t):
        if part.ms_r is None:
            continue
        den_i = part.ms_r + n_r * max(part.cov2 or 0.0, 0.0)
        df_i = _satterthwaite(den_i, part.ms_r, n_r - 1)
        singles.append(_interval(data.treatments[i], means[i], den_i / n_r, df_i, alpha, False))
    return Analysis(test, differences, singles)


def _frrc(
    data: MrmcData, theta: np.ndarray, anova: Anova, c: ErrorCovariances,
    per_t: list[TreatmentParts], per_r: list[ReaderParts], alpha: float,
) -> Analysis:  # fmt: skip
    from scipy.stats import chi2

    n_t, n_r = theta.shape
    means = theta.mean(axis=1)
    test = None
    differences: list[Interval] = []
    reader_diffs: list[Interval] = []
    if n_t > 1:
        den = c.var - c.cov1 + (n_r - 1) * max((c.cov2 or 0.0) - (c.cov3 or 0.0), 0.0)
        stat = anova.df_t * anova.ms_t / den
        test = GlobalTest(stat, anova.df_t, None, float(chi2.sf(stat, anova.df_t)), den)
        differences = [
            _interval(f"{data.treatments[a]} - {data.treatments[b]}", means[a] - means[b],
                      2 / n_r * den, None, alpha, test=True)
            for a, b in _pairs(data.treatments)
        ]  # fmt: skip
        for j, part in enumerate(per_r):
            for a, b in _pairs(data.treatments):
                reader_diffs.append(
                    _interval(
                        f"{data.readers[j]}: {data.treatments[a]} - {data.treatments[b]}",
                        theta[a, j] - theta[b, j],
                        2 * (part.var - part.cov1),
                        None,
                        alpha,
                        test=True,
                    )
                )
    singles = [
        _interval(data.treatments[i], means[i],
                  (part.var + (n_r - 1) * max(part.cov2 or 0.0, 0.0)) / n_r, None, alpha, False)
        for i, part in enumerate(per_t)
    ]  # fmt: skip
    return Analysis(test, differences, singles, reader_diffs)


def _rrfc(
    data: MrmcData, theta: np.ndarray, anova: Anova, per_t: list[TreatmentParts], alpha: float
) -> Analysis:
    from scipy.stats import f

    n_t, n_r = theta.shape
    means = theta.mean(axis=1)
    test = None
    differences: list[Interval] = []
    if n_t > 1 and n_r > 1:
        stat = anova.ms_t / anova.ms_tr if anova.ms_tr else math.inf
        test = GlobalTest(stat, anova.df_t, float(anova.df_tr),
                          float(f.sf(stat, anova.df_t, anova.df_tr)), anova.ms_tr)  # fmt: skip
        differences = [
            _interval(f"{data.treatments[a]} - {data.treatments[b]}", means[a] - means[b],
                      2 / n_r * anova.ms_tr, float(anova.df_tr), alpha, test=True)
            for a, b in _pairs(data.treatments)
        ]  # fmt: skip
    singles = [
        _interval(data.treatments[i], means[i], part.ms_r / n_r, float(n_r - 1), alpha, False)
        for i, part in enumerate(per_t)
        if part.ms_r is not None
    ]
    return Analysis(test, differences, singles)


def or_components(anova: Anova, c: ErrorCovariances, n_t: int) -> ORVarianceComponents:
    """Var(R) and Var(T*R) from the expected mean squares of the OR model (ANOVA estimates,
    which can be negative)."""
    cov1, cov2, cov3 = c.cov1 or 0.0, c.cov2 or 0.0, c.cov3 or 0.0
    var_r = var_tr = None
    if anova.ms_tr is not None:
        # E[MS(T*R)] = Var(T*R) + Var - Cov1 - Cov2 + Cov3
        var_tr = anova.ms_tr - c.var + cov1 + cov2 - cov3
    if anova.ms_r is not None:
        # E[MS(R)] = t Var(R) + Var(T*R) + Var + (t-1) Cov1 - Cov2 - (t-1) Cov3
        var_r = (
            anova.ms_r - (var_tr or 0.0) - c.var - (n_t - 1) * cov1 + cov2 + (n_t - 1) * cov3
        ) / n_t
    return ORVarianceComponents(var_r, var_tr, c)


def dbm_components(jack: np.ndarray, theta: np.ndarray) -> DBMVarianceComponents:
    """Variance components of the DBM model from the ANOVA of jackknife pseudovalues
    Y_ijk = K * AUC_ij - (K - 1) * AUC_ij(k); a fully crossed design is required."""
    n_t, n_r, n_c = jack.shape
    y = n_c * theta[:, :, None] - (n_c - 1) * jack
    grand = y.mean()
    m_t, m_r, m_c = y.mean(axis=(1, 2)), y.mean(axis=(0, 2)), y.mean(axis=(0, 1))
    m_tr, m_tc, m_rc = y.mean(axis=2), y.mean(axis=1), y.mean(axis=0)
    ms_r = n_t * n_c * ((m_r - grand) ** 2).sum() / (n_r - 1)
    ms_c = n_t * n_r * ((m_c - grand) ** 2).sum() / (n_c - 1)
    rc = m_rc - m_r[:, None] - m_c[None, :] + grand
    if n_t == 1:
        ms_rc = (rc**2).sum() / ((n_r - 1) * (n_c - 1))
        return DBMVarianceComponents(
            var_r=float((ms_r - ms_rc) / n_c), var_c=float((ms_c - ms_rc) / n_r),
            var_tr=None, var_tc=None, var_rc=float(ms_rc), var_error=float(ms_rc),
        )  # fmt: skip
    ms_rc = n_t * (rc**2).sum() / ((n_r - 1) * (n_c - 1))
    tr = m_tr - m_t[:, None] - m_r[None, :] + grand
    tc = m_tc - m_t[:, None] - m_c[None, :] + grand
    ms_tr = n_c * (tr**2).sum() / ((n_t - 1) * (n_r - 1))
    ms_tc = n_r * (tc**2).sum() / ((n_t - 1) * (n_c - 1))
    trc = (
        y - m_tr[:, :, None] - m_tc[:, None, :] - m_rc[None, :, :]
        + m_t[:, None, None] + m_r[None, :, None] + m_c[None, None, :] - grand
    )  # fmt: skip
    ms_trc = (trc**2).sum() / ((n_t - 1) * (n_r - 1) * (n_c - 1))
    return DBMVarianceComponents(
        var_r=float((ms_r - ms_tr - ms_rc + ms_trc) / (n_t * n_c)),
        var_c=float((ms_c - ms_tc - ms_rc + ms_trc) / (n_t * n_r)),
        var_tr=float((ms_tr - ms_trc) / n_c),
        var_tc=float((ms_tc - ms_trc) / n_r),
        var_rc=float((ms_rc - ms_trc) / n_t),
        var_error=float(ms_trc),
    )


def or_analysis(
    data: MrmcData, *, covariance: CovarianceMethod = "jackknife", alpha: float = 0.05
) -> MrmcResult:
    """The full OR analysis of ``data`` at confidence level 1 - alpha."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    n_t, n_r, n_c = data.scores.shape
    parts = _auc_parts(data)
    theta = parts.auc
    if covariance == "jackknife":
        if np.isnan(parts.jackknife).any():
            raise ValueError("the jackknife needs at least two positive and two negative cases")
        cov = jackknife_covariance(parts.jackknife)
    elif covariance == "DeLong":
        if not data.factorial:
            raise ValueError("DeLong covariances need a fully crossed design; use the jackknife")
        cov = delong_covariance(parts)
    else:
        raise ValueError(f"unknown covariance method {covariance!r}")
    c = average_covariances(cov, n_t, n_r)
    anova = Anova.of(theta)
    per_t = _per_treatment(cov, theta)
    per_r = _per_reader(cov, n_t, n_r)
    dbm = (
        dbm_components(parts.jackknife, theta)
        if covariance == "jackknife" and data.factorial and n_r > 1
        else None
    )
    return MrmcResult(
        treatments=data.treatments,
        readers=data.readers,
        n_cases=n_c,
        n_positive=int(data.truth.sum()),
        n_negative=int((~data.truth).sum()),
        factorial=data.factorial,
        covariance_method=covariance,
        alpha=alpha,
        auc=theta,
        anova=anova,
        covariances=c,
        by_treatment=per_t,
        by_reader=per_r,
        components=or_components(anova, c, n_t),
        dbm=dbm,
        rrrc=_rrrc(data, theta, anova, c, per_t, alpha),
        frrc=_frrc(data, theta, anova, c, per_t, per_r, alpha),
        rrfc=_rrfc(data, theta, anova, per_t, alpha),
    )
