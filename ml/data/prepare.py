"""Import pipeline: a dataset on disk in one of `ml.data.formats.FORMATS` -> a prepared store.

`prepare_dataset` lists the images with `read_dataset`, decodes each one, writes it at every
requested resolution into a `DatasetWriter` and assigns patient-disjoint splits. It is pure
(no app, database or queue): a notebook calls it directly, a background job passes its own
`progress` / `should_stop` callbacks.

What is persisted, and what is not:

* the patient of an image is stored only as `patient_key(record.patient_id, salt)`;
* image keys are a salted hash of the file's path inside the dataset (paths often contain the
  patient id: CheXpert's `patientNNNNN` folders, file stems in a folder-per-class dataset);
  MedMNIST keeps its official "train/123" keys, which hold no identifier;
* `source_sha256` is the sha256 of the source file's bytes (MedMNIST: of the array row bytes);
* report lines (`PrepareResult.errors`), which are stored and shown, have every raw patient id
  replaced by a prefix of its key (`mask_patient_ids`).

A file that cannot be decoded becomes one line in `PrepareResult.errors` (led by the CSV line
it came from, when it came from one) and the import goes on; errors from listing the dataset
(`FormatReport.errors`) come first in that list. Every progress message is a `progress_line`
counting those same errors, so the last one (`PrepareResult.summary`) agrees with the report.
Lines that report no problem (`PrepareResult.notes`) are kept apart: how many images had no
patient id and became their own patient (`ml.data.formats.patients`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ml.data.decoded import patient_key
from ml.data.dicom import CT_WINDOW_PRESETS, LUMA_WEIGHTS, decode_dicom_values, window_stack
from ml.data.errors import ImageDecodeError, NotAnImageError
from ml.data.formats import Record, read_dataset
from ml.data.formats.patients import own_patients_line
from ml.data.images import load_image, sniff_format
from ml.data.resize import RULES, ResizeRule
from ml.data.splits import DEFAULT_FRACTIONS, patient_split
from ml.data.store import DatasetInfo, DatasetWriter, LabelValue
from ml.progress import ProgressFn, StopFn, Stopped, never_stop, no_progress

__all__ = ["PrepareResult", "prepare_dataset", "progress_line"]

_MEDMNIST_SPLITS = ("train", "val", "test")
_ERRORS_SHOWN = 5
WINDOW_STACK = "stack"
STACK_PRESETS = ("brain", "subdural", "bone")  # the three channels of `window="stack"`


@dataclass(frozen=True, slots=True)
class PrepareResult:
    info: DatasetInfo
    errors: list[str]
    n_read: int  # records listed by the format reader (decoded or not)
    n_failed: int  # records that could not be decoded
    n_own_patients: int = 0  # stored images without a patient id, each its own patient
    notes: tuple[str, ...] = ()  # report lines that are not problems
    summary: str = ""  # the last progress message: counts that match `errors`


def progress_line(done: int, total: int, imported: int, problems: int) -> str:
    """The import's progress message; `problems` counts every line the report will list (so
    far), listing errors included, so the bar and the report never disagree."""
    return f"{done}/{total} images read, {imported} imported, {problems} problem(s)"


def prepare_dataset(
    source: Path,
    fmt: str,
    out: Path,
    *,
    resolutions: tuple[int, ...] = (64,),
    salt: str,
    split_fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    window: tuple[float, float] | str | None = None,
    format_options: dict[str, Any] | None = None,
    rule: ResizeRule = "pad",
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> PrepareResult:
    """Import the dataset at `source` (format `fmt`) into a new prepared dataset at `out`.

    `window` is a DICOM VOI window, (center, width) or a `CT_WINDOW_PRESETS` name; it applies
    to DICOM files only (PNG / JPEG are used over their full range), and without it each DICOM
    uses its header window, else its min..max. `window="stack"` stores three channels, the
    brain, subdural and bone windows of each CT slice's Hounsfield units (`window_stack`, the
    RSNA hemorrhage winners' input); a file that is not a DICOM is then an error line.
    `format_options` go to the format's reader.

    Splits are patient-disjoint (`patient_split` over (key, patient key, label tuple)) with
    `split_fractions` (default train 0.7 / val 0.1 / test 0.2) and `seed`. MedMNIST is the
    exception: its official train / val / test split is kept (the `study_key` prefix), so
    results compare with published ones, and `split_fractions` / `seed` are ignored (MedMNIST
    has no patient ids, so no other split could be patient-disjoint anyway).

    `progress(done, total, message)` is called after every image; `should_stop()` is checked
    before every image and raises `ml.progress.Stopped` (the `out` folder is then left without
    a manifest, i.e. not a dataset). Raises `ValueError` when no image could be imported.
    """
    if not salt:
        raise ValueError("salt must be a non-empty string (it keys the patient hash)")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    stack = window == WINDOW_STACK
    voi = None if stack else _window(window)
    fractions = dict(split_fractions) if split_fractions is not None else DEFAULT_FRACTIONS
    source = Path(source)
    key_fmt = fmt.strip().lower().replace("_", "-")
    report = read_dataset(source, fmt, **(format_options or {}))
    errors = list(report.errors)
    records = report.records
    if not records:
        raise ValueError(_nothing_imported(source, errors, "no images found"))
    label_names = tuple(report.label_names)
    root = source if source.is_dir() else source.parent
    writer = DatasetWriter(
        out,
        resolutions,
        len(records),
        rule=rule,
        created_by=f"ml.data.prepare ({key_fmt})",
        label_names=label_names,
        channels=len(STACK_PRESETS) if stack else 1,
    )
    npz = _NpzRows()
    split_rows: list[tuple[str, str, tuple[LabelValue | None, ...]]] = []
    official: dict[str, str] = {}
    n_failed = 0
    n_own = 0
    total = len(records)
    try:
        for done, record in enumerate(records, start=1):
            if should_stop():
                raise Stopped(f"import stopped after {done - 1} of {total} images")
            try:
                if stack and record.array_index is not None:
                    raise NotAnImageError(_NOT_CT)
                if record.array_index is not None:
                    pixels, digest = npz.row(record)
                    key = record.study_key
                else:
                    pixels, digest, key = _decode_file(record, root, salt, voi, stack=stack)
            except (ImageDecodeError, OSError) as exc:
                n_failed += 1
                reason = exc.reason if isinstance(exc, ImageDecodeError) else str(exc)
                where = f"{record.where}: " if record.where else ""
                errors.append(f"{where}{_label(record, root)}: {reason}")
                progress(done, total, progress_line(done, total, len(split_rows), len(errors)))
                continue
            labels = _store_labels(record.labels)
            pkey = patient_key(record.patient_id, salt)
            writer.add(key, pkey, labels, digest, pixels)
            split_rows.append((key, pkey, tuple(labels.get(n) for n in label_names)))
            n_own += record.own_patient
            if key_fmt == "medmnist":
                official[key] = _official_split(record)
            progress(done, total, progress_line(done, total, len(split_rows), len(errors)))
    finally:
        npz.close()
    if not split_rows:
        raise ValueError(_nothing_imported(source, errors, f"all {total} image(s) failed"))
    splits = official if key_fmt == "medmnist" else patient_split(split_rows, fractions, seed)
    info = writer.finish(splits)
    errors = mask_patient_ids(errors, records, salt)
    note = own_patients_line(n_own)
    return PrepareResult(
        info=info,
        errors=errors,
        n_read=total,
        n_failed=n_failed,
        n_own_patients=n_own,
        notes=(note,) if note else (),
        summary=progress_line(total, total, len(split_rows), len(errors)),
    )


_TOKEN = re.compile(r"[A-Za-z0-9_.^-]+")


def mask_patient_ids(lines: list[str], records: list[Record], salt: str) -> list[str]:
    """Replace raw patient ids in report lines by `patient-<key prefix>`.

    Report lines name files by their path inside the dataset, and paths often hold the patient
    id (CheXpert's `patientNNNNN` folders); the report is stored and shown, so the id is
    replaced by the first characters of its keyed hash (the key the store keeps). An id equal
    to its file's stem is left alone: that is the folder format's default, a file name rather
    than an identifier, and masking it would hide which file failed.
    """
    masked: dict[str, str] = {}
    for record in records:
        pid = record.patient_id
        if (
            not pid
            or record.own_patient
            or (record.path is not None and pid == record.path.stem)
            or pid in masked
        ):
            continue
        masked[pid] = f"patient-{patient_key(pid, salt)[:10]}"
    if not masked:
        return lines
    return [_TOKEN.sub(lambda m: masked.get(m.group(0), m.group(0)), line) for line in lines]


def _window(window: tuple[float, float] | str | None) -> tuple[float, float] | None:
    if window is None:
        return None
    if isinstance(window, str):
        if window not in CT_WINDOW_PRESETS:
            names = ", ".join([*CT_WINDOW_PRESETS, WINDOW_STACK])
            raise ValueError(f"unknown window preset {window!r}; expected one of {names}")
        return CT_WINDOW_PRESETS[window]
    center, width = (float(v) for v in window)
    if not (np.isfinite(center) and np.isfinite(width)) or width <= 0:
        raise ValueError(f"window must be (center, width) with width > 0, got {window!r}")
    return center, width


def _label(record: Record, root: Path) -> str:
    """How a file is named in messages: its path inside the dataset (ids masked afterwards)."""
    if record.path is None:
        return record.study_key
    try:
        return record.path.relative_to(root).as_posix()
    except ValueError:
        return str(record.path)


_NOT_CT = "not a CT DICOM; a window stack needs Hounsfield units"


def _decode_file(
    record: Record,
    root: Path,
    salt: str,
    window: tuple[float, float] | None,
    *,
    stack: bool = False,
) -> tuple[NDArray[np.float32], str, str]:
    if record.path is None:
        raise OSError("record names no file")
    data = record.path.read_bytes()
    rel = _label(record, root)
    pixels = _stacked(data) if stack else load_image(data, window=window).pixels
    # Salted so that a key gives away neither the file name nor the patient id inside it.
    key = hmac.digest(salt.encode(), b"image-key\0" + rel.encode(), "sha256").hex()
    return pixels, hashlib.sha256(data).hexdigest(), key[:24]


def _stacked(data: bytes) -> NDArray[np.float32]:
    """(3, h, w): the `STACK_PRESETS` windows of one CT slice, inverted as `decode_dicom`
    inverts a windowed MONOCHROME1 image, so channel i equals a single-window import."""
    if sniff_format(data[:132]) != "dicom":
        raise NotAnImageError(_NOT_CT)
    values, meta = decode_dicom_values(data)
    grey = meta.photometric in ("MONOCHROME1", "MONOCHROME2")
    if not grey or (meta.modality or "CT").strip().upper() != "CT":
        raise NotAnImageError(_NOT_CT)
    out = window_stack(values, STACK_PRESETS)
    if meta.photometric == "MONOCHROME1":
        np.subtract(1.0, out, out=out)
    return out


def _store_labels(labels: Mapping[str, float | None]) -> dict[str, LabelValue]:
    """Reader labels (float or None) -> store labels (int or str); None ("unknown") is left out
    so it reads back as missing rather than as a class."""
    out: dict[str, LabelValue] = {}
    for name, value in labels.items():
        if value is None:
            continue
        out[name] = int(value) if float(value).is_integer() else repr(float(value))
    return out


def _official_split(record: Record) -> str:
    split = record.study_key.split("/", 1)[0]
    if split not in _MEDMNIST_SPLITS:
        raise ValueError(f"MedMNIST record {record.study_key!r} has no official split")
    return split


class _NpzRows:
    """MedMNIST rows, one split array loaded at a time (records come grouped by split)."""

    def __init__(self) -> None:
        self._file: Any = None
        self._path: Path | None = None
        self._split: str | None = None
        self._images: NDArray[np.uint8] | None = None

    def row(self, record: Record) -> tuple[NDArray[np.float32], str]:
        assert record.path is not None and record.array_index is not None
        split = _official_split(record)
        if self._path != record.path:
            self.close()
            self._file = np.load(record.path, allow_pickle=False)
            self._path = record.path
        if self._split != split or self._images is None:
            self._images = np.asarray(self._file[f"{split}_images"])
            self._split = split
        row = np.ascontiguousarray(self._images[record.array_index])
        if row.dtype != np.uint8 or row.ndim not in (2, 3):
            raise ImageDecodeError(
                f"{split}_images[{record.array_index}] is {row.dtype} {row.shape}; "
                "expected uint8 (h, w) or (h, w, 3)"
            )
        pixels = row.astype(np.float32) / 255.0
        if pixels.ndim == 3:
            # RGB MedMNIST sets (PathMNIST, DermaMNIST...) become BT.601 luminance.
            pixels = pixels[..., :3] @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)
        return pixels, hashlib.sha256(row.tobytes()).hexdigest()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._path = self._split = self._images = None


def _nothing_imported(source: Path, errors: list[str], what: str) -> str:
    shown = "; ".join(errors[:_ERRORS_SHOWN]) or "no errors reported"
    more = f" (and {len(errors) - _ERRORS_SHOWN} more)" if len(errors) > _ERRORS_SHOWN else ""
    return f"{source}: nothing imported, {what}: {shown}{more}"
