"""Small dataset folders in every import format, written from real images shipped in packages.

Nothing here is synthetic noise: the X-rays are the 16 paediatric chest films of
`ml.data.collections` ("paediatric-cxr", Kermany et al., CC BY 4.0) and the CT / MR slices are
pydicom's bundled test files (CT_small.dcm, MR_small.dcm). Each builder returns a small record
of what it wrote (raw patient ids, expected labels keyed by the sha256 of the written file,
...), so tests can check the imported store against the truth without re-reading the source.

Builders:

* `write_chexpert`  CheXpert-v1.0-small layout: train.csv / valid.csv, Path + 14 findings with
  1.0 / 0.0 / -1.0 / blank, `train/patientNNNNN/studyN/viewN_*.jpg`, two images per patient
* `write_rsna`      RSNA ICH: `stage_2_train/ID_<image>.dcm` CT slices from CT_small.dcm with
  new SOP / Study UIDs and PatientIDs, `stage_2_train.csv` in `ID_<image>_<subtype>,Label` form
* `write_medmnist`  an npz with the official keys, tiny uint8 images made from the X-rays
* `write_folder`    folder per class (`normal/`, `pneumonia/`)
* `write_dicom_encodings`  DICOM + CSV: pydicom's own test files, byte for byte, in eight
  encodings (one deflated without a PatientID), a truncated copy and a non-DICOM `.dcm`
* broken files: `write_truncated_dicom`, `write_dicom_without_pixels`, `write_fake_png`,
  `write_chexpert_missing_columns` (a CheXpert train.csv lacking findings columns)
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
from PIL import Image
from pydicom.uid import generate_uid

from ml.data.collections import available_collections
from ml.data.formats.chexpert import FINDINGS
from ml.data.formats.medmnist import KEYS as MEDMNIST_KEYS
from ml.data.formats.rsna import SUBTYPES

CXR = available_collections()["paediatric-cxr"]
CHEXPERT_TOP = "CheXpert-v1.0-small"
CHEXPERT_META = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"]
RSNA_CSV = "stage_2_train.csv"
RSNA_IMAGES = "stage_2_train"

__all__ = [
    "CHEXPERT_TOP",
    "CXR",
    "FINDINGS",
    "MEDMNIST_KEYS",
    "SUBTYPES",
    "Chexpert",
    "DicomEncodings",
    "Folder",
    "MedMnist",
    "Rsna",
    "sha256_file",
    "write_chexpert",
    "write_chexpert_missing_columns",
    "write_csv",
    "write_dicom_encodings",
    "write_dicom_without_pixels",
    "write_fake_png",
    "write_folder",
    "write_medmnist",
    "write_rsna",
    "write_truncated_dicom",
]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@cache
def _small_jpeg(index: int, long_side: int = 320) -> bytes:
    """X-ray `index` scaled down like CheXpert-v1.0-small (fast to decode in tests)."""
    with Image.open(CXR.files[index]) as im:
        grey = im.convert("L")
        grey.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        grey.save(out, format="JPEG", quality=90)
    return out.getvalue()


@cache
def _tiny_pixels(index: int, side: int = 28) -> bytes:
    with Image.open(CXR.files[index]) as im:
        grey = im.convert("L").resize((side, side), Image.Resampling.LANCZOS)
        return np.asarray(grey, dtype=np.uint8).tobytes()


# ---------------------------------------------------------------- CheXpert


@dataclass
class Chexpert:
    root: Path  # what to import (holds CheXpert-v1.0-small/)
    patients: list[str]  # raw ids, as in the folder names
    # sha256 of each written image -> raw CSV value per finding ("1.0", "0.0", "-1.0", "")
    raw_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    patient_of: dict[str, str] = field(default_factory=dict)  # sha256 -> raw patient id

    @property
    def n_images(self) -> int:
        return len(self.raw_labels)

    def expected_labels(self, policy: str) -> dict[str, dict[str, int]]:
        """sha256 -> labels as the store keeps them under `policy` (None ones left out).

        Blank is negative (0) under every policy; -1 becomes 1 (u-ones), 0 (u-zeros) or is
        left out (ignore)."""
        uncertain = {"u-ones": 1, "u-zeros": 0, "ignore": None}[policy]
        out: dict[str, dict[str, int]] = {}
        for digest, raw in self.raw_labels.items():
            labels: dict[str, int] = {}
            for name, value in raw.items():
                number = uncertain if value == "-1.0" else (1 if value == "1.0" else 0)
                if number is not None:
                    labels[name] = number
            out[digest] = labels
        return out

    def uncertain_cells(self) -> int:
        return sum(v == "-1.0" for raw in self.raw_labels.values() for v in raw.values())


def _chexpert_findings(image: int, pneumonia: bool) -> dict[str, str]:
    """A plausible row: normal films are "No Finding"; pneumonia films have Pneumonia and
    some uncertain (-1.0) and unmentioned (blank) findings, varying with `image`."""
    row = dict.fromkeys(FINDINGS, "")
    if not pneumonia:
        row["No Finding"] = "1.0"
        if image % 3 == 0:
            row["Support Devices"] = "-1.0"  # uncertain even on a normal film
        return row
    row["Pneumonia"] = "1.0" if image % 2 == 0 else "-1.0"
    row["Lung Opacity"] = "1.0"
    row["Cardiomegaly"] = "-1.0" if image % 3 == 0 else "0.0"
    row["Pleural Effusion"] = "-1.0" if image % 4 == 1 else ""
    row["Consolidation"] = "0.0"
    return row


def write_chexpert(root: Path, *, n_train_patients: int = 6, n_valid_patients: int = 2) -> Chexpert:
    """CheXpert-v1.0-small with two images per train patient (frontal + lateral view of one
    study, or two studies) and one per valid patient; patients alternate normal / pneumonia
    films so both classes reach every split. Uses 2 * train + valid of the 16 X-rays."""
    normals = [i for i, label in enumerate(CXR.labels) if label == "normal"]
    sick = [i for i, label in enumerate(CXR.labels) if label == "pneumonia"]
    assert 2 * n_train_patients + n_valid_patients <= len(CXR.files)
    base = root / CHEXPERT_TOP
    result = Chexpert(root=root, patients=[])
    rows: dict[str, list[list[object]]] = {"train": [], "valid": []}
    plan = [("train", k, 2) for k in range(n_train_patients)]
    plan += [("valid", n_train_patients + k, 1) for k in range(n_valid_patients)]
    for split, k, n_images in plan:
        patient = f"patient{k + 1:05d}"
        result.patients.append(patient)
        pool = normals if k % 2 == 0 else sick
        for j in range(n_images):
            image = pool.pop(0)
            if j == 0:
                rel = f"{split}/{patient}/study1/view1_frontal.jpg"
            elif k % 2 == 0:
                rel = f"{split}/{patient}/study1/view2_lateral.jpg"
            else:
                rel = f"{split}/{patient}/study2/view1_frontal.jpg"
            target = base / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_small_jpeg(image))
            findings = _chexpert_findings(image, CXR.labels[image] == "pneumonia")
            digest = sha256_file(target)
            result.raw_labels[digest] = findings
            result.patient_of[digest] = patient
            view = "Lateral" if "lateral" in rel else "Frontal"
            meta = [f"{CHEXPERT_TOP}/{rel}", "Female" if k % 2 else "Male", 5 + k, view]
            meta.append("" if view == "Lateral" else "AP")
            rows[split].append([*meta, *(findings[name] for name in FINDINGS)])
    header = [*CHEXPERT_META, *FINDINGS]
    write_csv(base / "train.csv", header, rows["train"])
    write_csv(base / "valid.csv", header, rows["valid"])
    return result


def write_chexpert_missing_columns(
    root: Path, missing: tuple[str, ...] = ("Edema", "Pleural Other")
) -> Path:
    """A CheXpert folder whose only CSV (train.csv) lacks the findings columns `missing`;
    the images it names exist. Returns the folder to import."""
    base = root / CHEXPERT_TOP
    header = [c for c in [*CHEXPERT_META, *FINDINGS] if c not in missing]
    rows = []
    for k in range(2):
        rel = f"train/patient{k + 1:05d}/study1/view1_frontal.jpg"
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(_small_jpeg(k))
        values = {**dict.fromkeys(FINDINGS, ""), "No Finding": "1.0"}
        meta = [f"{CHEXPERT_TOP}/{rel}", "Male", 7, "Frontal", "AP"]
        rows.append([*meta, *(values[f] for f in FINDINGS if f not in missing)])
    write_csv(base / "train.csv", header, rows)
    return root


# ---------------------------------------------------------------- DICOM


def _dicom_source(name: str) -> Path:
    return Path(pydicom.data.get_testdata_file(name, download=False))


def _dicom_slice(
    dest: Path, source: str, *, patient: str, study: str, shift: int = 0
) -> pydicom.Dataset:
    """A copy of pydicom test file `source` as a new instance of `patient`'s `study`; its
    pixels are rolled by `shift` columns so slices differ."""
    ds = pydicom.dcmread(_dicom_source(source))
    ds.PatientID = patient
    ds.PatientName = f"Test^{patient}"
    if "OtherPatientIDsSequence" in ds:
        del ds.OtherPatientIDsSequence
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if shift:
        pixels = ds.pixel_array
        ds.PixelData = np.ascontiguousarray(np.roll(pixels, shift, axis=1)).tobytes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)
    return ds


def write_truncated_dicom(dest: Path, *, keep: float = 0.6) -> Path:
    """CT_small.dcm cut off inside its pixel data (the header, PatientID included, is whole)."""
    data = _dicom_source("CT_small.dcm").read_bytes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data[: int(len(data) * keep)])
    return dest


def write_dicom_without_pixels(dest: Path, *, patient: str = "NOPIX-PATIENT") -> Path:
    """CT_small.dcm with its PixelData element deleted (a valid DICOM holding no image)."""
    ds = pydicom.dcmread(_dicom_source("CT_small.dcm"))
    ds.PatientID = patient
    del ds.PixelData
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)
    return dest


def write_fake_png(dest: Path) -> Path:
    """A `.png` whose bytes start like a PNG and then are text: not a decodable image."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not really a PNG image\n" * 8)
    return dest


