"""The rules of a valid answer (`app.domain.answers`), checked against a study's reading options
with the messages a reader sees."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from app.domain.answers import (
    MAX_REASON,
    AnswerInput,
    InvalidAnswer,
    parse_answer,
    practice_feedback_for,
)
from app.studies.design import ReadingOptions, SecondQuestion


def test_a_plain_answer_parses() -> None:
    parsed = parse_answer(ReadingOptions(), AnswerInput(answer=" real ", duration_ms="1500"))
    assert (parsed.answer, parsed.confidence, parsed.reason, parsed.duration_ms) == (
        "real", None, None, 1500
    )  # fmt: skip


@pytest.mark.parametrize(
    ("options", "form", "message"),
    [
        (ReadingOptions(answers="real_fake"), AnswerInput("uncertain"), "Choose Real or Fake"),
        (ReadingOptions(), AnswerInput("maybe"), "Choose Real, Fake or Uncertain"),
        (ReadingOptions(), AnswerInput("fake"), "say briefly why you think this image is fake"),
        (ReadingOptions(confidence="1-5"), AnswerInput("real"), "Set your confidence (1 to 5)"),
        (ReadingOptions(confidence="1-5"), AnswerInput("real", "6"), "from 1 to 5, not 6"),
        (ReadingOptions(confidence="1-5"), AnswerInput("real", "9" * 40), "whole number"),
        (ReadingOptions(), AnswerInput("real", confidence="3"), "does not ask for a confidence"),
        (ReadingOptions(), AnswerInput("real", reason="x" * (MAX_REASON + 1)), "too long"),
        (ReadingOptions(), AnswerInput("real", second_answer="yes"), "asks no second question"),
        (
            ReadingOptions(second_question=SecondQuestion("Artefact?", ("yes", "no"))),
            AnswerInput("real"),
            "Answer “Artefact?”: choose yes, no",
        ),
        (ReadingOptions(), AnswerInput("real", duration_ms="-1"), "reading time"),
    ],
)
def test_each_bad_answer_is_refused_with_what_to_fix(
    options: ReadingOptions, form: AnswerInput, message: str
) -> None:
    with pytest.raises(InvalidAnswer, match=re.escape(message)):
        parse_answer(options, form)


@dataclass
class _Stored:
    answer: str
    confidence: float | None
    reason: str | None
    second_answer: str | None


def test_a_resent_answer_is_the_same_judgement_whatever_its_measured_time() -> None:
    options = ReadingOptions(confidence="0-100")
    first = parse_answer(options, AnswerInput("fake", "70", "edges", duration_ms="900"))
    again = parse_answer(options, AnswerInput("fake", "70", "edges", duration_ms="950"))
    stored = _Stored(first.answer, first.confidence, first.reason, first.second_answer)
    assert again.same_judgement(stored)
    changed = parse_answer(options, AnswerInput("fake", "71", "edges"))
    assert not changed.same_judgement(stored)


@pytest.mark.parametrize(
    ("answer", "synthetic", "correct", "opening"),
    [
        ("fake", True, True, "Correct: this practice image was synthetic (fake)."),
        ("real", True, False, "Not quite: this practice image was synthetic (fake)."),
        ("real", False, True, "Correct: this practice image was real."),
        ("uncertain", False, None, "This practice image was real."),
    ],
)
def test_practice_feedback_says_what_the_image_was(
    answer: str, synthetic: bool, correct: bool | None, opening: str
) -> None:
    feedback = practice_feedback_for(answer, synthetic, last_practice=False)
    assert (feedback.correct, feedback.message) == (correct, opening)
    last = practice_feedback_for(answer, synthetic, last_practice=True)
    assert last.message == f"{opening} Practice is over: from now on answers count."
