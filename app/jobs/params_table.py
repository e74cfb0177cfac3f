"""Which preset a job's parameters are compared with on its page."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from app.domain.params_table import ParamSection
from app.domain.params_table import params_table as table


def preset_values(job_type: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """The full settings the recorded preset stands for (defaults plus the preset's own), as
    the launch form filled them in; None when the job recorded no preset we know."""
    name = params.get("preset")
    if not isinstance(name, str):
        return None
    if job_type == "train_gan":
        from app.gans.options import PRESETS
        from ml.training.gan_config import GanConfig

        if name in PRESETS:
            return {**asdict(GanConfig()), "device": "auto", **PRESETS[name]}
    if job_type == "train_classifier":
        from app.evaluation.options import CLASSIFIER_PRESETS
        from ml.training.classifier_config import ClassifierConfig

        if name in CLASSIFIER_PRESETS:
            return {**asdict(ClassifierConfig()), **CLASSIFIER_PRESETS[name]}
    return None


def params_table(job_type: str, params: dict[str, Any]) -> list[ParamSection]:
    return table(params, preset_values(job_type, params))
