"""What the results page shows, built from a study's ratings and answer rows.

The statistics themselves come from app.domain.statistics; this module only arranges them:
plot geometry for server-rendered SVG (no JavaScript), the fooling gallery, searchable reasons,
the answer-time histogram and the sample-size planner. ``statistics_for`` is the one place the
web page, stats.json and the CLI get their numbers from.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np
from sqlalchemy.orm import Session

from app.domain.checked_first import checked_first
from app.domain.mrmc_design import mrmc_section
from app.domain.power import StudyPlan, plan_study
from app.domain.statistics import (
    BinomialAlternative,
    Rating,
    UncertainPolicy,
    study_statistics,
)
from app.models import Study, StudyKind
from app.studies.answer_log import (
    Reason,
    StudyReading,
    imported_reading,
    is_incremental,
    read_answers,
)
from app.studies.blinding_gate import methods_line
from app.studies.design import load_design
from app.studies.ratings import ImageRef, image_refs, natural_key
from app.studies.results_cache import (
    cached_by_study_state,
    cached_for_state,
    study_state,
    update_latest,
)
from app.web.charts import label_width, short_label

T = TypeVar("T")

POLICIES: tuple[UncertainPolicy, ...] = ("wrong", "excluded")
POLICY_TITLES = {"wrong": "'uncertain' counts as wrong", "excluded": "'uncertain' left out"}
GALLERY_SIZE = 30
REASONS_SHOWN = 50
PLANNED_POWER = 0.8
# Candidate histogram bin widths in seconds: round numbers a reader of the plot can add up.
_NICE_WIDTHS_S = (0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)


def study_options(study: Study) -> tuple[UncertainPolicy, float]:
    """The pre-registered uncertain policy and equivalence margin of a study."""
    reading = load_design(study.design or {}).reading
    return reading.uncertain_policy, reading.margin


def study_alternative(study: Study) -> BinomialAlternative:
    """The binomial test a study pre-registered: two-sided unless it chose one-sided."""
    return load_design(study.design or {}).reading.binomial_alternative


def resolve_policy(study: Study, requested: str | None) -> UncertainPolicy:
    if requested in POLICIES:
        return requested  # type: ignore[return-value]
    return study_options(study)[0]


# Cached per study state (app/studies/results_cache.py): a results page of 20 readers x 500
# images took about 2 s, most of it here; any new answer changes the key.
@cached_by_study_state
def statistics_for(
    db: Session, study: Study, policy: UncertainPolicy | None = None
) -> tuple[list[Rating], dict[str, Any]]:
    """The study's ratings and study_statistics() under ``policy`` (default: the study's)."""
    preregistered, margin = study_options(study)
    reading = _reading(db, study)
    ratings = reading.ratings
    stats = study_statistics(
        ratings,
        policy=policy or preregistered,
        margin=margin,
        alternative=study_alternative(study),
        first=reading.first,
    )
    # Multi-reader multi-case ROC analysis of the confidence ratings (independent of policy).
    stats["mrmc"] = mrmc_section(reading.first)
    blinding = methods_line(study)
    if blinding:
        # The methods travel with the results page and stats.json, so the gate's verdict and
        # any reason to open the study anyway do too.
        stats["methods"]["blinding"] = blinding
    return ratings, stats


# --- plots ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlotRow:
    label: str
    n: int
    estimate: float | None
    low: float | None
    high: float | None
    y: float
    x: float | None
    x_low: float | None
    x_high: float | None
    pooled: bool = False

    @property
    def short_label(self) -> str:
        return short_label(self.label)


@dataclass(frozen=True)
class ForestPlot:
    """Estimates with 95% intervals on a fixed 0..1 axis, chance line and equivalence band."""

    title: str
    x_label: str
    width: int
    height: int
    left: int
    right: int
    top: int
    axis_y: float
    rows: list[PlotRow]
    ticks: list[tuple[float, str]]
    chance_x: float
    band: tuple[float, float]
    band_label: str


_ROW_H = 24
_TOP = 12
_LEFT = 120  # at least: the label column grows with the longest label ("ca-baseline-128px")
_SPAN = 490  # the 0..1 axis, the same in every plot
_RIGHT_TEXT = 110  # room for "0.625 (n=40)" right of the plot


def _px(p: float, left: int = _LEFT) -> float:
    return left + p * _SPAN


def _x(p: float | None, left: int = _LEFT) -> float | None:
    return None if p is None else _px(p, left)


# label, n, estimate, 95% low, 95% high, pooled
Estimate = tuple[str, int, float | None, float | None, float | None, bool]


def forest_plot(
    items: Sequence[Estimate], *, title: str, x_label: str, margin: float
) -> ForestPlot:
    """One row per estimate, on a fixed 0..1 axis so plots of different studies compare."""
    left = max(_LEFT, label_width(item[0] for item in items))
    rows = [
        PlotRow(label, n, est, low, high, _TOP + (i + 0.5) * _ROW_H, _x(est, left),
                _x(low, left), _x(high, left), pooled)
        for i, (label, n, est, low, high, pooled) in enumerate(items)
    ]  # fmt: skip
    axis_y = _TOP + max(len(rows), 1) * _ROW_H + 4
    return ForestPlot(
        title=title,
        x_label=x_label,
        width=left + _SPAN + _RIGHT_TEXT,
        height=int(axis_y + 44),
        left=left,
        right=int(_px(1.0, left)),
        top=_TOP,
        axis_y=axis_y,
        rows=rows,
        ticks=[(_px(t / 10, left), f"{t / 10:.1f}") for t in range(0, 11, 2)],
        chance_x=_px(0.5, left),
        band=(_px(0.5 - margin, left), _px(0.5 + margin, left)),
        band_label=f"equivalence margin {0.5 - margin:.2f}-{0.5 + margin:.2f}",
    )


def reader_plot(stats: Mapping[str, Any]) -> ForestPlot:
    readers = stats["readers"]
    items: list[Estimate] = [
        (r["reader"], r["n"], r["accuracy"], r["wilson_low"], r["wilson_high"], False)
        for r in readers
    ]
    pooled = stats["pooled"]
    if pooled["accuracy"] is not None:
        n = sum(r["n"] for r in readers)
        items.append(("pooled", n, pooled["accuracy"], pooled["ci_low"], pooled["ci_high"], True))
    return forest_plot(
        items,
        title="Accuracy per reader with Wilson 95% interval (pooled: 95% interval for readers "
        "and images)",
        x_label="accuracy (proportion of answers correct)",
        margin=stats["margin"],
    )


def source_plot(stats: Mapping[str, Any]) -> ForestPlot | None:
    if not stats["by_source"]:
        return None
    items: list[Estimate] = [
        (name, s["n"], s["accuracy"], s["ci_low"], s["ci_high"], False)
        for name, s in stats["by_source"].items()
    ]
    return forest_plot(
        items,
        title="Synthetic images detected, per source, with 95% interval for readers and images",
        x_label="share of synthetic images called fake (proportion)",
        margin=stats["margin"],
    )


# --- answer times -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HistogramBin:
    label: str
    count: int
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class TimeHistogram:
    n: int
    median_s: float
    bin_width_s: float
    bins: list[HistogramBin]
    width: int
    height: int
    left: int
    bottom: float
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    x_label: str = "answer time (seconds, from image shown to answer)"
    y_label: str = "answers"


def _nice_width(span_s: float, target_bins: int = 12) -> float:
    raw = span_s / target_bins
    return next((w for w in _NICE_WIDTHS_S if w >= raw), _NICE_WIDTHS_S[-1])


def answer_time_histogram(durations_ms: Iterable[int | None]) -> TimeHistogram | None:
    """Histogram of answer times in seconds; times past the 95th percentile share one bin, so a
    reader who left for coffee does not squash every other bar."""
    seconds = np.array([d / 1000 for d in durations_ms if d is not None and d >= 0], dtype=float)
    if seconds.size == 0:
        return None
    p95 = float(np.percentile(seconds, 95))
    width = _nice_width(max(p95, 1e-9))
    n_regular = max(1, math.ceil(p95 / width))
    cap = n_regular * width
    counts, _ = np.histogram(seconds, bins=n_regular, range=(0.0, cap))
    # np.histogram drops values above the range: those go to the open-ended last bin.
    overflow = int(np.count_nonzero(seconds > cap))
    labels = [f"{i * width:g}-{(i + 1) * width:g} s" for i in range(n_regular)]
    values = [int(c) for c in counts]
    if overflow:
        labels.append(f"> {cap:g} s")
        values.append(overflow)
    plot_w, plot_h, left, top = 560, 180, 48, 10
    bar_w = plot_w / len(values)
    top_count = max(max(values), 1)
    bottom = top + plot_h
    bins = [
        HistogramBin(
            label=label,
            count=count,
            x=left + i * bar_w + 1,
            y=bottom - plot_h * count / top_count,
            w=max(bar_w - 2, 1),
            h=plot_h * count / top_count,
        )
        for i, (label, count) in enumerate(zip(labels, values, strict=True))
    ]
    step = max(1, math.ceil(len(values) / 8))
    x_ticks = [(left + i * bar_w, f"{i * width:g}") for i in range(0, n_regular + 1, step)]
    y_ticks = [
        (bottom - plot_h * c / top_count, str(c)) for c in sorted({0, top_count // 2, top_count})
    ]
    return TimeHistogram(
        n=int(seconds.size),
        median_s=float(np.median(seconds)),
        bin_width_s=width,
        bins=bins,
        width=left + plot_w + 20,
        height=int(bottom + 44),
        left=left,
        bottom=bottom,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
    )


# --- gallery and reasons ----------------------------------------------------------------------


@dataclass(frozen=True)
class GalleryItem:
    image: str
    fooling_rate: float
    n_readers: int
    n_fooled: int
    ref: ImageRef | None  # None for imported studies: there is no file to show


def fooling_gallery(
    ratings: Sequence[Rating], stats: Mapping[str, Any], refs: Mapping[str, ImageRef]
) -> list[GalleryItem]:
    """Synthetic images, the most convincing first (share of readers who called them real)."""
    readers = Counter(r.image for r in checked_first(ratings) if r.truth == "fake")
    items = [
        GalleryItem(
            image=image,
            fooling_rate=rate,
            n_readers=readers[image],
            n_fooled=round(rate * readers[image]),
            ref=refs.get(image),
        )
        for image, rate in stats["fooling_rates"].items()
    ]
    return sorted(items, key=lambda g: (-g.fooling_rate, -g.n_readers, natural_key(g.image)))


def reasons_from(rows: Iterable[Mapping[str, Any]]) -> list[Reason]:
    return [
        Reason(r["reader"], r["image"], r["truth"], r["answer"], r["reason"])
        for r in rows
        if r.get("reason") and not r.get("practice")
    ]


def filter_reasons(reasons: Iterable[Reason], query: str | None) -> list[Reason]:
    """Reasons containing every word of ``query`` (any case) in the text, reader or image."""
    words = (query or "").casefold().split()
    if not words:
        return list(reasons)
    return [
        r
        for r in reasons
        if all(w in f"{r.reason} {r.reader} {r.image} {r.answer}".casefold() for w in words)
    ]


# --- sample size ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannerView:
    plan: StudyPlan | None
    n_decisive: int
    problem: str | None = None

    @property
    def enough(self) -> bool:
        # The page analyses a TOST per reader: "enough" means each of those has the power.
        return self.plan is not None and self.plan.per_reader_enough


@lru_cache(maxsize=256)
def _plan(
    margin: float,
    decisive: tuple[tuple[str, int], ...],
    icc_reader: float | None,
    icc_image: float | None,
) -> StudyPlan:
    # Exact enumeration takes up to a fraction of a second for small margins; pages repeat it.
    return plan_study(
        margin, decisive, icc_reader=icc_reader, icc_image=icc_image, power=PLANNED_POWER
    )


def sample_size(stats: Mapping[str, Any]) -> PlannerView:
    """Power of each reader's TOST, and images per reader for the pooled question, when
    readers truly perform at chance; ICCs from the pooled interval where it estimated them."""
    decisive = tuple((r["reader"], int(r["n_decisive"])) for r in stats["readers"])
    pooled = stats["pooled"]
    icc = (pooled.get("icc_reader"), pooled.get("icc_image"))
    if None in icc:
        icc = (None, None)
    n_decisive = sum(n for _, n in decisive)
    try:
        # Rounded, so that the cache is hit by pages with the same study.
        plan = _plan(
            float(stats["margin"]),
            decisive,
            None if icc[0] is None else round(icc[0], 3),
            None if icc[1] is None else round(icc[1], 3),
        )
    except ValueError as exc:
        return PlannerView(None, n_decisive, str(exc))
    return PlannerView(plan, n_decisive)


# --- the page ---------------------------------------------------------------------------------


def page_of(items: Sequence[T], page: int, size: int) -> tuple[Sequence[T], int, int]:
    """Items of 1-based ``page`` (clamped to the pages there are), that page and the number of
    pages (at least 1, so an empty list still has a page to show)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    n_pages = max(1, math.ceil(len(items) / size))
    page = min(max(1, page), n_pages)
    return items[(page - 1) * size : page * size], page, n_pages


