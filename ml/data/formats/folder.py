"""Folder per class: `root/<class>/<image>` (PNG, JPEG or DICOM, nested folders allowed).

Files are recognised by magic bytes (`ml.data.images.sniff_format`), not by extension, since
an upload's name says nothing reliable about its content. Labels are one-hot over the class
folder names. The patient id is the file stem unless `root/patients.csv` (`file,patient_id`)
maps files to patients; `file` is the path relative to `root` or a bare file name (which
then applies to every file of that name).
"""

from __future__ import annotations

from pathlib import Path

from ml.data.formats import FormatReport, Record, read_csv_rows
from ml.data.images import sniff_format

PATIENTS_CSV = "patients.csv"
_HEAD = 132  # DICOM needs the 128-byte preamble + "DICM"
# Desktop clutter, not user mistakes: skipping it silently keeps the error list useful.
_JUNK = {"Thumbs.db", "desktop.ini"}
_DOCS = {".txt", ".md"}


def read_folder(root: Path) -> FormatReport:
    root = Path(root)
    report = FormatReport()
    if not root.is_dir():
        report.errors.append(f"{root}: not a folder")
        return report
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        report.errors.append(f"{root}: no class folders found (expected root/<class>/<image>)")
        return report
    report.label_names = [c.name for c in classes]
    for stray in sorted(p for p in root.iterdir() if p.is_file() and not _ignored(p)):
        # Licence and README files belong next to the data (attribution must travel with it).
        if stray.name != PATIENTS_CSV and stray.suffix.lower() not in _DOCS:
            report.errors.append(f"{stray.name}: not inside a class folder; skipped")
    patients = _patients(root, report.errors)
    used: set[str] = set()
    for folder in classes:
        labels: dict[str, float | None] = {
            name: float(name == folder.name) for name in report.label_names
        }
        for file in sorted(p for p in folder.rglob("*") if p.is_file() and not _ignored(p)):
            rel = file.relative_to(root).as_posix()
            if not _is_image(file, rel, report.errors):
                continue
            if patients is None:
                patient = file.stem
            else:
                key = rel if rel in patients else file.name
                patient = patients.get(key, "")
                if not patient:
                    report.errors.append(f"{rel}: not listed in {PATIENTS_CSV}; skipped")
                    continue
                used.add(key)
            report.records.append(Record(file, None, patient, dict(labels), rel))
    for key in sorted(set(patients or {}) - used):
        report.errors.append(f"{PATIENTS_CSV}: {key} does not match an image")
    return report


def _ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name in _JUNK


def _is_image(file: Path, rel: str, errors: list[str]) -> bool:
    try:
        with file.open("rb") as fh:
            head = fh.read(_HEAD)
    except OSError as exc:
        errors.append(f"{rel}: cannot read ({exc.strerror or exc})")
        return False
    if sniff_format(head) is None:
        kind = "empty file" if not head else "not a PNG, JPEG or DICOM image"
        errors.append(f"{rel}: {kind}; skipped")
        return False
    return True


def _patients(root: Path, errors: list[str]) -> dict[str, str] | None:
    """file key -> patient id, or None when there is no patients.csv (ids = file stems)."""
    path = root / PATIENTS_CSV
    if not path.is_file():
        return None
    rows = read_csv_rows(path, ("file", "patient_id"), errors)
    mapping: dict[str, str] = {}
    for line, row in rows or []:
        key = row["file"].replace("\\", "/")
        if not key or not row["patient_id"]:
            errors.append(f"{PATIENTS_CSV} line {line}: empty file or patient_id")
            continue
        if key in mapping and mapping[key] != row["patient_id"]:
            errors.append(f"{PATIENTS_CSV} line {line}: {key} already has another patient")
            continue
        mapping[key] = row["patient_id"]
    # A broken patients.csv must not silently fall back to stems: that could leak patients
    # across splits, so an unreadable file yields an empty mapping and every image errors.
    return mapping
