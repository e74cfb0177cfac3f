"""A class-conditional PCA (probabilistic Gaussian) image generator.

The simplest honest generative baseline: fit a Gaussian in the principal subspace of each
class and sample from it. With the 16 demo X-rays it can only blend training images, which is
exactly the memorisation the demo should make visible; GANs replace it once trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


def square_resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, then resize with anti-aliasing; float32 in [0, 1]."""
    h, w = pixels.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = np.ascontiguousarray(pixels[top : top + side, left : left + side], dtype=np.float32)
    resized = Image.fromarray(crop, mode="F").resize((size, size), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


@dataclass(frozen=True)
class ClassModel:
    mean: np.ndarray  # (d,)
    components: np.ndarray  # (k, d), orthonormal rows
    scales: np.ndarray  # (k,), standard deviation along each component


@dataclass(frozen=True)
class PCAGenerator:
    size: int
    classes: dict[str, ClassModel]

    def sample(self, label: str, n: int, *, seed: int, temperature: float = 1.0) -> np.ndarray:
        """``n`` images of ``label`` as a (n, size, size) float32 array in [0, 1]."""
        model = self.classes[label]
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, model.scales.size)) * model.scales * temperature
        flat = model.mean + z @ model.components
        return np.clip(flat.reshape(n, self.size, self.size), 0.0, 1.0).astype(np.float32)


def fit_pca_generator(
    images: list[np.ndarray], labels: list[str], *, size: int = 128, max_components: int = 32
) -> PCAGenerator:
    if len(images) != len(labels) or not images:
        raise ValueError("need one label per image and at least one image")
    data = np.stack([square_resize(img, size).ravel() for img in images])
    classes: dict[str, ClassModel] = {}
    for label in sorted(set(labels)):
        rows = data[[i for i, lab in enumerate(labels) if lab == label]]
        mean = rows.mean(axis=0)
        centred = rows - mean
        # SVD of the centred data: singular values give the per-component spread.
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        k = min(max_components, max(len(rows) - 1, 1))
        scales = singular[:k] / np.sqrt(max(len(rows) - 1, 1))
        classes[label] = ClassModel(mean=mean, components=vt[:k], scales=scales)
    return PCAGenerator(size=size, classes=classes)
