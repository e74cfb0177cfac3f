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

At scale (CheXpert's 224k films): files are decoded and resized by a pool of processes
(`ml.data.decode_pool`, `workers=`), streamed into the store in record order, so the store is
the same for any number of processes and no more than a few chunks of images are in memory;
the import journal (`ml.data.journal`, `import_journal.jsonl` in `out`, with report lines
already masked) records finished files, so an import killed mid-way resumes (`resume=True`)
without decoding them again.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ml.data.colour import COLOUR_MODES, resolve_colour
from ml.data.decode_pool import (
    NOT_CT,
    STACK_PRESETS,
    Decoded,
    DecodeSettings,
    decode_file,
    decoded_in_order,
)
from ml.data.decoded import patient_key
from ml.data.dicom import CT_WINDOW_PRESETS, LUMA_WEIGHTS
from ml.data.errors import ImageDecodeError
from ml.data.formats import Record, read_dataset
from ml.data.formats.patients import own_patients_line
from ml.data.journal import JOURNAL, Done, Journal, fingerprint, read_journal
from ml.data.pools import usable_cores
from ml.data.resize import RULES, ResizeRule
from ml.data.splits import DEFAULT_FRACTIONS, patient_split
from ml.data.store import (
    DTYPES,
    MANIFEST,
    DatasetInfo,
    DatasetWriter,
    LabelValue,
    encode_rows,
    entry_dict,
    image_file_size,
    image_path,
    open_dataset,
)
from ml.progress import ProgressFn, StopFn, Stopped, never_stop, no_progress

__all__ = ["PrepareResult", "prepare_dataset", "progress_line"]

_MEDMNIST_SPLITS = ("train", "val", "test")
_ERRORS_SHOWN = 5
WINDOW_STACK = "stack"


@dataclass(frozen=True, slots=True)
class PrepareResult:
    info: DatasetInfo
    errors: list[str]
    n_read: int  # records listed by the format reader (decoded or not)
    n_failed: int  # records that could not be decoded
    n_own_patients: int = 0  # stored images without a patient id, each its own patient
    notes: tuple[str, ...] = ()  # report lines that are not problems
    summary: str = ""  # the last progress message: counts that match `errors`
    n_resumed: int = 0  # records a resumed import took from the journal, not decoded again
    n_decoded: int = 0  # records decoded by this call


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
    colour: str = "grey",
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    workers: int | None = 1,
    resume: bool = False,
    commit_every: int = 512,
) -> PrepareResult:
    """Import the dataset at `source` (format `fmt`) into a new prepared dataset at `out`.

    `window` is a DICOM VOI window, (center, width) or a `CT_WINDOW_PRESETS` name; it applies
    to DICOM files only (PNG / JPEG are used over their full range), and without it each DICOM
    uses its header window, else its min..max. `window="stack"` stores three channels, the
    brain, subdural and bone windows of each CT slice's Hounsfield units (`window_stack`, the
    RSNA hemorrhage winners' input); a file that is not a DICOM is then an error line.
    `format_options` go to the format's reader.

    `colour` is "grey" (every image as BT.601 luminance, one channel), "rgb" (three channels,
    R, G, B; grey files repeat their grey) or "auto": "rgb" when a sample of the source images
    is colour (`ml.data.colour.resolve_colour`; MedMNIST: when its arrays have a colour axis),
    else "grey". It cannot be combined with `window="stack"`, which has its own three channels.

    Splits are patient-disjoint (`patient_split` over (key, patient key, label tuple)) with
    `split_fractions` (default train 0.7 / val 0.1 / test 0.2) and `seed`. MedMNIST is the
    exception: its official train / val / test split is kept (the `study_key` prefix), so
    results compare with published ones, and `split_fractions` / `seed` are ignored (MedMNIST
    has no patient ids, so no other split could be patient-disjoint anyway).

    `workers` processes decode the files (None: every usable core; `ml.data.decode_pool`);
    the store is the same byte for byte whatever their number. Every `commit_every` images the
    rows are flushed and recorded in the import journal (`ml.data.journal`); with `resume` an
    import into an `out` that an interrupted import of the same inputs left keeps the images
    the journal lists and decodes only the others (`PrepareResult.n_resumed` /
    `n_decoded` say how many of each), and an `out` that a finished import of the same inputs
    left is returned as it is. Without `resume`, or when the inputs differ, the import starts
    from nothing (an `out` holding another finished dataset is refused without `resume`, and
    emptied with it).

    `progress(done, total, message)` is called after every image; `should_stop()` is checked
    before every image and raises `ml.progress.Stopped` (the `out` folder is then left without
    a manifest, i.e. not a dataset, but resumable). Raises `ValueError` when no image could be
    imported.
    """
    if not salt:
        raise ValueError("salt must be a non-empty string (it keys the patient hash)")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    stack = window == WINDOW_STACK
    if colour not in COLOUR_MODES:
        raise ValueError(f"colour must be one of {COLOUR_MODES}, got {colour!r}")
    if stack and colour == "rgb":
        raise ValueError('window="stack" stores CT windows as channels; it cannot be colour')
    voi = None if stack else _window(window)
    fractions = dict(split_fractions) if split_fractions is not None else DEFAULT_FRACTIONS
    source = Path(source)
    out = Path(out)
    key_fmt = fmt.strip().lower().replace("_", "-")
    n_workers = usable_cores() if workers is None else max(1, workers)
    report = read_dataset(source, fmt, workers=n_workers, **(format_options or {}))
    records = report.records
    if not records:
        raise ValueError(_nothing_imported(source, list(report.errors), "no images found"))
    label_names = tuple(report.label_names)
    root = source if source.is_dir() else source.parent
    keys = _PatientKeys(salt)
    mask = _id_masker(records, salt, keys)
    rgb = not stack and _is_colour(colour, records)
    settings = DecodeSettings(
        salt=salt,
        window=voi,
        stack=stack,
        resolutions=tuple(sorted({int(r) for r in resolutions})),
        rule=rule,
        channels=len(STACK_PRESETS) if stack else 3 if rgb else 1,
        colour=rgb,
    )
    recipe = {
        "format": key_fmt,
        "source": str(source),
        # Colour only when on, so a grey import's journal fingerprint is what it was.
        "settings": [settings.window, settings.stack, settings.resolutions, rule]
        + (["rgb"] if rgb else []),
        "labels": label_names,
        # Only the splits depend on these, but a finished import is returned as it is.
        "splits": [sorted(fractions.items()), seed],
    }
    print_ = fingerprint(salt, recipe, records)
    total = len(records)
    done = read_journal(out / JOURNAL, print_) if resume else None
    finished = (out / MANIFEST).exists()
    if done is not None and done.n == total and finished:
        return _finished(out, done, records, [mask(e) for e in report.errors])
    if resume and (done is None or finished or not _rows_intact(out, settings, total, done)):
        # What is there was written from other inputs, or is not what its journal says.
        _remove_store(out, settings)
        done = None
    state = _State()
    restored = state.restore(done, records, keys, label_names, key_fmt)
    writer = DatasetWriter(
        out,
        resolutions,
        total,
        rule=rule,
        created_by=f"ml.data.prepare ({key_fmt})",
        label_names=label_names,
        channels=settings.channels,
        resume_entries=restored,
    )
    journal = Journal(out, print_, done)
    begin = journal.start
    n_decoded = 0
    if begin:
        problems = len(report.errors) + len(state.errors)
        progress(begin, total, progress_line(begin, total, len(state.split_rows), problems))
    npz = _NpzRows()
    outcomes = _outcomes(records[begin:], root, settings, npz, n_workers)
    try:
        for index in range(begin, total):
            if should_stop():
                raise Stopped(f"import stopped after {index} of {total} images")
            record = records[index]
            outcome = next(outcomes)
            n_decoded += 1
            if outcome.rows is None:
                where = f"{record.where}: " if record.where else ""
                line = mask(f"{where}{_label(record, root)}: {outcome.reason}")
                state.errors.append(line)
                journal.failed(index, line)
            else:
                labels = _store_labels(record.labels)
                pkey = keys(record.patient_id)
                writer.add_encoded(outcome.key, pkey, labels, outcome.sha256, outcome.rows)
                journal.stored(index, outcome.key, outcome.sha256)
                state.stored(outcome.key, pkey, labels, record, label_names, key_fmt)
            n_done = index + 1
            message = progress_line(
                n_done, total, len(state.split_rows), len(report.errors) + len(state.errors)
            )
            progress(n_done, total, message)
            if journal.pending >= commit_every:
                writer.flush()
                journal.commit()
        writer.flush()
    finally:
        outcomes.close()  # stops the pool, if any, before anything else happens
        npz.close()
        # Rows added so far are whole (add_encoded raises before touching a row it refuses),
        # so committing after an error or a stop only saves work for a resume.
        writer.flush()
        journal.commit()
        journal.close()
    errors = [mask(e) for e in report.errors] + state.errors
    if not state.split_rows:
        raise ValueError(_nothing_imported(source, errors, f"all {total} image(s) failed"))
    splits = state.official if key_fmt == "medmnist" else None
    if splits is None:
        splits = patient_split(state.split_rows, fractions, seed)
    info = writer.finish(splits)
    note = own_patients_line(state.n_own)
    return PrepareResult(
        info=info,
        errors=errors,
        n_read=total,
        n_failed=len(state.errors),
        n_own_patients=state.n_own,
        notes=(note,) if note else (),
        summary=progress_line(total, total, len(state.split_rows), len(errors)),
        n_resumed=begin,
        n_decoded=n_decoded,
    )


