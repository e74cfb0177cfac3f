"""Zip a folder of images as an image-set upload (`synthbench imageset import FOLDER`).

A folder with a manifest.csv is zipped as it is; without one, each image's class sub-folder
becomes its label. A sub-folder with a manifest.csv of its own is a separate set, such as the
DICOM copies `run sample --dicom` writes to dicom/ beside the PNGs: it is left out of the
folder's set (listing it there would import every image twice) and named in `left_out`.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from app.imagesets.manifest import MANIFEST_NAME

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom"})


class FolderLayoutError(ValueError):
    """The folder cannot be read as one set; the message says which folders can."""


@dataclass(frozen=True)
class FolderUpload:
    n_images: int
    left_out: list[str] = field(default_factory=list)  # nested sets, relative to the folder


def _is_manifest(path: Path) -> bool:
    # The importer matches the name without case (ingest.py); so does this.
    return path.name.lower() == MANIFEST_NAME and path.is_file()


def nested_sets(folder: Path) -> list[Path]:
    """Sub-folders (not `folder` itself) holding a manifest.csv, outermost only, sorted."""
    parents = {p.parent for p in folder.rglob("*") if _is_manifest(p)} - {folder}
    found: list[Path] = []
    for parent in sorted(parents, key=lambda p: len(p.parts)):  # outer folders first
        if not any(parent.is_relative_to(f) for f in found):
            found.append(parent)
    return sorted(found)


def folder_zip(folder: Path, target: Path) -> FolderUpload:
    """Write `target`, a zip the image-set importer reads, from `folder`."""
    nested = nested_sets(folder)
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and not any(p.is_relative_to(n) for n in nested)
    )
    left_out = [n.relative_to(folder).as_posix() for n in nested]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if any(_is_manifest(p) for p in folder.iterdir()):
        with zipfile.ZipFile(target, "w") as zf:
            for path in files:
                zf.write(path, path.relative_to(folder).as_posix())
        return FolderUpload(len(images), left_out)
    if nested:
        # Class sub-folders would make "dicom" or "samples" a label: refuse rather than guess.
        raise FolderLayoutError(
            f"{folder} has no {MANIFEST_NAME}, but {', '.join(left_out)} "
            f"{'has' if len(left_out) == 1 else 'each have'} one: import "
            f"{'that folder' if len(left_out) == 1 else 'one of those folders'} instead."
        )
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(["file", "source", "label"])
    with zipfile.ZipFile(target, "w") as zf:
        for path in images:
            rel = path.relative_to(folder).as_posix()
            label = path.parent.name if path.parent != folder else ""
            writer.writerow([rel, "synthetic", label])
            zf.write(path, rel)
        zf.writestr(MANIFEST_NAME, manifest.getvalue())
    return FolderUpload(len(images))
