"""One parser for the numbers and choices of every launch form and CLI option.

A form sends strings, the CLI and a clone's JSON may send numbers; each value is read here once,
into a Python value in its allowed range, or refused with a `FieldError` naming the form field
so the form can show the message beside it. Pure: no request, database or job.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


class FieldError(ValueError):
    """Invalid input; `field` names the form field for an inline error."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


def _text(raw: object) -> str:
    return "" if raw is None else str(raw).strip()


def whole_number(
    field_name: str,
    raw: object,
    low: int,
    high: int,
    message: str,
    default: int | None = None,
    *,
    out_of_range: str | None = None,
) -> int:
    """`raw` as an int from `low` to `high`; blank gives `default` (refused without one).
    `message` refuses what is not a whole number, `out_of_range` (else `message`) the rest."""
    text = _text(raw)
    if not text and default is not None:
        return default
    # Length first: int() of a million digits is slow, and no allowed value is that long.
    if len(text) > 40:
        raise FieldError(field_name, message)
    try:
        number = int(text)
    except ValueError:
        raise FieldError(field_name, message) from None
    if not low <= number <= high:
        raise FieldError(field_name, out_of_range or message)
    return number


def decimal_number(
    field_name: str,
    raw: object,
    low: float,
    high: float,
    message: str,
    default: float | None = None,
    *,
    out_of_range: str | None = None,
) -> float:
    """`raw` as a finite float from `low` to `high`; blank gives `default`. `message` refuses
    what is not a number, `out_of_range` (else `message`) the rest."""
    text = _text(raw)
    if not text and default is not None:
        return default
    try:
        number = float(text)
    except ValueError:
        raise FieldError(field_name, message) from None
    # nan compares false with everything; inf would pass an open-ended range.
    if not math.isfinite(number) or not low <= number <= high:
        raise FieldError(field_name, out_of_range or message)
    return number


def choice(field_name: str, raw: object, choices: Iterable[str], message: str) -> str:
    """`raw` (trimmed) if it is one of `choices`."""
    value = _text(raw)
    if value not in set(choices):
        raise FieldError(field_name, message)
    return value
