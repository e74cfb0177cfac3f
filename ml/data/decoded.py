"""Types and helpers shared by the image decoders: the decoded image, its non-identifying
metadata, the accepted sources and the keyed patient hash. `ml.data.dicom` re-exports them."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

Source = str | Path | bytes | bytearray | memoryview | BinaryIO

DEFAULT_MAX_PIXELS = 50_000_000


@dataclass(frozen=True, slots=True)
class ImageMeta:
    """Non-identifying facts about a decoded image.

    `voi` says how source values became [0, 1]: "window" (explicit or header window),
    "voi-lut" (header VOI LUT table), "minmax" (image min..max) or "full-range" (0..max code).
    `value_range` is the pair of source values (modality units, e.g. HU) mapped to 0 and 1 when
    that mapping is linear without clipping, so a viewer can re-window in source units.
    """

    source_format: str
    rows: int
    cols: int
    bits_stored: int
    photometric: str
    modality: str | None = None
    transfer_syntax: str | None = None
    patient_key: str | None = None
    n_frames: int = 1
    frame: int | None = None
    voi: str = "minmax"
    window: tuple[float, float] | None = None
    value_range: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """`pixels` is a float32 (rows, cols) array in [0, 1] where higher means brighter."""

    pixels: NDArray[np.float32]
    meta: ImageMeta


def patient_key(patient_id: str, salt: str | bytes) -> str:
    """Keyed SHA-256 (HMAC) of a PatientID: links images of one patient without storing it.

    HMAC rather than sha256(salt + id) so the construction has no length-extension quirks;
    without the salt the key cannot be brute-forced from a list of plausible IDs.
    """
    key = salt.encode() if isinstance(salt, str) else bytes(salt)
    # One-shot digest: the same HMAC-SHA256 as hmac.new(...).hexdigest(), computed in OpenSSL
    # without building an HMAC object, once per imported image.
    return hmac.digest(key, patient_id.strip().encode("utf-8"), "sha256").hex()


def read_source_bytes(source: Source) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str | Path):
        return Path(source).read_bytes()
    data = source.read()
    if not isinstance(data, bytes | bytearray):
        raise TypeError("file-like source must be opened in binary mode")
    return bytes(data)
