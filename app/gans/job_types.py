"""The GAN job types: training a GAN, sampling a checkpoint into an image set, and a CycleGAN
that translates one dataset into another's style. Sampling and translation end by turning
their images into an image set before they may succeed (`import_outputs`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from sqlalchemy.orm import Session

from app.gans.options import PRESETS, config_params, stored_gan_config
from app.jobs.registry import JobKind, JobPage
from app.jobs.specs import JobSpec, job_spec
from app.models import Dataset
from ml.training.gan_config import GanConfig

GAN_ARCH_LABELS = {
    "dcgan": "DCGAN",
    "wgan-gp": "WGAN-GP",
    "sngan": "SNGAN",
    "acgan": "AC-GAN",
    "progan": "ProGAN",
    "stylegan2": "StyleGAN2",
}

_IMPORT_OUTPUTS = "app.gans.service:import_outputs"


def train_gan_spec(
    dataset_id: int, dataset_path: str, dataset_hash: str, config: dict[str, Any], queue: str | None
) -> JobSpec:
    """`config` is `GanConfig` as a dict (checked by `app.gans.options.gan_config`)."""
    params = {
        "dataset_id": dataset_id,
        "dataset_path": dataset_path,
        "dataset_hash": dataset_hash,
        "config": config,
    }
    return job_spec("train_gan", params, queue)


def sample_spec(
    train_job_id: int, checkpoint: str, options: dict[str, Any], queue: str | None
) -> JobSpec:
    params = {"train_job_id": train_job_id, "checkpoint": checkpoint, **options}
    return job_spec("sample", params, queue)


def translate_spec(params: dict[str, Any], queue: str | None) -> JobSpec:
    """`params`: dataset_a/b ids, paths and hashes, a CycleGanConfig dict, name, split."""
    return job_spec("translate", params, queue)


def checked_train_gan_clone(db: Session, params: dict[str, Any]) -> dict[str, Any]:
    """A clone's edited GAN settings, checked as the launch form checks them."""
    # dataset_id is one of the keys a clone cannot change: the resolutions are the dataset's.
    dataset_id = params.get("dataset_id")
    dataset = db.get(Dataset, dataset_id) if isinstance(dataset_id, int) else None
    resolutions = tuple(dataset.info.get("resolutions", [])) if dataset is not None else ()
    config = stored_gan_config(params.get("config"), resolutions=resolutions)
    # Stored as the launch stores it: converted values and every field.
    return {**params, "config": config_params(config)}


def gan_preset_values(name: str) -> dict[str, Any] | None:
    """The settings a GAN preset stands for, as the launch form fills them in."""
    if name not in PRESETS:
        return None
    return {**asdict(GanConfig()), "device": "auto", **PRESETS[name]}


def _describe_training(params: Mapping[str, Any]) -> str:
    config = params.get("config")
    config = config if isinstance(config, Mapping) else {}
    arch = str(config.get("arch", "GAN"))
    label = GAN_ARCH_LABELS.get(arch, arch.upper())
    resolution = config.get("resolution")
    return f"{label} {resolution}px" if resolution else label


def _image_set_name(params: Mapping[str, Any], dataset_name: str | None) -> str | None:
    # Sampling and translation are named after the image set they make.
    return str(params["name"]) if params.get("name") else dataset_name


KINDS = (
    JobKind(
        "train_gan",
        "Train a GAN",
        "gpu",
        handler="workers.handlers:train_gan",
        request="ml.training.gan_config:GanConfig",
        clone_check="app.gans.job_types:checked_train_gan_clone",
        preset_values="app.gans.job_types:gan_preset_values",
        describe=_describe_training,
        page=JobPage(
            views=("app.gans.views:training_view",),
            partials=("jobs/train_gan_page.html",),
            footer=("jobs/train_gan_snapshots.html",),
            charts=True,
        ),
    ),
    JobKind(
        "sample",
        "Sample a GAN checkpoint into an image set",
        "gpu",
        handler="workers.handlers:sample",
        request="app.gans.service:SampleOptions",
        before_success=_IMPORT_OUTPUTS,
        describe=lambda params: f"Samples of run #{params.get('train_job_id')}",
        subject=_image_set_name,
        page=JobPage(
            views=("app.gans.views:sample_page",),
            partials=("jobs/sample_page.html", "jobs/sample_study.html"),
        ),
    ),
    JobKind(
        "translate",
        "CycleGAN: translate one dataset into another's style",
        "gpu",
        handler="workers.translate:translate",
        request="ml.training.cyclegan_config:CycleGanConfig",
        before_success=_IMPORT_OUTPUTS,
        describe=lambda params: "CycleGAN",
        subject=_image_set_name,
        page=JobPage(partials=("jobs/translate_page.html",)),
    ),
    JobKind(
        "import_generator",
        "Import a TorchScript generator (bring your own)",
        "cpu",  # loading a module and drawing a preview grid: no accelerator needed
        handler="app.gans.byo:import_generator",
        describe=lambda params: "Imported generator",
        subject=_image_set_name,
        page=JobPage(partials=("gans/generator_page.html",)),
    ),
)
