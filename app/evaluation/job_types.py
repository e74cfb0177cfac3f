"""The evaluation job types: a classifier trained on real, synthetic or mixed images, and the
fidelity, nearest-neighbour and attribution measurements of synthetic sets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from sqlalchemy.orm import Session

from app.evaluation import options
from app.evaluation.options import CLASSIFIER_PRESETS
from app.evaluation.requests import (
    AttributionRequest,
    ClassifierRequest,
    FidelityRequest,
    NeighboursRequest,
)
from app.jobs.registry import JobKind, JobPage
from app.jobs.specs import JobSpec, SpecError, job_spec
from app.models import Dataset
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


def _resolutions(db: Session, params: Mapping[str, Any]) -> list[int]:
    # dataset_id is one of the keys a clone cannot change: the resolutions are the dataset's.
    dataset_id = params.get("dataset_id")
    dataset = db.get(Dataset, dataset_id) if isinstance(dataset_id, int) else None
    return [int(r) for r in (dataset.info.get("resolutions", []) if dataset else [])]


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def checked_classifier_clone(db: Session, params: dict[str, Any]) -> dict[str, Any]:
    """A clone's edited classifier settings, through the launch form's request and checks."""
    config = _mapping(params.get("config"))
    request = ClassifierRequest(
        train_on=str(params.get("train_on", "real")),
        image_set_id=params.get("image_set_id"),
        preset=str(params.get("preset") or "tiny-cpu"),
        **{k: config.get(k) for k in _CLASSIFIER_SETTINGS},
    ).checked()
    return {**params, "config": request.config(_resolutions(db, params))}


def _checked_set_clone(
    db: Session,
    params: dict[str, Any],
    request_type: type[FidelityRequest] | type[NeighboursRequest],
    keys: tuple[str, ...],
) -> dict[str, Any]:
    """A clone of a job measuring a synthetic set: its request's checks, and a resolution the
    dataset is stored at; values stored as the launch stores them."""
    stored = [k for k in keys if k in params]
    checked = request_type(**{k: params[k] for k in stored}).checked()
    options.resolution({"resolution": checked.resolution}, _resolutions(db, params))
    return {**params, **{k: getattr(checked, k) for k in stored}}


def checked_fidelity_clone(db: Session, params: dict[str, Any]) -> dict[str, Any]:
    return _checked_set_clone(db, params, FidelityRequest, _FIDELITY_KEYS)


def checked_neighbours_clone(db: Session, params: dict[str, Any]) -> dict[str, Any]:
    return _checked_set_clone(db, params, NeighboursRequest, _NEIGHBOURS_KEYS)


def checked_attribution_clone(db: Session, params: dict[str, Any]) -> dict[str, Any]:
    pair = _mapping(params.get("classifiers"))
    methods = params.get("methods")
    request = AttributionRequest(
        real_job_id=pair.get("real"),  # type: ignore[arg-type]
        synthetic_job_id=pair.get("synthetic"),  # type: ignore[arg-type]
        methods=tuple(methods) if isinstance(methods, list | tuple) else (str(methods),),
        n_images=params.get("n_images", 6),  # type: ignore[arg-type]
        n_steps=params.get("n_steps", 32),  # type: ignore[arg-type]
    ).checked()
    return {
        **params,
        "methods": list(request.methods),
        "n_images": request.n_images,
        "n_steps": request.n_steps,
    }


_CLASSIFIER_SETTINGS = (
    "resolution", "arch", "epochs", "batch_size", "lr", "augment", "balanced", "seed"
)  # fmt: skip
_FIDELITY_KEYS = (
    "image_set_id", "resolution", "max_images", "features", "classifier_job_id",
    "features_path", "fid_resize", "fid_resamples",
)  # fmt: skip
_NEIGHBOURS_KEYS = (
    "image_set_id", "resolution", "max_images", "k", "alpha", "level", "classifier_job_id"
)  # fmt: skip


KINDS = (
    JobKind(
        "train_classifier",
        "Train a classifier on real, synthetic or mixed images",
        "gpu",
        handler="workers.evaluation:train_classifier",
        request="app.evaluation.requests:ClassifierRequest",
        clone_check="app.evaluation.job_types:checked_classifier_clone",
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
        request="app.evaluation.requests:FidelityRequest",
        clone_check="app.evaluation.job_types:checked_fidelity_clone",
        describe=lambda params: f"Fidelity of set #{params.get('image_set_id')}",
        page=JobPage(views=(_VIEW,), partials=_RESULT),
    ),
    JobKind(
        "nearest_neighbours",
        "Privacy: nearest real neighbours of synthetic images",
        "gpu",
        handler="workers.evaluation:nearest_neighbours",
        request="app.evaluation.requests:NeighboursRequest",
        clone_check="app.evaluation.job_types:checked_neighbours_clone",
        describe=lambda params: f"Nearest neighbours of set #{params.get('image_set_id')}",
        page=JobPage(views=(_VIEW,), partials=_RESULT),
    ),
    JobKind(
        "attribution",
        "Attribution maps of two classifiers side by side",
        "gpu",
        handler="workers.evaluation:attribution",
        request="app.evaluation.requests:AttributionRequest",
        clone_check="app.evaluation.job_types:checked_attribution_clone",
        describe=_describe_attribution,
        page=JobPage(views=(_VIEW,), partials=_RESULT),
    ),
)