# ---------------------------------------------------------------- RSNA


@dataclass
class Rsna:
    root: Path
    patients: list[str]  # raw DICOM PatientIDs
    files: dict[str, Path]  # image id ("ID_xxxxxxxxx") -> written file, good slices only
    labels: dict[str, dict[str, int]]  # image id -> subtype -> 0/1, good slices only
    broken: dict[str, Path] = field(default_factory=dict)  # image id -> broken file

    @property
    def n_images(self) -> int:
        return len(self.files)

    def by_sha256(self) -> dict[str, str]:
        return {sha256_file(path): image_id for image_id, path in self.files.items()}


def _rsna_id(n: int) -> str:
    return "ID_" + hashlib.sha256(f"rsna-fixture-{n}".encode()).hexdigest()[:9]


def write_rsna(root: Path, *, n_patients: int = 4, slices: int = 2, broken: bool = False) -> Rsna:
    """`n_patients` scans of `slices` CT slices each (one study per patient). Patient k's
    slices are positive for one subtype (and "any") when k is odd. With `broken`, two more
    CSV-listed files: a truncated slice and a slice without pixel data."""
    images = root / RSNA_IMAGES
    result = Rsna(root=root, patients=[], files={}, labels={})
    rows: list[list[object]] = []
    n = 0
    for k in range(n_patients):
        patient = f"RSNAPAT{k + 1:04d}"
        result.patients.append(patient)
        study = generate_uid()
        positive = SUBTYPES[k % 5] if k % 2 == 1 else None
        for j in range(slices):
            image_id = _rsna_id(n)
            n += 1
            dest = images / f"{image_id}.dcm"
            _dicom_slice(dest, "CT_small.dcm", patient=patient, study=study, shift=7 * n)
            labels = {
                s: int(s == positive or (s == "any" and positive is not None)) for s in SUBTYPES
            }
            result.files[image_id] = dest
            result.labels[image_id] = labels
            rows.extend([f"{image_id}_{s}", labels[s]] for s in SUBTYPES)
    if broken:
        truncated, nopixels = _rsna_id(n), _rsna_id(n + 1)
        result.broken[truncated] = write_truncated_dicom(images / f"{truncated}.dcm")
        result.broken[nopixels] = write_dicom_without_pixels(
            images / f"{nopixels}.dcm", patient=result.patients[0]
        )
        for image_id in (truncated, nopixels):
            rows.extend([f"{image_id}_{s}", 0] for s in SUBTYPES)
    write_csv(root / RSNA_CSV, ["ID", "Label"], rows)
    # Shipped next to the train CSV in the real download; the reader must prefer "train".
    write_csv(root / "stage_2_sample_submission.csv", ["ID", "Label"], [])
    return result


