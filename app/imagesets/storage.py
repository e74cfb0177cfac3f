"""Where image files live: the original upload and its blinded re-encoding, named by key."""

from __future__ import annotations

from pathlib import Path

from app.config import get_settings

# Every image a reader sees is this size, whatever its source (see app/domain/blinding.py).
BLINDED_SIZE = 512


def images_root() -> Path:
    return get_settings().home / "images"


def blinded_path(key: str) -> Path:
    # Keys are random hex/url-safe tokens made by us, never user input; two-level fan-out keeps
    # directories small for sets of 100k images.
    return images_root() / "blinded" / key[:2] / f"{key}.png"


def original_path(key: str, source_format: str) -> Path:
    return images_root() / "original" / key[:2] / f"{key}.{source_format}"


def display_path(study_id: int, key: str) -> Path:
    """An image as one study displays it (its geometry applied, undithered pixels): rendered
    once when the study is created, so serving costs the same for every source."""
    return images_root() / "display" / str(study_id) / key[:2] / f"{key}.npy"
