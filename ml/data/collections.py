"""Small real image collections that ship inside installed packages (no download at run time).

They are read in place from site-packages; the attribution travels with every listing.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Collection:
    name: str
    title: str
    attribution: str
    files: tuple[Path, ...]
    labels: tuple[str, ...]


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _paediatric_cxr() -> Collection | None:
    root = _package_dir("pneumonia_model_package")
    if root is None:
        return None
    folder = root / "datasets" / "pneumonia-data" / "val"
    files = tuple(sorted(p for p in folder.glob("*.jpeg")))
    # File names carry the class: NORMAL2-IM-* are normal, person*_bacteria_* are pneumonia.
    labels = tuple("normal" if p.name.startswith("NORMAL") else "pneumonia" for p in files)
    return Collection(
        name="paediatric-cxr",
        title="Paediatric chest X-rays (8 normal, 8 bacterial pneumonia)",
        attribution=(
            "Kermany D, Zhang K, Goldbaum M. Labeled Optical Coherence Tomography (OCT) and Chest "
            "X-Ray Images for Classification. Mendeley Data v2, 2018. CC BY 4.0. Read from the "
            "pneumonia-model-package wheel."
        ),
        files=files,
        labels=labels,
    )


_PYDICOM_SAMPLES = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm")


def _pydicom_samples() -> Collection | None:
    root = _package_dir("pydicom")
    if root is None:
        return None
    folder = root / "data" / "test_files"
    files = tuple(folder / name for name in _PYDICOM_SAMPLES if (folder / name).exists())
    labels = tuple(name.split("_")[0].split(".")[0] for name in (f.name for f in files))
    return Collection(
        name="pydicom-samples",
        title="pydicom test images (CT, MR; several transfer syntaxes)",
        attribution="Test files distributed with pydicom (MIT licence; see pydicom's LICENSE).",
        files=files,
        labels=labels,
    )


def available_collections() -> dict[str, Collection]:
    found = [c for c in (_paediatric_cxr(), _pydicom_samples()) if c is not None and c.files]
    return {c.name: c for c in found}