# ---------------------------------------------------------------- MedMNIST


@dataclass
class MedMnist:
    path: Path  # the .npz
    arrays: dict[str, np.ndarray]  # exactly what was saved, by official key

    def count(self, split: str) -> int:
        return int(self.arrays[f"{split}_images"].shape[0])


def write_medmnist(
    path: Path, *, split_sizes: tuple[int, int, int] = (8, 4, 4), side: int = 28
) -> MedMnist:
    """A PneumoniaMNIST-like npz: `{train,val,test}_{images,labels}`, images uint8
    (n, side, side) from the X-rays, labels uint8 (n, 1) with 0 = normal, 1 = pneumonia.
    Normal and pneumonia films alternate so every split holds both classes."""
    normals = [i for i, label in enumerate(CXR.labels) if label == "normal"]
    sick = [i for i, label in enumerate(CXR.labels) if label == "pneumonia"]
    order = [x for pair in zip(normals, sick, strict=True) for x in pair]
    assert sum(split_sizes) <= len(order)
    arrays: dict[str, np.ndarray] = {}
    start = 0
    for split, size in zip(("train", "val", "test"), split_sizes, strict=True):
        chosen = order[start : start + size]
        start += size
        arrays[f"{split}_images"] = np.stack(
            [
                np.frombuffer(_tiny_pixels(i, side), dtype=np.uint8).reshape(side, side)
                for i in chosen
            ]
        )
        labels = [[int(CXR.labels[i] == "pneumonia")] for i in chosen]
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.uint8)
    assert sorted(arrays) == sorted(MEDMNIST_KEYS)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return MedMnist(path=path, arrays=arrays)


