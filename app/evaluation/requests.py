"""What each evaluation job is asked to do, as typed requests: parsed once from a form or the
command line (`from_form`), or built directly by the demo and sweeps, and checked by the same
parsers either way (`checked`). Services take these, never raw form dictionaries.

What needs the dataset or the database (is the resolution stored, is the set visible, did the
classifier finish) is checked by the service that starts the job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from app.evaluation import options


def _form(request: object) -> dict[str, Any]:
    """A request as the form values its parser reads (None: left blank)."""
    return {k: ("" if v is None else list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(request).items()}  # type: ignore[call-overload]  # fmt: skip


@dataclass(frozen=True)
class ClassifierRequest:
    train_on: str = "real"
    image_set_id: int | None = None  # the synthetic set trained on (synthetic, mixed)
    preset: str = "tiny-cpu"
    # None: the preset's value (resolution: the dataset's smallest).
    resolution: int | None = None
    arch: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    augment: bool | None = None
    balanced: bool | None = None
    seed: int | None = None
    test_set_ids: tuple[int, ...] = ()
    external_dataset_ids: tuple[int, ...] = ()

    @classmethod
    def from_form(cls, values: Mapping[str, Any]) -> ClassifierRequest:
        train_on, set_id = options.train_on(values)
        return cls(
            train_on=train_on,
            image_set_id=set_id,
            preset=options.classifier_preset(values),
            test_set_ids=tuple(options.test_sets(values)),
            external_dataset_ids=tuple(options.external_datasets(values)),
            **options.classifier_overrides(values),
        )

    def checked(self) -> ClassifierRequest:
        form = _form(self)
        form["external_dataset_id"] = form.pop("external_dataset_ids")
        return ClassifierRequest.from_form(form)

    def config(self, available: list[int]) -> dict[str, Any]:
        """The classifier's settings on a dataset stored at `available` resolutions."""
        form = _form(self)
        form.pop("external_dataset_ids")
        return options.classifier_config(form, available)


@dataclass(frozen=True)
class FidelityRequest:
    image_set_id: int
    resolution: int | None = None
    max_images: int = options.DEFAULT_MAX_IMAGES
    features: str = "inception"
    classifier_job_id: int | None = None  # features "domain": a real-trained classifier
    features_path: str | None = None  # features "path": a TorchScript feature extractor
    fid_resize: str = "antialias"
    fid_resamples: int = 200

    @classmethod
    def from_form(cls, values: Mapping[str, Any]) -> FidelityRequest:
        kind, job_id, path = options.features(values)
        return cls(
            image_set_id=options.record_id(values, "image_set_id", options.CHOOSE_SET),
            resolution=options.optional_resolution(values),
            max_images=options.max_images(values),
            features=kind,
            classifier_job_id=job_id,
            features_path=path,
            **options.fid_options(values),
        )

    def checked(self) -> FidelityRequest:
        return FidelityRequest.from_form(_form(self))


@dataclass(frozen=True)
class NeighboursRequest:
    image_set_id: int
    resolution: int | None = None
    max_images: int = options.DEFAULT_MAX_IMAGES
    k: int = 5
    alpha: float = 0.05
    level: str = "p5"
    classifier_job_id: int | None = None  # its feature space is gated beside pixels

    @classmethod
    def from_form(cls, values: Mapping[str, Any]) -> NeighboursRequest:
        job_id = None
        if str(values.get("classifier_job_id", "") or "").strip():
            job_id = options.record_id(values, "classifier_job_id", "Choose a classifier job.")
        return cls(
            image_set_id=options.record_id(values, "image_set_id", options.CHOOSE_SET),
            resolution=options.optional_resolution(values),
            max_images=options.max_images(values),
            classifier_job_id=job_id,
            **options.neighbour_options(values),
        )

    def checked(self) -> NeighboursRequest:
        return NeighboursRequest.from_form(_form(self))


@dataclass(frozen=True)
class AttributionRequest:
    real_job_id: int
    synthetic_job_id: int
    methods: tuple[str, ...] = ("integrated_gradients", "grad_cam")
    n_images: int = 6
    n_steps: int = 32

    @classmethod
    def from_form(cls, values: Mapping[str, Any]) -> AttributionRequest:
        message = "Choose two finished classifier jobs."
        chosen = options.attribution_options(values)
        return cls(
            real_job_id=options.record_id(values, "real_job_id", message),
            synthetic_job_id=options.record_id(values, "synthetic_job_id", message),
            methods=tuple(chosen["methods"]),
            n_images=chosen["n_images"],
            n_steps=chosen["n_steps"],
        )

    def checked(self) -> AttributionRequest:
        return AttributionRequest.from_form(_form(self))
