"""Sweeps declare no job type of their own: they chain the other features' jobs, and move on
after any job of theirs succeeds (`continue_sweep` does nothing for a job outside a sweep)."""

from __future__ import annotations

AFTER_ANY_SUCCESS = ("app.sweeps.service:continue_sweep",)
