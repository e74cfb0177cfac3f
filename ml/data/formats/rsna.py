"""RSNA Intracranial Hemorrhage: `ID_<image>.dcm` slices and a `ID,Label` CSV.

The CSV has one row per (image, subtype): `ID_12cadc6af_epidural,0`. We pivot it to one
record per image with the six subtype labels. PatientID comes from each DICOM header (read
without pixels) and is stored raw: hash it with `ml.data.decoded.patient_key` before
persisting. The study key is the header's StudyInstanceUID (scans hold many slices).
"""

from __future__ import annotations

import re
from pathlib import Path

from ml.data.formats import FormatReport, Record, read_csv_rows
from ml.data.formats.dicom_csv import dicom_ids, find_csv, index_dicoms

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
    root: Path, *, labels_csv: str | Path | None = None, images_dir: str | Path | None = None
) -> FormatReport:
    """`labels_csv` / `images_dir` are relative to `root`; by default the train CSV in `root`
    and every `ID_*.dcm` below `root`."""
    report = FormatReport(label_names=list(SUBTYPES))
    csv_path = find_csv(Path(root), labels_csv, report.errors)
    if csv_path is None:
        return report
    rows = read_csv_rows(csv_path, ("ID", "Label"), report.errors)
    if rows is None:
        return report
    labels, first_line = _pivot(rows, csv_path.name, report.errors)
    files = index_dicoms(Path(root) / (images_dir or ""), report.errors, prefix="ID_")
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
        ids = dicom_ids(file)
        if isinstance(ids, str):
            report.errors.append(f"{file.name}: {ids}")
            continue
        patient, study = ids
        full = {s: values.get(s) for s in SUBTYPES}
        report.records.append(Record(file, None, patient, full, study or image_id))
    for stem in sorted(set(files) - set(labels)):
        report.errors.append(f"{files[stem].name}: not in {csv_path.name}; skipped")
    return report


def _pivot(
    rows: list[tuple[int, dict[str, str]]], name: str, errors: list[str]
) -> tuple[dict[str, dict[str, float | None]], dict[str, int]]:
    labels: dict[str, dict[str, float | None]] = {}
    first_line: dict[str, int] = {}
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
        value = float(raw)
        if subtype in values:
            # The official stage-2 CSV repeats some rows identically; only conflicts matter.
            if values[subtype] != value:
                if values[subtype] is not None:
                    errors.append(f"{where}: {row['ID']} contradicts an earlier row; set to None")
                values[subtype] = None
            continue
        values[subtype] = value
    return labels, first_line
