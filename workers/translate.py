"""Job handler: train (or resume) a CycleGAN between two prepared datasets, then translate one
split of the source domain into a synthetic image set (PNGs + manifest.csv, zipped).

Params:
    dataset_a_path, dataset_b_path   prepared dataset folders (domains A and B)
    config                           a `CycleGanConfig` as a dict; device "auto" picks CUDA
    translate_split                  split to translate, default "test"; None for all images
    direction                        "a2b" (default: translate dataset A) or "b2a" (dataset B)
    dataset_a_hash, dataset_b_hash   optional: what the app expects, checked against the data

Training resumes from `out/checkpoint.pt` when a previous attempt left one (see
`ml.training.cyclegan`); translation is deterministic, so it simply starts over.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ml.progress import ProgressFn, StopFn

# Share of the job's progress bar given to training; translating one split is quick by
# comparison (a forward pass per image against thousands of training steps).
TRAIN_SHARE = 0.95
FOLDER = "translated"


def translate(params: dict[str, Any], out: Path, progress: ProgressFn, stop: StopFn) -> dict:
    import torch

    from ml.data.store import open_dataset
    from ml.training.cyclegan import CycleGanConfig, train_cyclegan, translate_images

    config = CycleGanConfig(**params["config"])
    if config.device == "auto":
        config.device = "cuda" if torch.cuda.is_available() else "cpu"
    direction = params.get("direction", "a2b")
    if direction not in ("a2b", "b2a"):
        raise ValueError(f"direction must be 'a2b' or 'b2a', got {direction!r}")
    split = params.get("translate_split", "test")

    for side in ("a", "b"):
        # Checked before training: hours on data other than what the job names are wasted.
        expected = params.get(f"dataset_{side}_hash")
        actual = open_dataset(params[f"dataset_{side}_path"]).info.content_hash
        if expected and expected != actual:
            raise ValueError(f"dataset {side.upper()} changed since the job was created")

    def train_progress(done: float, total: float, message: str) -> None:
        progress(TRAIN_SHARE * done / max(total, 1e-9), 1.0, f"training: {message}")

    def translate_progress(done: float, total: float, message: str) -> None:
        share = TRAIN_SHARE + (1.0 - TRAIN_SHARE) * done / max(total, 1e-9)
        progress(share, 1.0, f"translating: {message}")

    trained = train_cyclegan(
        params["dataset_a_path"],
        params["dataset_b_path"],
        out,
        config,
        progress=train_progress,
        should_stop=stop,
    )
    folder = out / FOLDER
    if folder.exists():
        shutil.rmtree(folder)  # a previous attempt died mid-way; translation is deterministic
    source = params["dataset_a_path"] if direction == "a2b" else params["dataset_b_path"]
    result = translate_images(
        trained.checkpoint,
        source,
        folder,
        direction=direction,
        split=split,
        device=config.device,
        progress=translate_progress,
        should_stop=stop,
    )
    archive = out / f"{FOLDER}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for file in sorted(folder.iterdir()):
            if file.is_file():
                zf.write(file, file.name)
    training = asdict(trained)
    return {
        **{k: training[k] for k in ("kimg", "ticks", "snapshots", "images_per_second")},
        "checkpoint": trained.checkpoint,
        "dataset_a_hash": trained.dataset_a_hash,
        "dataset_b_hash": trained.dataset_b_hash,
        "cycle": trained.cycle,
        "direction": direction,
        "translate_split": split,
        "group": result.group,
        "n_translated": result.n_images,
        "per_class": result.per_class,
        "translated_cycle": result.cycle,
        "checkpoint_sha256": result.checkpoint_sha256,
        "folder": result.folder,
        "zip": str(archive),
        "device": config.device,
    }
