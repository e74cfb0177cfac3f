"""A sweep's form -> checked spec -> points -> steps, and which steps may start next.

Pure functions (no database): the service gives them the root dataset's facts and the
statuses of the jobs created so far. Every point is a chain of steps, each an ordinary job:

    class subset -> samples-per-class subset -> train GAN -> sample -> classifier on synthetic
                                             \\-> classifier on real

A subset is left out when its axis asks for everything (all classes, every training image),
and points that need the same dataset share the step that writes it: one class subset serves
every samples-per-class value, one real classifier serves every value of a GAN setting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from app.domain.form_values import choice, whole_number
from app.evaluation.options import CLASSIFIER_PRESETS
from app.evaluation.requests import ClassifierRequest
from app.gans.options import PRESETS as GAN_PRESETS
from app.gans.options import gan_config
from app.gans.service import parse_sample_options
from app.jobs.specs import QUEUES, SpecError

KINDS = ("grid", "gan_param")
MAX_POINTS = 48
MAX_PER_CLASS = 100_000
NAME_MAX = 120
# GAN settings worth sweeping one at a time (each value is checked by gan_config).
SWEEPABLE = (
    "kimg",
    "batch_size",
    "ema_kimg",
    "augment",
    "arch",
    "seed",
    "ada_target",
    "dp_noise_multiplier",
    "mirror",
)
# Optional GAN fields of the form; empty ones keep the preset's value.
GAN_OVERRIDES = ("kimg", "tick_kimg", "snapshot_ticks", "batch_size", "fid_features")
STAGES = ("classes", "per_class", "gan", "sample", "real", "synthetic")
STAGE_TITLES = {
    "classes": "Class subset",
    "per_class": "Samples-per-class subset",
    "gan": "Train GAN",
    "sample": "Sample",
    "real": "Classifier (real)",
    "synthetic": "Classifier (synthetic)",
}
_SPLIT = re.compile(r"[,;\s]+")


@dataclass(frozen=True)
class DatasetFacts:
    """What validation needs to know about the root dataset."""

    resolutions: tuple[int, ...]
    n_classes: int


def facts_of(info: Mapping[str, Any]) -> DatasetFacts:
    """From a Dataset row's `info` (label_names, resolutions)."""
    resolutions = tuple(sorted(int(r) for r in info.get("resolutions", [])))
    return DatasetFacts(resolutions, len(info.get("label_names", [])))


@dataclass(frozen=True)
class SweepSpec:
    kind: str
    name: str
    resolutions: tuple[int, ...]
    classes: tuple[int, ...]  # class counts; the dataset's own count means "all"
    per_class: tuple[int, ...]  # training images per class; 0 means "all"
    gan_preset: str
    gan: dict[str, Any]  # form overrides of the preset (strings, as gan_config takes them)
    draw: int  # images per class sampled from each GAN
    classifier_preset: str
    epochs: int | None
    queue: str  # for the GAN, sampling and classifier jobs (subsets are cheap: cpu)
    n_classes: int
    param: str | None = None  # gan_param: the GAN setting swept
    values: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "resolutions": list(self.resolutions),
            "classes": list(self.classes),
            "per_class": list(self.per_class),
            "gan_preset": self.gan_preset,
            "gan": dict(self.gan),
            "draw": self.draw,
            "classifier_preset": self.classifier_preset,
            "epochs": self.epochs,
            "queue": self.queue,
            "n_classes": self.n_classes,
            "param": self.param,
            "values": list(self.values),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SweepSpec:
        return cls(
            kind=data["kind"],
            name=data["name"],
            resolutions=tuple(data["resolutions"]),
            classes=tuple(data["classes"]),
            per_class=tuple(data["per_class"]),
            gan_preset=data["gan_preset"],
            gan=dict(data["gan"]),
            draw=int(data["draw"]),
            classifier_preset=data["classifier_preset"],
            epochs=data.get("epochs"),
            queue=data["queue"],
            n_classes=int(data["n_classes"]),
            param=data.get("param"),
            values=tuple(data.get("values", ())),
        )


@dataclass(frozen=True)
class Point:
    resolution: int
    classes: int | None = None  # None: every class (no class subset)
    per_class: int | None = None  # None: every training image (no samples-per-class subset)
    value_index: int | None = None  # gan_param: which of the spec's values
    value: str | None = None

    @property
    def key(self) -> str:
        if self.value_index is not None:
            return f"p{self.value_index}"
        return f"r{self.resolution}-k{self.classes or 'all'}-s{self.per_class or 'all'}"


@dataclass(frozen=True)
class Step:
    key: str  # unique within the sweep; points that share a step share its key
    stage: str
    point: Point  # a point the step serves (for shared steps, any: their inputs are equal)
    after: str | None = None  # the step whose success lets this one start; None: now
    data: str | None = None  # the step that writes this step's dataset; None: the root


@dataclass
class PointPlan:
    point: Point
    steps: list[Step] = field(default_factory=list)


# --- parsing the form ------------------------------------------------------------------------


