"""A study's design as stored in ``Study.design``: what is selected and how it is read.

``selection`` feeds app.domain.reader_study.StudyDesign; ``reading`` says what a reader is
asked. Both are plain dataclasses so routes, services, the CLI and tests share one shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from app.domain.display_geometry import DEFAULT_DISPLAY_SIZE, AspectRule
from app.domain.reader_study import StudyDesign

AnswerSet = Literal["real_fake", "real_fake_uncertain"]
ConfidenceScale = Literal["none", "1-5", "0-100"]


@dataclass(frozen=True)
class SecondQuestion:
    prompt: str
    choices: tuple[str, ...]


@dataclass(frozen=True)
class ReadingOptions:
    answers: AnswerSet = "real_fake_uncertain"
    confidence: ConfidenceScale = "none"
    # "Spot the fake" protocol: a fake or uncertain answer asks why.
    reason_required: bool = True
    second_question: SecondQuestion | None = None
    time_limit_s: int | None = None
    practice_feedback: bool = True
    margin: float = 0.10
    # Pre-registered analysis. "uncertain" left out by default: counted as wrong, a reader who
    # often says "uncertain" drifts towards 50% and looks as if they cannot tell.
    uncertain_policy: Literal["wrong", "excluded"] = "excluded"
    # The two-sided exact binomial test by default; one-sided "greater" only if pre-registered.
    binomial_alternative: Literal["two-sided", "greater"] = "two-sided"

    @property
    def answer_choices(self) -> tuple[str, ...]:
        return (
            ("real", "fake", "uncertain")
            if self.answers == "real_fake_uncertain"
            else (
                "real",
                "fake",
            )
        )

    def confidence_bounds(self) -> tuple[int, int] | None:
        return {"none": None, "1-5": (1, 5), "0-100": (0, 100)}[self.confidence]


@dataclass(frozen=True)
class DisplayOptions:
    """How every image is brought to the screen (app/domain/display_geometry.py); the
    resulting geometry, with the common native side, is stored as ``design["geometry"]``."""

    size: int = DEFAULT_DISPLAY_SIZE
    aspect: AspectRule = "crop"
    # Bring every source to the lowest native resolution first, so resampling looks the same.
    match_resolution: bool = True


@dataclass(frozen=True)
class StoredDesign:
    selection: StudyDesign
    reading: ReadingOptions = field(default_factory=ReadingOptions)
    display: DisplayOptions = field(default_factory=DisplayOptions)

    def to_json(self) -> dict[str, Any]:
        return {
            "selection": asdict(self.selection),
            "reading": asdict(self.reading),
            "display": asdict(self.display),
        }


def load_design(data: dict[str, Any]) -> StoredDesign:
    selection = (
        StudyDesign(**data["selection"])
        if data.get("selection")
        else StudyDesign(n_images=0, synthetic_share=0.5)
    )
    reading = dict(data.get("reading") or {})
    question = reading.pop("second_question", None)
    if question:
        reading["second_question"] = SecondQuestion(
            prompt=question["prompt"], choices=tuple(question["choices"])
        )
    display = DisplayOptions(**(data.get("display") or {}))
    return StoredDesign(selection=selection, reading=ReadingOptions(**reading), display=display)
