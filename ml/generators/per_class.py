"""Seed 002: one GAN per class, trained one after the other and sampled as one generator.

`train_per_class` trains a generator for each class of the split on that class's images
alone, each in a sub-run folder of its own (`class-00`, `class-01`, ...) that resumes like any
run; progress counts the images of all sub-runs. When every class is done it writes the
indexes (`ml.generators.index`) that `ml.sampling` reads: `PerClassGenerator` sends each
image to its class's generator, so a sampled set has every class from its own GAN.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ml import run_folder
from ml.data.training_images import TrainingImages
from ml.generators.index import PER_CLASS_BEST, PER_CLASS_LAST, write_index
from ml.progress import ProgressFn, StopFn, never_stop, no_progress
from ml.training.gan_config import BEST, CHECKPOINT, GanConfig

if TYPE_CHECKING:  # ml.training.gan calls this module: imported there at run time only
    from ml.training.gan import GanResult

RESULT = run_folder.RESULT  # in a sub-run folder once it finished: resuming skips it


def sub_folder(index: int) -> str:
    return f"class-{index:02d}"


def train_per_class(
    dataset: Path | str,
    out: Path | str,
    config: GanConfig,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> GanResult:
    from ml.training.gan import GanResult, train_gan

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = TrainingImages(dataset, config.resolution, config.split)
    names, counts = list(data.class_names), data.class_counts()
    per_run = int(config.kimg * 1000)
    total = per_run * len(names)
    info = {
        "config": asdict(config),
        "dataset_hash": data.store.info.content_hash,
        "class_names": names,
        "class_counts": counts,
        "n_train_images": len(data),
        "per_class": [{"name": n, "folder": sub_folder(i)} for i, n in enumerate(names)],
    }
    run_folder.write_run_info(out, info)
    results: list[GanResult] = []
    for i, name in enumerate(names):
        folder = out / sub_folder(i)
        done_file = folder / RESULT
        if done_file.is_file():
            results.append(GanResult(**json.loads(done_file.read_text(encoding="utf-8"))))
            continue

        def sub_progress(done: float, _total: float, message: str, i: int = i) -> None:
            label = f"class {i + 1}/{len(names)} ({names[i]}): {message}"
            progress(i * per_run + done, total, label)

        sub_config = replace(config, per_class=False, only_class=name)
        result = train_gan(
            dataset, folder, sub_config, progress=sub_progress, should_stop=should_stop
        )
        done_file.write_text(json.dumps(asdict(result)), encoding="utf-8")
        results.append(result)
    _write_indexes(out, config.arch, names)
    return _combined(results, names, out)


def _write_indexes(out: Path, arch: str, names: list[str]) -> None:
    last = [f"{sub_folder(i)}/{CHECKPOINT}" for i in range(len(names))]
    best = [
        f"{sub_folder(i)}/{BEST}" if (out / sub_folder(i) / BEST).is_file() else path
        for i, path in enumerate(last)
    ]
    for file, checkpoints in ((PER_CLASS_LAST, last), (PER_CLASS_BEST, best)):
        index = {"kind": "per_class", "arch": arch, "class_names": names}
        write_index(out / file, {**index, "checkpoints": checkpoints})


def _combined(results: list[GanResult], names: list[str], out: Path) -> GanResult:
    from ml.training.gan import GanResult

    nimg = [r.kimg * 1000 for r in results]
    seconds = sum(n / max(r.images_per_second, 1e-9) for n, r in zip(nimg, results, strict=True))
    private = [r for r in results if r.epsilon is not None]
    # The classes' images are disjoint, so the runs compose in parallel: the privacy spent
    # on any one patient's image is that of the one run that saw it, at most the largest.
    worst = max(private, key=lambda r: r.epsilon) if private else None
    return GanResult(
        kimg=sum(nimg) / 1000.0,
        ticks=sum(r.ticks for r in results),
        snapshots=sum(r.snapshots for r in results),
        best_fid=None,  # each class's FID is against that class alone: see per_class
        best_kimg=None,
        stopped_early=any(r.stopped_early for r in results),
        images_per_second=sum(nimg) / max(seconds, 1e-9),
        class_names=names,
        checkpoint=str(out / PER_CLASS_LAST),
        out=str(out),
        epsilon=worst.epsilon if worst else None,
        delta=worst.delta if worst else None,
        accountant=worst.accountant if worst else None,
        epsilon_rdp=worst.epsilon_rdp if worst else None,
        per_class=[
            {
                "name": name,
                "folder": sub_folder(i),
                "kimg": r.kimg,
                "best_fid": r.best_fid,
                "best_kimg": r.best_kimg,
                "stopped_early": r.stopped_early,
                "epsilon": r.epsilon,
            }
            for i, (name, r) in enumerate(zip(names, results, strict=True))
        ],
    )


class PerClassGenerator(torch.nn.Module):
    """One-class generators behind the interface of one conditional generator: row i of a
    batch is drawn by the generator of class `labels[i]`, from the same z (and noise) it would
    get alone, so an image does not depend on the other classes in its batch."""

    def __init__(self, generators: list[torch.nn.Module], takes_truncation: bool) -> None:
        super().__init__()
        self.generators = torch.nn.ModuleList(generators)
        self.takes_truncation = takes_truncation

    def noise_shapes(self) -> list[tuple[int, ...]] | None:
        shapes = getattr(self.generators[0], "noise_shapes", None)
        return shapes() if callable(shapes) else None

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor,
        truncation_psi: float = 1.0,
        noise: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        out: torch.Tensor | None = None
        for k, generator in enumerate(self.generators):
            rows = (labels == k).nonzero().flatten()
            if rows.numel() == 0:
                continue
            kwargs: dict[str, Any] = {}
            if self.takes_truncation:
                kwargs["truncation_psi"] = truncation_psi
            if noise is not None:
                kwargs["noise"] = [n[rows] for n in noise]
            images = generator(z[rows], torch.zeros_like(labels[rows]), **kwargs)
            if out is None:
                out = images.new_zeros((labels.shape[0], *images.shape[1:]))
            out[rows] = images
        if out is None:
            raise ValueError("no image asked of any class")
        return out


def load_per_class(
    folder: Path, index: dict[str, Any], device: str
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The generator of a per-class index and a state like a checkpoint's for `ml.sampling`."""
    from ml.sampling import load_generator, takes_truncation

    names = list(index["class_names"])
    paths = [folder / p for p in index["checkpoints"]]
    if len(paths) != len(names):
        raise ValueError(f"{folder}: {len(names)} classes but {len(paths)} checkpoints")
    loaded = [load_generator(p, device) for p in paths]
    generators = [g for g, _ in loaded]
    digest = hashlib.sha256()
    for path in paths:  # the set's hash names every checkpoint it was drawn from, in order
        digest.update(_file_sha256(path).encode() + b"\n")
    kimg = max(s["counters"]["nimg"] for _, s in loaded) / 1000.0
    state = {
        "class_names": names,
        "z_dim": loaded[0][1]["z_dim"],
        "config": {**loaded[0][1]["config"], "arch": index["arch"]},
        "counters": {"nimg": int(kimg * 1000)},
        "source": f"{index['arch']}-per-class@{kimg:g}kimg",
        "sha256": digest.hexdigest(),
    }
    model = PerClassGenerator(generators, takes_truncation(generators[0])).to(device).eval()
    return model, state


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