def _ints(raw: str, field_name: str, what: str) -> list[int]:
    values = []
    for part in _SPLIT.split((raw or "").strip()):
        if not part:
            continue
        if part.lower() == "all":
            values.append(0)
            continue
        message = f"{what}: {part!r} is not a whole number."
        values.append(whole_number(field_name, part, -(2**63), 2**63 - 1, message))
    return sorted(set(values))


def _name(raw: str) -> str:
    name = " ".join((raw or "").split())
    if not name:
        raise SpecError("name", "Name the sweep; its datasets and image sets are named after it.")
    if len(name) > NAME_MAX or not name.isprintable():
        raise SpecError("name", f"Use at most {NAME_MAX} printable characters for the name.")
    return name


def _choice(raw: str, choices: Iterable[str], field_name: str, what: str) -> str:
    options = list(choices)
    return choice(field_name, raw, options, f"{what}: choose one of {', '.join(options)}.")


def _resolutions(raw: str, facts: DatasetFacts) -> tuple[int, ...]:
    chosen = _ints(raw, "resolutions", "Resolutions")
    if not chosen:
        raise SpecError("resolutions", "Give at least one resolution the dataset stores.")
    stored = ", ".join(str(r) for r in facts.resolutions) or "none"
    missing = [r for r in chosen if r not in facts.resolutions]
    if missing:
        shown = ", ".join(str(r) for r in missing)
        raise SpecError("resolutions", f"The dataset is stored at {stored} px, not {shown}.")
    return tuple(chosen)


def _classes(raw: str, facts: DatasetFacts) -> tuple[int, ...]:
    n = facts.n_classes
    if n < 2:
        raise SpecError("classes", "The dataset has fewer than two classes: nothing to classify.")
    chosen = [n if k == 0 else k for k in _ints(raw, "classes", "Class counts")] or [n]
    bad = [k for k in chosen if not 2 <= k <= n]
    if bad:
        raise SpecError("classes", f"Class counts: whole numbers from 2 to {n} (0 or all: {n}).")
    return tuple(sorted(set(chosen)))


def _per_class(raw: str) -> tuple[int, ...]:
    chosen = _ints(raw, "per_class", "Samples per class") or [0]
    if any(not 0 <= s <= MAX_PER_CLASS for s in chosen):
        message = f"Samples per class: whole numbers from 1 to {MAX_PER_CLASS:,}, or 0 (all)."
        raise SpecError("per_class", message)
    # "All" (0) is the largest value: listed last, so points read from few images to all.
    return tuple(sorted(chosen, key=lambda s: s or MAX_PER_CLASS + 1))


def _values(raw: str) -> tuple[str, ...]:
    values: list[str] = []
    for part in _SPLIT.split((raw or "").strip()):
        if part and part not in values:
            values.append(part)
    if not values:
        raise SpecError("values", "Give the values to try, e.g. 0.5, 1, 2.")
    if any(len(v) > 40 for v in values):
        raise SpecError("values", "Values: at most 40 characters each.")
    return tuple(values)


def _draw(raw: str) -> int:
    try:
        return parse_sample_options("sweep", (raw or "").strip() or "50").per_class
    except SpecError as exc:
        raise SpecError("draw", exc.message) from None


def _epochs(raw: str) -> int | None:
    text = (raw or "").strip()
    if not text:
        return None
    return whole_number(
        "epochs", text, 1, 1000, "Epochs: a whole number from 1 to 1000 (empty: the preset's)."
    )


def parse_spec(values: Mapping[str, str], facts: DatasetFacts) -> SweepSpec:
    """The form's strings -> a checked spec; every point's GAN, sampling and classifier settings
    are checked here, so a sweep never stops half-way on input it could have refused."""
    kind = _choice(values.get("kind") or "grid", KINDS, "kind", "Kind of sweep")
    resolutions = _resolutions(values.get("resolutions", ""), facts)
    gan = {k: str(values.get(k, "") or "").strip() for k in GAN_OVERRIDES}
    spec = SweepSpec(
        kind=kind,
        name=_name(values.get("name", "")),
        resolutions=resolutions,
        classes=_classes(values.get("classes", ""), facts) if kind == "grid" else (),
        per_class=_per_class(values.get("per_class", "")) if kind == "grid" else (),
        gan_preset=_choice(values.get("gan_preset", ""), GAN_PRESETS, "gan_preset", "GAN preset"),
        gan={k: v for k, v in gan.items() if v},
        draw=_draw(values.get("draw", "")),
        classifier_preset=_choice(
            values.get("classifier_preset", ""),
            CLASSIFIER_PRESETS,
            "classifier_preset",
            "Classifier preset",
        ),
        epochs=_epochs(values.get("epochs", "")),
        queue=_choice(values.get("queue", "gpu") or "gpu", QUEUES, "queue", "Queue"),
        n_classes=facts.n_classes,
    )
    if kind == "gan_param":
        if len(resolutions) != 1:
            raise SpecError("resolutions", "A GAN-setting sweep runs at one resolution.")
        param = _choice(values.get("param", ""), SWEEPABLE, "param", "GAN setting")
        spec = replace(spec, param=param, values=_values(values.get("values", "")))
    check_points(spec, facts)
    return spec