class _State:
    """What the import has gathered so far besides the rows: split inputs, report lines."""

    def __init__(self) -> None:
        self.split_rows: list[tuple[str, str, tuple[LabelValue | None, ...]]] = []
        self.official: dict[str, str] = {}
        self.errors: list[str] = []
        self.n_own = 0

    def stored(
        self,
        key: str,
        pkey: str,
        labels: dict[str, LabelValue],
        record: Record,
        label_names: tuple[str, ...],
        key_fmt: str,
    ) -> None:
        self.split_rows.append((key, pkey, tuple(labels.get(n) for n in label_names)))
        self.n_own += record.own_patient
        if key_fmt == "medmnist":
            self.official[key] = _official_split(record)

    def restore(
        self,
        done: Done | None,
        records: list[Record],
        keys: Callable[[str], str],
        label_names: tuple[str, ...],
        key_fmt: str,
    ) -> list[dict[str, Any]]:
        """Replay a journal: the writer's entries of its stored records, in row order."""
        if done is None:
            return []
        entries = []
        for index, key, sha in done.stored:
            record = records[index]
            labels = _store_labels(record.labels)
            pkey = keys(record.patient_id)
            entries.append(entry_dict(key, pkey, labels, sha))
            self.stored(key, pkey, labels, record, label_names, key_fmt)
        self.errors.extend(line for _, line in done.failed)
        return entries


