"""Demo image sets, built the way a user would: zips with a manifest through the upload path."""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np
from PIL import Image as PILImage

from ml.data.collections import Collection
from ml.data.images import load_image
from ml.synthesis.pca import fit_pca_generator

PCA_SIZE = 128
PCA_SOURCE = f"pca-baseline-{PCA_SIZE}px"


def _manifest(rows: list[tuple[str, str, str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["file", "source", "label", "group"])
    writer.writerows(rows)
    return out.getvalue()


def real_zip(collection: Collection) -> io.BytesIO:
    buffer = io.BytesIO()
    rows = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for path, label in zip(collection.files, collection.labels, strict=True):
            zf.write(path, arcname=path.name)
            rows.append((path.name, "real", label, ""))
        zf.writestr("manifest.csv", _manifest(rows))
    buffer.seek(0)
    return buffer


def synthetic_zip(collection: Collection, per_label: int, seed: int) -> io.BytesIO:
    """Samples of a class-conditional PCA generator fitted on the collection itself."""
    images = [load_image(p).pixels for p in collection.files]
    generator = fit_pca_generator(images, list(collection.labels), size=PCA_SIZE)
    buffer = io.BytesIO()
    rows = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for offset, label in enumerate(sorted(generator.classes)):
            samples = generator.sample(label, per_label, seed=seed + offset)
            for i, sample in enumerate(samples):
                name = f"pca_{label}_{i:02d}.png"
                png = io.BytesIO()
                PILImage.fromarray((sample * 255).round().astype(np.uint8), mode="L").save(
                    png, "PNG"
                )
                zf.writestr(name, png.getvalue())
                rows.append((name, "synthetic", label, PCA_SOURCE))
        zf.writestr("manifest.csv", _manifest(rows))
    buffer.seek(0)
    return buffer


def simulated_ratings_csv(*, readers: int = 4, images: int = 40, seed: int = 2026) -> str:
    """Ratings of simulated readers who are barely better than chance (accuracy ~0.55),
    for showing the statistics page before anyone has read. Labelled as simulated wherever
    it appears; never mixed into a real study."""
    rng = np.random.default_rng(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["reader", "image", "truth", "answer", "confidence", "reason", "source"])
    reasons = ["blurred ribs", "odd heart border", "no text marker", "too smooth", "artefact"]
    for r in range(readers):
        for i in range(images):
            truth = "fake" if i % 2 else "real"
            draw = rng.random()
            if draw < 0.08:
                answer = "uncertain"
            elif draw < 0.08 + 0.55 * 0.92:
                answer = truth
            else:
                answer = "real" if truth == "fake" else "fake"
            reason = rng.choice(reasons) if answer != "real" else ""
            source = ("pca-64px" if i % 4 == 1 else "pca-128px") if truth == "fake" else ""
            confidence = int(rng.integers(1, 6))
            writer.writerow(
                [f"sim-{r + 1}", f"case{i:03d}", truth, answer, confidence, reason, source]
            )
    return out.getvalue()
