"""Demo dataset sources built from images that ship in packages (no download).

The 16 paediatric chest X-rays become a folder-per-class dataset with a patients.csv, written
under the import root so a newcomer can also import them again from the web form.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

from ml.data.collections import Collection

ATTRIBUTION_FILE = "ATTRIBUTION.txt"
_PATIENT = re.compile(r"^(?:NORMAL\d*-)?(IM-\d+|person\d+)")


def patient_of(file_name: str) -> str:
    """Kermany et al. name files after the patient: NORMAL2-IM-1427-0001 is patient IM-1427,
    person1946_bacteria_4874 is patient person1946 (a patient may have several images)."""
    match = _PATIENT.match(file_name)
    return match.group(1) if match else Path(file_name).stem


def write_folder_dataset(collection: Collection, dest: Path) -> Path:
    """`dest/<label>/<file>` plus patients.csv and the licence note; returns `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    rows = []
    for path, label in zip(collection.files, collection.labels, strict=True):
        target = dest / label / path.name
        target.parent.mkdir(exist_ok=True)
        if not target.exists():
            shutil.copyfile(path, target)
        rows.append((f"{label}/{path.name}", patient_of(path.name)))
    with (dest / "patients.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "patient_id"])
        writer.writerows(rows)
    (dest / ATTRIBUTION_FILE).write_text(collection.attribution + "\n", encoding="utf-8")
    return dest
