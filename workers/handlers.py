"""Handlers of the dataset, image statistics and GAN job types: build the ml call from the job's
params, return its result. Each job type names its handler in its declaration
(`app.jobs.registry.JobKind.handler`); `handler_for` finds it."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from app.jobs.registry import kind_of, resolve
from ml.data.collections import available_collections
from ml.data.decode_pool import decoding_processes
from ml.data.image_stats import collection_statistics
from ml.data.images import load_image
from ml.data.pools import usable_cores
from ml.data.prepare import prepare_dataset
from ml.data.store import DatasetInfo
from ml.data.versions import derive_subset
from ml.progress import ProgressFn, StopFn

Handler = Callable[[dict[str, Any], Path, ProgressFn, StopFn], dict[str, Any]]


def image_stats(params: dict[str, Any], out: Path, progress: ProgressFn, stop: StopFn) -> dict:
    collection = available_collections()[params["collection"]]

    def images() -> Iterator[tuple[str, str, np.ndarray]]:
        for path, label in zip(collection.files, collection.labels, strict=True):
            yield path.name, label, load_image(path).pixels

    result = collection_statistics(
        images(), len(collection.files), progress=progress, should_stop=stop
    )
    result["collection"] = collection.name
    result["attribution"] = collection.attribution
    (out / "image_stats.json").write_text(json.dumps(result, indent=2))
    return result


# The database keeps this many lines of an import report; the artefact file keeps them all.
REPORT_LINES_KEPT = 1000


def _fresh(dest: Path) -> Path:
    # A previous attempt that died mid-way left partial files; both jobs are deterministic, so
    # starting again from nothing gives the same dataset.
    if dest.exists():
        shutil.rmtree(dest)
    return dest


def _info(info: DatasetInfo) -> dict[str, Any]:
    return {
        "content_hash": info.content_hash,
        "n_images": info.n_images,
        "n_patients": info.n_patients,
        "label_names": list(info.label_names),
        "resolutions": list(info.resolutions),
        "splits": info.splits,
        # Only when not 1, as in the manifest: a colour import (or a CT window stack).
        **({"channels": info.channels} if info.channels != 1 else {}),
    }


def import_dataset(params: dict[str, Any], out: Path, progress: ProgressFn, stop: StopFn) -> dict:
    from app.datasets.service import patient_salt

    # A previous attempt of this job that died mid-way (the worker killed, the job requeued)
    # left rows and a journal: resume keeps what it finished and decodes the rest. Files are
    # decoded by one process per usable core (the result does not depend on how many), in
    # this Celery pool process too (ml/data/pools.py says why that is safe).
    with decoding_processes() as decoders:
        result = prepare_dataset(
            Path(params["source"]),
            params["format"],
            Path(params["dest"]),
            resume=True,
            workers=int(params.get("workers") or usable_cores()),
            resolutions=tuple(params["resolutions"]),
            salt=patient_salt(),
            seed=int(params.get("seed", 0)),
            window=params.get("window"),
            # Jobs queued before the option existed imported grey.
            colour=params.get("colour", "grey"),
            rule=params.get("rule", "pad"),
            format_options=params.get("format_options") or {},
            progress=progress,
            should_stop=stop,
        )
    (out / "import_report.txt").write_text("\n".join(result.errors) + "\n", encoding="utf-8")
    _page_view(params["dest"], result.info)
    errors = result.errors[:REPORT_LINES_KEPT]
    if len(result.errors) > REPORT_LINES_KEPT:
        more = len(result.errors) - REPORT_LINES_KEPT
        errors.append(f"... and {more} more (see import_report.txt in the job's artefacts)")
    return {
        **_info(result.info),
        "n_read": result.n_read,
        "n_failed": result.n_failed,
        "n_own_patients": result.n_own_patients,
        # How many processes decoded this attempt's files (0 when it resumed a finished
        # import): one per usable core, and this one while they started, unless the import
        # was smaller than that.
        "decode_processes": len(decoders),
        "notes": list(result.notes),
        "summary": result.summary,
        "errors": errors,
    }


def subset_dataset(params: dict[str, Any], out: Path, progress: ProgressFn, stop: StopFn) -> dict:
    derived = derive_subset(
        Path(params["parent"]),
        _fresh(Path(params["dest"])),
        kind=params["kind"],
        value=int(params.get("value", 0)),
        seed=int(params.get("seed", 0)),
        resolutions=params.get("resolutions"),
        progress=progress,
        should_stop=stop,
    )
    _page_view(params["dest"], derived.info)
    return {**_info(derived.info), "description": derived.description, "errors": []}


def _page_view(dest: str, info: DatasetInfo) -> None:
    """The dataset page's counts, computed here once, not by the first page view (at CheXpert
    size that took most of a minute: bench/pages_at_scale.py)."""
    from app.datasets.pages import precompute

    precompute(dest, info.content_hash)


def train_gan(params: dict[str, Any], out: Path, progress: ProgressFn, stop: StopFn) -> dict:
    import torch

    from ml.training.gan import GanConfig
    from ml.training.gan import train_gan as train

    config = GanConfig(**params["config"])
    if config.device == "auto":
        config.device = "cuda" if torch.cuda.is_available() else "cpu"
    result = train(params["dataset_path"], out, config, progress=progress, should_stop=stop)
    return {**asdict(result), "dataset_hash": params["dataset_hash"], "device": config.device}


def sample(params: dict[str, Any], out: Path, progress: ProgressFn, stop: StopFn) -> dict:
    import torch

    from ml.sampling import sample_images

    device = "cuda" if torch.cuda.is_available() else "cpu"
    folder = out / "samples"
    if folder.exists():
        shutil.rmtree(folder)  # a previous attempt died mid-way; sampling is deterministic
    result = sample_images(
        Path(params["checkpoint"]),
        folder,
        per_class=int(params["per_class"]),
        classes=params.get("classes") or None,
        truncation_psi=float(params.get("truncation_psi", 1.0)),
        seed=int(params.get("seed", 0)),
        dicom=bool(params.get("dicom", False)),
        device=device,
        progress=progress,
        should_stop=stop,
    )
    archive = out / "samples.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for file in sorted(folder.iterdir()):
            if file.is_file():
                zf.write(file, file.name)
    return {**asdict(result), "zip": str(archive)}


def handler_for(job_type: str) -> Handler | None:
    """The handler a job type declares (`JobKind.handler` in its feature's `job_types`
    module), imported on first use; None for a type no longer declared."""
    kind = kind_of(job_type)
    return resolve(kind.handler) if kind is not None else None