def _rows_intact(out: Path, settings: DecodeSettings, total: int, done: Done) -> bool:
    """Whether the image files a journal's rows are in are still there, at their full size."""
    if not done.stored:
        return True
    for res in settings.resolutions:
        path = image_path(out, res, settings.dtype)
        size = image_file_size(total, res, settings.dtype, settings.channels)
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def _remove_store(out: Path, settings: DecodeSettings) -> None:
    """Remove what an import writes into `out` (and only that: `out` may be any folder)."""
    names = [MANIFEST, f".{MANIFEST}.tmp", JOURNAL]
    for dtype in DTYPES:
        names += [image_path(out, res, dtype).name for res in settings.resolutions]
    for name in names:
        (out / name).unlink(missing_ok=True)


def _finished(out: Path, done: Done, records: list[Record], listing: list[str]) -> PrepareResult:
    """The result of an import that had already finished into `out` (its journal complete)."""
    info = open_dataset(out).info
    errors = listing + [line for _, line in done.failed]
    n_own = sum(records[index].own_patient for index, _, _ in done.stored)
    note = own_patients_line(n_own)
    return PrepareResult(
        info=info,
        errors=errors,
        n_read=len(records),
        n_failed=len(done.failed),
        n_own_patients=n_own,
        notes=(note,) if note else (),
        summary=progress_line(len(records), len(records), info.n_images, len(errors)),
        n_resumed=len(records),
        n_decoded=0,
    )