def _reasons_view(reasons: Sequence[Reason], query: str | None, page: int = 1) -> dict[str, Any]:
    found = filter_reasons(reasons, query)
    shown, page, n_pages = page_of(found, page, REASONS_SHOWN)
    first = (page - 1) * REASONS_SHOWN
    return {
        "reasons": shown,
        "n_reasons": len(reasons),
        "n_found": len(found),
        "q": query or "",
        "reasons_page": page,
        "reasons_pages": n_pages,
        "reasons_first": first + 1 if shown else 0,
        "reasons_last": first + len(shown),
    }


State = tuple[Hashable, ...]


def _reading(db: Session, study: Study, state: State | None = None) -> StudyReading:
    """Ratings, answer times and reasons, once per study state; a reading study's from its
    answer log, which reads only the answers added since the last state."""

    def build() -> StudyReading:
        if not is_incremental(study):
            return imported_reading(db, study)
        log = update_latest(study, "answer_log", lambda previous: read_answers(db, study, previous))
        return log.reading()

    return cached_for_state(db, study, "reading", build, state=state)


@dataclass(frozen=True)
class _PageParts:
    """What the page shows besides the statistics, derived once per study state."""

    n_repeats: int
    gallery: list[GalleryItem]
    times: TimeHistogram | None


def _page_parts(db: Session, study: Study, state: State, stats: Mapping[str, Any]) -> _PageParts:
    def build() -> _PageParts:
        reading = _reading(db, study, state)
        refs = image_refs(db, study)
        # The fooling rates are the same under either uncertain policy ("uncertain" is not
        # being fooled), so the gallery of one policy's statistics serves both.
        gallery = fooling_gallery(reading.first, stats, refs)[:GALLERY_SIZE]
        n_repeats = sum(r.repeat for r in reading.ratings)
        return _PageParts(n_repeats, gallery, answer_time_histogram(reading.times_ms))

    return cached_for_state(db, study, "page", build, state=state)


