"""Which preset a job's parameters are compared with on its page."""

from __future__ import annotations

from typing import Any

from app.domain.params_table import ParamSection
from app.domain.params_table import params_table as table
from app.jobs.registry import kind_of, resolve


def preset_values(job_type: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """The full settings the recorded preset stands for (defaults plus the preset's own), as
    the launch form filled them in; None when the job recorded no preset we know. The job type
    declares where its presets are (`JobKind.preset_values`)."""
    name = params.get("preset")
    kind = kind_of(job_type)
    if not isinstance(name, str) or kind is None or not kind.preset_values:
        return None
    return resolve(kind.preset_values)(name)


def params_table(job_type: str, params: dict[str, Any]) -> list[ParamSection]:
    return table(params, preset_values(job_type, params))
