"""On-disk store of a prepared dataset: fixed-size square images plus a manifest, content-hashed.

Layout of a dataset folder::

    images_32.u8     raw little-endian array (n, 32, 32), one file per resolution, row i = entry i;
                     (n, 3, 32, 32) for a 3-channel dataset (e.g. a CT window stack)
    images_64.u8     (".u16" when dtype is uint16)
    manifest.json    entries (key, patient_key, labels, split, source_sha256), label_names,
                     resolutions, dtype, resize_rule, created_by, and the content_hash;
                     "channels" only when it is not 1 (single-channel manifests are unchanged)

Plain numpy memmaps keep reading trivial (a training loop slices rows without loading the file)
and need no extra library. `content_hash` is sha256 over the canonical JSON of the manifest
(without the hash itself) and the bytes of every image file, so a job records exactly which
data it used and `verify()` detects any later change. The manifest deliberately holds no
timestamp: preparing the same inputs twice gives the same hash.

The manifest is written last, through a temporary file and a rename, so a folder either holds a
complete dataset or is not one: a crash mid-way leaves image files but no manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ml.data.resize import RULES, ResizeRule, to_square

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_DTYPES: dict[str, tuple[str, str, int]] = {
    # name -> (explicit little-endian numpy dtype, file suffix, largest code)
    "uint8": ("<u1", "u8", 255),
    "uint16": ("<u2", "u16", 65535),
}
DTYPES: tuple[str, ...] = tuple(_DTYPES)
_HASH_CHUNK = 8 << 20
CHANNELS = (1, 3)

StoreDtype = Literal["uint8", "uint16"]
LabelValue = int | str

__all__ = [
    "DatasetInfo",
    "DatasetWriter",
    "Entry",
    "PreparedDataset",
    "content_hash",
    "encode_rows",
    "entry_dict",
    "open_dataset",
]


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    patient_key: str
    labels: dict[str, LabelValue]
    split: str
    source_sha256: str


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    n_images: int
    n_patients: int
    label_names: tuple[str, ...]
    resolutions: tuple[int, ...]
    splits: dict[str, int]
    content_hash: str
    dtype: str = "uint8"
    channels: int = 1


def image_path(root: Path, res: int, dtype: str) -> Path:
    return root / f"images_{res}.{_DTYPES[dtype][1]}"


def image_file_size(n: int, res: int, dtype: str, channels: int = 1) -> int:
    """Bytes of an image file holding `n` rows."""
    return n * channels * res * res * np.dtype(_DTYPES[dtype][0]).itemsize


def row_shape(res: int, channels: int = 1) -> tuple[int, ...]:
    """Shape of one stored row: (res, res), or (channels, res, res) when channels != 1."""
    return (res, res) if channels == 1 else (channels, res, res)


def _canonical(obj: object) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def content_hash(root: Path | str, manifest: Mapping[str, Any]) -> str:
    """sha256 over the manifest (minus `content_hash`) and every image file, streamed."""
    root = Path(root)
    body = {k: v for k, v in manifest.items() if k != "content_hash"}
    digest = hashlib.sha256(b"synthbench-prepared-dataset\n")
    text = _canonical(body)
    # Length prefixes keep the manifest / array boundary unambiguous.
    digest.update(len(text).to_bytes(8, "little") + text)
    for res in sorted(body["resolutions"]):
        path = image_path(root, res, body["dtype"])
        digest.update(f"images_{res}:{path.stat().st_size}\n".encode("ascii"))
        with path.open("rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _normalise_labels(labels: Mapping[str, LabelValue]) -> dict[str, LabelValue]:
    out: dict[str, LabelValue] = {}
    for name, value in labels.items():
        if isinstance(value, bool | np.bool_):
            value = int(value)  # True and 1 must hash the same
        elif isinstance(value, np.integer):
            value = int(value)
        if not isinstance(name, str) or not isinstance(value, int | str):
            raise TypeError(f"label {name!r}={value!r}: names are str, values int or str")
        out[name] = value
    return out


def entry_dict(
    key: str, patient_key: str, labels: Mapping[str, LabelValue], source_sha256: str
) -> dict[str, Any]:
    """One manifest entry before its split is known."""
    return {
        "key": key,
        "patient_key": patient_key,
        "labels": _normalise_labels(labels),
        "source_sha256": source_sha256,
    }


def encode_rows(
    pixels: NDArray[np.floating],
    resolutions: tuple[int, ...],
    rule: ResizeRule = "pad",
    channels: int = 1,
    dtype: StoreDtype = "uint8",
    key: str = "image",
) -> dict[int, NDArray[np.integer]]:
    """The stored rows of one image: `pixels` (float [0, 1]) squared to every resolution and
    rounded to integer codes. Pure, so a decoding process can make rows the writer only copies.

    `pixels` is (h, w) for a single-channel dataset, (channels, h, w) otherwise; each channel
    is resized alike.
    """
    pixels = np.asarray(pixels)
    if channels == 1 and pixels.ndim != 2:
        raise ValueError(f"{key}: expected (h, w) pixels, got shape {pixels.shape}")
    if channels != 1 and (pixels.ndim != 3 or pixels.shape[0] != channels):
        raise ValueError(f"{key}: expected ({channels}, h, w) pixels, got shape {pixels.shape}")
    np_dtype, _, max_code = _DTYPES[dtype]
    out: dict[int, NDArray[np.integer]] = {}
    for res in resolutions:
        # to_square returns a new array: scale and round it in place, then cast (the same
        # float -> integer cast the memmap row assignment did).
        if channels == 1:
            square = to_square(pixels, res, rule)
        else:
            square = np.stack([to_square(c, res, rule) for c in pixels])
        square *= max_code
        out[res] = np.rint(square, out=square).astype(np_dtype)
    return out


class DatasetWriter:
    """Fill a new dataset folder row by row, then `finish` it with the patient splits."""

    def __init__(
        self,
        root: Path | str,
        resolutions: tuple[int, ...] | list[int],
        n_expected: int,
        dtype: StoreDtype = "uint8",
        *,
        rule: ResizeRule = "pad",
        created_by: str = "",
        label_names: tuple[str, ...] | list[str] | None = None,
        channels: int = 1,
        resume_entries: list[dict[str, Any]] | None = None,
    ) -> None:
        """`resume_entries` are the entries (`entry_dict`) of rows 0..k-1 that an interrupted
        writer over the same folder and arguments had written and flushed (`flush`); the new
        writer keeps those rows and goes on at row k."""
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got {dtype!r}")
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        res = tuple(sorted({int(r) for r in resolutions}))
        if not res or res[0] < 1:
            raise ValueError(f"resolutions must be positive integers, got {resolutions!r}")
        if n_expected < 1:
            raise ValueError(f"n_expected must be >= 1, got {n_expected}")
        if channels not in CHANNELS:
            raise ValueError(f"channels must be one of {CHANNELS}, got {channels!r}")
        self.channels = channels
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / MANIFEST).exists():
            # Rewriting image files under a finished manifest would silently change its data.
            raise FileExistsError(f"{self.root} already holds a prepared dataset")
        self.resolutions = res
        self.n_expected = n_expected
        self.dtype: StoreDtype = dtype
        self.rule: ResizeRule = rule
        self.created_by = created_by
        self._label_names = tuple(label_names) if label_names is not None else None
        self._allowed = frozenset(self._label_names) if self._label_names is not None else None
        np_dtype, _, self._max_code = _DTYPES[dtype]
        done = list(resume_entries or ())
        if done and len(done) > n_expected:
            raise ValueError(f"{len(done)} finished rows but n_expected={n_expected}")
        self._arrays = {
            r: np.memmap(
                image_path(self.root, r, dtype),
                dtype=np_dtype,
                # r+ keeps the rows an interrupted import already wrote; it needs the file at
                # its full size, which a w+ writer created before it wrote any row.
                mode="r+" if done else "w+",
                shape=(n_expected, *row_shape(r, channels)),
            )
            for r in res
        }
        self._entries: list[dict[str, Any]] = []
        self._keys: set[str] = set()
        for entry in done:
            self._keys.add(entry["key"])
            self._entries.append(dict(entry))
        self._finished = False

    def __len__(self) -> int:
        return len(self._entries)

    def add(
        self,
        key: str,
        patient_key: str,
        labels: Mapping[str, LabelValue],
        source_sha256: str,
        pixels: NDArray[np.floating],
    ) -> int:
        """Resize `pixels` (float [0, 1]) to every resolution and store them as the next row.

        `pixels` is (h, w) for a single-channel dataset, (channels, h, w) otherwise; each
        channel is resized alike.
        """
        rows = encode_rows(pixels, self.resolutions, self.rule, self.channels, self.dtype, key)
        return self.add_encoded(key, patient_key, labels, source_sha256, rows)

    def add_encoded(
        self,
        key: str,
        patient_key: str,
        labels: Mapping[str, LabelValue],
        source_sha256: str,
        rows: Mapping[int, NDArray[np.integer]],
    ) -> int:
        """Store rows already made by `encode_rows` (e.g. in a decoding process) as the next row."""
        if self._finished:
            raise RuntimeError("dataset already finished")
        if key in self._keys:
            raise ValueError(f"duplicate key {key!r}")
        row = len(self._entries)
        if row >= self.n_expected:
            raise ValueError(f"more images than n_expected={self.n_expected}")
        entry = entry_dict(key, patient_key, labels, source_sha256)
        if self._allowed is not None and not self._allowed.issuperset(entry["labels"]):
            raise ValueError(f"{key}: labels {sorted(entry['labels'])} outside {self._label_names}")
        for res, array in self._arrays.items():
            array[row] = rows[res]
        self._keys.add(key)
        self._entries.append(entry)
        return row

    def flush(self) -> None:
        """Write every row added so far through to the files (msync): a record of finished rows
        written after this cannot get ahead of the rows themselves, even over a power loss."""
        for array in self._arrays.values():
            array.flush()

    def finish(self, splits: Mapping[str, str], *, fsync: bool = True) -> DatasetInfo:
        """Assign splits, truncate unused rows, write manifest + hash atomically."""
        if self._finished:
            raise RuntimeError("dataset already finished")
        n = len(self._entries)
        if n == 0:
            raise ValueError("no images were added")
        missing = [e["key"] for e in self._entries if e["key"] not in splits]
        if missing:
            raise ValueError(f"{len(missing)} image(s) have no split, e.g. {missing[0]!r}")
        for entry in self._entries:
            entry["split"] = str(splits[entry["key"]])
        for res in list(self._arrays):
            # Popping drops the last reference, which unmaps the file before it is truncated.
            self._arrays.pop(res).flush()
        itemsize = np.dtype(_DTYPES[self.dtype][0]).itemsize
        for res in self.resolutions:
            path = image_path(self.root, res, self.dtype)
            if n < self.n_expected:
                os.truncate(path, n * self.channels * res * res * itemsize)
            if fsync:
                _fsync(path)
        names = self._label_names
        if names is None:
            names = tuple(sorted({name for e in self._entries for name in e["labels"]}))
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "created_by": self.created_by,
            "dtype": self.dtype,
            "resize_rule": self.rule,
            "resolutions": list(self.resolutions),
            "label_names": list(names),
            "entries": self._entries,
        }
        if self.channels != 1:
            # Only when not 1, so single-channel manifests (and their hashes) stay as they were.
            manifest["channels"] = self.channels
        manifest["content_hash"] = content_hash(self.root, manifest)
        tmp = self.root / f".{MANIFEST}.tmp"
        with tmp.open("w", encoding="utf-8") as fh:
            # One json.dumps, not indented: json's C encoder runs only then (json.dump and any
            # indent use the pure-Python one, which at CheXpert size took longer than hashing
            # the images). The content hash is over canonical JSON, whatever this layout.
            fh.write(json.dumps(manifest, sort_keys=True))
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, self.root / MANIFEST)
        self._finished = True
        return _info(manifest)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _info(manifest: Mapping[str, Any]) -> DatasetInfo:
    entries = manifest["entries"]
    splits: dict[str, int] = {}
    for e in entries:
        splits[e["split"]] = splits.get(e["split"], 0) + 1
    return DatasetInfo(
        n_images=len(entries),
        n_patients=len({e["patient_key"] for e in entries}),
        label_names=tuple(manifest["label_names"]),
        resolutions=tuple(manifest["resolutions"]),
        splits=dict(sorted(splits.items())),
        content_hash=manifest["content_hash"],
        dtype=manifest["dtype"],
        channels=int(manifest.get("channels", 1)),
    )


class PreparedDataset:
    """A finished dataset folder, read-only. Use `open_dataset` to build one."""

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self.manifest = manifest
        self.info = _info(manifest)
        self.entries: tuple[Entry, ...] = tuple(
            Entry(
                key=e["key"],
                patient_key=e["patient_key"],
                labels=dict(e["labels"]),
                split=e["split"],
                source_sha256=e["source_sha256"],
            )
            for e in manifest["entries"]
        )
        self.max_code = _DTYPES[self.info.dtype][2]
        self.resize_rule: str = manifest.get("resize_rule", "pad")
        self.channels: int = self.info.channels
        self._images: dict[int, np.memmap] = {}

    def __len__(self) -> int:
        return self.info.n_images

    def images(self, res: int) -> np.memmap:
        """Read-only memmap of integer codes, (n, res, res) or (n, channels, res, res) for a
        multi-channel dataset; divide by `max_code` for [0, 1]."""
        if res not in self.info.resolutions:
            raise KeyError(f"resolution {res} not stored; have {self.info.resolutions}")
        if res not in self._images:
            self._images[res] = np.memmap(
                image_path(self.root, res, self.info.dtype),
                dtype=_DTYPES[self.info.dtype][0],
                mode="r",
                shape=(self.info.n_images, *row_shape(res, self.channels)),
            )
        return self._images[res]

    def indices(
        self, split: str | None = None, labels: Mapping[str, LabelValue] | None = None
    ) -> NDArray[np.int64]:
        """Row numbers whose split equals `split` and whose labels contain every given pair."""
        wanted = _normalise_labels(labels or {})
        rows = [
            i
            for i, e in enumerate(self.entries)
            if (split is None or e.split == split)
            and all(e.labels.get(name) == value for name, value in wanted.items())
        ]
        return np.asarray(rows, dtype=np.int64)

    def label_tuple(self, entry: Entry) -> tuple[LabelValue | None, ...]:
        """The entry's labels in `label_names` order: the class key used by splits and subsets."""
        return tuple(entry.labels.get(name) for name in self.info.label_names)

    def verify(self) -> bool:
        """Recompute the content hash from the files; False if any byte changed."""
        try:
            return content_hash(self.root, self.manifest) == self.info.content_hash
        except FileNotFoundError:
            return False


def open_dataset(root: Path | str) -> PreparedDataset:
    root = Path(root)
    path = root / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{root} is not a finished prepared dataset (no {MANIFEST})")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {version!r}")
    if manifest.get("dtype") not in _DTYPES:
        raise ValueError(f"{path}: unknown dtype {manifest.get('dtype')!r}")
    channels = manifest.get("channels", 1)
    if channels not in CHANNELS:
        raise ValueError(f"{path}: unsupported channels {channels!r}")
    n = len(manifest["entries"])
    itemsize = np.dtype(_DTYPES[manifest["dtype"]][0]).itemsize
    for res in manifest["resolutions"]:
        file = image_path(root, res, manifest["dtype"])
        expected = n * channels * res * res * itemsize
        # A wrong size would make the memmap shape lie; catch it before any row is read.
        if not file.exists() or file.stat().st_size != expected:
            raise ValueError(f"{file}: missing or not {expected} bytes for {n} images")
    return PreparedDataset(root, manifest)
