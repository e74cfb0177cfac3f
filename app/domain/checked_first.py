"""First presentations checked once and passed on, so a study's statistics do not re-check them.

:func:`app.domain.ratings.first_presentations` walks every rating and raises on a reader who
rated an image twice without ``repeat=True``. ``study_statistics`` hands the same first
presentations to half a dozen analyses; the marker type lets each of them skip that walk.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

from app.domain.ratings import Answer, Rating, first_presentations


class FirstPresentations(list[Rating]):
    """Ratings that already came out of first_presentations(); never mutated once built."""

    @cached_property
    def answers_by_reader(self) -> dict[str, dict[str, Answer]]:
        """Reader -> image -> answer, readers sorted: both kappas start from this."""
        answers: dict[str, dict[str, Answer]] = {}
        for r in self:
            answers.setdefault(r.reader, {})[r.image] = r.answer
        return dict(sorted(answers.items()))


def checked_first(ratings: Iterable[Rating]) -> FirstPresentations:
    """first_presentations(ratings), unless ``ratings`` already are its result."""
    if isinstance(ratings, FirstPresentations):
        return ratings
    return FirstPresentations(first_presentations(ratings))
