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
from ml.data.formats.dicom_header import scan_ids
from ml.data.formats.patients import PATIENT_COLUMN, choose_patient

_POOL_FROM = 512  # files; fewer are read here faster than a pool starts
_POOL_CHUNK = 128


def read_dicom_csv(
    root: Path,
    *,
    labels_csv: str | Path | None = None,
    images_dir: str | Path | None = None,
    workers: int = 1,
) -> FormatReport:
    """`labels_csv` / `images_dir` are relative to `root`; by default the only CSV in `root`
    and `root` itself (recursively). `workers` processes read the headers (`dicom_ids_many`)."""
    report = FormatReport(label_names=["label"])
    csv_path = find_csv(Path(root), labels_csv, report.errors)
    if csv_path is None:
        return report
    rows = read_csv_rows(csv_path, ("image_id", "label"), report.errors)
    if rows is None:
        return report
    files = index_dicoms(Path(root) / (images_dir or ""), report.errors)
    wanted = (files.get(_stem(row["image_id"])) for _, row in rows)
    headers = dicom_ids_many([f for f in wanted if f is not None], workers)
    listed: set[str] = set()
    for line, row in rows:
        where = f"{csv_path.name} line {line}"
        image_id = row["image_id"]
        if not image_id:
            report.errors.append(f"{where}: empty image_id")
            continue
        image_id = _stem(image_id)
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
        ids = headers[file]
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


def _stem(image_id: str) -> str:
    return image_id[:-4] if image_id.lower().endswith(".dcm") else image_id


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


def dicom_ids_many(paths: list[Path], workers: int = 1) -> dict[Path, tuple[str, str | None] | str]:
    """`dicom_ids` of every path; in a pool of `workers` processes (`ml.data.pools`) when there
    are enough files to pay for it: at RSNA's 750k slices the headers were the listing."""
    unique = list(dict.fromkeys(paths))
    from ml.data.pools import pool_allowed, process_pool

    if workers <= 1 or len(unique) < _POOL_FROM or not pool_allowed():
        return {path: dicom_ids(path) for path in unique}

    with process_pool(min(workers, len(unique) // _POOL_CHUNK + 1)) as pool:
        return dict(zip(unique, pool.map(dicom_ids, unique, chunksize=_POOL_CHUNK), strict=True))


def dicom_ids(path: Path) -> tuple[str, str | None] | str:
    """(PatientID, StudyInstanceUID) from the header only, or a reason it cannot be used.

    An absent PatientID reads as "": it is a type 2 element, often emptied by de-identification,
    and the caller decides the patient (`ml.data.formats.patients.choose_patient`). Plain files
    are read by `scan_ids` (the same answer, several times faster), the others by pydicom.
    """
    fast = scan_ids(path)
    if fast is not None:
        return fast
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
