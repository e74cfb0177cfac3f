"""Tiny data shared by the GAN training tests (loop, privacy, DDP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ml.data.store import DatasetWriter


def write_two_sided(root: Path, n: int = 24) -> Path:
    """Two visually different classes: a bright left half vs a bright right half; the last
    four images are the test split."""
    writer = DatasetWriter(root, (16,), n, label_names=("left", "right"))
    rng = np.random.default_rng(0)
    splits = {}
    for i in range(n):
        image = rng.uniform(0.0, 0.2, (20, 20))
        side = i % 2
        image[:, side * 10 : side * 10 + 10] += 0.7
        key = f"k{i:03d}"
        labels = {"left": int(side == 0), "right": int(side == 1)}
        writer.add(key, f"p{i}", labels, f"{i:064x}", np.clip(image, 0, 1))
        splits[key] = "train" if i < n - 4 else "test"
    writer.finish(splits, fsync=False)
    return root


class ConstantFeatures(torch.nn.Module):
    """Features that ignore the image: FID is constant, a plateau from the first snapshot."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.ones(images.shape[0], 4) + 0.0 * images.mean()
