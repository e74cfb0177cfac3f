"""A prepared dataset as a source of training batches for GANs and classifiers.

Rows are read from the store's memmap on demand (a 200k-image dataset at 256 px does not fit
in memory on every machine), sampled with a caller-owned `torch.Generator` so a run's data
order is part of its checkpointed random state. Classes are numbered by `ml.data.classes`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ml.data.classes import class_name, split_classes
from ml.data.store import PreparedDataset, open_dataset

__all__ = ["TrainingImages", "class_name"]


class TrainingImages:
    """Images of one split at one resolution, as float tensors in [-1, 1] with class indices."""

    def __init__(
        self, root: Path | str | PreparedDataset, resolution: int, split: str | None = "train"
    ) -> None:
        self.store = root if isinstance(root, PreparedDataset) else open_dataset(root)
        self.resolution = resolution
        self.split = split
        self.classes = split_classes(self.store, split)
        self.rows = self.classes.rows
        self.labels = torch.as_tensor(self.classes.labels, dtype=torch.long)
        self._images = self.store.images(resolution)
        self._scale = 2.0 / self.store.max_code

    def __len__(self) -> int:
        return int(self.rows.size)

    @property
    def channels(self) -> int:
        """Channels per image: 1 (grey) or 3 (e.g. a CT window stack)."""
        return self.store.channels

    @property
    def n_classes(self) -> int:
        return len(self.classes.names)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.classes.names

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.n_classes).tolist()

    def load(self, positions: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, C, R, R) in [-1, 1], C = `channels`, and labels (B,) at positions within
        this split."""
        pos = np.asarray(positions, dtype=np.int64)
        # Sorted reads are sequential on disk; the order is restored afterwards.
        order = np.argsort(pos, kind="stable")
        codes = np.empty((pos.size, *self._images.shape[1:]), dtype=self._images.dtype)
        codes[order] = self._images[self.rows[pos[order]]]
        images = torch.from_numpy(codes.astype(np.float32)).mul_(self._scale).sub_(1.0)
        if self.channels == 1:
            images = images.unsqueeze(1)
        return images, self.labels[torch.from_numpy(pos)]

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A uniformly random batch (with replacement across batches, as GAN training does)."""
        positions = torch.randint(len(self), (batch_size,), generator=generator)
        return self.load(positions.numpy())

    def all(self, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self) if limit is None else min(limit, len(self))
        return self.load(np.arange(n))
