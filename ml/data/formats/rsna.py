"""RSNA Intracranial Hemorrhage: `ID_<image>.dcm` slices and a `ID,Label` CSV.

The CSV has one row per (image, subtype): `ID_12cadc6af_epidural,0`. We pivot it to one
record per image with the six subtype labels. The patient is the CSV's optional `patient_id`
column (any row of the image), else the DICOM header's PatientID (read without pixels), else
the image alone (`ml.data.formats.patients`); it is raw: hash it with
`ml.data.decoded.patient_key` before persisting. The study key is the header's
StudyInstanceUID (scans hold many slices).
"""

from __future__ import annotations

import re
from pathlib import Path

from ml.data.formats import FormatReport, Record, read_csv_rows
from ml.data.formats.dicom_csv import dicom_ids_many, find_csv, index_dicoms
from ml.data.formats.patients import PATIENT_COLUMN, choose_patient

SUBTYPES = (
    "epidural",
    "intraparenchymal",
    "intraventricular",
    "subarachnoid",
    "subdural",
    "any",
)
_ROW_ID = re.compile(r"^(ID_[0-9A-Za-z]+)_([a-z]+)$")


def read_rsna(
    root: Path,
    *,
    labels_csv: str | Path | None = None,
    images_dir: str | Path | None = None,
    workers: int = 1,
) -> FormatReport:
    """`labels_csv` / `images_dir` are relative to `root`; by default the train CSV in `root`
    and every `ID_*.dcm` below `root`. `workers` processes read the headers."""
    report = FormatReport(label_names=list(SUBTYPES))
    csv_path = find_csv(Path(root), labels_csv, report.errors)
    if csv_path is None:
        return report
    rows = read_csv_rows(csv_path, ("ID", "Label"), report.errors)
    if rows is None:
        return report
    labels, first_line, csv_patients = _pivot(rows, csv_path.name, report.errors)
    files = index_dicoms(Path(root) / (images_dir or ""), report.errors, prefix="ID_")
    headers = dicom_ids_many([files[i] for i in labels if i in files], workers)
    for image_id, values in labels.items():
        where = f"{csv_path.name} line {first_line[image_id]}"
        missing = [s for s in SUBTYPES if s not in values]
        if missing:
            # Kept with None so the image can still be used for the subtypes it has.
            report.errors.append(f"{where}: {image_id} has no row for {', '.join(missing)}")
        file = files.get(image_id)
        if file is None:
            report.errors.append(f"{where}: {image_id} is in the CSV but {image_id}.dcm is missing")
            continue
        given = csv_patients.get(image_id, set())
        if len(given) > 1:
            # Either choice could put one patient in two splits; the ids stay out of the report.
            report.errors.append(f"{where}: {image_id} has rows naming different {PATIENT_COLUMN}")
            continue
        ids = headers[file]
        if isinstance(ids, str):
            report.errors.append(f"{where}: {file.name}: {ids}")
            continue
        header_patient, study = ids
        patient, own = choose_patient(next(iter(given), None), header_patient, image_id)
        full = {s: values.get(s) for s in SUBTYPES}
        report.records.append(Record(file, None, patient, full, study or image_id, where, own))
    for stem in sorted(set(files) - set(labels)):
        report.errors.append(f"{files[stem].name}: not in {csv_path.name}; skipped")
    return report


def _pivot(
    rows: list[tuple[int, dict[str, str]]], name: str, errors: list[str]
) -> tuple[dict[str, dict[str, float | None]], dict[str, int], dict[str, set[str]]]:
    """Labels and first CSV line per image, and the non-blank `patient_id`s its rows give."""
    labels: dict[str, dict[str, float | None]] = {}
    first_line: dict[str, int] = {}
    patients: dict[str, set[str]] = {}
    for line, row in rows:
        where = f"{name} line {line}"
        match = _ROW_ID.match(row["ID"])
        if match is None or match.group(2) not in SUBTYPES:
            errors.append(
                f"{where}: malformed ID {row['ID']!r}; expected ID_<image>_<subtype> with "
                f"subtype one of {', '.join(SUBTYPES)}"
            )
            continue
        raw = row["Label"]
        if raw not in ("0", "1"):
            errors.append(f"{where}: Label {raw!r} for {row['ID']}; expected 0 or 1")
            continue
        image_id, subtype = match.groups()
        values = labels.setdefault(image_id, {})
        first_line.setdefault(image_id, line)
        if row.get(PATIENT_COLUMN):
            patients.setdefault(image_id, set()).add(row[PATIENT_COLUMN])
        value = float(raw)
        if subtype in values:
            # The official stage-2 CSV repeats some rows identically; only conflicts matter.
            if values[subtype] != value:
                if values[subtype] is not None:
                    errors.append(f"{where}: {row['ID']} contradicts an earlier row; set to None")
                values[subtype] = None
            continue
        values[subtype] = value
    return labels, first_line, patients
