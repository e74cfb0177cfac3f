"""Is a sampled image a function of (checkpoint, class, seed, psi)? Sample a checkpoint twice
with the same seeds and compare the PNGs pixel by pixel.

Without a --checkpoint it builds a StyleGAN2 (the family with per-pixel noise inputs) with
every noise strength set to --noise-strength and saves it in the training loop's checkpoint
format, so the bench needs no training run; pass a real run's checkpoint.pt or best.pt to
measure that instead. The second sampling runs after the global torch seed has been moved, as
a second job in another process would be.

    .venv/bin/python bench/sample_reproducibility.py [--checkpoint RUN/best.pt]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.networks.gan import build_gan  # noqa: E402
from ml.sampling import sample_images  # noqa: E402
from ml.training import checkpoint as ckpt  # noqa: E402
from ml.training.gan_config import GanConfig  # noqa: E402

OPTIONS = {"base_channels": 1024, "max_channels": 64, "z_dim": 64, "w_dim": 64, "mapping_layers": 2}


def built_checkpoint(path: Path, resolution: int, noise_strength: float) -> Path:
    torch.manual_seed(0)
    models = build_gan("stylegan2", resolution, 2, **OPTIONS)
    for layer in models.generator.synthesis.layers:
        torch.nn.init.constant_(layer.noise_strength, noise_strength)
    config = GanConfig(arch="stylegan2", resolution=resolution, arch_options=OPTIONS)
    weights = models.generator.state_dict()
    state = {
        "config": asdict(config),
        "class_names": ["a", "b"],
        "z_dim": models.z_dim,
        "generator": weights,
        "generator_ema": weights,
        "counters": {"nimg": 0},
    }
    ckpt.save_atomic(state, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--noise-strength", type=float, default=0.1)
    parser.add_argument("--per-class", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = args.checkpoint or built_checkpoint(
            folder / "checkpoint.pt", args.resolution, args.noise_strength
        )
        torch.manual_seed(1)
        sample_images(checkpoint, folder / "a", per_class=args.per_class, seed=0)
        torch.manual_seed(2)
        sample_images(checkpoint, folder / "b", per_class=args.per_class, seed=0)
        diffs = []
        for png in sorted((folder / "a").glob("*.png")):
            a = np.asarray(Image.open(png), dtype=np.int16)
            b = np.asarray(Image.open(folder / "b" / png.name), dtype=np.int16)
            diffs.append(np.abs(a - b))
        every = np.stack(diffs)
        identical = sum(not d.any() for d in diffs)
    print(
        f"{len(diffs)} images sampled twice with the same seeds: {identical} bit-identical; "
        f"mean |diff| {every.mean():.2f}/255, max {every.max()}/255"
    )


if __name__ == "__main__":
    main()