# ---------------------------------------------------------------- folder per class


@dataclass
class Folder:
    root: Path
    classes: dict[str, list[Path]]  # class -> good image files
    broken: list[str] = field(default_factory=list)  # paths relative to root

    @property
    def n_images(self) -> int:
        return sum(len(files) for files in self.classes.values())

    @property
    def stems(self) -> list[str]:
        """The raw patient ids (without patients.csv a file's stem is its patient)."""
        return [p.stem for files in self.classes.values() for p in files]


def write_folder(root: Path, *, small: bool = True, broken: bool = False) -> Folder:
    """`normal/` and `pneumonia/` with the 16 X-rays (scaled down when `small`). With `broken`:
    normal/truncated.dcm, normal/nopixels.dcm and pneumonia/fake.png as well."""
    result = Folder(root=root, classes={})
    for i, (file, label) in enumerate(zip(CXR.files, CXR.labels, strict=True)):
        dest = root / label / file.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if small:
            dest.write_bytes(_small_jpeg(i))
        else:
            shutil.copy(file, dest)
        result.classes.setdefault(label, []).append(dest)
    if broken:
        write_truncated_dicom(root / "normal" / "truncated.dcm")
        write_dicom_without_pixels(root / "normal" / "nopixels.dcm")
        write_fake_png(root / "pneumonia" / "fake.png")
        result.broken = ["normal/truncated.dcm", "normal/nopixels.dcm", "pneumonia/fake.png"]
    return result


# ---------------------------------------------------------------- DICOM + CSV

# image id -> pydicom test file: eight transfer syntaxes our decoder reads. image_dfl.dcm
# (deflated) has an empty PatientID, as de-identified public datasets often do.
DICOM_ENCODINGS = {
    "ct_explicit_le": "CT_small.dcm",
    "mr_implicit_le": "MR_small_implicit.dcm",
    "mr_explicit_be": "MR_small_bigendian.dcm",
    "mr_rle": "MR_small_RLE.dcm",
    "mr_jpeg2000": "MR_small_jp2klossless.dcm",
    "mr_jpeg_ls": "MR_small_jpeg_ls_lossless.dcm",
    "nm_jpeg_extended": "JPGExtended.dcm",
    "deflated": "image_dfl.dcm",
}
DICOM_CSV = "labels.csv"


@dataclass
class DicomEncodings:
    root: Path
    files: dict[str, Path]  # image id -> readable file (copied byte for byte)
    patients: list[str]  # the raw header PatientIDs among them
    without_patient: list[str]  # image ids whose header has no PatientID
    broken: dict[str, int]  # image id -> its line in labels.csv (truncated, not a DICOM)


def write_dicom_encodings(
    root: Path, *, csv_patients: dict[str, str] | None = None
) -> DicomEncodings:
    """`labels.csv` (`image_id,label`, plus `patient_id` when `csv_patients` maps image ids to
    patients; other rows leave it blank) listing the eight `DICOM_ENCODINGS` files, then a
    truncated copy of CT_small.dcm and a text file named `.dcm`, in `root/dicom/`."""
    images = root / "dicom"
    images.mkdir(parents=True, exist_ok=True)
    result = DicomEncodings(root, {}, [], [], {})
    for image_id, name in DICOM_ENCODINGS.items():
        dest = images / f"{image_id}.dcm"
        shutil.copy(_dicom_source(name), dest)
        result.files[image_id] = dest
        patient = str(pydicom.dcmread(dest, stop_before_pixels=True).get("PatientID", "") or "")
        if patient.strip():
            result.patients.append(patient.strip())
        else:
            result.without_patient.append(image_id)
    write_truncated_dicom(images / "truncated.dcm")
    (images / "not_dicom.dcm").write_text("exported by a viewer: not an image\n")
    ids = [*result.files, "truncated", "not_dicom"]
    # The header is line 1, so image i (0-based) is on line i + 2.
    result.broken = {image_id: ids.index(image_id) + 2 for image_id in ("truncated", "not_dicom")}
    header = ["image_id", "label"]
    rows: list[list[object]] = [[image_id, i % 2] for i, image_id in enumerate(ids)]
    if csv_patients is not None:
        header.append("patient_id")
        for row in rows:
            row.append(csv_patients.get(str(row[0]), ""))
    write_csv(root / DICOM_CSV, header, rows)
    result.patients = sorted(set(result.patients))
    return result
