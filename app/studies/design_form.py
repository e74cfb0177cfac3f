"""Turning the study design form into a validated design, with an error per field.

The CLI and the demo build the same dataclasses directly; this module only parses strings.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from app.domain.display_geometry import DEFAULT_DISPLAY_SIZE, MAX_DISPLAY_SIZE, MIN_DISPLAY_SIZE
from app.domain.form_values import FieldError, decimal_number
from app.domain.reader_study import StudyDesign
from app.studies.design import DisplayOptions, ReadingOptions, SecondQuestion

MAX_SEED = 2**31 - 1
DEFAULT_CONFIDENCE = "1-5"


@dataclass
class DesignForm:
    name: str = ""
    instructions: str = ""
    image_set_ids: list[int] = field(default_factory=list)
    design: StudyDesign | None = None
    reading: ReadingOptions | None = None
    display: DisplayOptions = field(default_factory=DisplayOptions)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _number(
    form: Mapping[str, str], name: str, default: float, low: float, high: float, errors: dict
) -> float:
    raw = (form.get(name) or "").strip()
    try:
        return decimal_number(
            name,
            raw,
            low,
            high,
            f"Enter a number (got {raw!r}).",
            default,
            out_of_range=f"Must be between {low:g} and {high:g}.",
        )
    except FieldError as exc:  # every field's problem is collected, not only the first
        errors[name] = exc.message
        return default


def _checked(form: Mapping[str, str], name: str) -> bool:
    return form.get(name) in {"on", "true", "1", "yes"}


def parse_design_form(form: Mapping[str, str], image_set_ids: list[str]) -> DesignForm:
    errors: dict[str, str] = {}
    parsed = DesignForm(
        name=(form.get("name") or "").strip()[:200],
        instructions=(form.get("instructions") or "").strip()[:5000],
    )
    if not parsed.name:
        errors["name"] = "A study needs a name."
    try:
        parsed.image_set_ids = sorted({int(i) for i in image_set_ids})
    except ValueError:
        errors["image_sets"] = "Unknown image set."
    if not parsed.image_set_ids:
        errors["image_sets"] = "Choose at least one image set with real and synthetic images."

    n_images = _number(form, "n_images", 40, 2, 5000, errors)
    synthetic_pct = _number(form, "synthetic_percent", 50, 1, 99, errors)
    repeat_pct = _number(form, "repeat_percent", 0, 0, 50, errors)
    practice = _number(form, "practice_images", 0, 0, 50, errors)
    margin = _number(form, "margin", 0.10, 0.01, 0.49, errors)
    time_limit = _number(form, "time_limit_s", 0, 0, 3600, errors)
    seed_raw = (form.get("seed") or "").strip()
    seed = int(_number(form, "seed", 0, 0, MAX_SEED, errors)) if seed_raw else None
    for name, value in (("n_images", n_images), ("practice_images", practice)):
        if name not in errors and value != int(value):
            errors[name] = "Enter a whole number."

    answers = form.get("answers") or "real_fake_uncertain"
    if answers not in {"real_fake", "real_fake_uncertain"}:
        errors["answers"] = "Choose the answer options."
    # 1-5 unless asked otherwise: without a confidence scale a study has no ROC, AUC or MRMC.
    confidence = form.get("confidence") or DEFAULT_CONFIDENCE
    if confidence not in {"none", "1-5", "0-100"}:
        errors["confidence"] = "Choose a confidence scale."
    policy = form.get("uncertain_policy") or "excluded"
    if policy not in {"wrong", "excluded"}:
        errors["uncertain_policy"] = "Choose how 'uncertain' is counted."
    alternative = form.get("binomial_alternative") or "two-sided"
    if alternative not in {"two-sided", "greater"}:
        errors["binomial_alternative"] = "Choose the binomial test."

    display_size = _number(
        form, "display_size", DEFAULT_DISPLAY_SIZE, MIN_DISPLAY_SIZE, MAX_DISPLAY_SIZE, errors
    )
    if "display_size" not in errors and display_size != int(display_size):
        errors["display_size"] = "Enter a whole number."
    aspect = form.get("aspect") or "crop"
    if aspect not in {"crop", "pad"}:
        errors["aspect"] = "Choose how non-square images are made square."
    # A select, not a checkbox: an absent field must mean the safe default (match).
    resolution = form.get("resolution") or "match"
    if resolution not in {"match", "native"}:
        errors["resolution"] = "Choose whether sources are brought to one resolution."

    question = None
    prompt = (form.get("second_prompt") or "").strip()
    choices = tuple(c.strip() for c in (form.get("second_choices") or "").split(",") if c.strip())
    if prompt or choices:
        if not prompt or len(choices) < 2:
            errors["second_question"] = "A second question needs a prompt and two or more choices."
        elif len(set(choices)) != len(choices):
            errors["second_question"] = "The choices must differ."
        else:
            question = SecondQuestion(prompt=prompt[:300], choices=tuple(c[:100] for c in choices))

    if errors:
        parsed.errors = errors
        return parsed
    parsed.design = StudyDesign(
        n_images=int(n_images),
        synthetic_share=synthetic_pct / 100,
        stratify_by_label=_checked(form, "stratify_label"),
        stratify_by_source=_checked(form, "stratify_source"),
        repeat_share=repeat_pct / 100,
        practice_images=int(practice),
        # A recorded seed makes every reader's order reproducible from the design alone.
        seed=seed if seed is not None else secrets.randbelow(MAX_SEED),
    )
    parsed.display = DisplayOptions(
        size=int(display_size),
        aspect=aspect,  # type: ignore[arg-type]
        match_resolution=resolution == "match",
    )
    parsed.reading = ReadingOptions(
        answers=answers,  # type: ignore[arg-type]
        confidence=confidence,  # type: ignore[arg-type]
        reason_required=_checked(form, "reason_required"),
        second_question=question,
        time_limit_s=int(time_limit) or None,
        practice_feedback=_checked(form, "practice_feedback"),
        margin=margin,
        uncertain_policy=policy,  # type: ignore[arg-type]
        binomial_alternative=alternative,  # type: ignore[arg-type]
    )
    problems = parsed.design.validate()
    if problems:
        parsed.errors = {"design": " ".join(problems)}
    return parsed
