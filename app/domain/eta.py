"""How long a job ran, and how long a running one has left, as a researcher reads them.

The estimate assumes progress grows linearly with time: remaining = elapsed * (1 - p) / p.
Below 2 % the ratio is mostly start-up cost (data loading, compilation), so no estimate.
"""

from __future__ import annotations

from datetime import datetime

MIN_PROGRESS = 0.02


def eta_seconds(progress: float, elapsed_s: float) -> float | None:
    """Seconds left, or None while too little is done to say (or when done, or nonsense)."""
    if not MIN_PROGRESS < progress < 1 or elapsed_s < 0:
        return None
    return elapsed_s * (1 - progress) / progress


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes = seconds / 60
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"about {round(minutes)} min"
    return f"about {minutes / 60:.1f} h"


def elapsed_seconds(
    started_at: datetime | None, finished_at: datetime | None, now: datetime
) -> float | None:
    """Finished: finished - started; still running: now - started; never started: None."""
    if started_at is None:
        return None
    end = finished_at or now
    return max(0.0, (end - started_at).total_seconds())


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
