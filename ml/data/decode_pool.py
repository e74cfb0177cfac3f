"""Decoding an import's files, in this process or in a pool of processes, in record order.

What a decoding process does for one file is everything but the store: read the bytes, hash
them, decode, resize to every resolution and round to integer codes (`encode_rows`). The
parent only copies the small rows into the store, so throughput scales with the processes.
Results come back in record order whatever the pool does, so a pooled import writes the same
store as a serial one, byte for byte.

Memory is bounded: files go out in chunks and at most `2 * workers` chunks are in flight; a
chunk's results are dropped once the parent has stored them. The pool is `ml.data.pools`'
(fork server; its processes exit with the import).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ml.data.dicom import decode_dicom_values, window_stack
from ml.data.errors import ImageDecodeError, NotAnImageError
from ml.data.images import load_grey_image, load_image, sniff_format
from ml.data.pools import pool_allowed, process_pool
from ml.data.resize import ResizeRule, square_image
from ml.data.store import StoreDtype, encode_rows

__all__ = [
    "NOT_CT",
    "STACK_PRESETS",
    "DecodeSettings",
    "Decoded",
    "decode_file",
    "decoded_in_order",
]

STACK_PRESETS = ("brain", "subdural", "bone")  # the three channels of `window="stack"`
NOT_CT = "not a CT DICOM; a window stack needs Hounsfield units"
CHUNK = 32  # files per task: large enough to hide the round trip, small enough to balance


@dataclass(frozen=True, slots=True)
class DecodeSettings:
    """Everything a decoding process needs besides the file (sent once per chunk)."""

    salt: str
    window: tuple[float, float] | None
    stack: bool
    resolutions: tuple[int, ...]
    rule: ResizeRule
    channels: int
    dtype: StoreDtype = "uint8"


@dataclass(frozen=True, slots=True)
class Decoded:
    """One file's outcome: its rows, key and sha256, or the reason it could not be stored."""

    key: str = ""
    sha256: str = ""
    rows: dict[int, NDArray[np.integer]] | None = None
    reason: str = ""


def image_key(salt: str, rel: str) -> str:
    """Salted so that a key gives away neither the file name nor the patient id inside it."""
    return hmac.digest(salt.encode(), b"image-key\0" + rel.encode(), "sha256").hex()[:24]


def decode_file(settings: DecodeSettings, path: Path | str | None, rel: str) -> Decoded:
    """Read, decode and encode one file; a file that cannot be decoded gives a `reason`."""
    if path is None:
        return Decoded(reason="record names no file")
    image = None
    try:
        data = Path(path).read_bytes()
        if settings.stack:
            pixels = _stacked(data)
        else:
            image = load_grey_image(data) if settings.channels == 1 else None
            if image is None:
                pixels = load_image(data, window=settings.window).pixels
    except (ImageDecodeError, OSError) as exc:
        return Decoded(reason=exc.reason if isinstance(exc, ImageDecodeError) else str(exc))
    key = image_key(settings.salt, rel)
    if image is not None:
        rows = _raster_rows(settings, image, key)
    else:
        rows = encode_rows(
            pixels, settings.resolutions, settings.rule, settings.channels, settings.dtype, key
        )
    return Decoded(key=key, sha256=hashlib.sha256(data).hexdigest(), rows=rows)


def _raster_rows(
    settings: DecodeSettings, image: Image.Image, key: str
) -> dict[int, NDArray[np.integer]]:
    """`encode_rows` of a PNG / JPEG held as a Pillow "F" image, byte for byte: squared by
    Pillow without a numpy copy at full size, then quantised by `encode_rows`, to which an
    image already of side `res` is a no-op square."""
    rows: dict[int, NDArray[np.integer]] = {}
    for res in settings.resolutions:
        square = square_image(image, res, settings.rule)
        rows |= encode_rows(square, (res,), settings.rule, 1, settings.dtype, key)
    return rows


def _stacked(data: bytes) -> NDArray[np.float32]:
    """(3, h, w): the `STACK_PRESETS` windows of one CT slice, inverted as `decode_dicom`
    inverts a windowed MONOCHROME1 image, so channel i equals a single-window import."""
    if sniff_format(data[:132]) != "dicom":
        raise NotAnImageError(NOT_CT)
    values, meta = decode_dicom_values(data)
    grey = meta.photometric in ("MONOCHROME1", "MONOCHROME2")
    if not grey or (meta.modality or "CT").strip().upper() != "CT":
        raise NotAnImageError(NOT_CT)
    out = window_stack(values, STACK_PRESETS)
    if meta.photometric == "MONOCHROME1":
        np.subtract(1.0, out, out=out)
    return out


def _decode_chunk(settings: DecodeSettings, files: list[tuple[str | None, str]]) -> list[Decoded]:
    return [decode_file(settings, path, rel) for path, rel in files]


def decoded_in_order(
    settings: DecodeSettings,
    files: list[tuple[Path | None, str]],
    *,
    workers: int = 1,
    chunk: int = CHUNK,
) -> Iterator[Decoded]:
    """`decode_file` of every (path, path inside the dataset) in `files`, yielded in order.

    With `workers` > 1 (and more than one chunk of files) a process pool decodes ahead of the
    consumer, at most `2 * workers` chunks ahead. Closing the iterator early (an exception in
    the consumer, a stop) cancels what is queued and waits for the running chunks to end, so
    no process outlives the import.
    """
    chunk = max(1, chunk)
    n_chunks = -(-len(files) // chunk)
    workers = min(max(1, workers), n_chunks)
    if workers <= 1 or not pool_allowed():
        for path, rel in files:
            yield decode_file(settings, path, rel)
        return
    pool = process_pool(workers)
    queued: deque[Future[list[Decoded]]] = deque()
    try:
        starts = iter(range(0, len(files), chunk))
        for start in starts:
            part = _part(files, start, chunk)
            queued.append(pool.submit(_decode_chunk, settings, part))
            if len(queued) >= 2 * workers:
                break
        while queued:
            results = queued.popleft().result()
            start = next(starts, None)
            if start is not None:
                part = _part(files, start, chunk)
                queued.append(pool.submit(_decode_chunk, settings, part))
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _part(
    files: list[tuple[Path | None, str]], start: int, chunk: int
) -> list[tuple[str | None, str]]:
    """One task's files, as strings (cheaper to pickle than Path objects)."""
    return [(None if p is None else str(p), rel) for p, rel in files[start : start + chunk]]