def results_context(
    db: Session,
    study: Study,
    policy: UncertainPolicy,
    query: str | None = None,
    reasons_page: int = 1,
) -> dict[str, Any]:
    """Everything templates/studies/results.html renders."""
    preregistered, _margin = study_options(study)
    state = study_state(db, study)  # read once: every part below is cached under it
    ratings, stats = statistics_for(db, study, policy, state=state)
    parts = _page_parts(db, study, state, stats)
    return {
        "study": study,
        "imported": study.kind is StudyKind.imported,
        "stats": stats,
        "policy": policy,
        "policy_title": POLICY_TITLES[policy],
        "preregistered": preregistered,
        "other_policy": next(p for p in POLICIES if p != policy),
        "policy_titles": POLICY_TITLES,
        "n_ratings": len(ratings),
        "n_repeats": parts.n_repeats,
        "reader_plot": reader_plot(stats),
        "source_plot": source_plot(stats),
        "gallery": parts.gallery,
        "n_synthetic_images": len(stats["fooling_rates"]),
        "times": parts.times,
        "planner": sample_size(stats),
        "mrmc": stats["mrmc"],
        **_reasons_view(_reading(db, study, state).reasons, query, reasons_page),
    }


def reasons_context(db: Session, study: Study, query: str | None, page: int = 1) -> dict[str, Any]:
    """Only what the reasons fragment needs, for the htmx search and its pages."""
    reasons = _reading(db, study).reasons
    return {"study": study, **_reasons_view(reasons, query, page)}
