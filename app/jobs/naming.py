"""Readable job names: a default built from the job's type and key parameters, and the name a
clone gets. Pure functions; the caller looks up the dataset's name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.jobs.specs import JOB_TYPES

MAX_NAME = 200
SEPARATOR = " · "

GAN_ARCH_LABELS = {
    "dcgan": "DCGAN",
    "wgan-gp": "WGAN-GP",
    "sngan": "SNGAN",
    "acgan": "AC-GAN",
    "progan": "ProGAN",
    "stylegan2": "StyleGAN2",
}


def dataset_of(params: Mapping[str, Any]) -> int | None:
    """The dataset a job works on, from its params (a translation: its source dataset)."""
    for key in ("dataset_id", "dataset_a_id"):
        value = params.get(key)
        # bool is an int to Python; a stray true must not become dataset 1.
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def clean_name(raw: str | None) -> str | None:
    """What a form's Name field means: blank is "no name given", anything else is trimmed."""
    text = " ".join((raw or "").split())
    return text[:MAX_NAME] or None


def copy_name(name: str | None, fallback: str) -> str:
    return f"{name or fallback} (copy)"[:MAX_NAME]


def _what(job_type: str, params: Mapping[str, Any]) -> str:
    config = params.get("config")
    config = config if isinstance(config, Mapping) else {}
    if job_type == "train_gan":
        arch = str(config.get("arch", "GAN"))
        label = GAN_ARCH_LABELS.get(arch, arch.upper())
        resolution = config.get("resolution")
        return f"{label} {resolution}px" if resolution else label
    if job_type == "train_classifier":
        on = str(params.get("train_on", "real"))
        # A real-trained classifier also carries the set it is tested on; it did not train on it.
        sets = f"set #{params['image_set_id']}" if params.get("image_set_id") else on
        source = {"real": "real", "synthetic": sets, "mixed": f"real + {sets}"}.get(on, sets)
        return f"{config.get('arch', 'Classifier')} on {source}"
    if job_type == "evaluate_fidelity":
        return f"Fidelity of set #{params.get('image_set_id')}"
    if job_type == "nearest_neighbours":
        return f"Nearest neighbours of set #{params.get('image_set_id')}"
    if job_type == "attribution":
        pair = params.get("classifiers")
        pair = pair if isinstance(pair, Mapping) else {}
        return f"Attribution #{pair.get('real')} vs #{pair.get('synthetic')}"
    if job_type == "sample":
        return f"Samples of run #{params.get('train_job_id')}"
    if job_type == "translate":
        return "CycleGAN"
    if job_type == "image_stats":
        return "Image statistics"
    if job_type == "import_dataset":
        return "Import"
    if job_type == "subset_dataset":
        return "Benchmark subset"
    kind = JOB_TYPES.get(job_type)
    return kind.title if kind else job_type


def _of_what(job_type: str, params: Mapping[str, Any], dataset_name: str | None) -> str | None:
    if job_type in {"sample", "translate"} and params.get("name"):
        return str(params["name"])  # the image set these jobs make
    if job_type == "image_stats":
        return str(params.get("collection") or "") or None
    return dataset_name


def default_name(job_type: str, params: Mapping[str, Any], dataset_name: str | None) -> str:
    """E.g. "DCGAN 32px · Demo: paediatric chest X-rays"."""
    parts = [_what(job_type, params), _of_what(job_type, params, dataset_name)]
    return SEPARATOR.join(p for p in parts if p)[:MAX_NAME]
