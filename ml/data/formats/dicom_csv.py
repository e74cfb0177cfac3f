"""`image_id,label` CSV next to a folder of `<image_id>.dcm` files (subfolders searched too).

`label` is one numeric class column (e.g. 0 / 1); a blank label becomes None (unlabelled).
An optional `patient_id` column names each image's patient; where it is absent or blank the
header's PatientID is used, and an image with neither is its own patient
(`ml.data.formats.patients`). The study comes from the header, read without pixel data.
"""

from __future__ import annotations

import math
from pathlib import Path

from ml.data.formats import FormatReport, Record, read_csv_rows
from ml.data.formats.patients import PATIENT_COLUMN, choose_patient


def read_dicom_csv(
    root: Path, *, labels_csv: str | Path | None = None, images_dir: str | Path | None = None
) -> FormatReport:
    """`labels_csv` / `images_dir` are relative to `root`; by default the only CSV in `root`
    and `root` itself (recursively)."""
    report = FormatReport(label_names=["label"])
    csv_path = find_csv(Path(root), labels_csv, report.errors)
    if csv_path is None:
        return report
    rows = read_csv_rows(csv_path, ("image_id", "label"), report.errors)
    if rows is None:
        return report
    files = index_dicoms(Path(root) / (images_dir or ""), report.errors)
    listed: set[str] = set()
    for line, row in rows:
        where = f"{csv_path.name} line {line}"
        image_id = row["image_id"]
        if not image_id:
            report.errors.append(f"{where}: empty image_id")
            continue
        if image_id.lower().endswith(".dcm"):
            image_id = image_id[:-4]
        if image_id in listed:
            report.errors.append(f"{where}: {image_id} is listed twice; kept the first")
            continue
        listed.add(image_id)
        label = _label(row["label"])
        if isinstance(label, str):
            report.errors.append(f"{where}: label {label!r} is not a number")
            continue
        file = files.get(image_id)
        if file is None:
            report.errors.append(f"{where}: file not found: {image_id}.dcm")
            continue
        ids = dicom_ids(file)
        if isinstance(ids, str):
            report.errors.append(f"{where}: {file.name}: {ids}")
            continue
        header_patient, study = ids
        patient, own = choose_patient(row.get(PATIENT_COLUMN), header_patient, image_id)
        labels = {"label": label}
        report.records.append(Record(file, None, patient, labels, study or image_id, where, own))
    for stem in sorted(set(files) - listed):
        report.errors.append(f"{files[stem].name}: not listed in {csv_path.name}; skipped")
    return report


def find_csv(root: Path, chosen: str | Path | None, errors: list[str]) -> Path | None:
    """The labels CSV: `chosen` if given, else the single CSV in `root` (preferring 'train')."""
    if chosen is not None:
        path = root / chosen
        if not path.is_file():
            errors.append(f"{path}: labels CSV not found")
            return None
        return path
    if root.is_file() and root.suffix.lower() == ".csv":
        return root
    csvs = sorted(p for p in root.glob("*.csv") if p.is_file()) if root.is_dir() else []
    if len(csvs) > 1:
        # RSNA ships stage_2_train.csv next to stage_2_sample_submission.csv.
        csvs = [p for p in csvs if "train" in p.name.lower()] or csvs
    if len(csvs) == 1:
        return csvs[0]
    if not csvs:
        errors.append(f"{root}: no labels CSV found")
    else:
        names = ", ".join(p.name for p in csvs)
        errors.append(f"{root}: several CSVs ({names}); choose one with labels_csv")
    return None


def index_dicoms(folder: Path, errors: list[str], prefix: str = "") -> dict[str, Path]:
    """Stem -> path of every `*.dcm` under `folder`; a stem found twice is ambiguous."""
    base = folder.parent if folder.is_file() else folder
    found: dict[str, Path] = {}
    clashes: set[str] = set()
    for path in sorted(base.rglob(f"{prefix}*")):
        if path.suffix.lower() != ".dcm" or not path.is_file():
            continue
        if path.stem in found:
            clashes.add(path.stem)
            continue
        found[path.stem] = path
    for stem in sorted(clashes):
        errors.append(f"{stem}.dcm: found in several folders; none of them used")
        del found[stem]
    return found


def dicom_ids(path: Path) -> tuple[str, str | None] | str:
    """(PatientID, StudyInstanceUID) from the header only, or a reason it cannot be used.

    An absent PatientID reads as "": it is a type 2 element, often emptied by de-identification,
    and the caller decides the patient (`ml.data.formats.patients.choose_patient`).
    """
    import pydicom

    try:
        ds = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["PatientID", "StudyInstanceUID"]
        )
    except Exception as exc:  # pydicom raises many types for bad files; each is one bad file
        return f"not a readable DICOM file ({type(exc).__name__}: {exc})"
    patient = str(ds.get("PatientID", "") or "").strip()
    study = str(ds.get("StudyInstanceUID", "") or "").strip()
    return patient, study or None


def _label(raw: str) -> float | str | None:
    if raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        return raw
    return value if math.isfinite(value) else raw
