"""The evaluation job types: a classifier trained on real, synthetic or mixed images, and the
fidelity, nearest-neighbour and attribution measurements of synthetic sets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from app.evaluation.options import CLASSIFIER_PRESETS
from app.jobs.registry import JobKind, JobPage
from app.jobs.specs import JobSpec, SpecError, job_spec
from ml.training.classifier_config import ClassifierConfig

EVALUATION_TYPES = ("train_classifier", "evaluate_fidelity", "nearest_neighbours", "attribution")

_RESULT = ("evaluation/job_page.html",)
_VIEW = "app.evaluation.views:job_page_context"


def evaluation_spec(job_type: str, params: dict[str, Any], queue: str | None) -> JobSpec:
    """`params` come from `app.evaluation.options` (already checked)."""
    if job_type not in EVALUATION_TYPES:
        raise SpecError("type", f"Unknown evaluation job type {job_type!r}.")
    return job_spec(job_type, params, queue)


def classifier_preset_values(name: str) -> dict[str, Any] | None:
    """The settings a classifier preset stands for, as the launch form fills them in."""
    if name not in CLASSIFIER_PRESETS:
        return None
    return {**asdict(ClassifierConfig()), **CLASSIFIER_PRESETS[name]}


def _describe_classifier(params: Mapping[str, Any]) -> str:
    config = params.get("config")
    config = config if isinstance(config, Mapping) else {}
    on = str(params.get("train_on", "real"))
    # A real-trained classifier also carries the set it is tested on; it did not train on it.
    sets = f"set #{params['image_set_id']}" if params.get("image_set_id") else on
    source = {"real": "real", "synthetic": sets, "mixed": f"real + {sets}"}.get(on, sets)
    return f"{config.get('arch', 'Classifier')} on {source}"


def _describe_attribution(params: Mapping[str, Any]) -> str:
    pair = params.get("classifiers")
    pair = pair if isinstance(pair, Mapping) else {}
    return f"Attribution #{pair.get('real')} vs #{pair.get('synthetic')}"


KINDS = (
    JobKind(
        "train_classifier",
        "Train a classifier on real, synthetic or mixed images",
        "gpu",
        handler="workers.evaluation:train_classifier",
        request="ml.training.classifier_config:ClassifierConfig",
        preset_values="app.evaluation.job_types:classifier_preset_values",
        describe=_describe_classifier,
        page=JobPage(
            views=(_VIEW, "app.evaluation.training_curves:classifier_curves"),
            partials=_RESULT,
            charts=True,
        ),
    ),
    JobKind(
        "evaluate_fidelity",
        "Fidelity: FID, KID, precision/recall against real",
        "gpu",
        handler="workers.evaluation:evaluate_fidelity",
        describe=lambda params: f"Fidelity of set #{params.get('image_set_id')}",
        page=JobPage(views=(_VIEW,), partials=_RESULT),
    ),
    JobKind(
        "nearest_neighbours",
        "Privacy: nearest real neighbours of synthetic images",
        "gpu",
        handler="workers.evaluation:nearest_neighbours",
        describe=lambda params: f"Nearest neighbours of set #{params.get('image_set_id')}",
        page=JobPage(views=(_VIEW,), partials=_RESULT),
    ),
    JobKind(
        "attribution",
        "Attribution maps of two classifiers side by side",
        "gpu",
        handler="workers.evaluation:attribution",
        describe=_describe_attribution,
        page=JobPage(views=(_VIEW,), partials=_RESULT),
    ),
)
