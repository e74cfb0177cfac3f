"""Bring your own generator: a TorchScript module trained elsewhere, checked and sampled.

`check_torchscript` is what the import job runs: the file loads as TorchScript, maps seeded
(z, y) to (N, C, R, R) finite images inside the manifest's output range, gives the same
images twice (sampling must be reproducible from each image's seed), and renders a preview
grid (a row per class). `load_torchscript` wraps the module so it looks like a synthbench
generator to `ml.sampling`: outputs rescaled to [-1, 1], no truncation, no noise inputs.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import torch

from ml.generators.index import TORCHSCRIPT_INDEX, write_index
from ml.generators.manifest import GeneratorManifest, parse_manifest

MODULE_FILE = "generator.pt"
PREVIEW = "grids/preview.png"
PREVIEW_PER_CLASS = 4
MAX_PREVIEW_CLASSES = 16
# Images a module may put outside its stated range before it is refused, as a share of the
# range: float rounding (a tanh scaled to [0, 255]) and not more.
RANGE_SLACK = 1e-3


class GeneratorCheckError(ValueError):
    """The module does not do what its manifest says; the message says how."""


class ScriptedGenerator(torch.nn.Module):
    """An imported module in synthbench's conventions: images in [-1, 1]."""

    takes_truncation = False  # no mapping network synthbench knows of

    def __init__(self, module: torch.nn.Module, manifest: GeneratorManifest) -> None:
        super().__init__()
        self.module = module
        low, high = manifest.output_range
        self.low, self.scale = low, 2.0 / (high - low)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = self.module(z, labels)
        return (images.float() - self.low) * self.scale - 1.0


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_module(path: Path, device: str = "cpu") -> torch.nn.Module:
    try:
        module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # torch raises RuntimeError, ValueError or its own errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GeneratorCheckError(
            "The file is not a TorchScript module (save one with torch.jit.save("
            f"torch.jit.script(model), path)): {first[:300]}"
        ) from None
    module.eval()
    return module


def _preview_inputs(manifest: GeneratorManifest) -> tuple[torch.Tensor, torch.Tensor]:
    from ml.sampling import seeded_inputs

    n_classes = min(len(manifest.classes), MAX_PREVIEW_CLASSES)
    seeds = list(range(PREVIEW_PER_CLASS)) * n_classes  # the same z in every row
    z, _ = seeded_inputs(seeds, manifest.latent_size, None)
    labels = torch.arange(n_classes).repeat_interleave(PREVIEW_PER_CLASS)
    return z, labels


def check_module(module: torch.nn.Module, manifest: GeneratorManifest) -> torch.Tensor:
    """The module's images for the preview inputs, after every check has passed."""
    z, labels = _preview_inputs(manifest)
    runs = []
    for _ in range(2):
        try:
            with torch.no_grad():
                images = module(z, labels)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GeneratorCheckError(
                f"Calling the module with z {tuple(z.shape)} float32 and y {tuple(labels.shape)} "
                f"int64 failed: {first[:300]}"
            ) from None
        if not isinstance(images, torch.Tensor):
            raise GeneratorCheckError(
                f"The module returned {type(images).__name__}, not one tensor of images."
            )
        runs.append(images.detach().float().cpu())
    images = runs[0]
    n, c, r = z.shape[0], manifest.channels, manifest.resolution
    if tuple(images.shape) != (n, c, r, r):
        raise GeneratorCheckError(
            f"The module maps {n} latents to images of shape {tuple(images.shape)}; the "
            f"manifest says ({n}, {c}, {r}, {r}) (N, channels, resolution, resolution)."
        )
    if not torch.isfinite(images).all():
        raise GeneratorCheckError("The module's images hold NaN or infinite values.")
    low, high = manifest.output_range
    slack = RANGE_SLACK * (high - low)
    seen = (float(images.min()), float(images.max()))
    if seen[0] < low - slack or seen[1] > high + slack:
        raise GeneratorCheckError(
            f"The module's images range over [{seen[0]:.4g}, {seen[1]:.4g}], outside the "
            f"manifest's output_range [{low:g}, {high:g}]."
        )
    if not torch.equal(runs[0], runs[1]):
        raise GeneratorCheckError(
            "The module gave different images for the same (z, y): a sampled image must be "
            "reproducible from its seed, so draw any noise from z, not from torch's generator."
        )
    return images


def import_torchscript(source: Path, manifest_data: dict[str, Any], out: Path) -> dict[str, Any]:
    """Check `source` against its manifest and make `out` a run folder `ml.sampling` reads:
    the module, `generator.json` (written last: it marks the import as done) and a preview."""
    from ml.training.grid import save_grid

    manifest = parse_manifest(manifest_data)
    module = load_module(source)
    images = check_module(module, manifest)
    out.mkdir(parents=True, exist_ok=True)
    target = out / MODULE_FILE
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)
    sha = file_sha256(target)
    low, high = manifest.output_range
    scaled = (images - low) * (2.0 / (high - low)) - 1.0
    rows = min(len(manifest.classes), MAX_PREVIEW_CLASSES)
    save_grid(scaled, rows, out / PREVIEW)
    index = {
        "kind": "torchscript",
        "file": MODULE_FILE,
        "sha256": sha,
        "manifest": manifest.as_dict(),
    }
    write_index(out / TORCHSCRIPT_INDEX, index)
    return {
        **manifest.as_dict(),
        "class_names": list(manifest.classes),
        "sha256": sha,
        "checkpoint": str(out / TORCHSCRIPT_INDEX),
        "preview": PREVIEW,
        "file_bytes": target.stat().st_size,
    }


def load_torchscript(
    folder: Path, index: dict[str, Any], device: str
) -> tuple[torch.nn.Module, dict[str, Any]]:
    manifest = parse_manifest(index["manifest"])
    module = load_module(folder / index["file"], device)
    label = manifest.name or "torchscript"
    state = {
        "class_names": list(manifest.classes),
        "z_dim": manifest.latent_size,
        "config": {"arch": "torchscript", "resolution": manifest.resolution},
        "channels": manifest.channels,
        "counters": {"nimg": 0},
        "source": f"imported {label}",
        "sha256": index["sha256"],
    }
    return ScriptedGenerator(module, manifest).to(device).eval(), state
