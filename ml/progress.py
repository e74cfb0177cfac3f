"""The two callbacks every long ml loop takes, with no-op defaults for notebooks."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[float, float, str], None]
StopFn = Callable[[], bool]


def no_progress(done: float, total: float, message: str = "") -> None:
    return None


def never_stop() -> bool:
    return False


class Stopped(Exception):
    """Raised by an ml loop when ``should_stop()`` said so; hosts turn it into 'cancelled'."""