def check_points(spec: SweepSpec, facts: DatasetFacts) -> list[Point]:
    """The spec's points, each one's settings checked; SpecError names the form field."""
    found = points(spec)
    if len(found) > MAX_POINTS:
        raise SpecError(
            "grid", f"This sweep has {len(found)} points; at most {MAX_POINTS} per sweep."
        )
    for resolution in spec.resolutions:
        classifier_request(spec, resolution)  # raises for a bad preset, epochs or resolution
    for point in found:
        gan_settings(spec, point, facts.resolutions)
    return found


def gan_settings(spec: SweepSpec, point: Point, resolutions: tuple[int, ...]) -> Any:
    """The point's `GanConfig` (preset, overrides, resolution, swept value)."""
    given: dict[str, Any] = {**spec.gan, "resolution": point.resolution}
    if spec.param is not None and point.value is not None:
        given[spec.param] = point.value
    try:
        return gan_config(given, preset=spec.gan_preset, resolutions=resolutions)
    except SpecError as exc:
        if spec.param is not None and exc.field == spec.param:
            raise SpecError("values", f"{spec.param} = {point.value}: {exc.message}") from None
        if exc.field == "resolution":
            raise SpecError("resolutions", exc.message) from None
        if exc.field == "preset":
            raise SpecError("gan_preset", exc.message) from None
        raise


def classifier_request(
    spec: SweepSpec, resolution: int, image_set_id: int | None = None
) -> ClassifierRequest:
    """A point's classifier: real-trained without `image_set_id`, else synthetic-trained and
    also tested on that set (train-real/test-synthetic, as the benchmark suite does). Checked
    here first, so a sweep never stops half-way on a setting it could have refused."""
    request = ClassifierRequest(
        train_on="real" if image_set_id is None else "synthetic",
        image_set_id=image_set_id,
        preset=spec.classifier_preset,
        resolution=resolution,
        epochs=spec.epochs,
        test_set_ids=() if image_set_id is None else (image_set_id,),
    )
    try:
        request.checked().config([resolution])
    except SpecError as exc:
        field_name = {"preset": "classifier_preset", "arch": "classifier_preset"}.get(exc.field)
        raise SpecError(field_name or exc.field, exc.message) from None
    return request


# --- points and steps ------------------------------------------------------------------------


def points(spec: SweepSpec) -> list[Point]:
    if spec.kind == "gan_param":
        resolution = spec.resolutions[0]
        return [
            Point(resolution, value_index=i, value=value) for i, value in enumerate(spec.values)
        ]
    return [
        Point(r, None if k == spec.n_classes else k, s or None)
        for r in spec.resolutions
        for k in spec.classes
        for s in spec.per_class
    ]


def plan(point: Point) -> PointPlan:
    """The point's steps in order; `after` chains them, `data` names the dataset's writer."""
    steps: list[Step] = []
    data: str | None = None
    if point.classes is not None:
        data = f"r{point.resolution}-k{point.classes}/classes"
        steps.append(Step(data, "classes", point))
    if point.per_class is not None:
        key = f"{point.key}/per_class"
        steps.append(Step(key, "per_class", point, after=data, data=data))
        data = key
    gan, sample = f"{point.key}/gan", f"{point.key}/sample"
    # One real classifier per dataset: points on the same data (a GAN setting's values) share it.
    real = f"{data or f'root-r{point.resolution}'}/real"
    steps += [
        Step(gan, "gan", point, after=data, data=data),
        Step(sample, "sample", point, after=gan, data=data),
        Step(real, "real", point, after=data, data=data),
        Step(f"{point.key}/synthetic", "synthetic", point, after=sample, data=data),
    ]
    return PointPlan(point, steps)


def all_steps(plans: Iterable[PointPlan]) -> list[Step]:
    """Every step once (shared steps appear in several plans), in plan order."""
    seen: dict[str, Step] = {}
    for p in plans:
        for step in p.steps:
            seen.setdefault(step.key, step)
    return list(seen.values())


def next_stages(steps: Iterable[Step], statuses: Mapping[str, str]) -> list[Step]:
    """Steps to create now: not created yet (`statuses`: step key -> its job's status), and
    whatever they wait for has succeeded. A failed or cancelled step never lets its followers
    start, so the point stops there."""
    return [
        step
        for step in steps
        if step.key not in statuses
        and (step.after is None or statuses.get(step.after) == "succeeded")
    ]


def point_status(
    steps: Iterable[Step], statuses: Mapping[str, str], problems: Mapping[str, str]
) -> str:
    """done | failed | cancelled | stopped (a step could not be created) | running | queued."""
    states = [statuses.get(s.key) for s in steps]
    if "failed" in states:
        return "failed"
    if "cancelled" in states:
        return "cancelled"
    if all(state == "succeeded" for state in states):
        return "done"
    if any(s.key in problems and s.key not in statuses for s in steps):
        return "stopped"
    return "running" if "running" in states else "queued"
