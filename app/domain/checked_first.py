"""First presentations checked once and passed on, so a study's statistics do not re-check them.

:func:`app.domain.ratings.first_presentations` walks every rating and raises on a reader who
rated an image twice without ``repeat=True``. ``study_statistics`` hands the same first
presentations to half a dozen analyses; the marker type lets each of them skip that walk.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

import numpy as np

from app.domain.ratings import CATEGORIES, Answer, Rating, first_presentations


class FirstPresentations(list[Rating]):
    """Ratings that already came out of first_presentations(); never mutated once built."""

    @cached_property
    def answers_by_reader(self) -> dict[str, dict[str, Answer]]:
        """Reader -> image -> answer, readers sorted: both kappas start from this."""
        answers: dict[str, dict[str, Answer]] = {}
        for r in self:
            answers.setdefault(r.reader, {})[r.image] = r.answer
        return dict(sorted(answers.items()))

    @cached_property
    def answer_codes(self) -> np.ndarray:
        """codes[reader, image]: the index in CATEGORIES of each answer, -1 where the reader
        did not rate the image; readers as in `answers_by_reader`, images sorted. Both kappas
        count from this matrix."""
        answers = self.answers_by_reader
        images = {image: k for k, image in enumerate(sorted(set().union(*answers.values())))}
        category = {c: k for k, c in enumerate(CATEGORIES)}
        codes = np.full((len(answers), len(images)), -1, dtype=np.intp)
        for j, by_image in enumerate(answers.values()):
            cols = np.fromiter((images[i] for i in by_image), dtype=np.intp, count=len(by_image))
            codes[j, cols] = np.fromiter(
                (category[a] for a in by_image.values()), np.intp, cols.size
            )
        return codes


def checked_first(ratings: Iterable[Rating]) -> FirstPresentations:
    """first_presentations(ratings), unless ``ratings`` already are its result."""
    if isinstance(ratings, FirstPresentations):
        return ratings
    return FirstPresentations(first_presentations(ratings))