def _outcomes(
    records: list[Record],
    root: Path,
    settings: DecodeSettings,
    npz: _NpzRows,
    workers: int,
) -> Generator[Decoded, None, None]:
    """The decoded rows of `records`, in order: files through `decoded_in_order` (a pool when
    `workers` > 1), MedMNIST rows read here (they are slices of one array already in memory)."""
    if any(r.array_index is not None for r in records):
        for record in records:
            if record.array_index is None:
                yield decode_file(settings, record.path, _label(record, root))
            elif settings.stack:
                yield Decoded(reason=NOT_CT)
            else:
                try:
                    pixels, digest = npz.row(record, settings.colour)
                except (ImageDecodeError, OSError) as exc:
                    reason = exc.reason if isinstance(exc, ImageDecodeError) else str(exc)
                    yield Decoded(reason=reason)
                    continue
                rows = encode_rows(
                    pixels,
                    settings.resolutions,
                    settings.rule,
                    settings.channels,
                    settings.dtype,
                    record.study_key,
                )
                yield Decoded(key=record.study_key, sha256=digest, rows=rows)
        return
    files = [(r.path, _label(r, root)) for r in records]
    yield from decoded_in_order(settings, files, workers=workers)


_TOKEN = re.compile(r"[A-Za-z0-9_.^-]+")


def mask_patient_ids(lines: list[str], records: list[Record], salt: str) -> list[str]:
    """Replace raw patient ids in report lines by `patient-<key prefix>`.

    Report lines name files by their path inside the dataset, and paths often hold the patient
    id (CheXpert's `patientNNNNN` folders); the report is stored and shown, so the id is
    replaced by the first characters of its keyed hash (the key the store keeps). An id equal
    to its file's stem is left alone: that is the folder format's default, a file name rather
    than an identifier, and masking it would hide which file failed.
    """
    mask = _id_masker(records, salt)
    return [mask(line) for line in lines]


class _PatientKeys:
    """`patient_key` with a cache: a patient has many images, and the HMAC was a visible part
    of an import's own time."""

    def __init__(self, salt: str) -> None:
        self.salt = salt
        self._known: dict[str, str] = {}

    def __call__(self, patient_id: str) -> str:
        key = self._known.get(patient_id)
        if key is None:
            key = self._known[patient_id] = patient_key(patient_id, self.salt)
        return key


def _id_masker(
    records: list[Record], salt: str, keys: Callable[[str], str] | None = None
) -> Callable[[str], str]:
    """`mask_patient_ids` for one line, its id table built once per import."""
    keys = keys or _PatientKeys(salt)
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
        masked[pid] = f"patient-{keys(pid)[:10]}"
    if not masked:
        return lambda line: line
    return lambda line: _TOKEN.sub(lambda m: masked.get(m.group(0), m.group(0)), line)


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

    def row(self, record: Record, colour: bool = False) -> tuple[NDArray[np.float32], str]:
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
        if colour:
            # (3, h, w): a grey row repeated, an RGB row's channels moved first.
            rgb = pixels[..., :3] if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, -1)
            return np.ascontiguousarray(rgb.transpose(2, 0, 1)), _sha(row)
        if pixels.ndim == 3:
            # RGB MedMNIST sets (PathMNIST, DermaMNIST...) become BT.601 luminance.
            pixels = pixels[..., :3] @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)
        return pixels, _sha(row)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._path = self._split = self._images = None


def _sha(row: NDArray[np.uint8]) -> str:
    return hashlib.sha256(row.tobytes()).hexdigest()


def _is_colour(colour: str, records: list[Record]) -> bool:
    """Whether the import stores RGB (`resolve_colour`; MedMNIST arrays by their shape)."""
    if colour != "auto" or not any(r.array_index is not None for r in records):
        return resolve_colour(colour, [r.path for r in records])
    path = next(r.path for r in records if r.array_index is not None)
    assert path is not None
    return any(len(shape) == 4 and shape[-1] >= 3 for shape in _npz_image_shapes(path))


def _npz_image_shapes(path: Path) -> list[tuple[int, ...]]:
    """Shapes of an npz's `*_images` arrays from their headers: MedMNIST's 224 px arrays run
    to gigabytes, and `np.load(...)[name]` would read them whole."""
    shapes = []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not name.endswith("_images.npy"):
                continue
            with archive.open(name) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, _ = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, _, _ = np.lib.format.read_array_header_2_0(fh)
            shapes.append(tuple(shape))
    return shapes


def _nothing_imported(source: Path, errors: list[str], what: str) -> str:
    shown = "; ".join(errors[:_ERRORS_SHOWN]) or "no errors reported"
    more = f" (and {len(errors) - _ERRORS_SHOWN} more)" if len(errors) > _ERRORS_SHOWN else ""
    return f"{source}: nothing imported, {what}: {shown}{more}"
