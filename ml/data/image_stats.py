"""Intensity statistics of an image collection: the first look at any new data set."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from ml.progress import ProgressFn, StopFn, Stopped, never_stop, no_progress

HISTOGRAM_BINS = 32


@dataclass(frozen=True)
class ImageStats:
    name: str
    label: str
    height: int
    width: int
    mean: float
    std: float
    p01: float
    p99: float


def describe(name: str, label: str, pixels: np.ndarray) -> ImageStats:
    """``pixels`` is a 2-D float array scaled to [0, 1]."""
    p01, p99 = np.percentile(pixels, [1, 99])
    return ImageStats(
        name=name,
        label=label,
        height=int(pixels.shape[0]),
        width=int(pixels.shape[1]),
        mean=float(pixels.mean()),
        std=float(pixels.std()),
        p01=float(p01),
        p99=float(p99),
    )


def collection_statistics(
    images: Iterable[tuple[str, str, np.ndarray]],
    total: int,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> dict[str, object]:
    """Per-image statistics, per-label means and a pooled intensity histogram."""
    per_image: list[ImageStats] = []
    histogram = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
    for index, (name, label, pixels) in enumerate(images):
        if should_stop():
            raise Stopped(f"stopped after {index} of {total} images")
        per_image.append(describe(name, label, pixels))
        histogram += np.histogram(pixels, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0]
        progress(index + 1, total, f"image {index + 1} of {total}")
    labels = sorted({s.label for s in per_image})
    by_label = {
        label: {
            "n": sum(s.label == label for s in per_image),
            "mean": float(np.mean([s.mean for s in per_image if s.label == label])),
        }
        for label in labels
    }
    return {
        "n_images": len(per_image),
        "mean_height": float(np.mean([s.height for s in per_image])) if per_image else 0.0,
        "mean_width": float(np.mean([s.width for s in per_image])) if per_image else 0.0,
        "by_label": by_label,
        "histogram": histogram.tolist(),
        "images": [asdict(s) for s in per_image],
    }
