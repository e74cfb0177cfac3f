"""The demo's baseline generator: shapes, range, class dependence, determinism."""

from __future__ import annotations

import numpy as np

from ml.data.collections import available_collections
from ml.data.images import load_image
from ml.synthesis.pca import fit_pca_generator, square_resize


def _xrays() -> tuple[list[np.ndarray], list[str]]:
    c = available_collections()["paediatric-cxr"]
    return [load_image(p).pixels for p in c.files], list(c.labels)


def test_square_resize_keeps_range_and_shape() -> None:
    out = square_resize(np.linspace(0, 1, 300 * 200, dtype=np.float32).reshape(300, 200), 64)
    assert out.shape == (64, 64) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_samples_are_class_dependent_deterministic_and_in_range() -> None:
    images, labels = _xrays()
    gen = fit_pca_generator(images, labels, size=64)
    normal = gen.sample("normal", 4, seed=1)
    again = gen.sample("normal", 4, seed=1)
    other = gen.sample("normal", 4, seed=2)
    pneumonia = gen.sample("pneumonia", 4, seed=1)
    assert normal.shape == (4, 64, 64) and normal.min() >= 0 and normal.max() <= 1
    assert np.array_equal(normal, again) and not np.array_equal(normal, other)
    # Each class's samples sit nearer their own class mean than the other's.
    for label, samples in (("normal", normal), ("pneumonia", pneumonia)):
        own = gen.classes[label].mean
        foreign = gen.classes["pneumonia" if label == "normal" else "normal"].mean
        flat = samples.reshape(len(samples), -1)
        assert (
            np.linalg.norm(flat - own, axis=1).mean()
            < np.linalg.norm(flat - foreign, axis=1).mean()
        )


def test_temperature_zero_gives_the_class_mean() -> None:
    images, labels = _xrays()
    gen = fit_pca_generator(images, labels, size=32)
    mean = gen.sample("normal", 1, seed=0, temperature=0.0)[0]
    assert np.allclose(mean.ravel(), np.clip(gen.classes["normal"].mean, 0, 1), atol=1e-6)
