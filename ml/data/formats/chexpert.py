"""CheXpert layout: `train.csv` / `valid.csv` with a `Path` column and 14 findings.

Findings are 1 (positive), 0 (negative), -1 (uncertain) or blank. Blank means the report did
not mention the finding, which CheXpert's authors treat as negative, so blank becomes 0.0.
-1 follows the chosen uncertainty policy (Irvin et al. 2019):
  "u-ones"  -1 -> 1.0    "u-zeros" -1 -> 0.0    "ignore" -1 -> None (masked out of the loss).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from ml.data.formats import FormatReport, Record, read_csv_rows

FINDINGS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
POLICIES = ("u-ones", "u-zeros", "ignore")
DEFAULT_CSVS = ("train.csv", "valid.csv")

_UNCERTAIN = {"u-ones": 1.0, "u-zeros": 0.0, "ignore": None}
_PATIENT = re.compile(r"^patient\d+$")
_STUDY = re.compile(r"^study\d+$")
# The released archives' top folder; CSV paths start with it while users often point us at
# the folder itself (or rename it), so it is stripped when the literal path does not exist.
_PREFIX = re.compile(r"^CheXpert-v1\.0(-small)?$", re.IGNORECASE)


def read_chexpert(
    root: Path, *, policy: str = "ignore", csvs: tuple[str, ...] = DEFAULT_CSVS
) -> FormatReport:
    """One record per CSV row whose image exists; `root` holds the CSVs (or their parent).

    The default policy is "ignore" because it invents no labels; pick "u-ones" / "u-zeros"
    explicitly to follow one of the paper's baselines.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown uncertainty policy {policy!r}; expected {', '.join(POLICIES)}")
    report = FormatReport(label_names=list(FINDINGS))
    base = _csv_folder(Path(root), csvs)
    found = [base / name for name in csvs if (base / name).is_file()]
    if not found:
        report.errors.append(f"{root}: none of {', '.join(csvs)} found")
        return report
    seen: set[Path] = set()
    for csv_path in found:
        rows = read_csv_rows(csv_path, ("Path", *FINDINGS), report.errors)
        for line, row in rows or []:
            where = f"{csv_path.name} line {line}"
            record = _record(row, base, policy, where, report.errors)
            if record is None or record.path is None:
                continue
            if record.path in seen:
                report.errors.append(f"{where}: {row['Path']} is listed twice; kept the first")
                continue
            seen.add(record.path)
            report.records.append(record)
    return report


def _csv_folder(root: Path, csvs: tuple[str, ...]) -> Path:
    """The folder holding the CSVs: `root` itself or the archive folder just inside it."""
    if any((root / name).is_file() for name in csvs):
        return root
    for child in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if _PREFIX.match(child.name) and any((child / name).is_file() for name in csvs):
            return child
    return root


def _record(
    row: dict[str, str], base: Path, policy: str, where: str, errors: list[str]
) -> Record | None:
    rel = row["Path"]
    if not rel:
        errors.append(f"{where}: empty Path")
        return None
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    if ".." in parts or PurePosixPath(rel).is_absolute():
        # A CSV is user input: never let it point outside the dataset.
        errors.append(f"{where}: path {rel} leaves the dataset folder")
        return None
    patient = next((p for p in parts if _PATIENT.match(p)), None)
    if patient is None:
        errors.append(f"{where}: no patientNNNNN folder in path {rel}")
        return None
    file = _resolve(base, parts)
    if file is None:
        errors.append(f"{where}: file not found: {rel}")
        return None
    labels: dict[str, float | None] = {}
    for name in FINDINGS:
        value = _label(row[name], policy)
        if isinstance(value, str):
            errors.append(f"{where}: {name} is {value!r}; expected 1, 0, -1 or blank")
            return None
        labels[name] = value
    study = next((p for p in parts if _STUDY.match(p)), None)
    study_key = f"{patient}/{study}" if study else f"{patient}/{parts[-1]}"
    return Record(
        path=file,
        array_index=None,
        patient_id=patient,
        labels=labels,
        study_key=study_key,
        where=where,
    )


def _resolve(base: Path, parts: tuple[str, ...]) -> Path | None:
    # os.path on strings: at CheXpert's 224k rows, pathlib's parsing was most of the listing.
    literal = os.path.join(base, *parts)
    if os.path.isfile(literal):
        return Path(literal)
    if len(parts) > 1 and _PREFIX.match(parts[0]):
        stripped = os.path.join(base, *parts[1:])
        if os.path.isfile(stripped):
            return Path(stripped)
    return None


def _label(raw: str, policy: str) -> float | str | None:
    """The label, or the raw text back when it is not a CheXpert value."""
    if raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        return raw
    if value == -1.0:
        return _UNCERTAIN[policy]
    if value in (0.0, 1.0):
        return value
    return raw
