"""One reader's answer to one image, and the rules every analysis applies to it first.

No statistics library is imported here: the reading pages, imports and exports use these
types, and the web tier loads scipy and statsmodels only where a results page needs them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Truth = Literal["real", "fake"]
Answer = Literal["real", "fake", "uncertain"]

CATEGORIES: tuple[Answer, ...] = ("real", "fake", "uncertain")


@dataclass(frozen=True)
class Rating:
    reader: str
    image: str
    truth: Truth
    answer: Answer
    confidence: float | None = None
    source: str | None = None
    repeat: bool = False

    def __post_init__(self) -> None:
        # A typo such as "Fake" would otherwise be scored silently as a wrong answer.
        if self.truth not in ("real", "fake"):
            raise ValueError(f"truth must be 'real' or 'fake', got {self.truth!r}")
        if self.answer not in CATEGORIES:
            raise ValueError(f"answer must be one of {CATEGORIES}, got {self.answer!r}")
        if self.confidence is not None and not (
            math.isfinite(self.confidence) and self.confidence >= 0
        ):
            raise ValueError(f"confidence must be finite and >= 0, got {self.confidence!r}")

    @property
    def correct(self) -> bool:
        return self.answer == self.truth


def first_presentations(ratings: Iterable[Rating]) -> list[Rating]:
    """Non-repeat ratings; a second non-repeat rating of one image by one reader is an error."""
    seen: set[tuple[str, str]] = set()
    first: list[Rating] = []
    for rating in ratings:
        if rating.repeat:
            continue
        key = (rating.reader, rating.image)
        if key in seen:
            # Keeping either copy would silently bias accuracy; the caller must flag the repeat.
            raise ValueError(f"{rating.reader!r} rated {rating.image!r} twice without repeat=True")
        seen.add(key)
        first.append(rating)
    return first


def fake_score(rating: Rating) -> float | None:
    """Place an answer and its confidence on one "how fake" axis, higher meaning more fake.

    ``fake`` with confidence c scores +c, ``real`` with confidence c scores -c and
    ``uncertain`` scores 0 whatever its confidence. Confidence may be on any non-negative scale
    (0..1, a 1..5 Likert scale) where larger means surer of the stated answer, so a sure "fake"
    ranks above an unsure "fake", then "uncertain", then an unsure "real", then a sure "real".
    Returns None for a real/fake answer without a confidence.
    """
    if rating.answer == "uncertain":
        return 0.0
    if rating.confidence is None:
        return None
    return rating.confidence if rating.answer == "fake" else -rating.confidence
