"""Dataset format readers: walk a dataset on disk and list its images without decoding pixels.

Every reader returns a `FormatReport` and never raises for a bad file or row: the problem
becomes one line in `errors` so a single broken file cannot abort an import of thousands.
Decoding happens later, in the import job, through `ml.data.images.load_image`.

`Record.patient_id` is the RAW identifier found in the dataset (a DICOM PatientID, a CSV
`patient_id`, a CheXpert `patientNNNNN` folder, a file stem). Callers must hash it with
`ml.data.decoded.patient_key` before persisting it anywhere; the readers keep it raw only so
splits can be patient-disjoint.
Arguments that make no sense (an unknown format or option value) still raise `ValueError`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FORMATS",
    "DatasetFetchError",
    "FormatReport",
    "Record",
    "read_csv_rows",
    "read_dataset",
]

FORMATS = ("chexpert", "rsna", "dicom-csv", "folder", "medmnist")


class DatasetFetchError(RuntimeError):
    """A dataset could not be downloaded; the message says what to do instead."""


@dataclass(frozen=True, slots=True)
class Record:
    """One image of a dataset, not yet decoded.

    `path` is the file to decode, or for npz-backed formats the .npz with `array_index` the
    row in its image array. `patient_id` is raw (see the module docstring). `study_key` groups
    images of one study (or names the original split for MedMNIST, e.g. "train/123").
    `where` is the CSV line the image came from ("labels.csv line 4"), empty when none, so a
    file that later fails to decode can be found in the CSV. `own_patient` marks an image
    without any patient id, stored as its own patient (`ml.data.formats.patients`).
    """

    path: Path | None
    array_index: int | None
    patient_id: str
    labels: dict[str, float | None]
    study_key: str
    where: str = ""
    own_patient: bool = False


@dataclass(slots=True)
class FormatReport:
    records: list[Record] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    label_names: list[str] = field(default_factory=list)


CsvRows = list[tuple[int, dict[str, str]]]


def read_csv_rows(
    path: Path, required: tuple[str, ...], errors: list[str], *, label: str | None = None
) -> CsvRows | None:
    """(line number, row) pairs of a CSV, or None after appending one error to `errors`.

    Line numbers are the file's own (header = line 1) so a user can jump to them in an editor.
    Missing columns are reported once, all together, rather than as a failure on every row.
    """
    name = label or path.name
    try:
        # utf-8-sig: CSVs saved by Excel start with a BOM that would corrupt the first header.
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                found = ", ".join(header) if header else "none (empty file)"
                errors.append(
                    f"{name}: missing column(s) {', '.join(missing)}; columns found: {found}"
                )
                return None
            rows: CsvRows = []
            for row in reader:
                clean = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
                rows.append((reader.line_num, clean))
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        errors.append(f"{name}: cannot read CSV ({exc})")
        return None


def read_dataset(path: str | Path, fmt: str, *, workers: int = 1, **options: Any) -> FormatReport:
    """List the images of the dataset at `path` in format `fmt` (one of `FORMATS`).

    `options` go to the format's reader (e.g. `policy="u-ones"` for CheXpert). `workers`
    processes read DICOM headers for the formats that need them (RSNA, DICOM + CSV); the
    listing is the same for any number.
    """
    root = Path(path)
    key = fmt.strip().lower().replace("_", "-")
    if key not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not root.exists():
        return FormatReport(errors=[f"{root}: no such file or directory"])
    # Imported here so listing a MedMNIST file does not pay for pydicom, and so the readers
    # can import Record / FormatReport from this module without a cycle.
    if key == "chexpert":
        from ml.data.formats.chexpert import read_chexpert

        return read_chexpert(root, **options)
    if key == "rsna":
        from ml.data.formats.rsna import read_rsna

        return read_rsna(root, workers=workers, **options)
    if key == "dicom-csv":
        from ml.data.formats.dicom_csv import read_dicom_csv

        return read_dicom_csv(root, workers=workers, **options)
    if key == "folder":
        from ml.data.formats.folder import read_folder

        return read_folder(root, **options)
    from ml.data.formats.medmnist import read_medmnist

    return read_medmnist(root, **options)
