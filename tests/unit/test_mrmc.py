"""OR/Hillis MRMC analysis and sample size against independent published outputs.

Data: the Van Dyke et al. (1993) study, tests/data/VanDyke.imrmc (provenance in
tests/data/README.md). References, compared to the precision they print:

- IOWA: OR-DBM MRMC 2.51, trapezoidal-area jackknife analysis of VanDyke.lrc (RJafroc
  inst/Iowa/VanDyke.txt); IOWA_1T: the same for treatment 1 alone (inst/Iowa/VanDyke1T.txt).
  Printed to 8 decimals: compared to 1e-8 (half a unit of the last digit).
- MRMCAOV: MRMCaov README, jackknife, 10 significant digits; MRMCAOV_DELONG: MRMCaov JSS
  manuscript (docs/jss/MRMCaov.tex), DeLong covariances.
- RJAFROC: RJafroc tests/testthat/test-SsSampleSizeRoc.R, SsPowerGivenJK / SsSampleSizeKGivenJ
  on dataset02 (the same data), checked there to 1e-8.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from app.domain.imrmc_format import mrmc_data, parse_imrmc
from app.domain.mrmc import MrmcData, or_analysis
from app.domain.mrmc_power import (
    DegeneratePilotError,
    PilotComponents,
    cases_for_power,
    mrmc_power,
    pilot_from,
)

DATA = Path(__file__).parent.parent / "data" / "VanDyke.imrmc"
IOWA = 1e-8  # half a unit in the 8th decimal the Iowa software prints


@pytest.fixture(scope="module")
def vandyke() -> MrmcData:
    parsed = parse_imrmc(DATA.read_text())
    assert parsed.ok, parsed.errors
    return mrmc_data(parsed)


@pytest.fixture(scope="module")
def jack(vandyke: MrmcData):  # type: ignore[no-untyped-def]
    return or_analysis(vandyke)


def close(actual: float | None, expected: float, tol: float = IOWA) -> bool:
    return actual is not None and abs(actual - expected) <= tol


def test_design_of_the_reference_data(vandyke: MrmcData) -> None:
    assert vandyke.treatments == ("0", "1") and len(vandyke.readers) == 5
    assert len(vandyke.cases) == 114 and vandyke.factorial
    assert int(vandyke.truth.sum()) == 45 and int((~vandyke.truth).sum()) == 69


def test_reader_aucs_and_means_match_iowa(jack) -> None:  # type: ignore[no-untyped-def]
    # IOWA "TREATMENT x READER AUC ESTIMATES", means and mean difference.
    expected = [
        [0.91964573, 0.85877617, 0.90386473, 0.97310789, 0.82979066],
        [0.94782609, 0.90531401, 0.92173913, 0.99935588, 0.92995169],
    ]
    assert np.allclose(jack.auc, expected, rtol=0, atol=IOWA)
    assert np.allclose(jack.treatment_means, [0.89703704, 0.94083736], rtol=0, atol=IOWA)
    assert close(jack.rrrc.differences[0].estimate, -0.04380032)


def test_anova_matches_iowa(jack) -> None:  # type: ignore[no-untyped-def]
    a = jack.anova
    assert close(a.ss_t, 0.00479617) and close(a.ss_r, 0.01534480) and close(a.ss_tr, 0.00220412)
    assert close(a.ms_t, 0.00479617) and close(a.ms_r, 0.00383620) and close(a.ms_tr, 0.00055103)
    assert (a.df_t, a.df_r, a.df_tr) == (1, 4, 4)
    # Reader ANOVA for each treatment.
    assert close(jack.by_treatment[0].ms_r, 0.00308263)
    assert close(jack.by_treatment[1].ms_r, 0.00130460)


def test_or_variance_components_and_correlations_match_iowa(jack) -> None:  # type: ignore[no-untyped-def]
    c, comp = jack.covariances, jack.components
    assert close(comp.var_r, 0.00153500) and close(comp.var_tr, 0.00020040)
    assert close(c.cov1, 0.00034661) and close(c.correlation(c.cov1), 0.43203138)
    assert close(c.cov2, 0.00034407) and close(c.correlation(c.cov2), 0.42886683)
    assert close(c.cov3, 0.00023903) and close(c.correlation(c.cov3), 0.29793328)
    assert close(c.var, 0.00080229)
    # MRMCaov prints ten significant digits of the same jackknife estimates.
    for actual, expected in [(comp.var_r, 0.0015349993), (comp.var_tr, 0.0002004025),
                             (c.var, 0.0008022883), (c.cov1, 0.0003466137),
                             (c.cov2, 0.0003440748), (c.cov3, 0.0002390284)]:  # fmt: skip
        assert close(actual, expected, 1e-10)


def test_dbm_variance_components_match_iowa(jack) -> None:  # type: ignore[no-untyped-def]
    d = jack.dbm
    assert d is not None
    assert close(d.var_r, 0.00153500) and close(d.var_c, 0.02724923)
    assert close(d.var_tr, 0.00020040) and close(d.var_tc, 0.01197530)
    assert close(d.var_rc, 0.01226473) and close(d.var_error, 0.03997160)


def test_random_readers_random_cases_match_iowa_and_mrmcaov(jack) -> None:  # type: ignore[no-untyped-def]
    t = jack.rrrc.test
    # IOWA: F 4.46, ddf 15.26, p 0.0517, error term 0.00107626; MRMCaov to more digits.
    assert close(t.denominator, 0.00107626) and close(t.denominator, 0.001076263, 1e-9)
    assert close(t.statistic, 4.456319, 1e-6) and close(t.df2, 15.25967, 1e-5)
    assert close(t.p, 0.05166569, 1e-8)
    diff = jack.rrrc.differences[0]
    assert close(diff.std_err, 0.02074862, 1e-8) and close(diff.statistic, -2.110999, 1e-6)
    assert close(diff.ci_low, -0.0879594986, 1e-10) and close(diff.ci_high, 0.0003588544, 1e-10)
    assert close(diff.p, 0.05166569, 1e-8)
    # Single-treatment intervals (IOWA part c, ddf_H_single).
    one, two = jack.rrrc.treatments
    assert close(one.std_err, 0.03317360) and close(one.df, 12.74465, 1e-5)
    assert close(one.ci_low, 0.82522360) and close(one.ci_high, 0.96885048)
    assert close(two.std_err, 0.02156637) and close(two.df, 12.71019, 1e-5)
    assert close(two.ci_low, 0.89413783) and close(two.ci_high, 0.98753689)
    assert close(jack.by_treatment[0].cov2, 0.00048396)
    assert close(jack.by_treatment[1].cov2, 0.00020419)


def test_fixed_readers_random_cases_match_iowa(jack) -> None:  # type: ignore[no-untyped-def]
    t = jack.frrc.test
    assert close(t.statistic, 5.47595, 5e-6) and t.df1 == 1 and close(t.p, 0.0193, 5e-5)
    diff = jack.frrc.differences[0]
    assert close(diff.std_err, 0.01872, 5e-6) and close(diff.statistic, -2.34, 5e-3)
    assert close(diff.ci_low, -0.08049, 5e-6) and close(diff.ci_high, -0.00711, 5e-6)
    one, two = jack.frrc.treatments
    assert close(one.std_err, 0.02428971) and close(one.ci_low, 0.84943008)
    assert close(one.ci_high, 0.94464399)
    assert close(two.std_err, 0.01677632) and close(two.ci_low, 0.90795637)
    assert close(two.ci_high, 0.97371835)
    assert close(jack.by_treatment[0].var, 0.00101410)
    assert close(jack.by_treatment[1].var, 0.00059047)
    # Part d: each reader's difference, its Var(error) and Cov1.
    readers = [(0.00069890, 0.00037347, -0.02818, 0.02551, 0.2693, -0.07818, 0.02182),
               (0.00110605, 0.00076016, -0.04654, 0.02630, 0.0768, -0.09809, 0.00501),
               (0.00084234, 0.00035532, -0.01787, 0.03121, 0.5668, -0.07904, 0.04330),
               (0.00015058, 0.00000108, -0.02625, 0.01729, 0.1290, -0.06014, 0.00764),
               (0.00121357, 0.00024304, -0.10016, 0.04406, 0.0230, -0.18651, -0.01381)]  # fmt: skip
    for part, iv, (var, cov1, est, se, p, low, high) in zip(
        jack.by_reader, jack.frrc.reader_differences, readers, strict=True
    ):
        assert close(part.var, var) and close(part.cov1, cov1)
        assert close(iv.estimate, est, 5e-6) and close(iv.std_err, se, 5e-6)
        assert (
            close(iv.p, p, 5e-5) and close(iv.ci_low, low, 5e-6) and close(iv.ci_high, high, 5e-6)
        )


def test_random_readers_fixed_cases_match_iowa(jack) -> None:  # type: ignore[no-untyped-def]
    t = jack.rrfc.test
    assert close(t.statistic, 8.70, 5e-3) and t.df2 == 4 and close(t.p, 0.0420, 5e-5)
    diff = jack.rrfc.differences[0]
    assert close(diff.std_err, 0.01485, 5e-6) and close(diff.statistic, -2.95, 5e-3)
    assert close(diff.ci_low, -0.08502, 5e-6) and close(diff.ci_high, -0.00258, 5e-6)
    one, two = jack.rrfc.treatments
    assert close(one.std_err, 0.02482994) and close(one.ci_low, 0.82809808)
    assert close(one.ci_high, 0.96597599) and one.df == 4
    assert close(two.std_err, 0.01615303) and close(two.ci_low, 0.89598936)
    assert close(two.ci_high, 0.98568536)


def test_single_treatment_matches_iowa_one_treatment_run(vandyke: MrmcData) -> None:
    # IOWA_1T: treatment 1 of the Van Dyke data analysed on its own.
    one = MrmcData(vandyke.treatments[:1], vandyke.readers, vandyke.cases, vandyke.truth,
                   vandyke.scores[:1])  # fmt: skip
    result = or_analysis(one)
    assert result.rrrc.test is None and result.frrc.test is None
    assert close(result.anova.ss_r, 0.01233051) and close(result.anova.ms_r, 0.00308263)
    assert close(result.covariances.var, 0.00101410)
    assert close(result.covariances.cov2, 0.00048396)
    assert close(result.covariances.correlation(result.covariances.cov2), 0.47723151)
    (rrrc,) = result.rrrc.treatments
    assert close(rrrc.std_err, 0.03317360) and close(rrrc.ci_low, 0.82522360)
    assert close(rrrc.ci_high, 0.96885048) and close(rrrc.df, 12.74, 5e-3)
    (frrc,) = result.frrc.treatments
    assert close(frrc.std_err, 0.02428971) and close(frrc.ci_low, 0.84943008)
    per_reader = [0.00090755, 0.00132316, 0.00079859, 0.00030064, 0.00174057]
    assert all(close(p.var, v) for p, v in zip(result.by_reader, per_reader, strict=True))


def test_delong_covariances_match_mrmcaov(vandyke: MrmcData) -> None:
    result = or_analysis(vandyke, covariance="DeLong")
    c, comp = result.covariances, result.components
    for actual, expected in [(comp.var_r, 0.0015364254), (comp.var_tr, 0.0002045840),
                             (c.var, 0.0007921325), (c.cov1, 0.0003420090),
                             (c.cov2, 0.0003395265), (c.cov3, 0.0002358497)]:  # fmt: skip
        assert close(actual, expected, 1e-10)
    assert close(c.correlation(c.cov1), 0.4317573, 1e-7)
    t = result.rrrc.test
    assert close(t.denominator, 0.001069415, 1e-9) and close(t.statistic, 4.484854, 1e-6)
    assert close(t.df2, 15.06611, 1e-5) and close(t.p, 0.05123303, 1e-8)
    diff = result.rrrc.differences[0]
    assert close(diff.std_err, 0.0206825, 1e-7)
    assert close(diff.ci_low, -0.0878671960, 1e-10) and close(diff.ci_high, 0.0002665519, 1e-10)
    one, two = result.rrrc.treatments
    assert close(result.by_treatment[0].cov2, 0.0004775239, 1e-10)
    assert close(one.std_err, 0.03307642, 1e-8) and close(one.df, 12.59597, 1e-5)
    assert close(one.ci_low, 0.8253461, 1e-7) and close(two.ci_high, 0.9874592, 1e-7)
    assert result.dbm is None  # DBM pseudovalues are a jackknife construction


def test_delong_refuses_a_design_that_is_not_fully_crossed(vandyke: MrmcData) -> None:
    nested = vandyke.in_treatment.copy()
    nested[1, np.flatnonzero(vandyke.truth)[:3]] = False
    scores = vandyke.scores.copy()
    scores[~np.broadcast_to(nested[:, None, :], scores.shape)] = np.nan
    data = MrmcData(vandyke.treatments, vandyke.readers, vandyke.cases, vandyke.truth, scores,
                    nested)  # fmt: skip
    assert not data.factorial
    with pytest.raises(ValueError, match="fully crossed"):
        or_analysis(data, covariance="DeLong")
    # The jackknife handles cases nested in treatments; treatment 0 is untouched by it.
    result = or_analysis(data)
    assert close(result.auc[0, 0], 0.91964573) and result.dbm is None
    assert result.rrrc.test is not None and 0 < result.rrrc.test.p < 1


def test_missing_rating_in_a_treatment_is_refused(vandyke: MrmcData) -> None:
    scores = vandyke.scores.copy()
    scores[0, 2, 5] = np.nan
    with pytest.raises(ValueError, match="every reader must rate"):
        MrmcData(vandyke.treatments, vandyke.readers, vandyke.cases, vandyke.truth, scores,
                 vandyke.in_treatment)  # fmt: skip


# --- sample size ------------------------------------------------------------------------------

EFFECT = -0.043800322  # RJafroc's effectSize argument, the observed difference


def test_power_matches_rjafroc(jack) -> None:  # type: ignore[no-untyped-def]
    pilot = pilot_from(jack)
    assert pilot.cases == 114
    rrrc = mrmc_power(pilot, readers=10, cases=165, effect=EFFECT)
    frrc = mrmc_power(pilot, readers=10, cases=131, effect=EFFECT, analysis="FRRC")
    rrfc = mrmc_power(pilot, readers=10, cases=53, effect=EFFECT, analysis="RRFC")
    assert close(rrrc.power, 0.80541995, 1e-8)
    assert close(frrc.power, 0.80091813, 1e-8) and frrc.ddf is None
    assert close(rrfc.power, 0.80496663, 1e-8) and rrfc.ddf == 9
    observed = float(jack.treatment_means[0] - jack.treatment_means[1])
    assert close(mrmc_power(pilot, readers=6, cases=111, effect=observed).power, 0.5526116, 5e-8)


def test_cases_for_power_matches_rjafroc(jack) -> None:  # type: ignore[no-untyped-def]
    observed = float(jack.treatment_means[0] - jack.treatment_means[1])
    plan = cases_for_power(pilot_from(jack), readers=6, effect=observed, power=0.8)
    assert plan is not None and plan.cases == 251 and plan.power > 0.8
    below = mrmc_power(pilot_from(jack), readers=6, cases=250, effect=observed)
    assert below.power <= 0.8
    # Two readers cannot overcome the reader variability: no number of cases is enough.
    assert cases_for_power(pilot_from(jack), readers=2, effect=0.01) is None


def test_one_treatment_power_against_a_simulation_of_the_or_model() -> None:
    """No published reference sizes a one-treatment study, so the formula is checked against
    a simulation (fixed seed) of the OR model: reader AUCs theta_j = mu + R_j + e_j with
    Var(R), and errors of variance Var and covariance Cov2 scaled by K*/K; the test statistic
    is the Hillis single-treatment t with the true Cov2, as the analysis uses its estimate."""
    pilot = PilotComponents(cases=114, var=0.0010141, cov1=None, cov2=0.00048396, cov3=None,
                            var_tr=None, var_r=0.0025525)  # fmt: skip
    readers, cases, effect = 8, 200, 0.06
    predicted = mrmc_power(pilot, readers=readers, cases=cases, effect=effect)
    from scipy.stats import t as t_dist

    rng = np.random.default_rng(20240611)
    scale = pilot.cases / cases
    cov = scale * (
        np.full((readers, readers), pilot.cov2) + np.eye(readers) * (pilot.var - pilot.cov2)
    )
    n_sim = 20000
    theta = (
        effect
        + rng.normal(0, math.sqrt(pilot.var_r), (n_sim, readers))
        + rng.multivariate_normal(np.zeros(readers), cov, n_sim)
    )
    ms_r = theta.var(axis=1, ddof=1)
    den = ms_r + readers * scale * pilot.cov2
    stat = theta.mean(axis=1) / np.sqrt(den / readers)
    ddf = den**2 / (ms_r**2 / (readers - 1))
    simulated = float(np.mean(np.abs(stat) > t_dist.ppf(0.975, ddf)))
    # Monte Carlo standard error is about 0.0035 at this power.
    assert abs(simulated - predicted.power) < 0.02, (simulated, predicted.power)
    assert 0.3 < predicted.power < 0.95


@pytest.mark.parametrize("analysis", ["RRRC", "FRRC", "RRFC"])
def test_a_pilot_without_variability_sizes_nothing(analysis: str) -> None:
    # Every reader gave every case the same score: all components are 0 (found by the API
    # fuzzer as a ZeroDivisionError on the results page).
    flat = PilotComponents(cases=20, var=0.0, cov1=0.0, cov2=0.0, cov3=0.0, var_tr=0.0)
    with pytest.raises(DegeneratePilotError):
        mrmc_power(flat, readers=5, cases=100, effect=0.05, analysis=analysis)  # type: ignore[arg-type]
    with pytest.raises(DegeneratePilotError):
        cases_for_power(flat, readers=5, effect=0.05, analysis=analysis)  # type: ignore[arg-type]
