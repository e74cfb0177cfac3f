"""Decoding an import's files, in this process or in a pool of processes, in record order.

What a decoding process does for one file is everything but the store: read the bytes, hash
them, decode, resize to every resolution and round to integer codes (`encode_rows`). The
parent only copies the small rows into the store, so throughput scales with the processes.
Results come back in record order whatever the pool does, so a pooled import writes the same
store as a serial one, byte for byte.

Memory is bounded: files go out in tasks of up to `CHUNK` files and at most `2 * workers`
tasks are in flight; a task's results are dropped once the parent has stored them. The pool
is `ml.data.pools`' (fork server; its processes exit with the import, and it runs inside a
Celery prefork pool process too).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ml.data.dicom import decode_dicom_values, window_stack
from ml.data.errors import ImageDecodeError, NotAnImageError
from ml.data.images import load_grey_image, load_image, load_rgb_image, sniff_format
from ml.data.pools import pool_allowed, process_pool, terminate
from ml.data.resize import ResizeRule, square_image
from ml.data.store import StoreDtype, encode_rows

__all__ = [
    "NOT_CT",
    "STACK_PRESETS",
    "DecodeSettings",
    "Decoded",
    "decode_file",
    "decoded_in_order",
    "decoding_processes",
]

STACK_PRESETS = ("brain", "subdural", "bone")  # the three channels of `window="stack"`
NOT_CT = "not a CT DICOM; a window stack needs Hounsfield units"
CHUNK = 32  # most files per task: enough to hide the round trip of small files
TASK_S = 0.25  # the time a task aims at (`_task_size`)


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
    colour: bool = False  # RGB rows (`load_rgb_image`), channels 3


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
        elif settings.colour:
            pixels = load_rgb_image(data, window=settings.window)
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


_DECODERS: ContextVar[set[int] | None] = ContextVar("decoders", default=None)


@contextmanager
def decoding_processes() -> Iterator[set[int]]:
    """The ids of the processes that decode files for `decoded_in_order` inside the block,
    filled in as they do: an import job reports their number, the proof that its pool ran."""
    pids: set[int] = set()
    token = _DECODERS.set(pids)
    try:
        yield pids
    finally:
        _DECODERS.reset(token)


def _decoded_by(pid: int) -> None:
    pids = _DECODERS.get()
    if pids is not None:
        pids.add(pid)


def _decode_chunk(
    settings: DecodeSettings, files: list[tuple[str | None, str]]
) -> tuple[int, float, list[Decoded]]:
    """The decoded files, with the process that decoded them and how long that took."""
    started = time.perf_counter()
    decoded = [decode_file(settings, path, rel) for path, rel in files]
    return os.getpid(), time.perf_counter() - started, decoded


def _task_size(seconds_per_file: float, largest: int) -> int:
    """Files per task so that a task takes about `TASK_S`: a few large radiographs or
    `largest` small PNGs (whose round trip would otherwise cost more than their decoding)."""
    return max(1, min(largest, round(TASK_S / max(seconds_per_file, 1e-6))))


def decoded_in_order(
    settings: DecodeSettings,
    files: list[tuple[Path | None, str]],
    *,
    workers: int = 1,
    chunk: int = CHUNK,
) -> Iterator[Decoded]:
    """`decode_file` of every (path, path inside the dataset) in `files`, yielded in order.

    With `workers` > 1 (and more than `chunk` files) a process pool decodes ahead of the
    consumer, at most `2 * workers` tasks ahead; this process decodes the first files while
    the pool starts. A task is one file at first, then as many files (at most `chunk`) as
    take about `TASK_S`, so the consumer, which checks for a stop between files, is never long
    without one. Closing
    the iterator early (an exception in the consumer, a stop) kills the pool's processes:
    their work is no longer wanted, and no process outlives the import.
    """
    chunk = max(1, chunk)
    n_chunks = -(-len(files) // chunk)
    workers = min(max(1, workers), n_chunks)
    if workers <= 1 or not pool_allowed():
        if files:
            _decoded_by(os.getpid())
        for path, rel in files:
            yield decode_file(settings, path, rel)
        return
    pool = process_pool(workers)
    queued: deque[Future[tuple[int, float, list[Decoded]]]] = deque()
    start, size, finished = 0, 1, False

    def submit() -> None:
        nonlocal start
        part = _part(files, start, size)
        start += len(part)
        queued.append(pool.submit(_decode_chunk, settings, part))

    try:
        # The pool's processes take a while to start (a fork server, then their imports:
        # seconds on a busy machine); this process decodes meanwhile, so that results, and
        # the consumer's progress and stop checks, never wait on that.
        warming = [pool.submit(os.getpid) for _ in range(workers)]
        while start < len(files) and not all(f.done() for f in warming):
            path, rel = files[start]
            start += 1
            _decoded_by(os.getpid())
            yield decode_file(settings, path, rel)
        while start < len(files) and len(queued) < 2 * workers:
            submit()
        while queued:
            pid, seconds, results = queued.popleft().result()
            _decoded_by(pid)
            size = _task_size(seconds / max(1, len(results)), chunk)
            if start < len(files):
                submit()
            yield from results
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            terminate(pool)


def _part(
    files: list[tuple[Path | None, str]], start: int, chunk: int
) -> list[tuple[str | None, str]]:
    """One task's files, as strings (cheaper to pickle than Path objects)."""
    return [(None if p is None else str(p), rel) for p, rel in files[start : start + chunk]]
