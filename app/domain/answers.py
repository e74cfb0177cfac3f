"""What counts as a valid answer, checked against a study's reading options.

Kept apart from the reading service so the rules read in one place, with the messages a reader
sees; pure, so they take the reading options and a stored answer as the shapes below
(`app.studies.design.ReadingOptions` and `app.models.Answer` are both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.domain.form_values import FieldError, whole_number


class Question(Protocol):
    @property
    def prompt(self) -> str: ...

    @property
    def choices(self) -> tuple[str, ...]: ...


class ReadingRules(Protocol):
    """What of a study's reading options an answer is checked against."""

    @property
    def answer_choices(self) -> tuple[str, ...]: ...

    @property
    def reason_required(self) -> bool: ...

    @property
    def second_question(self) -> Question | None: ...

    def confidence_bounds(self) -> tuple[int, int] | None: ...


class StoredAnswer(Protocol):
    answer: str
    confidence: float | None
    reason: str | None
    second_answer: str | None


MAX_REASON = 2000
MAX_DURATION_MS = 86_400_000
ANSWER_LABELS = {"real": "Real", "fake": "Fake", "uncertain": "Uncertain"}


class ReadingError(Exception):
    """A refusal with a message fit to show the reader; the status says which kind."""

    status_code = 400
    default = "This answer could not be recorded."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default
        super().__init__(self.message)


class InvalidAnswer(ReadingError):
    status_code = 422


@dataclass(frozen=True)
class AnswerInput:
    """The form as the browser sent it, all strings: parsing belongs to the rules below."""

    answer: str = ""
    confidence: str = ""
    reason: str = ""
    second_answer: str = ""
    duration_ms: str = ""


@dataclass(frozen=True)
class ParsedAnswer:
    answer: str
    confidence: float | None
    reason: str | None
    second_answer: str | None
    duration_ms: int | None

    def same_judgement(self, stored: StoredAnswer) -> bool:
        # duration_ms is a measurement, not the reader's judgement: a retried request may carry
        # a slightly different one and is still the same answer.
        return (
            stored.answer == self.answer
            and stored.confidence == self.confidence
            and (stored.reason or None) == self.reason
            and stored.second_answer == self.second_answer
        )


def _choices_text(choices: tuple[str, ...]) -> str:
    names = [ANSWER_LABELS.get(c, c) for c in choices]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def _whole_number(raw: str, what: str, low: int, high: int) -> int:
    message = f"{what} must be a whole number from {low} to {high}."
    try:
        value = whole_number("answer", raw, -(10**12), 10**12, message)
    except FieldError:
        raise InvalidAnswer(message) from None
    if not low <= value <= high:
        raise InvalidAnswer(f"{what} must be a whole number from {low} to {high}, not {value}.")
    return value


def parse_answer(reading: ReadingRules, form: AnswerInput) -> ParsedAnswer:
    """Check the form against the study's reading options; InvalidAnswer says what to fix."""
    answer = form.answer.strip()
    if answer not in reading.answer_choices:
        raise InvalidAnswer(f"Choose {_choices_text(reading.answer_choices)}.")

    confidence: float | None = None
    bounds = reading.confidence_bounds()
    if bounds is None:
        if form.confidence.strip():
            raise InvalidAnswer("This study does not ask for a confidence.")
    elif not form.confidence.strip():
        raise InvalidAnswer(f"Set your confidence ({bounds[0]} to {bounds[1]}).")
    else:
        confidence = float(_whole_number(form.confidence, "Confidence", *bounds))

    reason = form.reason.strip() or None
    if reason and len(reason) > MAX_REASON:
        raise InvalidAnswer(
            f"The reason is too long ({len(reason)} characters); keep it to {MAX_REASON}."
        )
    if reading.reason_required and answer in ("fake", "uncertain") and not reason:
        why = "you think this image is fake" if answer == "fake" else "you are uncertain"
        raise InvalidAnswer(f"Please say briefly why {why}.")

    second: str | None = form.second_answer.strip() or None
    question = reading.second_question
    if question is None:
        if second:
            raise InvalidAnswer("This study asks no second question.")
    elif second not in question.choices:
        raise InvalidAnswer(f"Answer “{question.prompt}”: choose {', '.join(question.choices)}.")

    duration = None
    if form.duration_ms.strip():
        duration = _whole_number(form.duration_ms, "The measured reading time", 0, MAX_DURATION_MS)
    return ParsedAnswer(answer, confidence, reason, second, duration)


@dataclass(frozen=True)
class Feedback:
    correct: bool | None  # None for "uncertain": neither right nor wrong
    message: str


def practice_feedback_for(answer: str, synthetic: bool, last_practice: bool) -> Feedback:
    """What a reader is told after a practice image (never after a scored one: the caller
    asks only for practice images of studies that give feedback)."""
    correct = None if answer == "uncertain" else answer == ("fake" if synthetic else "real")
    opening = {None: "This", True: "Correct: this", False: "Not quite: this"}[correct]
    message = f"{opening} practice image was {'synthetic (fake)' if synthetic else 'real'}."
    if last_practice:
        message += " Practice is over: from now on answers count."
    return Feedback(correct, message)
